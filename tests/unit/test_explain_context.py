"""explain/context.py: the model a log names (hub id, local copy's path, short name) and the plan for its settings."""

from __future__ import annotations

from types import SimpleNamespace

from diagnostics.cards import get_card
from diagnostics.explain.context import record_model, record_plan, record_version
from diagnostics.logs.reader import read_log

# vllm-project/vllm#12742 (turn 16): vLLM 0.7.3.dev242's engine config line, verbatim (one line; kept here, not
# under tests/data/logs, whose fixtures the disguise tests re-wrap: a wrapped config line is the log reader's matter)
QWEN25VL_CONFIG_LINE = (
    '(ServeReplica:vllm-server:VLLMDeployment pid=262, ip=10.244.28.6) INFO 02-19 22:44:02 llm_engine.py:'
    "234] Initializing a V0 LLM engine (v0.7.3.dev242+gba811639) with config: model='Qwen/Qwen2.5-VL-7B-I"
    "nstruct', speculative_config=None, tokenizer='Qwen/Qwen2.5-VL-7B-Instruct', skip_tokenizer_init=Fals"
    'e, tokenizer_mode=auto, revision=None, override_neuron_config=None, tokenizer_revision=None, trust_r'
    'emote_code=True, dtype=torch.bfloat16, max_seq_len=40000, download_dir=None, load_format=auto, tenso'
    'r_parallel_size=1, pipeline_parallel_size=1, disable_custom_all_reduce=False, quantization=None, enf'
    'orce_eager=True, kv_cache_dtype=auto,  device_config=cuda, decoding_config=DecodingConfig(guided_dec'
    "oding_backend='xgrammar'), observability_config=ObservabilityConfig(otlp_traces_endpoint=None, colle"
    'ct_model_forward_time=False, collect_model_execute_time=False), seed=0, served_model_name=Qwen/Qwen2'
    '.5-VL-7B-Instruct, num_scheduler_steps=1, multi_step_stream_outputs=True, enable_prefix_caching=Fals'
    'e, chunked_prefill_enabled=False, use_async_output_proc=False, disable_mm_preprocessor_cache=True, m'
    'm_processor_kwargs=None, pooler_config=None, compilation_config={"splitting_ops":[],"compile_sizes":'
    '[],"cudagraph_capture_sizes":[],"max_capture_size":0}, use_cached_outputs=False, ')


def _record(settings=None, evidence=(), error_line=None):
    return SimpleNamespace(settings=settings or {}, evidence=list(evidence), error_line=error_line)


def test_a_real_qwen25vl_log_is_planned_without_model():
    """A real engine config line (QWEN25VL_CONFIG_LINE) names the hub id; no --model is given."""
    record = read_log(QWEN25VL_CONFIG_LINE + "\n")
    model = record_model(record, None)
    assert model is not None and model.name == "qwen2.5-vl-7b" and model.family.variant == "qwen2.5-vl"
    plan = record_plan(record, model, get_card("a100-80"), record_version(record))
    assert plan is not None and plan.vllm_version == "0.7.3"
    assert (plan.settings["max_model_len"], plan.settings["enforce_eager"]) == (40000, True)  # what the log echoed


def test_a_local_copys_path_names_the_stored_model():
    # as vllm-project/vllm#16570 printed it: model='/data/ps/pretrained_model/Qwen/Qwen2.5-VL-72B-Instruct/'
    got = record_model(_record({"model": "/data/ps/pretrained_model/Qwen/Qwen2.5-VL-72B-Instruct/"}), None)
    assert got.name == "qwen2.5-vl-72b"
    assert record_model(_record({"model": "/models/gemma-3-27b-it"}), None).name == "gemma-3-27b"
    assert record_model(_record(error_line="loading openbmb/MiniCPM-V-4_5 failed"), None).name == "minicpm-v-4_5"
    assert record_model(_record({"model": "openbmb/MiniCPM-V-2_6"}), None).name == "openbmb/MiniCPM-V-2_6"


def test_the_new_families_are_named_by_the_path_or_hub_id_a_log_prints():
    assert record_model(_record({"model": "/models/GLM-4.1V-9B-Thinking"}), None).name == "glm-4.1v-9b-thinking"
    assert record_model(_record({"model": "zai-org/GLM-4.5V"}), None).name == "glm-4.5v"
    assert record_model(_record({"tokenizer": "moonshotai/Kimi-VL-A3B-Instruct"}), None).name == "kimi-vl-a3b-instruct"
    assert record_model(_record({"model": "/ckpt/InternVL3_5-8B-HF"}), None).name == "internvl3_5-8b"


def test_a_model_no_family_stores_is_not_guessed():
    assert record_model(_record({"model": "Qwen/Qwen2.5-7B-Instruct"}), None) is None  # a text model, not stored
    assert record_model(_record({"model": "Qwen/Qwen2.5-VL-32B-Instruct"}), None) is None  # no stored 32B config


def test_minicpm_v_4_is_not_taken_for_4_5_and_minicpm_o_is_recognised():
    """openbmb/MiniCPM-V-4 is a prefix of openbmb/MiniCPM-V-4_5: each log names its own stored model."""
    for text, name in (("openbmb/MiniCPM-V-4_5", "minicpm-v-4_5"), ("openbmb/MiniCPM-V-4", "minicpm-v-4"),
                       ("/models/MiniCPM-V-4", "minicpm-v-4"), ("/data/MiniCPM-o-2_6/", "minicpm-o-2_6")):
        assert record_model(_record({"model": text}), None).name == name, text
        assert record_model(_record(error_line=f"loading {text} failed"), None).name == name, text
