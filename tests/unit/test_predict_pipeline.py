"""predict.pipeline: pipeline_parallel_size planned per stage as vLLM builds the stages (get_pp_indices, embeddings on
the first stage, lm_head/norm on the last or on every stage, the KV pool at the fewest blocks of any worker)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from diagnostics.checkpoint import read_local
from diagnostics.errors import UsageError
from diagnostics.models import get_model
from diagnostics.predict import pipeline
from diagnostics.predict.estimator import plan
from diagnostics.predict.shards import rank_weights
from diagnostics.predict.terms import weights_term
from header_kit import llama_dir, write_header_only

ROOT = Path(__file__).resolve().parents[2]
DSV2L = get_model(ROOT / "tests/data/models/deepseek-v2-lite")
QWEN3 = get_model(ROOT / "tests/data/models/qwen3-30b-a3b")


@pytest.mark.parametrize("layers, pp, version, expected", [
    (27, 2, "0.10.0", [14, 13]),      # remainder to the stage before the last (utils.py 0.8.0+)
    (27, 2, "0.7.0", [13, 14]),       # up to 0.7.0 the last stage takes it
    (10, 4, "0.32.0", [2, 3, 3, 2]),  # two left over: last-but-one, then the one before
    (48, 4, "0.32.0", [12, 12, 12, 12]),
    (10, 4, "0.6.0", [2, 2, 2, 4]),
])
def test_layers_per_stage_follow_get_pp_indices(layers, pp, version, expected):
    assert pipeline.partition(layers, pp, version) == expected


def test_vllm_pp_layer_partition_overrides_and_is_checked():
    assert pipeline.partition(27, 2, "0.32.0", "20,7") == [20, 7]
    for bad in ("20,8", "27", "a,b", "28,-1"):
        with pytest.raises(UsageError, match="VLLM_PP_LAYER_PARTITION"):
            pipeline.partition(27, 2, "0.32.0", bad)


def test_ends_on_their_stage_or_every_stage():
    first, last = pipeline.stages(DSV2L, 2, "0.32.0")
    assert (first.start, first.end, first.embed, first.head, first.final_norm) == (0, 14, True, False, False)
    assert (last.start, last.end, last.embed, last.head, last.final_norm) == (14, 27, False, True, True)
    for st in pipeline.stages(QWEN3, 4, "0.32.0"):  # qwen3_moe.py builds embed/norm/lm_head on every stage
        assert st.embed and st.head and st.final_norm and st.rule == "vllm"


def test_a_tied_llama_builds_the_embedding_on_the_last_stage_too(tmp_path):
    model = llama_dir(tmp_path, tied=True)
    first, last = pipeline.stages(model, 2, "0.32.0")
    assert first.embed and last.embed and not last.head  # llama.py:377-388: embed_tokens on the last rank when tied


def test_stage_weights_from_the_header_add_up_to_the_whole_model(tmp_path):
    model = llama_dir(tmp_path)
    whole = rank_weights(model.checkpoint, model, 2)
    parts = [rank_weights(model.checkpoint, model, 2, stage=st) for st in pipeline.stages(model, 2, "0.32.0")]
    assert sum(p.value for p in parts) == pytest.approx(whole.value)
    emb = 1024 * 64 * 2  # 1000 vocab rows padded to 1024, bf16
    layer = (4 * 64 * 64 + 3 * 64 * 128 + 2 * 64) * 2 - 2 * 64 * 64 * 2 + 2 * 32 * 64 * 2  # kv=2 heads of 16
    assert parts[0].value == pytest.approx(emb + layer)
    assert parts[1].value == pytest.approx(emb + layer + 64 * 2)  # lm_head + final norm
    assert all(p.basis.startswith("derived") and "stage" in p.basis for p in parts)


def test_header_and_config_agree_per_stage(tmp_path):
    model = llama_dir(tmp_path)
    for st in pipeline.stages(model, 2, "0.32.0"):
        from_header = weights_term(model, {"tensor_parallel_size": 1}, 2, None, st).value_gib
        from_config = (model.decoder.params_per_rank(1, st.start, st.end, int(st.embed) + int(st.head),
                                                     st.final_norm) * 2 + 4096 * 16 * 2) / 2**30  # + rotary cache
        assert from_header == pytest.approx(from_config)


def test_an_architecture_without_placement_rules_is_an_estimate(tmp_path):
    model = llama_dir(tmp_path, arch="NovelForCausalLM")
    st = pipeline.stages(model, 2, "0.32.0")[0]
    assert st.rule == "assumed"
    t = weights_term(model, {"tensor_parallel_size": 1}, 2, None, st)
    assert t.basis.startswith("estimate") and t.high_gib > t.value_gib


def test_plan_takes_the_stage_with_the_fewest_kv_blocks():
    p = plan(DSV2L, "l4", "0.32.0", "llm", {"tensor_parallel_size": 2, "pipeline_parallel_size": 2,
                                            "max_model_len": 1024})
    stages = p.profile["pipeline_stages"]
    assert [s["layers"] for s in stages] == [[0, 14], [14, 27]]
    worst = min(stages, key=lambda s: s["kv_blocks"])
    assert p.kv_cache_tokens == worst["kv_blocks"] * p.settings["block_size"]
    assert p.components["weights"].value_gib == pytest.approx(worst["weights_gib"], abs=1e-3)
    one = plan(DSV2L, "l4", "0.32.0", "llm", {"tensor_parallel_size": 2, "max_model_len": 1024})
    assert p.components["weights"].value_gib < 0.6 * one.components["weights"].value_gib
    # the last stage runs the sampler, the first does not
    assert stages[1]["activation_gib"] > stages[0]["activation_gib"]
    assert any(n.startswith("pipeline_parallel_size=2: stage 0 of 2") for n in p.notes)


def test_stage_kv_counts_only_its_layers():
    cfg = json.loads((ROOT / "tests/data/models/deepseek-v2-lite/config.json").read_text())
    d = pipeline.stage_model(DSV2L, pipeline.stages(DSV2L, 2, "0.32.0")[1])
    assert d.layers == 13 and d.decoder.moe.moe_layers == tuple(range(13))  # layer 0 (dense) is on stage 0
    assert d.kv_bytes_per_token(2, 2) * 27 == DSV2L.kv_bytes_per_token(2, 2) * 13
    assert cfg["first_k_dense_replace"] == 1


@pytest.mark.parametrize("model, overrides, version, match", [
    # DeepseekV2ForCausalLM itself is in vLLM only from 0.5.1 (predict.architectures): a model 0.5.0 has
    ("qwen2.5-7b", {"pipeline_parallel_size": 2}, "0.5.0", "needs vLLM >= 0.5.1"),
    ("deepseek-v2-lite", {"pipeline_parallel_size": 28}, "0.32.0", "more than the model's 27"),
    ("deepseek-v2-lite", {"pipeline_parallel_size": 0}, "0.32.0", "positive integer"),
    ("deepseek-v2-lite", {"VLLM_PP_LAYER_PARTITION": "20"}, "0.32.0", "VLLM_PP_LAYER_PARTITION"),
])
def test_bad_pipeline_settings_are_one_usage_line(model, overrides, version, match):
    with pytest.raises(UsageError, match=match):
        plan(str(ROOT / "tests/data/models" / model), "l4", version, "llm", overrides)


def test_a_vision_language_model_under_pp_is_refused():
    with pytest.raises(UsageError, match="text decoders only"):
        plan("minicpm-v-2_6", "l4", "0.32.0", "llm", {"pipeline_parallel_size": 2})


def test_pp_from_a_real_header_split_by_layer_index(tmp_path):
    t = {"model.embed_tokens.weight": ("BF16", (1024, 64)), "lm_head.weight": ("BF16", (1024, 64)),
         "model.norm.weight": ("BF16", (64,))}
    for i in range(3):
        t[f"model.layers.{i}.mlp.down_proj.weight"] = ("BF16", (64, 128 * (i + 1)))
    write_header_only(tmp_path / "model.safetensors", t)
    table = read_local(tmp_path)
    (tmp_path / "cfg").mkdir()
    model = dataclasses.replace(llama_dir(tmp_path / "cfg"), layers=3, checkpoint=table)
    stages = pipeline.stages(model, 2, "0.32.0")  # 3 layers: [2, 1] from 0.8
    assert [(s.start, s.end) for s in stages] == [(0, 2), (2, 3)]
    got = [rank_weights(table, model, 2, stage=s).value for s in stages]
    assert got == [1024 * 64 * 2 + 64 * 128 * 2 + 64 * 256 * 2, 64 * 384 * 2 + 1024 * 64 * 2 + 64 * 2]


def test_pp_sends_0_8_to_v0_and_runs_on_v1_from_0_9():
    pp = {"pipeline_parallel_size": 2, "max_model_len": 1024}
    assert plan(DSV2L, "l4", "0.8.5", "llm", pp).engine == "V0"  # the V1 oracle's PP fallback (no Ray)
    assert plan(DSV2L, "l4", "0.9.2", "llm", pp).engine == "V1"


@pytest.mark.parametrize("version, verdict", [("0.13.0", "ok"), ("0.15.0", "kv_too_small"), ("0.16.0", "kv_too_small"),
                                              ("0.17.0", "ok")])
def test_0_14_to_0_16_check_one_request_over_all_layers_against_one_stage(version, verdict):
    # each stage holds ~197k tokens of its own 13-14 layers, but only ~95k at all 27 layers' bytes per token
    p = plan(DSV2L, "l4", version, "serve", {"tensor_parallel_size": 2, "pipeline_parallel_size": 2,
                                            "max_model_len": 150000, "gpu_memory_utilization": 0.5})
    assert p.verdict == verdict and p.kv_cache_tokens > 150000
    assert any("vllm#34076" in n for n in p.notes) == (verdict == "kv_too_small")


def test_the_whole_model_check_counts_the_smallest_stage_at_all_layers_bytes():
    # vllm#34076: 3.18 GiB on the smallest worker at Qwen3-30B-A3B's 98,304 B per token (48 layers)
    assert pipeline.whole_model_check_tokens([3.18 * 2**30, 20 * 2**30], 98_304, "0.15.2") == 34_734
    assert pipeline.whole_model_check_tokens([3.18 * 2**30], 98_304, "0.17.0") is None


def test_plan_json_lists_the_stages_only_under_pp():
    p = plan(DSV2L, "l4", "0.32.0", "llm", {"pipeline_parallel_size": 2, "max_model_len": 1024})
    assert [s["stage"] for s in p.to_json()["pipeline_stages"]] == [0, 1]
    assert "pipeline_stages" not in plan(DSV2L, "l4", "0.32.0", "llm", {"max_model_len": 1024}).to_json()
