"""diagnostics.logs.outcome: the first decisive error decides; its phase from traceback frames, else line order."""

from __future__ import annotations

from pathlib import Path

import pytest

from diagnostics.logs.lines import split_lines
from diagnostics.logs.outcome import decisive, phase_from_frames
from diagnostics.logs.reader import read_log
from diagnostics.logs.record import LogRecord

LOGS = Path(__file__).resolve().parents[1] / "data" / "logs"

OOM_TEXT = (
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has a total capacity of "
    "23.69 GiB of which 5.06 MiB is free. Including non-PyTorch memory, this process has 23.67 GiB memory in use. "
    "Of the allocated memory 22.90 GiB is allocated by PyTorch, and 310.51 MiB is reserved by PyTorch but "
    "unallocated."
)


def log(name: str) -> LogRecord:
    return read_log((LOGS / name).read_text())


def frames(*names: str) -> str:
    lines = ["Traceback (most recent call last):"]
    for name in names:
        lines.append(f'  File "/site-packages/vllm/x.py", line 1, in {name}')
        lines.append("    something()")
    return "\n".join(lines) + "\n"


def test_decisive_and_phase_from_frames_directly():
    info, err, code = split_lines("INFO 01-01 00:00:01 [x.py:1] CUDA out of memory\nValueError: No available memory "
                                  "for the cache blocks.\n    raise ValueError(")
    assert decisive(info) is None and decisive(code) is None
    assert decisive(err) == ("no_kv_cache", "kv_cache")
    assert phase_from_frames(["profile_run", "_dummy_run"]) == "language_model"
    assert phase_from_frames(["compile_or_warm_up_model", "_dummy_sampler_run"]) == "warmup"
    assert phase_from_frames(["determine_available_memory"]) == "profile" and phase_from_frames(["x"]) is None


def test_wrapper_and_leak_lines_after_the_root_cause_do_not_win():
    rec = log("cpu_kv_too_small.log")
    assert rec.error_line.startswith("ValueError: To serve at least one request")


def test_request_error_after_clean_start():
    rec = log("cpu_request_too_long.log")
    assert (rec.outcome, rec.phase) == ("error", "request")
    assert "VLLMValidationError" in rec.error_line
    assert rec.timestamps["ready"] == "11-24 14:05:44"


def test_shutdown_engine_dead_after_clean_start_is_noise():
    rec = log("cpu_shutdown_noise_ok.log")
    # The excerpt lacks the ready line (issue #10: ok needs one), and the shutdown noise never decides anything.
    assert (rec.outcome, rec.reached) == ("unknown", "kv_cache") and rec.error_line is None
    assert rec.numbers["kv_cache_gib"] == 1.0 and rec.numbers["kv_cache_tokens"] == 2_097_152


def test_sigill_after_start_is_a_crash_while_serving():
    text = (LOGS / "cpu_explicit_ok.log").read_text() + (LOGS / "cpu_sigill_crash.log").read_text()
    rec = read_log(text)
    assert (rec.outcome, rec.phase) == ("crash", "request")
    assert rec.error_line == "Fatal Python error: Illegal instruction"


def test_unprefixed_running_out_of_memory_hint_is_not_an_oom():
    rec = read_log("CUDA graphs can take additional 1~3 GiB memory per GPU. If you are running out of memory, "
                   "consider decreasing `gpu_memory_utilization` or enforcing eager mode.")
    assert rec.outcome == "unknown"
    assert read_log("RuntimeError: CUDA error: out of memory").outcome == "oom_unknown"


@pytest.mark.parametrize(
    "stack, outcome, phase",
    [
        (("load_model", "load_weights"), "oom_weights", "weights"),
        (("determine_available_memory", "profile_run", "_execute_mm_encoder", "embed_multimodal"),
         "oom_profile", "vision_encoder"),
        (("determine_available_memory", "profile_run", "_dummy_run"), "oom_profile", "language_model"),
        (("determine_num_available_blocks", "profile_run", "execute_model", "forward"), "oom_profile",
         "language_model"),
        (("determine_available_memory", "profile_run", "_dummy_sampler_run"), "oom_profile", "sampler"),
        (("determine_available_memory",), "oom_profile", "unknown"),
        (("initialize_from_config", "initialize_kv_cache", "_allocate_kv_cache_tensors"), "oom_kv_alloc",
         "kv_cache"),
        (("initialize_cache", "_init_cache_engine", "_warm_up_model", "capture_model", "_dummy_run"),
         "oom_cuda_graph", "cuda_graph"),
        (("determine_available_memory", "profile_cudagraph_memory", "_dummy_run"), "oom_cuda_graph", "cuda_graph"),
        (("compile_or_warm_up_model", "_dummy_sampler_run"), "oom_warmup", "warmup"),
        (("generate", "_run_engine", "step", "execute_model"), "oom_request", "request"),
        (("_initialize_kv_caches", "_dummy_run"), "oom_unknown", "unknown"),
        ((), "oom_unknown", "unknown"),
    ],
)
def test_oom_phase_from_traceback_frames(stack, outcome, phase):
    rec = read_log(frames(*stack) + OOM_TEXT)
    assert (rec.outcome, rec.phase) == (outcome, phase)
    assert rec.numbers["oom_free_gib"] == pytest.approx(5.06 / 1024)


def test_inductor_wrapped_oom_in_the_language_model_pass():
    text = frames("determine_available_memory", "profile_run", "_dummy_run") + (
        "torch._inductor.exc.InductorError: RuntimeError: CUDA out of memory. Tried to allocate 3.50 GiB. GPU 0 has "
        "a total capacity of 79.10 GiB of which 1.00 GiB is free.")
    rec = read_log(text)
    assert (rec.outcome, rec.phase, rec.numbers["oom_tried_gib"]) == ("oom_profile", "language_model", 3.5)


@pytest.mark.parametrize(
    "before, outcome, phase",
    [
        ("INFO 01-01 00:00:01 [core.py:1] init engine (profile, create kv cache, warmup model) took 30.00 s\n",
         "oom_request", "request"),
        ("INFO 01-01 00:00:01 model_runner.py:1] Graph capturing finished in 20 secs, took 0.50 GiB\n",
         "oom_warmup", "warmup"),
        ("INFO 01-01 00:00:01 model_runner.py:1] Starting to load model m...\n", "oom_weights", "weights"),
        ("INFO 01-01 00:00:01 model_runner.py:1] Starting to load model m...\n"
         "INFO 01-01 00:00:02 model_runner.py:1] Loading model weights took 15.00 GB\n", "oom_unknown", "unknown"),
    ],
)
def test_oom_phase_from_order_of_lines(before, outcome, phase):
    rec = read_log(before + OOM_TEXT)
    assert (rec.outcome, rec.phase) == (outcome, phase)


def test_error_in_model_execution_is_a_request():
    rec = read_log("ERROR 01-01 00:00:05 [core.py:1] Error in model execution: CUDA out of memory. Tried to "
                   "allocate 1.00 GiB.")
    assert (rec.outcome, rec.phase) == ("oom_request", "request")


def test_generic_startup_exception_is_error_and_keeps_its_line():
    rec = read_log("INFO 01-01 00:00:00 model_runner.py:1] Starting to load model m...\n"
                   "ValueError: MiniCPMV only supports versions 2.0, 2.5, 2.6, 4.0. Got version: (4, 5)\n"
                   "RuntimeError: Engine core initialization failed. See root cause above.")
    assert (rec.outcome, rec.phase) == ("error", "weights")
    assert rec.error_line.startswith("ValueError: MiniCPMV only supports")


def test_info_lines_mentioning_out_of_memory_are_not_failures():
    rec = read_log("INFO 11-24 10:00:22 model_runner.py:1417] CUDA graphs can take additional 1~3 GiB memory per "
                   "GPU. If you are running out of memory, consider decreasing `gpu_memory_utilization`.\n"
                   "INFO 11-24 10:00:40 model_runner.py:1531] Graph capturing finished in 18 secs, took 0.45 GiB")
    assert rec.outcome == "ok"


def test_start_failed_without_root_cause_stays_unknown():
    rec = read_log("(EngineCore_DP0 pid=1) ERROR 09-30 08:02:33 [core.py:718] EngineCore failed to start.")
    assert (rec.outcome, rec.phase) == ("unknown", "unknown")
    assert any("root cause not in the text" in e for e in rec.evidence)


def test_exception_logged_before_a_clean_start_was_survived():
    rec = read_log("ERROR 01-01 00:00:01 [compiler.py:1] Traceback (most recent call last):\n"
                   "ERROR 01-01 00:00:01 [compiler.py:1] AttributeError: 'function' object has no attribute 'x'\n"
                   "INFO 01-01 00:00:09 [core.py:1] init engine (profile, create kv cache, warmup model) took 9.0 s")
    assert rec.outcome == "ok" and rec.error_line is None
    rec = read_log("ERROR 01-01 00:00:01 [core.py:1] ValueError: bad config\n")
    assert (rec.outcome, rec.error_line) == ("error", "ERROR 01-01 00:00:01 [core.py:1] ValueError: bad config")


@pytest.mark.parametrize("line", [
    "ERROR 01-01 00:00:05 multiproc_worker_utils.py:1] Worker VllmWorkerProcess pid 123 died, exit code: -9",
    "(EngineCore pid=1) ERROR 01-01 00:00:05 [multiproc_executor.py:1] Worker proc VllmWorker-0 died unexpectedly",
    "Segmentation fault (core dumped)",
])
def test_worker_death_without_memory_text_is_a_crash(line):
    rec = read_log("INFO 01-01 00:00:01 [gpu_model_runner.py:1] Starting to load model m...\n" + line)
    assert (rec.outcome, rec.phase) == ("crash", "weights")
