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


# -- issue 21: the phase from the message, then the frames ---------------------------------------------------------
def test_sampler_warmup_oom_names_its_phase_without_frames():
    rec = read_log("(EngineCore_DP0 pid=1) ERROR 12-23 23:04:22 [core.py:1525] RuntimeError: CUDA out of memory "
                   "occurred when warming up sampler with 1024 dummy requests. Please try lowering `max_num_seqs` or "
                   "`gpu_memory_utilization` when initializing the engine.")
    assert (rec.outcome, rec.phase) == ("oom_warmup", "warmup")
    assert rec.numbers["sampler_warmup_requests"] == 1024


@pytest.mark.parametrize("method, outcome, phase", [
    ("load_model", "oom_weights", "weights"),
    ("determine_num_available_blocks", "oom_profile", "unknown"),
    ("initialize_cache", "oom_kv_alloc", "kv_cache"),
    ("capture_model", "oom_cuda_graph", "cuda_graph"),
    ("compile_or_warm_up_model", "oom_warmup", "warmup"),
    ("init_device", "oom_unknown", "startup_check"),
])
def test_v0_worker_method_names_the_phase(method, outcome, phase):
    rec = read_log(f"(VllmWorkerProcess pid=3897243) ERROR 10-03 18:29:17 multiproc_worker_utils.py:231] Exception "
                   f"in worker VllmWorkerProcess while processing method {method}: CUDA out of memory. Tried to "
                   f"allocate 60.00 MiB. GPU 2 has a total capacity of 79.22 GiB of which 2.06 MiB is free.")
    assert (rec.outcome, rec.phase) == (outcome, phase)


def test_weight_creation_failure_is_a_weights_oom():
    rec = read_log("ERROR 09-30 10:00:00 [linear.py:210] Failed to create unquantized linear weights: CUDA out of "
                   "memory. Tried to allocate 448.00 MiB. GPU 0 has a total capacity of 23.55 GiB of which 301.31 MiB "
                   "is free.")
    assert (rec.outcome, rec.phase) == ("oom_weights", "weights")


GRAPH_CAPTURE = """\
Traceback (most recent call last):
  File "/usr/lib/python3/site-packages/vllm/worker/model_runner.py", line 1543, in capture
    with torch.cuda.graph(self._graph, pool=memory_pool, stream=stream):
  File "/usr/lib/python3/site-packages/torch/cuda/graphs.py", line 185, in __exit__
    self.cuda_graph.capture_end()
  File "/usr/lib/python3/site-packages/torch/cuda/graphs.py", line 83, in capture_end
    super().capture_end()
RuntimeError: CUDA error: out of memory
"""


def test_graph_capture_frames_make_a_cuda_error_oom_a_graph_oom():
    rec = read_log(GRAPH_CAPTURE)
    assert (rec.outcome, rec.phase) == ("oom_cuda_graph", "cuda_graph")


def test_vllm_cuda_graph_file_frame_is_graph_capture():
    rec = read_log('Traceback (most recent call last):\n  File "/x/vllm/compilation/cuda_graph.py", line 120, in '
                   '__call__\n    output = self.runnable(*args, **kwargs)\nRuntimeError: CUDA error: out of memory')
    assert rec.outcome == "oom_cuda_graph"


def test_a_line_wrapped_mid_word_keeps_its_figures():
    rec = read_log("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.27 GiB. GPU 0 has a total "
                   "capacity of 79.33 GiB of which 109.81 MiB is free. Process 2377657 has 79.19 GiB memory in use. "
                   "Of the allocated memory 67.68 GiB is allocated by PyTorch, with 76.00 MiB allocated in private "
                   "pools (e.g., CUDA Gra\nphs), and 1.47 GiB is reserved by PyTorch but unallocated.")
    assert rec.numbers["oom_allocated_by_pytorch_gib"] == pytest.approx(67.68)
    assert rec.numbers["oom_private_pools_gib"] == pytest.approx(76 / 1024)
    assert rec.numbers["oom_reserved_unallocated_gib"] == pytest.approx(1.47)


def test_oom_after_the_serving_loop_failed_is_a_request_oom():
    rec = read_log("ERROR 05-01 10:00:00 [async_llm.py:957] AsyncLLM output_handler failed.\n"
                   "Traceback (most recent call last):\n"
                   '  File "/x/vllm/v1/engine/async_llm.py", line 420, in output_handler\n'
                   "    outputs = await engine_core.get_output_async()\n"
                   "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.")
    assert (rec.outcome, rec.phase) == ("oom_request", "request")


def test_v0_async_engine_loop_frames_make_a_request_oom():
    rec = read_log("ERROR 02-10 18:06:30 async_llm_engine.py:66] Engine background task failed\n"
                   "Traceback (most recent call last):\n"
                   '  File "/x/vllm/engine/async_llm_engine.py", line 56, in _log_task_completion\n'
                   "    return_value = task.result()\n"
                   '  File "/x/vllm/engine/async_llm_engine.py", line 849, in run_engine_loop\n'
                   "    result = task.result()\n"
                   '  File "/x/vllm/model_executor/models/qwen2_vl.py", line 880, in _process_image_input\n'
                   "    image_embeds = self.visual(pixel_values, grid_thw=image_grid_thw)\n"
                   "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.27 GiB.")
    assert (rec.outcome, rec.phase) == ("oom_request", "request")


def test_oom_right_after_the_profiling_warning_is_a_profile_oom():
    rec = read_log("INFO 03-01 10:00:00 model_runner.py:1008] Loading model weights took 15.5083 GB\n"
                   "WARNING 03-01 10:00:05 profiling.py:224] The sequence length used for profiling "
                   "(max_num_batched_tokens / max_num_seqs = 32) is too short to hold the multi-modal embeddings in "
                   "the worst case (3072 tokens in total, out of which {'image': 2560} are reserved for multi-modal "
                   "embeddings). This may cause certain multi-modal inputs to fail during inference.\n"
                   "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.")
    assert rec.outcome == "oom_profile"


def test_a_start_up_traceback_through_the_v0_async_engine_is_not_a_request():
    rec = read_log("Traceback (most recent call last):\n"
                   '  File "/x/vllm/engine/async_llm_engine.py", line 573, in from_engine_args\n'
                   "    engine = cls(\n"
                   '  File "/x/vllm/engine/async_llm_engine.py", line 473, in __init__\n'
                   "    self.engine = self._init_engine(*args, **kwargs)\n"
                   '  File "/x/vllm/worker/worker.py", line 183, in load_model\n'
                   "    self.model_runner.load_model()\n"
                   "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.27 GiB.")
    assert (rec.outcome, rec.phase) == ("oom_weights", "weights")


def test_a_cuda_graph_wrapper_frame_inside_the_profile_run_is_not_graph_capture():
    rec = read_log("Traceback (most recent call last):\n"
                   '  File "/x/vllm/v1/worker/gpu_model_runner.py", line 3100, in profile_run\n'
                   "    hidden_states, last_hidden_states = self._dummy_run(\n"
                   '  File "/x/vllm/compilation/cuda_graph.py", line 120, in __call__\n'
                   "    return self.runnable(*args, **kwargs)\n"
                   '  File "/x/vllm/model_executor/models/qwen2.py", line 400, in forward\n'
                   "    hidden_states = self.mlp(hidden_states)\n"
                   "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.27 GiB.")
    assert rec.outcome == "oom_profile"


def test_the_sampler_message_inside_the_profile_run_is_a_profile_oom():
    rec = read_log("Traceback (most recent call last):\n"
                   '  File "/x/vllm/v1/worker/gpu_model_runner.py", line 3397, in profile_run\n'
                   "    output = self._dummy_sampler_run(last_hidden_states)\n"
                   '  File "/x/vllm/v1/worker/gpu_model_runner.py", line 3220, in _dummy_sampler_run\n'
                   "    raise RuntimeError(\n"
                   "RuntimeError: CUDA out of memory occurred when warming up sampler with 256 dummy requests. Please "
                   "try lowering `max_num_seqs` or `gpu_memory_utilization` when initializing the engine.")
    assert (rec.outcome, rec.phase) == ("oom_profile", "sampler")


def test_oom_while_profiling_cuda_graph_memory_is_a_graph_oom():
    rec = read_log("INFO 05-01 10:00:00 [gpu_model_runner.py:5608] Profiling CUDA graph memory: FULL=35 (largest=512)"
                   "\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 512.00 MiB.")
    assert rec.outcome == "oom_cuda_graph"


def test_the_root_cause_line_is_the_same_whether_or_not_pytorchs_docs_link_was_wrapped_off_it():
    """A narrow paste wraps PyTorch's OOM text before its "(https://pytorch.org/docs/...)" tail; the link carries no
    fact, so the root-cause line leaves it out either way (found by test_logs_disguises' wrap)."""
    from diagnostics.logs.reader import read_log

    oom = ("[rank0]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.50 GiB. GPU 0 has a total "
           "capacity of 23.69 GiB of which 1.20 GiB is free. See documentation for Memory Management  "
           "(https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)")
    whole = read_log(oom + "\n")
    for tail in ("  (https", " See documentation"):  # the link alone, or the sentence with it (found again, 12-08)
        cut = oom.index(tail)
        wrapped = read_log(oom[:cut] + "\n" + oom[cut + 1:] + "\n")
        assert whole.error_line == wrapped.error_line, tail
    assert whole.error_line.endswith("1.20 GiB is free.")
