from __future__ import annotations

import json
from pathlib import Path

import pytest

from diagnostics.cards import get_card
from diagnostics.errors import UsageError
from diagnostics.models import MINICPM_V_2_6 as M, get_model
from diagnostics.settings import KNOWN_SETTINGS, dated_default, parse_set, resolve, setting_available


def test_parse_set_json_then_text():
    got = parse_set(['limit_mm_per_prompt={"image":1,"video":0}', "enforce_eager=true", "max_num_seqs=32",
                     "gpu_memory_utilization=0.85", "dtype=float16", "mm_processor_kwargs={\"max_slice_nums\": 4}",
                     "enforce-eager=True"])
    assert got == {"limit_mm_per_prompt": {"image": 1, "video": 0}, "enforce_eager": True, "max_num_seqs": 32,
                   "gpu_memory_utilization": 0.85, "dtype": "float16", "mm_processor_kwargs": {"max_slice_nums": 4}}


@pytest.mark.parametrize(
    "item, fragment",
    [
        ("max_num_seq=32", "max_num_seqs"),  # unknown key lists the accepted ones
        ("max_num_seqs", "KEY=VALUE"),
        ("max_num_seqs=lots", "max_num_seqs"),
        ("gpu_memory_utilization=1.5", "0 < value <= 1"),
        ("enforce_eager=3", "true/false"),
        ('limit_mm_per_prompt={"speech":1}', "modalities image, video, audio"),
        ("dtype=int3", "float16"),
        ("max_model_len=0", "positive"),
    ],
)
def test_parse_set_rejects(item, fragment):
    with pytest.raises(UsageError) as exc:
        parse_set([item])
    assert fragment in str(exc.value) and "\n" not in str(exc.value)


def test_known_settings_cover_the_architecture_list():
    for key in ("max_num_seqs", "max_model_len", "max_num_batched_tokens", "gpu_memory_utilization",
                "limit_mm_per_prompt", "enforce_eager", "skip_mm_profiling", "mm_processor_kwargs",
                "kv_cache_memory_bytes", "dtype", "enable_chunked_prefill", "block_size", "cpu_offload_gb",
                "tensor_parallel_size", "max_seq_len_to_capture", "use_v1", "load_format", "trust_remote_code",
                "num_gpu_blocks_override", "swap_space", "mm_encoder_tp_mode", "performance_mode", "kv_cache_dtype",
                "VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS"):
        assert key in KNOWN_SETTINGS


@pytest.mark.parametrize(
    "version, overrides, mbt",
    [
        ("0.5.5", {}, 32768),  # max(max_model_len, 2048), no multimodal floor yet
        ("0.5.5", {"max_model_len": 1024}, 2048),
        ("0.6.1", {"max_model_len": 2048}, 4096),  # multimodal floor 4096 (0.6.0-0.6.2)
        ("0.6.3", {"max_model_len": 4096}, 5120),  # 5120 from 0.6.3
        ("0.6.3", {"enable_chunked_prefill": True}, 5120),  # audit a3: the floor applies after chunked's 512
        ("0.6.3", {"max_num_batched_tokens": 9000}, 9000),
    ],
)
def test_v0_batched_tokens(version, overrides, mbt):
    s = resolve(M, get_card("3090"), version, "llm", overrides)
    assert s["max_num_batched_tokens"] == mbt
    assert s["max_num_seqs"] == 256 and s["gpu_memory_utilization"] == 0.90
    assert s["limit_mm_per_prompt"] == {"image": 1}


def test_v0_same_for_llm_and_serve():
    assert resolve(M, get_card("h100-80"), "0.6.3", "llm") == resolve(M, get_card("h100-80"), "0.6.3", "serve")


@pytest.mark.parametrize(
    "version, card, entry, mbt, seqs",
    [
        ("0.33.0", "3090", "llm", 8192, 256),
        ("0.33.0", "3090", "serve", 2048, 256),
        ("0.33.0", "h100-80", "llm", 16384, 1024),
        ("0.33.0", "h100-80", "serve", 8192, 1024),
        ("0.33.0", "a100-80", "llm", 8192, 256),  # >= 70 GiB but A100: small defaults from 0.9.0
        ("0.8.5", "a100-80", "llm", 16384, 1024),  # 0.8.5: memory alone decides
        ("0.8.4", "a100-80", "llm", 8192, 256),  # 0.7-0.8.4: H100/H200 by name
        ("0.8.4", "h100-80", "serve", 8192, 1024),
        ("0.8.2", "3090", "llm", 8192, 1024),  # 0.8.0-0.8.3: 1024 seqs everywhere
        ("0.7.3", "l4", "serve", 2048, 1024),
        ("0.32.0", "h200", "serve", 8192, 1024),
        ("0.32.0", "cpu", "llm", 4096, 256),  # CPU backend defaults (observed in the kit runs)
        ("0.32.0", "cpu", "serve", 2048, 128),
    ],
)
def test_v1_batch_defaults(version, card, entry, mbt, seqs):
    # MiniCPM-V runs on V0 by default before 0.8.3 (audit a7): these rows are the V1 defaults
    overrides = {"use_v1": True} if version.startswith("0.7") or version in ("0.8.2",) else {}
    s = resolve(M, get_card(card), version, entry, overrides)
    assert (s["max_num_batched_tokens"], s["max_num_seqs"]) == (mbt, seqs)


@pytest.mark.parametrize("version, util, limit", [("0.19.0", 0.90, 999), ("0.20.0", 0.92, 999),
                                                 ("0.8.3", 0.90, 1), ("0.8.4", 0.90, 999)])
def test_v1_util_and_limit_defaults(version, util, limit):
    s = resolve(M, get_card("3090"), version, "llm")
    assert s["gpu_memory_utilization"] == util
    assert s["limit_mm_per_prompt"] == {"image": limit, "video": limit}


def test_user_limit_keeps_default_for_the_unnamed_modality():
    s = resolve(M, get_card("l4"), "0.32.0", "llm", {"limit_mm_per_prompt": {"image": 1}})
    assert s["limit_mm_per_prompt"] == {"image": 1, "video": 999}


def test_v1_default_mbt_clamped_and_throughput_mode():
    s = resolve(M, get_card("3090"), "0.32.0", "llm", {"max_num_seqs": 1, "max_model_len": 4096})
    assert s["max_num_batched_tokens"] == 4096
    s = resolve(M, get_card("3090"), "0.32.0", "llm", {"performance_mode": "throughput"})
    assert (s["max_num_batched_tokens"], s["max_num_seqs"]) == (16384, 512)
    s = resolve(M, get_card("3090"), "0.32.0", "llm", {"enable_chunked_prefill": False})
    assert s["max_num_batched_tokens"] == 32768  # max(max_model_len, default) without chunked prefill
    # before 0.12.0: no clamp, and chunked prefill forced on (audit a9, checked in the 0.11.0 wheel)
    s = resolve(M, get_card("3090"), "0.11.0", "llm", {"max_num_seqs": 1, "max_model_len": 4096})
    assert s["max_num_batched_tokens"] == 8192
    s = resolve(M, get_card("3090"), "0.11.0", "llm", {"enable_chunked_prefill": False, "max_model_len": 4096})
    assert (s["max_num_batched_tokens"], s["enable_chunked_prefill"]) == (8192, True)


def test_settings_tied_to_versions():
    assert setting_available("kv_cache_memory_bytes", "0.10.2") and not setting_available("kv_cache_memory_bytes", "0.10.1")
    with pytest.raises(UsageError) as exc:
        resolve(M, get_card("3090"), "0.6.3", "llm", {"skip_mm_profiling": True})
    assert "0.10.1" in str(exc.value)
    with pytest.raises(UsageError):
        resolve(M, get_card("3090"), "0.20.0", "llm", {"swap_space": 8})
    with pytest.raises(UsageError):
        resolve(M, get_card("3090"), "0.32.0", "cli")


def test_use_v1_switches_engine_defaults():
    v0 = resolve(M, get_card("3090"), "0.9.2", "llm", {"use_v1": False})
    assert v0["use_v1"] is False and v0["max_num_batched_tokens"] == 32768 and v0["limit_mm_per_prompt"] == {"image": 1, "video": 1}
    v1 = resolve(M, get_card("3090"), "0.9.2", "llm")
    assert v1["use_v1"] is True and v1["max_num_batched_tokens"] == 8192


def test_version_default_is_the_table_resolve_uses():
    from diagnostics.settings import ENGINE_DEFAULTS, version_default

    for name, value in ENGINE_DEFAULTS.items():
        assert version_default(name, "0.6.3") == (True, value)
    assert version_default("trust_remote_code", "0.32.0") == (True, False)  # vLLM's own, not the suite's
    assert version_default("gpu_memory_utilization", "0.10.1") == (True, 0.90)
    assert version_default("gpu_memory_utilization", "0.20.0") == (True, 0.92)
    assert version_default("limit_mm_per_prompt", "0.8.3") == (True, 1)
    assert version_default("limit_mm_per_prompt", "0.8.4") == (True, 999)
    assert version_default("max_num_seqs", "0.32.0") == (False, None)  # depends on the card: resolve() says
    resolved = resolve(M, get_card("3090"), "0.20.0")
    assert resolved["gpu_memory_utilization"] == version_default("gpu_memory_utilization", "0.20.0")[1]
    assert all(resolved[k] == v for k, v in ENGINE_DEFAULTS.items())


def test_vlm_families_get_their_own_modalities():
    from diagnostics.models import get_model

    s = resolve(get_model("gemma-3-4b"), get_card("h100-80"), "0.32.0")
    assert s["limit_mm_per_prompt"] == {"image": 999}
    s = resolve(get_model("qwen3-vl-8b"), get_card("h100-80"), "0.32.0", overrides={"limit_mm_per_prompt": {"video": 0}})
    assert s["limit_mm_per_prompt"] == {"image": 999, "video": 0}


@pytest.mark.parametrize("version, card, entry, mbt", [("0.8.5", "3090", "serve", 2048), ("0.9.2", "3090", "llm", 8192),
                                                      ("0.11.0", "h100-80", "serve", 8192)])
def test_audit_a9_v1_overrides_enable_chunked_prefill_false_before_0_12(version, card, entry, mbt):
    s = resolve(M, get_card(card), version, entry, {"enable_chunked_prefill": False})
    assert (s["enable_chunked_prefill"], s["max_num_batched_tokens"]) == (True, mbt)
    s = resolve(M, get_card(card), "0.12.0", entry, {"enable_chunked_prefill": False})
    assert s["enable_chunked_prefill"] is False and s["max_num_batched_tokens"] == 32768  # honoured from 0.12


def _text_model(max_len: int):
    from diagnostics.models import model_from_config

    return model_from_config(dict(architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=4096,
                                  num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                                  intermediate_size=14336, vocab_size=128256, max_position_embeddings=max_len))


@pytest.mark.parametrize("version, mbt", [("0.5.5", 512), ("0.6.3", 512), ("0.7.3", 2048), ("0.10.2", 2048)])
def test_audit_a2_v0_switches_chunked_prefill_on_above_32k_for_text_models(version, mbt):
    v0 = {"use_v1": False} if version in ("0.10.2",) else {}
    s = resolve(_text_model(131072), get_card("l40s"), version, "llm", v0)
    assert (s["enable_chunked_prefill"], s["max_num_batched_tokens"]) == (True, mbt)
    s = resolve(_text_model(32768), get_card("l40s"), version, "llm", v0)
    assert (s["enable_chunked_prefill"], s["max_num_batched_tokens"]) == (False, 32768)  # 32K itself stays off
    s = resolve(_text_model(131072), get_card("l40s"), version, "llm", {"enable_chunked_prefill": False, **v0})
    assert s["max_num_batched_tokens"] == 131072  # the user's false is kept on V0


@pytest.mark.parametrize("version, card, entry, expected", [
    ("0.27.0", 178.35, "serve", (8192, 1024)),  # audit a13: the >= 160 GiB rule is not in 0.27.0
    ("0.28.0", 178.35, "serve", (16384, 1024)),  # ... and first appears in 0.28.0 (not 0.30)
])
def test_audit_a13_160_gib_defaults_from_0_28(version, card, entry, expected):
    from diagnostics.cards import _card

    b200 = _card("b200", "NVIDIA B200", card, ["B200"], "blackwell")
    s = resolve(M, b200, version, entry)
    assert (s["max_num_batched_tokens"], s["max_num_seqs"]) == expected


def test_audit_a15_a800_gets_the_large_defaults_a100_does_not():
    # vLLM tests the device name for "a100" (0.9.2 arg_utils.py:1629); measured with 0.13.0 and 0.32.0's
    # EngineArgs in docs/version-conformance.md
    a800 = resolve(M, get_card("a800-80"), "0.13.0", "llm")
    a100 = resolve(M, get_card("a100-80"), "0.13.0", "llm")
    assert (a800["max_num_batched_tokens"], a800["max_num_seqs"]) == (16384, 1024)
    assert (a100["max_num_batched_tokens"], a100["max_num_seqs"]) == (8192, 256)


@pytest.mark.parametrize("card, version, use_v1", [("v100-32", "0.8.5", False), ("t4", "0.10.1", False),
                                                   ("v100-32", "0.10.2", True), ("3090", "0.8.5", True),
                                                   ("3090", "0.8.2", False), ("3090", "0.8.3", True)])
def test_audit_a6_a7_resolve_picks_the_engine_the_v1_oracle_picks(card, version, use_v1):
    s = resolve(M, get_card(card), version, "llm")
    assert s["use_v1"] is use_v1
    if not use_v1:  # the V0 defaults then apply
        assert (s["max_num_batched_tokens"], s["max_num_seqs"], s["limit_mm_per_prompt"]) == (
            32768, 256, {"image": 1, "video": 1})


def test_kv_cache_dtype_and_graph_estimate_switch_are_settings():
    got = parse_set(["kv_cache_dtype=fp8", "VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=0"])
    assert got == {"kv_cache_dtype": "fp8", "VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS": False}
    with pytest.raises(UsageError, match="fp8"):
        parse_set(["kv_cache_dtype=int4"])
    with pytest.raises(UsageError, match="0, 1"):
        parse_set(["VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=2"])
    with pytest.raises(UsageError, match="0.18.0"):
        resolve(M, get_card("3090"), "0.17.0", "llm", {"VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS": True})


@pytest.mark.parametrize("text", ["max_model_len=auto", "max_model_len=-1", "max_model_len=AUTO"])
def test_max_model_len_auto_resolves_to_the_model_length_with_a_flag(text):
    given = parse_set([text])
    assert given == {"max_model_len": "auto"}
    s = resolve(M, get_card("3090"), "0.20.0", "llm", given)
    assert (s["max_model_len"], s["max_model_len_auto"]) == (32768, True)
    with pytest.raises(UsageError, match="0.14.0"):
        resolve(M, get_card("3090"), "0.13.0", "llm", given)
    with pytest.raises(UsageError, match="auto"):
        parse_set(["max_model_len=longest"])


def test_limit_mm_per_prompt_dummy_options_from_0_12():
    given = parse_set(['limit_mm_per_prompt={"image": 2, "video": {"count": 1, "num_frames": 8}}'])
    s = resolve(M, get_card("3090"), "0.28.0", "llm", given)
    assert s["limit_mm_per_prompt"] == {"image": 2, "video": 1}
    assert s["mm_dummy_options"] == {"video": {"num_frames": 8}}
    s = resolve(M, get_card("3090"), "0.28.0", "llm", {"limit_mm_per_prompt": {"video": {"num_frames": 8}}})
    assert s["limit_mm_per_prompt"]["video"] == 999  # count defaults to 999 (config/multimodal.py BaseDummyOptions)
    with pytest.raises(UsageError, match="0.12.0"):
        resolve(M, get_card("3090"), "0.11.0", "llm", given)
    with pytest.raises(UsageError, match="num_frames"):
        parse_set(['limit_mm_per_prompt={"video": {"frames": 8}}'])


def test_audit_a3_v0_multimodal_floor_after_user_chunked_prefill_0_7():
    s = resolve(M, get_card("3090"), "0.7.3", "llm", {"enable_chunked_prefill": True})
    assert s["max_num_batched_tokens"] == 5120  # max(2048, 5120) (0.7.3 config.py:1532-1548)


@pytest.mark.parametrize("version, entry, seqs", [("0.9.2", "llm", 128), ("0.9.2", "serve", 32),
                                                  ("0.10.1", "llm", 256), ("0.10.1", "serve", 128)])
def test_audit_a8_cpu_backend_max_num_seqs_in_0_9(version, entry, seqs):
    s = resolve(M, get_card("cpu"), version, entry)
    assert s["max_num_seqs"] == seqs


# -- before a real start (issue #16, compatibility review items 3, 5, 6, 11) ------------------------------------

from diagnostics.settings import dtype_for_card, start_refusal


@pytest.mark.parametrize("settings, version, fragment", [
    ({"kv_cache_memory_bytes": 1 << 30}, "0.6.3", "setting kv_cache_memory_bytes came in vLLM 0.10.2"),
    ({"skip_mm_profiling": True}, "0.8.5", "setting skip_mm_profiling came in vLLM 0.10.1"),
    ({"mm_processor_kwargs": {"max_slice_nums": 2}}, "0.5.5", "setting mm_processor_kwargs came in vLLM 0.6.2"),
    ({"max_seq_len_to_capture": 8192}, "0.11.0", "setting max_seq_len_to_capture is gone since vLLM 0.11.0"),
    ({"swap_space": 4}, "0.20.0", "setting swap_space is gone since vLLM 0.18.0"),
    ({"use_v1": True}, "0.6.3", "use_v1=true needs vLLM >= 0.7.0"),
    ({"use_v1": False}, "0.11.0", "setting use_v1 is gone since vLLM 0.11.0"),
])
def test_a_setting_the_pinned_version_lacks_is_refused_before_the_start(settings, version, fragment):
    assert fragment in start_refusal(settings, version)


def test_what_a_version_and_card_can_start_is_not_refused():
    assert start_refusal({"kv_cache_memory_bytes": 1 << 30, "max_num_seqs": None}, "0.10.2") is None
    assert start_refusal({"use_v1": False, "dtype": "bfloat16"}, "0.8.5", get_card("3090")) is None
    assert start_refusal({"use_v1": True}, "0.8.3", model_name="openbmb/MiniCPM-V-2_6") is None


def test_minicpmv_on_v1_before_0_8_3_and_a_5090_before_0_9_are_refused():
    assert "kit:minicpm-v-2_6 runs on V1 only from vLLM 0.8.3" in start_refusal({"use_v1": True}, "0.7.3",
                                                                                 model_name="kit:minicpm-v-2_6")
    assert start_refusal({"use_v1": True}, "0.7.3", model_name="qwen2.5-vl-7b") is None  # the window is per family
    assert "sm_120" in start_refusal({}, "0.8.5", get_card("5090"))
    assert start_refusal({}, "0.9.0", get_card("5090")) is None


def test_bfloat16_becomes_float16_below_compute_capability_8():
    settings, note = dtype_for_card({"dtype": "bfloat16", "max_num_seqs": 4}, get_card("t4"))
    assert settings == {"dtype": "float16", "max_num_seqs": 4} and "compute capability 8.0" in note
    assert dtype_for_card({"dtype": "bfloat16"}, get_card("v100-32"))[0]["dtype"] == "float16"
    same = {"dtype": "bfloat16"}
    assert dtype_for_card(same, get_card("a10")) == (same, None)


def test_vllm_refusal_names_the_key_vllm_derived_the_length_from_and_allows_model_max_length():
    from diagnostics.models import model_from_config
    from diagnostics.settings import vllm_refusal

    base = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 256, "num_hidden_layers": 2,
            "num_attention_heads": 4, "intermediate_size": 512, "vocab_size": 1000, "max_position_embeddings": 8192}
    s = {"max_model_len": 9000, "max_num_batched_tokens": 16384, "max_num_seqs": 8}
    gpt2 = model_from_config(dict(base, n_positions=4096))
    assert "derived max_model_len (n_positions=4096.0 or model_max_length=None" in vllm_refusal(s, gpt2)
    roped = model_from_config(dict(base, rope_scaling={"type": "linear", "factor": 2.0}))
    assert vllm_refusal(dict(s, max_model_len=16384), roped) is None
    assert "(max_position_embeddings=16384.0 or model_max_length=None" in vllm_refusal(dict(s, max_model_len=16400),
                                                                                         roped)
    assert vllm_refusal(s, model_from_config(dict(base, model_max_length=32768))) is None


def test_a_limit_plan_would_drop_is_refused_not_dropped():
    """vLLM 0.6.3 profiles only images for MiniCPM-V-2_6: a video object or count was silently dropped (#9)."""
    with pytest.raises(UsageError, match="as an object needs vLLM >= 0.12.0"):
        resolve(M, get_card("3090"), "0.6.3", overrides={"limit_mm_per_prompt": {"video": {"count": 1}}})
    with pytest.raises(UsageError, match=r"names 'video'.*accepted: image \(or video: 0\)"):
        resolve(M, get_card("3090"), "0.6.3", overrides={"limit_mm_per_prompt": {"image": 1, "video": 2}})
    s = resolve(M, get_card("3090"), "0.6.3", overrides={"limit_mm_per_prompt": {"image": 1, "video": 0}})
    assert s["limit_mm_per_prompt"] == {"image": 1}


@pytest.mark.parametrize("key, value, words", [                                             # newcomer-3 #77-#82
    ("mm_processor_kwargs", {"max_slice_nums": "nine"}, "max_slice_nums must be a whole number from 1 to 1,000,000"),
    ("mm_processor_kwargs", {"max_slice_nums": 0}, "max_slice_nums must be a whole number from 1 to 1,000,000"),
    ("cpu_offload_gb", -1, "cpu_offload_gb=-1 must be >= 0"),
    ("kv_cache_memory_bytes", -1, "kv_cache_memory_bytes=-1 must be >= 0"),
])
def test_values_vllm_cannot_take_are_one_line(key, value, words):
    import re

    from diagnostics.settings import check_setting

    with pytest.raises(UsageError, match=re.escape(words)):
        check_setting(key, value)


def test_a_setting_given_twice_and_a_tp_that_does_not_divide_the_heads_are_refused():       # newcomer-3 #67, #70, #71
    from diagnostics.settings import vllm_refusal

    with pytest.raises(UsageError, match="--set max_model_len given twice .4096 and 8192."):
        parse_set(["max_model_len=4096", "max_model_len=8192"])
    assert parse_set(["max_model_len=4096", "max_model_len=4096"]) == {"max_model_len": 4096}
    s = resolve(M, get_card("3090"), "0.32.0", "llm", {"tensor_parallel_size": 3})
    assert vllm_refusal(s, M) == "Total number of attention heads (28) must be divisible by tensor parallel size (3)."
    assert vllm_refusal({**s, "tensor_parallel_size": 2}, M) is None


def test_an_unknown_load_format_is_refused_and_vllms_own_are_taken():                        # newcomer-3 #93
    from diagnostics.settings import check_setting

    with pytest.raises(UsageError, match="unknown load_format 'bogus'; accepted: auto, bitsandbytes, dummy"):
        check_setting("load_format", "bogus")
    assert check_setting("load_format", "dummy") == "dummy" and check_setting("load_format", "SafeTensors")


def test_start_refusal_names_a_batch_smaller_than_the_sequences_for_any_model():             # newcomer-3 #259
    why = start_refusal({"max_num_batched_tokens": 16, "max_num_seqs": 32, "max_model_len": 16}, "0.32.0")
    assert why == "max_num_batched_tokens (16) must be greater than or equal to max_num_seqs (32)."
    assert start_refusal({"max_num_batched_tokens": 32, "max_num_seqs": 32}, "0.32.0") is None


# -- dated defaults, read from each release's source (scripts/release_check.py -> tests/data/vllm_releases) --------
RELEASES = Path(__file__).resolve().parents[1] / "data" / "vllm_releases"


def _env_fact(version: str, name: str) -> dict:
    return json.loads((RELEASES / f"{version}.json").read_text())["envs"][name]


@pytest.mark.parametrize("version, at, default", [
    ("0.19.0", "vllm/envs.py:1654", "'0'"),  # os.getenv("VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS", "0")
    ("0.20.0", "vllm/envs.py:1724", "'1'"),  # os.getenv(..., "1"): on by default from 0.20.0
    ("0.21.0", "vllm/envs.py:1768", "'1'"),
])
def test_cuda_graph_estimate_is_on_by_default_from_0_20_0_as_envs_py_reads(version, at, default):
    """Settles 0.20 vs 0.21: vLLM 0.20.0's envs.py:1724-1725 already defaults the env var to "1" (0.19.0's
    envs.py:1654-1655 to "0"), although 0.20.0's gpu_worker.py:456-457 logs "enabled (default since v0.21.0)".
    The facts file is what scripts/release_check.py read from each wheel; the rule must agree with it."""
    fact = _env_fact(version, "VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS")
    assert (fact["at"], fact["default"]) == (at, default)
    assert dated_default("VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS", version) is (default == "'1'")


def test_the_0_20_0_log_line_names_0_21_0_although_0_20_0_turned_it_on():
    """What users read in a 0.20.0 log: the claim this project does not follow (gpu_worker.py:456)."""
    logs = json.loads((RELEASES / "0.20.0.json").read_text())["log_strings"]
    line = next(t for t in logs if t.startswith("CUDA graph memory profiling is enabled"))
    assert "default since v0.21.0" in line and logs[line] == "vllm/v1/worker/gpu_worker.py:455"


def test_0_34_defaults_block_64_and_util_1_with_the_extensible_kv_cache():
    """0.34 config/cache.py:185 DEFAULT_BLOCK_SIZE = 64; util None -> 1.0 with the extensible KV cache (:493-501),
    which is on for CUDA unless kv_cache_memory_bytes / num_gpu_blocks_override is set (config/vllm.py:3198-3210)."""
    m = get_model("minicpm-v-2_6")
    s = resolve(m, get_card("4090"), "0.34.0")
    assert (s["block_size"], s["gpu_memory_utilization"], s["enable_extensible_kv_cache"]) == (64, 1.0, True)
    s = resolve(m, get_card("4090"), "0.34.0", overrides={"kv_cache_memory_bytes": 4 << 30})
    assert (s["gpu_memory_utilization"], s["enable_extensible_kv_cache"]) == (0.92, False)
    s = resolve(m, get_card("4090"), "0.34.0", overrides={"enable_extensible_kv_cache": False})
    assert s["gpu_memory_utilization"] == 0.92
    assert resolve(m, get_card("4090"), "0.33.0")["block_size"] == 16
    assert "enable_extensible_kv_cache" not in resolve(m, get_card("4090"), "0.33.0")


@pytest.mark.parametrize("version, overrides, words", [
    ("0.34.0", {"enable_extensible_kv_cache": True, "kv_cache_memory_bytes": 1 << 30}, "cannot go with"),
    ("0.33.0", {"enable_extensible_kv_cache": True}, "needs vLLM >= 0.34.0"),
    ("0.34.0", {"enable_extensible_kv_cache": True, "num_gpu_blocks_override": 100}, "overrides its measured size"),
])
def test_extensible_kv_cache_where_vllm_refuses_it_is_a_usage_error(version, overrides, words):
    with pytest.raises(UsageError, match=words):
        resolve(get_model("minicpm-v-2_6"), get_card("4090"), version, overrides=overrides)


def test_audio_limit_is_a_modality_and_a_model_without_audio_refuses_it():
    """limit_mm_per_prompt knows audio (MiniCPM-o); a model whose processor has no audio says so in one line."""
    assert parse_set(['limit_mm_per_prompt={"audio":0,"image":2}']) == {
        "limit_mm_per_prompt": {"audio": 0, "image": 2}}
    with pytest.raises(UsageError, match=r"names 'audio', which .* does not profile .*accepted: image, video"):
        resolve(M, get_card("l4"), "0.32.0", "llm", {"limit_mm_per_prompt": {"audio": 1}})
    resolve(M, get_card("l4"), "0.32.0", "llm", {"limit_mm_per_prompt": {"audio": 0}})  # 0 is allowed, as vLLM does
    o = resolve(get_model("minicpm-o-2_6"), get_card("l4"), "0.32.0", "llm", {"limit_mm_per_prompt": {"audio": 2}})
    assert o["limit_mm_per_prompt"] == {"image": 999, "video": 999, "audio": 2}


def test_pp_layer_partition_of_one_stage_is_the_text_vllm_reads():
    """`--set VLLM_PP_LAYER_PARTITION=36` parses as the number 36; vLLM reads the environment's text "36"
    (distributed/utils.py:142, 0.32). It was refused as "the wrong type"; now the partition's own rule answers."""
    from diagnostics.cli import main
    assert parse_set(["VLLM_PP_LAYER_PARTITION=28"]) == {"VLLM_PP_LAYER_PARTITION": "28"}
    assert main(["plan", "--card", "4090", "--vllm", "0.32.0", "--no-vllm-exact", "--set",
                 "VLLM_PP_LAYER_PARTITION=28"]) == 0


@pytest.mark.parametrize("text, words", [
    ("max_model_len=4096.0", "setting max_model_len=4096.0 has the wrong type; accepted: integer, -1 or auto"),
    ("max_model_len=abc", "setting max_model_len='abc' has the wrong type; accepted: integer, -1 or auto"),
    ("max_model_len=0", "setting max_model_len=0 is out of range; accepted: a positive integer, -1 or auto"),
    ('limit_mm_per_prompt={"image":1,"image":2}', 'has the key "image" twice; accepted: each key once'),
    ('mm_processor_kwargs={"max_pixels":1003520,"max_pixels":3136}', 'has the key "max_pixels" twice'),
])
def test_bad_set_values_are_one_line_with_one_wording(text, words):
    """4096.0 said "accepted: integer or text" where other max_model_len values say "integer, -1 or auto"; a JSON
    key given twice kept the last value in silence."""
    with pytest.raises(UsageError, match=words):
        parse_set([text])


def test_max_model_len_minus_one_and_auto_still_mean_auto():
    assert parse_set(["max_model_len=-1"]) == parse_set(["max_model_len=auto"]) == {"max_model_len": "auto"}
    assert parse_set(["max_model_len=4096"]) == {"max_model_len": 4096}
