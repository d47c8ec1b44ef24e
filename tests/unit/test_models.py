from __future__ import annotations

import json

import pytest

from diagnostics.errors import UsageError
from diagnostics.models import MINICPM_V_2_6, get_model, padded_vocab


def test_minicpmv26_weights_equal_vllm_meta_model():
    m = get_model("minicpm-v-2_6")
    # vLLM 0.32 meta-device build of the real-size directory (docs/minicpmv26-kit.md §4.1)
    assert m.params == 8_099_275_504
    assert m.weights_bytes() == 16_198_551_008
    assert round(m.weights_bytes() / 2**30, 2) == 15.09
    assert m.weights_bytes(4) == 2 * 16_198_551_008


def test_minicpmv26_kv_and_vision():
    m = MINICPM_V_2_6
    assert m.kv_bytes_per_token() == 57_344 and m.kv_bytes_per_token(1) == 28_672
    assert m.vocab == 151_666 and m.vocab_padded == 151_680
    assert m.vision.query_num == 64 and m.vision.max_slice_nums == 9 and m.vision.patches_per_slice == 1024


@pytest.mark.parametrize("alias", ["minicpm-v-2_6", "openbmb/MiniCPM-V-2_6", "kit:minicpm-v-2_6", "MiniCPM-V-2_6"])
def test_aliases(alias):
    assert get_model(alias) is MINICPM_V_2_6


def _kit_config(**over):
    cfg = {
        "architectures": ["MiniCPMV"], "model_type": "minicpmv", "version": 2.6,
        "hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
        "head_dim": 64, "intermediate_size": 256, "vocab_size": 512, "max_position_embeddings": 4096,
        "tie_word_embeddings": False, "torch_dtype": "bfloat16", "query_num": 64, "image_size": 448,
        "max_slice_num": 9, "drop_vision_last_layer": False,
        "vision_config": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                          "num_attention_heads": 2, "image_size": 980, "patch_size": 14},
    }
    cfg.update(over)
    return cfg


def test_tiny_kit_dir(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(_kit_config()))
    m = get_model(str(tmp_path))
    assert m.params == 945_088  # the kit's checkpoint count (vocab 512 needs no padding)
    assert m.vision.hidden == 64 and m.vision.query_num == 64 and m.kv_bytes_per_token() == 2 * 2 * 1 * 64 * 2


def test_real_size_kit_dir_matches_built_in(tmp_path):
    cfg = _kit_config(hidden_size=3584, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                      head_dim=128, intermediate_size=18944, vocab_size=151666, max_position_embeddings=32768,
                      vision_config={"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27,
                                     "num_attention_heads": 16, "image_size": 980, "patch_size": 14})
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    m = get_model(tmp_path)
    assert m.params == MINICPM_V_2_6.params and m.vision == MINICPM_V_2_6.vision


def test_text_model_with_nesting_and_tying(tmp_path):
    # Qwen2-0.5B-like: tied embeddings, qkv bias (model_type qwen2), GQA
    qwen = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 896,
            "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
            "intermediate_size": 4864, "vocab_size": 151936, "max_position_embeddings": 32768,
            "tie_word_embeddings": True, "torch_dtype": "bfloat16"}
    (tmp_path / "config.json").write_text(json.dumps(qwen))
    m = get_model(tmp_path)
    assert m.params == 494_032_768  # Qwen2-0.5B's published parameter count
    assert m.vision is None and m.head_dim == 64 and m.kv_bytes_per_token() == 2 * 24 * 2 * 64 * 2
    nested = tmp_path / "nested"
    nested.mkdir()
    (nested / "config.json").write_text(json.dumps({"architectures": ["Qwen2WrapperForCausalLM"],
                                                     "text_config": {**qwen, "architectures": None}}))
    assert get_model(nested).params == m.params
    # a VLM family's architecture needs its vision config: one line naming the field
    (nested / "config.json").write_text(json.dumps({"architectures": ["LlavaForConditionalGeneration"],
                                                     "text_config": {**qwen, "architectures": None}}))
    with pytest.raises(UsageError, match="lacks 'vision_config'"):
        get_model(nested)


def test_llama_without_bias(tmp_path):
    llama = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
             "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
             "intermediate_size": 14336, "vocab_size": 128256, "max_position_embeddings": 131072}
    (tmp_path / "config.json").write_text(json.dumps(llama))
    assert get_model(tmp_path).params == 8_030_261_248  # Llama-3.1-8B


def test_padding():
    assert padded_vocab(151666) == 151680 and padded_vocab(512) == 512


@pytest.mark.parametrize("bad", ["bogus-model", "/nonexistent/dir"])
def test_unknown_model(bad):
    with pytest.raises(UsageError) as exc:
        get_model(bad)
    assert bad in str(exc.value) and "minicpm-v-2_6" in str(exc.value)


def test_dir_without_config(tmp_path):
    with pytest.raises(UsageError) as exc:
        get_model(str(tmp_path))
    assert "config.json" in str(exc.value)


def test_config_missing_fields(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["X"], "hidden_size": 8}))
    with pytest.raises(UsageError) as exc:
        get_model(tmp_path)
    assert "num_hidden_layers" in str(exc.value)


def test_stored_vlm_names_and_kit_names_read_the_stored_configs():
    qwen = get_model("qwen2.5-vl-7b")
    assert qwen.family.variant == "qwen2.5-vl" and qwen.params == 8_292_166_656  # vLLM 0.32 meta device
    assert get_model("kit:qwen2.5-vl-7b").params == qwen.params
    m = get_model("internvl3-8b")
    assert (m.max_position_embeddings, m.rope_factor, m.derived_max_model_len) == (32768, 2.0, 65536)  # dynamic rope, factor 2


def test_a_directory_with_only_the_config_files_is_a_model(tmp_path):
    from diagnostics.models import STORED_DIR

    for name in ("config.json", "preprocessor_config.json"):
        (tmp_path / name).write_text((STORED_DIR / "gemma-3-4b" / name).read_text())
    m = get_model(str(tmp_path))
    assert (m.family.variant, m.params, m.vision.patch) == ("gemma3", 4_300_079_472, 14)


def test_an_unknown_vision_language_architecture_is_one_line(tmp_path):
    cfg = {"architectures": ["Step3VLForConditionalGeneration"], "vision_config": {"hidden_size": 1},
           "text_config": {"hidden_size": 8}}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UsageError, match="architecture Step3VLForConditionalGeneration is not a model family") as e:
        get_model(tmp_path)
    assert "\n" not in str(e.value) and "Qwen2_5_VLForConditionalGeneration" in str(e.value)


def test_a_broken_preprocessor_config_is_one_line(tmp_path):
    from diagnostics.models import STORED_DIR

    (tmp_path / "config.json").write_text((STORED_DIR / "qwen2.5-vl-7b" / "config.json").read_text())
    (tmp_path / "preprocessor_config.json").write_text("{not json")
    with pytest.raises(UsageError, match="cannot read .*preprocessor_config.json"):
        get_model(tmp_path)


QWEN_7B_CHAT = dict(architectures=["QWenLMHeadModel"], model_type="qwen", hidden_size=4096, num_hidden_layers=32,
                    num_attention_heads=32, intermediate_size=22016, vocab_size=151936, max_position_embeddings=8192,
                    seq_length=8192, kv_channels=128, torch_dtype="bfloat16", auto_map={})


def test_issue11_qwen_v1_intermediate_size_is_the_fused_gate_up_width():
    # field case vllm-7256 (Qwen/Qwen-7B-Chat, vLLM 0.5.3): "Loading model weights took 14737.2578 MB" = 14.39 GiB;
    # vLLM builds QWenMLP(hidden, intermediate_size // 2). Counting the MLP twice gave 22.4 GiB.
    from diagnostics.models import model_from_config

    m = model_from_config(QWEN_7B_CHAT)
    assert m.intermediate == 11008
    printed_gib = 14737.2578 / 1024
    assert abs(m.weights_bytes() / 2**30 - printed_gib) < 0.02  # 14.38 (rotary caches make the rest)


@pytest.mark.parametrize("qc, gib", [
    ({"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemm"}, 5.19),
    ({"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False}, 5.19),
    ({"quant_method": "gptq", "bits": 8, "group_size": -1}, 8.11),
    ({"quant_method": "fp8", "activation_scheme": "dynamic"}, 8.11),
    ({"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}, 5.45),
])
def test_issue11_quantized_checkpoints_are_sized_as_vllm_stores_them(qc, gib):
    from diagnostics.models import model_from_config

    qwen2_7b = dict(architectures=["Qwen2ForCausalLM"], model_type="qwen2", hidden_size=3584, num_hidden_layers=28,
                    num_attention_heads=28, num_key_value_heads=4, intermediate_size=18944, vocab_size=152064,
                    max_position_embeddings=32768, torch_dtype="float16")
    plain = model_from_config(qwen2_7b)
    quant = model_from_config({**qwen2_7b, "quantization_config": qc})
    assert plain.weights_bytes() / 2**30 == pytest.approx(14.19, abs=0.01)
    assert quant.weights_bytes() / 2**30 == pytest.approx(gib, abs=0.01)
    assert quant.kv_bytes_per_token() == plain.kv_bytes_per_token()  # the KV cache is not quantized by the checkpoint


def test_unknown_quantization_is_a_usage_error_naming_the_accepted_methods():
    from diagnostics.models import model_from_config

    with pytest.raises(UsageError, match="awq"):
        model_from_config({**QWEN_7B_CHAT, "quantization_config": {"quant_method": "hqq"}})


# -- vLLM's derived max_model_len: every length key, model_max_length, rope scaling (issue #9) ---------------------
def _text_config(**over) -> dict:
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 256,
           "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 512, "vocab_size": 1000,
           "max_position_embeddings": 8192}
    cfg.update(over)
    return cfg


@pytest.mark.parametrize("over, length, key, derived", [
    ({}, 8192, "max_position_embeddings", 8192),
    ({"n_positions": 2048}, 2048, "n_positions", 2048),  # the smallest key wins
    ({"seq_length": 4096, "max_seq_len": 16384}, 4096, "seq_length", 4096),
    ({"model_max_length": 131072}, 131072, "model_max_length", 131072),  # it overrides, even when larger
    ({"rope_scaling": {"rope_type": "linear", "factor": 4.0}}, 8192, "max_position_embeddings", 32768),
    ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, 8192, "max_position_embeddings", 8192),
    ({"model_type": "gemma3_text", "rope_scaling": {"rope_type": "linear", "factor": 8.0}},
     8192, "max_position_embeddings", 8192),  # Gemma 3's length is already scaled (vllm/config/model.py)
])
def test_the_derived_max_model_len_follows_vllms_keys_and_rope_rules(over, length, key, derived):
    from diagnostics.models import model_from_config

    m = model_from_config(_text_config(**over))
    assert (m.max_position_embeddings, m.max_len_key, m.derived_max_model_len) == (length, key, derived)


@pytest.mark.parametrize("heads", [0, -4, "32", 1.5])
def test_a_config_with_no_usable_head_count_is_one_line(tmp_path, heads):                  # newcomer-3 #136
    import json as _json

    from diagnostics.errors import UsageError
    from diagnostics.models import get_model

    cfg = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "num_hidden_layers": 2,
           "num_attention_heads": heads, "intermediate_size": 11008, "vocab_size": 32000,
           "max_position_embeddings": 4096, "torch_dtype": "float16"}
    (tmp_path / "config.json").write_text(_json.dumps(cfg))
    with pytest.raises(UsageError, match="num_attention_heads is .*; accepted: a positive integer"):
        get_model(str(tmp_path))


def test_an_id_a_command_does_not_look_up_is_not_listed_as_accepted_in_its_own_refusal():   # newcomer pass
    with pytest.raises(UsageError) as err:
        get_model("someone/NotAModel-7B")
    text = str(err.value)
    assert "plan --model someone/NotAModel-7B" in text and "or a Hugging Face id (owner/name)" not in text
    with pytest.raises(UsageError, match=r"unknown model 'nope'.*or a Hugging Face id \(owner/name\)"):
        get_model("nope", hub=True)


@pytest.mark.parametrize("name", ["", "  "])
def test_an_empty_model_name_says_so(name):
    """`--model ''` read the working directory as a checkpoint ("model directory . has no config.json")."""
    with pytest.raises(UsageError, match="^model name is empty; accepted: minicpm-v-2_6"):
        get_model(name, hub=True)


def _qwen3_dir(path, layers_in_file, lm_head=True, name="model.safetensors", **cfg):
    """A 4-layer Qwen3 config.json and one header-only safetensors file holding only `layers_in_file`."""
    from header_kit import write_header_only
    config = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 64,
              "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
              "intermediate_size": 128, "vocab_size": 1000, "tie_word_embeddings": False,
              "max_position_embeddings": 4096, "torch_dtype": "bfloat16", **cfg}
    path.mkdir(exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))
    t = {"model.embed_tokens.weight": ("BF16", (1000, 64)), "model.norm.weight": ("BF16", (64,))}
    t.update({f"model.layers.{i}.mlp.up_proj.weight": ("BF16", (128, 64)) for i in layers_in_file})
    if lm_head:
        t["lm_head.weight"] = ("BF16", (1000, 64))
    write_header_only(path / name, t)
    return path


def test_a_checkpoint_missing_layers_or_its_lm_head_is_refused_not_sized(tmp_path):
    # the newcomer's case: the first shard of Qwen3-8B renamed model.safetensors (9 of 36 layers, no lm_head)
    # was sized at 4.4 GiB `derived`; vLLM itself refuses it (default_loader.py:562-567)
    with pytest.raises(UsageError, match=r"lacks decoder layers 2-3 of num_hidden_layers=4 and lm_head "
                                         r"\(tie_word_embeddings is false\)") as exc:
        get_model(_qwen3_dir(tmp_path / "part", [0, 1], lm_head=False))
    assert "\n" not in str(exc.value) and "accepted: a complete checkpoint" in str(exc.value)
    assert get_model(_qwen3_dir(tmp_path / "full", range(4))).checkpoint is not None
    tied = get_model(_qwen3_dir(tmp_path / "tied", range(4), lm_head=False, tie_word_embeddings=True))
    assert tied.checkpoint is not None  # a tied lm_head is not stored


def test_plan_on_a_partial_shard_set_exits_2_in_one_line(tmp_path, capsys):
    from diagnostics.cli import main
    d = _qwen3_dir(tmp_path / "shard1", [0, 1], lm_head=False, name="model-00001-of-00002.safetensors")
    assert main(["plan", "--model", str(d), "--card", "4090", "--vllm", "0.32.0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "1 are missing (e.g. model-00002-of-00002.safetensors)" in err


@pytest.mark.parametrize("key, where", [("num_hidden_layers", None), ("num_attention_heads", None),
                                        ("num_experts", None), ("num_hidden_layers", "text_config")])
def test_absurd_config_counts_are_refused_at_once(tmp_path, key, where):
    cfg = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 4096,
           "num_hidden_layers": 36, "num_attention_heads": 32, "num_key_value_heads": 8,
           "intermediate_size": 12288, "vocab_size": 151936}
    base = dict(cfg)
    if where:
        cfg[where] = {**cfg, key: 10**9}
    else:
        cfg[key] = 10**9  # num_hidden_layers=10**9 ran plan for hours (linear in layers)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UsageError, match=rf"{(where + '.') if where else ''}{key} is 1000000000; accepted: at most "
                                         "10,000") as exc:
        get_model(tmp_path)
    assert "\n" not in str(exc.value)
    (tmp_path / "config.json").write_text(json.dumps({**base, "num_hidden_layers": 10_000}))
    assert get_model(tmp_path).layers == 10_000  # the bound itself is accepted


@pytest.mark.parametrize("key, value", [("hidden_size", 10**7), ("max_position_embeddings", 10**15),
                                        ("vocab_size", 10**12), ("intermediate_size", 10**9)])
def test_absurd_config_widths_and_lengths_are_refused_too(tmp_path, key, value):         # newcomer re-check
    cfg = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 4096,
           "num_hidden_layers": 36, "num_attention_heads": 32, "num_key_value_heads": 8,
           "intermediate_size": 12288, "vocab_size": 151936, key: value}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UsageError, match=rf"{key} is {value}; accepted: at most"):
        get_model(tmp_path)
