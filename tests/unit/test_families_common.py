"""Parameter arithmetic shared by the VLM families (checked against vLLM's meta-device builds elsewhere)."""

from __future__ import annotations

import pytest

from diagnostics.errors import UsageError
from diagnostics.families import common


def test_padded_vocab_rounds_up_to_64():
    assert common.padded_vocab(151674) == 151680
    assert common.padded_vocab(152064) == 152064


def test_decoder_params_qwen2_7b_language_model_equals_vllms():
    cfg = dict(hidden_size=3584, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
               intermediate_size=18944, vocab_size=152064)
    assert common.decoder_params(cfg, qkv_bias=True) == 7_615_616_512  # vLLM 0.32, Qwen2.5-VL-7B language_model
    tied = common.decoder_params(cfg, qkv_bias=True, tied=True)
    assert tied == 7_615_616_512 - 152064 * 3584


def test_moe_counts_every_expert_and_the_router():
    cfg = dict(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, head_dim=4, intermediate_size=16,
               vocab_size=64)
    dense = common.decoder_params(cfg, qkv_bias=False)
    moe = common.decoder_params(cfg, qkv_bias=False, moe={"experts": 4, "inter": 2})
    assert dense - moe == 3 * 8 * 16 - (4 * 3 * 8 * 2 + 8 * 4)


def test_feature_layers_counts_negative_indices_from_the_end():
    assert common.feature_layers(24, -2) == 23
    assert common.feature_layers(26, -1) == 26


def test_need_names_the_missing_field():
    with pytest.raises(UsageError, match="'vision_config'"):
        common.need({}, "vision_config", "x/config.json")


def test_a_dotted_knob_key_reads_and_writes_inside_the_nested_dict():
    knob = common.Knob("mm_processor_kwargs", "size.longest_edge", "pixels", 1540, 1024, "why")
    assert knob.current({}) == 1540 and knob.current({"mm_processor_kwargs": {"size": {"longest_edge": 896}}}) == 896
    assert knob.current({"mm_processor_kwargs": {"size": 7}}) == 1540  # not a dict: the default
    kept = {"mm_processor_kwargs": {"size": {"shortest_edge": 1}, "x": 2}}
    assert knob.setting_value(kept, 784) == {"size": {"shortest_edge": 1, "longest_edge": 784}, "x": 2}
    assert kept["mm_processor_kwargs"]["size"] == {"shortest_edge": 1}  # the settings themselves are not changed
    assert knob.text().startswith('mm_processor_kwargs={"size": {"longest_edge": 1024}}')
