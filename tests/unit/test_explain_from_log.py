"""diagnostics.explain.from_log: culprits from a log record, agreeing with vLLM's own printed numbers."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from diagnostics.explain import Explanation, explain_record
from diagnostics.explain.ladders import SEARCHED
from diagnostics.explain.terms import KV_GIB_MARGIN
from diagnostics.logs.reader import read_log
from diagnostics.logs.record import LogRecord

CASES = Path(__file__).resolve().parents[1] / "data" / "field_cases" / "cases.jsonl"


def _case(source_prefix: str) -> dict:
    for line in CASES.read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        if d["source"].startswith(source_prefix):
            return d
    raise LookupError(source_prefix)


def _floats(text: str) -> list[float]:
    return [float(x.replace(",", "")) for x in re.findall(r"-?\d[\d,]*\.?\d*", text)]


def _mentions(text: str, value: float) -> bool:
    return any(math.isclose(v, value, abs_tol=1e-9) for v in _floats(text))


def _util_culprit(e: Explanation):
    return next((c for c in e.culprits if c.setting == "gpu_memory_utilization"), None)


# ---------------------------------------------------------------------------------------- CPU backend (real lines)
# Verbatim root-cause lines from docs/sources/cpu-vllm.md §4 (real vLLM 0.32 CPU runs).
CPU_KV_TOO_SMALL = (
    "ValueError: To serve at least one request with the model's max seq len (4096), (0.0 GiB KV cache is needed, "
    "which is larger than the available KV cache memory (0.0 GiB). Based on the available memory, the estimated "
    "maximum model length is 1920. Try increasing `gpu_memory_utilization` (which also controls CPU memory on the "
    "CPU backend) or decreasing `max_model_len` when initializing the engine. See "
    "https://docs.vllm.ai/en/latest/configuration/conserving_memory/ for more details.")
CPU_TOO_HIGH = (
    "ValueError: Available memory on node 0 (9.99/11.34 GiB) on startup is less than desired CPU memory "
    "utilization (0.95, 10.77 GiB). On the CPU backend, the `--gpu-memory-utilization` flag controls the fraction "
    "of CPU memory reserved (despite its name). To resolve: decrease `--gpu-memory-utilization` (e.g. "
    "`--gpu-memory-utilization 0.5`) or reduce CPU memory used by other processes.")
CPU_TOO_LOW = (
    "RuntimeError: Worker failed with error 'Available memory on node 0 (9.82/11.34 GiB) on kv cache allocation is "
    "less than requested memory for kv (-0.23/0.57 GiB). Reduce CPU memory used by other processes.', please check "
    "the stack trace above for the root cause")
CPU_NO_BLOCK = (
    "ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when "
    "initializing the engine (this flag also controls CPU memory reservation on the CPU backend, despite its "
    "name). See https://docs.vllm.ai/en/latest/configuration/conserving_memory/ for more details.")


def test_cpu_kv_too_small_suggests_the_printed_estimated_length():
    e = explain_record(read_log(CPU_KV_TOO_SMALL))
    assert e.outcome == "kv_too_small"
    mml = next(c for c in e.culprits if c.setting == "max_model_len")
    assert mml.value == 4096 and mml.suggested == 1920 and mml.fixes_alone
    assert "1,920" in mml.why and "4,096" in mml.why
    assert e.fix == {"max_model_len": 1920}
    kv = next(c for c in e.culprits if c.setting == "kv_cache_memory_bytes")  # V1 0.10.2+ knob, newest assumed
    assert "2.13x" in kv.why  # 4096 / 1920, from the printed figures only


def test_cpu_kv_too_small_with_known_kv_bytes_scales_the_pool():
    rec = read_log(CPU_KV_TOO_SMALL)
    rec.settings["kv_cache_memory_bytes"] = 1048576  # what the README's run set
    e = explain_record(rec)
    kv = next(c for c in e.culprits if c.setting == "kv_cache_memory_bytes")
    # 1 MiB holds 1920 tokens -> 4096 tokens need 1 MiB x 4096 / 1920, rounded up to whole MiB = 3 MiB
    assert kv.suggested == 3 * 1048576 and kv.fixes_alone
    assert _util_culprit(e) is None  # utilization is ignored once kv_cache_memory_bytes is set


def test_cpu_utilization_too_high_lowers_it_to_what_is_free():
    e = explain_record(read_log(CPU_TOO_HIGH))
    assert e.outcome == "insufficient_free_memory"
    u = _util_culprit(e)
    assert u is not None and u.value == 0.95
    assert u.suggested < 0.95 and u.suggested * 11.34 <= 9.99  # fits in the free memory vLLM printed
    assert u.suggested >= 0.85  # and is not a wild cut
    assert "9.99" in u.why and "11.34" in u.why and "10.77" in u.why
    assert "node 0" in e.summary
    assert any(c.setting == "kv_cache_memory_bytes" for c in e.culprits)


def test_cpu_negative_kv_request_raises_utilization():
    e = explain_record(read_log(CPU_TOO_LOW))
    u = _util_culprit(e)
    assert u is not None and u.suggested > u.value  # util 0.05 was too LOW: the cure is raising it
    # non-KV = requested 0.57 - (-0.23) = 0.80 GiB; (0.80 + margin) / 11.34 -> 0.08
    assert u.suggested == pytest.approx(0.08)
    assert "-0.23" in e.summary


def test_cpu_no_cache_blocks_without_figures_still_names_the_knobs():
    e = explain_record(read_log(CPU_NO_BLOCK))
    assert e.outcome == "no_kv_cache"
    u = _util_culprit(e)
    assert u is not None and not u.fixes_alone and "kv_cache_memory_bytes" in u.why
    assert e.fix == {}  # nothing printed to size a change: no invented fix


# ------------------------------------------------------------------------------- field cases with a breakdown

@pytest.mark.parametrize("source", ["vllm-project/vllm#16570 (V0 run)", "vllm-project/vllm#15815"])
def test_field_breakdown_numbers_appear_verbatim(source):
    case = _case(source)
    rec = read_log(case["log_excerpt"])
    e = explain_record(rec)
    for key in ("gpu_total_gib", "budget_gib", "weights_gib", "non_torch_gib", "activation_peak_gib",
                "kv_cache_gib"):
        assert key in rec.numbers, key
        assert _mentions(e.summary, rec.numbers[key]), (key, rec.numbers[key], e.summary)
    # and they are the thread's figures (reported_numbers), not recomputed ones
    rep = case["reported_numbers"]
    if "budget_gib" in rep:
        assert _mentions(e.summary, rep["budget_gib"])
    if "gpu_blocks" in rep:
        assert _mentions(e.summary, rep["gpu_blocks"])


def test_vllm_11587_breakdown_from_the_thread_and_no_memory_advice():
    # The excerpt holds only the capture error; the thread's V0 profile summary gives these five figures.
    rep = _case("vllm-project/vllm#11587")["reported_numbers"]
    rec = LogRecord(outcome="error", phase="cuda_graph", engine="V0", platform="cuda",
                    settings={"gpu_memory_utilization": 0.98, "max_model_len": 9600, "max_num_seqs": 4},
                    numbers={"gpu_total_gib": rep["total_gpu_gb"], "gpu_memory_utilization": 0.98,
                             "weights_gib": rep["weights_gb"], "activation_peak_gib": rep["activation_peak_gb"],
                             "non_torch_gib": rep["non_torch_gb"], "kv_cache_gib": rep["kv_cache_gb"]},
                    error_line="CUDA error: operation failed due to a previous error during capture")
    e = explain_record(rec)
    for v in (23.54, 6.72, 1.92, 0.11, 14.32, 23.07):  # 23.07 = 23.54 x 0.98, as the thread's note checks
        assert _mentions(e.summary, v), (v, e.summary)
    assert e.culprits == [] and e.fix == {}  # a capture error, not memory: no memory knob is blamed


def test_synthetic_negative_kv_breakdown_raises_utilization_to_cover_it():
    # Synthetic V0 0.6.5+-style breakdown (a vllm#13882-like "-1.05GiB" KV); the figures are made up for the
    # arithmetic, not taken from a thread.
    n = {"gpu_total_gib": 23.69, "gpu_memory_utilization": 0.9, "budget_gib": 21.32, "weights_gib": 15.09,
         "non_torch_gib": 0.25, "activation_peak_gib": 7.03, "kv_cache_gib": -1.05}
    rec = LogRecord(outcome="no_kv_cache", phase="kv_cache", vllm_version="0.6.6", engine="V0", platform="cuda",
                    settings={"gpu_memory_utilization": 0.9}, numbers=n,
                    error_line="ValueError: No available memory for the cache blocks.")
    e = explain_record(rec)
    u = _util_culprit(e)
    used = 15.09 + 0.25 + 7.03
    assert u is not None and u.suggested > 0.9
    assert u.suggested * 23.69 >= used  # the suggested budget covers weights + activation + non-torch
    assert u.suggested == pytest.approx(math.ceil((used + KV_GIB_MARGIN) / 23.69 * 100) / 100)
    for v in (15.09, 0.25, 7.03, 21.32, -1.05, 23.69):
        assert _mentions(u.why + " " + e.summary, v), v
    assert e.fix == {"gpu_memory_utilization": u.suggested}


def test_synthetic_negative_kv_beyond_the_card_is_not_a_fix():
    n = {"gpu_total_gib": 23.69, "gpu_memory_utilization": 0.9, "weights_gib": 22.0, "non_torch_gib": 0.3,
         "activation_peak_gib": 3.0, "kv_cache_gib": -4.0}
    rec = LogRecord(outcome="no_kv_cache", phase="kv_cache", vllm_version="0.6.6", engine="V0",
                    settings={"gpu_memory_utilization": 0.9}, numbers=n)
    e = explain_record(rec)
    u = _util_culprit(e)
    assert u is not None and not u.fixes_alone and u.suggested == 1.0
    assert "shrink the profile run" in u.why
    assert "gpu_memory_utilization" not in e.fix


def test_profile_oom_never_blames_utilization_from_a_log():
    case = _case("vllm-project/vllm#22173")
    rec = read_log(case["log_excerpt"])
    assert rec.outcome == "oom_profile"
    e = explain_record(rec)
    assert _util_culprit(e) is None and "gpu_memory_utilization" not in e.fix
    assert "4.69" in e.summary and "3.56" in e.summary  # the OOM message's own figures
    assert "does not help" in e.summary


def test_cuda_graph_oom_v0_lowers_utilization_by_the_shortfall():
    rec = LogRecord(outcome="oom_cuda_graph", phase="cuda_graph", vllm_version="0.6.3", engine="V0",
                    platform="cuda", settings={"gpu_memory_utilization": 0.95},
                    numbers={"oom_tried_gib": 1.25, "oom_free_gib": 0.4, "gpu_total_gib": 23.69})
    e = explain_record(rec)
    u = _util_culprit(e)
    assert u is not None and u.suggested < 0.95 and u.fixes_alone
    # frees at least what capture lacked: (0.95 - new) x total >= tried - free
    assert (0.95 - u.suggested) * 23.69 >= 1.25 - 0.4
    assert any(c.setting == "enforce_eager" and c.suggested is True for c in e.culprits)
    assert not any(c.setting == "kv_cache_memory_bytes" for c in e.culprits)  # 0.6.3 has no such knob


def test_lone_oom_line_blames_nothing():
    rec = read_log(_case("OpenBMB/MiniCPM-V#640")["log_excerpt"])
    e = explain_record(rec)
    assert e.outcome == "oom_unknown" and e.culprits == [] and e.fix == {}
    assert "4.00 GiB" in e.summary


def test_every_field_case_explains_without_error():
    for line in CASES.read_text(encoding="utf-8").splitlines():
        case = json.loads(line)
        rec = read_log(case["log_excerpt"])
        e = explain_record(rec)
        assert e.outcome == rec.outcome and e.summary
        assert json.dumps(e.to_json())  # serialisable for `explain --json`
        for c in e.culprits:
            assert c.setting in SEARCHED and c.why.endswith(".")


# ------------------------------------------------------------------------------------ with a known model

MINICPM = "minicpm-v-2_6"



def test_record_with_known_model_calibrates_on_vllms_oom_figures():
    # MiniCPM-V#640: the real OOM line; the thread's settings; phase/outcome as the case records them (inferred)
    case = _case("OpenBMB/MiniCPM-V#640")
    rec = read_log(case["log_excerpt"])
    rec.outcome, rec.phase, rec.vllm_version, rec.engine = "oom_profile", "vision_encoder", "0.6.1", "V0"
    rec.settings.update({"max_model_len": 2048, "gpu_memory_utilization": 1.0})
    e = explain_record(rec, model=MINICPM)
    assert e.basis == "log+estimate"
    assert "4.00" in e.summary and "3.47" in e.summary and "22.18" in e.summary
    assert all(c.setting != "gpu_memory_utilization" for c in e.culprits)
    seqs = next(c for c in e.culprits if c.setting == "max_num_seqs")
    assert seqs.suggested < 256 and "4.00" in seqs.why
    if seqs.fixes_alone:  # the estimator's saving covers what the log says was missing (tried - free)
        assert seqs.effect_gib >= 4.00 - 3.47


def test_record_no_kv_with_known_model_quotes_vllms_activation_and_sizes_profile_changes():
    # synthetic figures (as above), MiniCPM-V-2_6 on a 3090 with V0 0.6.6 defaults
    n = {"gpu_total_gib": 23.69, "gpu_memory_utilization": 0.9, "budget_gib": 21.32, "weights_gib": 15.09,
         "non_torch_gib": 0.25, "activation_peak_gib": 7.03, "kv_cache_gib": -1.05}
    rec = LogRecord(outcome="no_kv_cache", phase="kv_cache", vllm_version="0.6.6", engine="V0", platform="cuda",
                    settings={"gpu_memory_utilization": 0.9}, numbers=n)
    e = explain_record(rec, model=MINICPM, card="3090")
    assert e.basis == "log+estimate"
    profile_culprits = [c for c in e.culprits if c.term in ("activation_peak", "encoder_profile")
                        and c.setting != "gpu_memory_utilization"]
    assert profile_culprits, [c.setting for c in e.culprits]
    for c in profile_culprits:
        assert "7.03" in c.why  # vLLM's activation figure, not the estimator's
        if c.fixes_alone:  # enough = covers the missing KV space: -(-1.05) + one 32K request (1.75 GiB) + margin
            assert c.effect_gib >= 1.05 + 1.75
    assert {c.setting for c in e.culprits} >= {"gpu_memory_utilization", "max_num_seqs"}


def test_record_profile_oom_without_figures_uses_estimated_savings_only_as_hints():
    rec = LogRecord(outcome="oom_profile", phase="vision_encoder", vllm_version="0.6.3", engine="V0",
                    platform="cuda", settings={"max_model_len": 32768}, numbers={"gpu_total_gib": 23.69})
    e = explain_record(rec, model=MINICPM)
    assert e.culprits and all(c.setting != "gpu_memory_utilization" for c in e.culprits)
    assert "max_num_seqs" in {c.setting for c in e.culprits}


def test_v0_kv_too_small_with_known_model_sizes_the_utilization_raise():
    # synthetic V0 0.6.3 lines (format from vllm-memory.md §2.3/§2.6; figures made up for the arithmetic)
    text = ("INFO 10-23 19:55:10 llm_engine.py:237] Initializing an LLM engine (v0.6.3) with config: "
            "model='openbmb/MiniCPM-V-2_6', tokenizer='openbmb/MiniCPM-V-2_6', trust_remote_code=True, "
            "dtype=torch.bfloat16, max_seq_len=32768, enforce_eager=False\n"
            "INFO 10-23 19:56:10 gpu_executor.py:122] # GPU blocks: 834, # CPU blocks: 4681\n"
            "ValueError: The model's max seq len (32768) is larger than the maximum number of tokens that can be "
            "stored in KV cache (13344). Try increasing `gpu_memory_utilization` or decreasing `max_model_len` "
            "when initializing the engine.")
    e = explain_record(read_log(text), card="3090")  # the model comes from the log's config line
    assert e.outcome == "kv_too_small" and e.basis == "log+estimate"
    mml = next(c for c in e.culprits if c.setting == "max_model_len")
    assert mml.suggested == 13344 and "13,344" in mml.why
    u = _util_culprit(e)
    missing_gib = (32768 - 13344) * 57344 / 2**30  # 56 KiB per token for MiniCPM-V-2_6 in bf16
    assert u is not None and u.value == 0.9  # 0.6.3's default: the log does not echo it
    assert (u.suggested - 0.9) * 23.69 >= missing_gib and u.suggested <= 0.9 + (missing_gib + 0.3) / 23.69


# -- issue 21: an OOM whose phase the log does not show -> plan's predicted phase, labelled as a prediction --------
UNKNOWN_PHASE_OOM = (
    "INFO 03-01 10:00:00 [core.py:70] Initializing a V1 LLM engine (v0.11.0) with config: "
    "model='openbmb/MiniCPM-V-2_6', max_seq_len=32768, enforce_eager=False\n"
    "INFO 03-01 10:00:01 [api_server.py:1] non-default args: {'model': 'openbmb/MiniCPM-V-2_6', 'max_model_len': "
    "32768, 'gpu_memory_utilization': 0.95, 'max_num_seqs': 256, 'limit_mm_per_prompt': {'image': 8}, "
    "'max_num_batched_tokens': 32768}\n"
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 23.55 GiB "
    "of which 1.02 GiB is free. Including non-PyTorch memory, this process has 22.50 GiB memory in use. Of the "
    "allocated memory 21.90 GiB is allocated by PyTorch, and 300.00 MiB is reserved by PyTorch but unallocated.\n")


def test_unknown_phase_oom_gets_plans_predicted_phase_and_fix_labelled_as_prediction():
    rec = read_log(UNKNOWN_PHASE_OOM)
    assert (rec.outcome, rec.phase) == ("oom_unknown", "unknown")
    exp = explain_record(rec)
    assert "Prediction (plan for the settings this log echoes" in exp.summary
    assert "not read from the log" in exp.summary and "phase is expected to exceed the budget" in exp.summary
    assert "no setting can be blamed" not in exp.summary
    assert exp.fix and exp.basis == "log+estimate"
    assert all(not c.fixes_alone for c in exp.culprits)


def test_unknown_phase_oom_without_model_still_blames_nothing_and_says_what_would_help():
    rec = read_log(UNKNOWN_PHASE_OOM.replace("openbmb/MiniCPM-V-2_6", "some/unknown-model"))
    exp = explain_record(rec)
    assert "no setting can be blamed" in exp.summary
    assert "Name the model (--model)" in exp.summary
    assert exp.fix == {} and "Prediction" not in exp.summary
