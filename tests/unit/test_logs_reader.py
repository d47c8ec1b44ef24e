"""read_log: every memory line format of vllm-memory.md §2, prefixes, tqdm, outcome/phase by frames and order.

Fixture logs in tests/data/logs/ are verbatim doc lines or marked "synthetic from format string" in line 1;
inline texts below are filled-in format strings (test inputs, not field logs).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diagnostics.logs.reader import looks_like_vllm_log, read_log
from diagnostics.logs.record import LogRecord
from diagnostics.outcomes import OUTCOMES, PHASES

LOGS = Path(__file__).resolve().parents[1] / "data" / "logs"


def log(name: str) -> LogRecord:
    return read_log((LOGS / name).read_text())


# -- fixtures ------------------------------------------------------------------------------------------------
def test_fixture_first_lines_say_where_they_come_from():
    for path in sorted(LOGS.glob("*.log")):
        first = path.read_text().splitlines()[0]
        assert first.startswith("# fixture: "), path.name
        if path.name.startswith("gpu_"):
            assert "synthetic from format string" in first, path.name
        else:
            assert "verbatim" in first, path.name


def test_cpu_auto_sizing_lines():
    rec = log("cpu_auto_ok.log")
    assert (rec.outcome, rec.platform, rec.engine) == ("ok", "cpu", "V1")
    assert rec.numbers == {
        "encoder_budget_tokens": 2048, "encoder_items": 4, "encoder_modality": "image", "kv_cache_gib": 2.6,
        "gpu_total_gib": 11.34, "requested_gib": 3.4, "non_kv_gib": 0.8, "kv_cache_tokens": 10_904_704,
        "max_model_len": 512, "max_concurrency": 21298.25, "init_engine_s": 24.21,
    }
    assert rec.timestamps == {"profile_start": "11-24 14:06:11", "profile_done": "11-24 14:06:28",
                              "kv_done": "11-24 14:06:28", "ready": "11-24 14:06:35"}
    assert isinstance(rec.numbers["kv_cache_tokens"], int)


def test_cpu_explicit_sizing_lines():
    rec = log("cpu_explicit_ok.log")
    assert rec.outcome == "ok"
    assert (rec.numbers["kv_cache_gib"], rec.numbers["gpu_total_gib"]) == (0.06, 11.34)
    assert (rec.numbers["kv_cache_tokens"], rec.numbers["max_concurrency"]) == (131_072, 256.0)


@pytest.mark.parametrize(
    "name, outcome, phase, numbers",
    [
        ("cpu_kv_too_small.log", "kv_too_small", "kv_cache",
         {"max_model_len": 4096, "estimated_max_model_len": 1920, "kv_needed_gib": 0.0, "kv_cache_gib": 0.0}),
        ("cpu_no_kv_cache.log", "no_kv_cache", "kv_cache", {}),
        ("cpu_util_too_high.log", "insufficient_free_memory", "startup_check",
         {"free_gib": 9.99, "gpu_total_gib": 11.34, "gpu_memory_utilization": 0.95, "requested_gib": 10.77}),
        ("cpu_util_too_low.log", "oom_kv_alloc", "kv_cache",
         {"free_gib": 9.82, "gpu_total_gib": 11.34, "kv_cache_gib": -0.23, "requested_gib": 0.57}),
        ("cpu_sigill_crash.log", "crash", "unknown", {}),
        ("kit_shim_missing_error.log", "error", "unknown", {}),
    ],
)
def test_cpu_failures(name, outcome, phase, numbers):
    rec = log(name)
    assert (rec.outcome, rec.phase) == (outcome, phase)
    assert rec.numbers == numbers
    assert rec.error_line and "Engine core initialization failed" not in rec.error_line


def test_v063_vision_encoder_oom_with_config_settings():
    rec = log("gpu_v063_profile_vision_oom.log")
    assert (rec.outcome, rec.phase, rec.vllm_version, rec.engine) == ("oom_profile", "vision_encoder", "0.6.3", "V0")
    assert rec.settings["max_model_len"] == 32768 and rec.settings["enforce_eager"] is False
    assert rec.settings["trust_remote_code"] is True and rec.settings["tensor_parallel_size"] == 1
    assert (rec.settings["dtype"], rec.settings["load_format"]) == ("bfloat16", "auto")
    assert rec.settings["model"] == "openbmb/MiniCPM-V-2_6"
    n = rec.numbers
    assert (n["weights_gib"], n["oom_tried_gib"], n["oom_free_gib"], n["oom_total_gib"]) == (15.1, 2.5, 1.2, 23.69)
    assert n["oom_process_in_use_gib"] == 22.48 and n["oom_allocated_by_pytorch_gib"] == 21.9
    assert n["oom_reserved_unallocated_gib"] == pytest.approx(150 / 1024)
    assert rec.timestamps == {"weights_start": "11-24 10:00:05", "weights_done": "11-24 10:00:10"}


def test_v0_multiline_block_without_prefix_on_later_lines():
    rec = log("gpu_v0_block_ok.log")
    assert (rec.outcome, rec.engine, rec.vllm_version) == ("ok", "V0", "0.6.6")
    n = rec.numbers
    assert (n["gpu_total_gib"], n["gpu_memory_utilization"], n["budget_gib"]) == (23.69, 1.0, 23.69)
    assert (n["weights_gib"], n["non_torch_gib"], n["activation_peak_gib"], n["kv_cache_gib"]) == (
        15.4982, 0.21, 3.1, 4.88)
    assert n["weights_gib_all"] == [15.4982, 15.5]
    assert (n["gpu_blocks"], n["cpu_blocks"], n["max_concurrency"], n["cuda_graph_gib"]) == (5711, 4681, 22.31, 0.45)
    assert n["profile_time_s"] == 7.5
    assert rec.timestamps["graphs_done"] == "11-24 10:00:40" and rec.timestamps["kv_done"] == "11-24 10:00:20"


def test_v1_newest_breakdown_and_non_default_args():
    rec = log("gpu_v1_new_breakdown_ok.log")
    assert (rec.outcome, rec.engine, rec.vllm_version, rec.platform) == ("ok", "V1", "0.33.0", "cuda")
    assert rec.settings["limit_mm_per_prompt"] == {"image": 1, "video": 0} and rec.settings["max_num_seqs"] == 32
    n = rec.numbers
    assert (n["weights_gib"], n["encoder_budget_tokens"], n["encoder_items"], n["encoder_modality"]) == (
        15.1, 8192, 12, "image")
    assert (n["kv_cache_gib"], n["kv_cache_tokens"], n["max_model_len"], n["max_concurrency"]) == (
        3.87, 72_464, 8192, 8.85)
    assert (n["free_gib"], n["gpu_total_gib"], n["requested_gib"], n["consumed_gib"]) == (23.41, 23.56, 21.2, 15.62)
    # audit c2 (ranked 9): 0.27+ prints "peak activation" = headroom + the applied graph estimate (0.52 here)
    assert (n["activation_printed_gib"], n["activation_peak_gib"]) == (1.2, 0.68)
    assert (n["cuda_graph_gib"], n["cuda_graph_estimated_gib"]) == (0.49, 0.52)
    assert (n["kv_cache_memory_suggest_bytes"], n["kv_cache_memory_full_bytes"]) == (4004829593, 6468196352)
    assert set(rec.timestamps) == {"weights_start", "weights_done", "profile_start", "profile_done", "kv_done",
                                   "graphs_done", "ready"}


def test_v1_free_memory_error_beats_the_wrapper():
    rec = log("gpu_v1_free_memory_error.log")
    assert (rec.outcome, rec.phase) == ("insufficient_free_memory", "startup_check")
    assert (rec.numbers["free_gib"], rec.numbers["requested_gib"]) == (20.1, 21.68)
    assert rec.settings["gpu_memory_utilization"] == 0.92


# -- formats (filled-in format strings) --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "line, weights",
    [
        ("INFO 08-21 07:23:40 model_runner.py:732] Loading model weights took 15.9524 GB", 15.9524),
        ("INFO 04-15 00:05:37 [model_runner.py:1146] Model loading took 34.4340 GB and 19.411167 seconds", 34.434),
        ("INFO 04-15 00:05:37 [model_runner.py:1146] Model loading took 34.4340 GiB and 19.411167 seconds", 34.434),
        ("INFO 04-15 00:05:37 [gpu_model_runner.py:1] Model loading took 16.5317 GiB memory and 6.383892 seconds",
         16.5317),
        ("(EngineCore_DP0 pid=9) INFO 09-30 08:02:32 [gpu_model_runner.py:2] Model loading took 15.1 GiB memory and "
         "6.383892 seconds", 15.1),
        ("(EngineCore pid=9) INFO 09-30 08:02:32 [gpu/model_runner.py:2] Model loading took 0.0 GiB and 0.5 seconds",
         0.0),
    ],
)
def test_every_weights_format(line, weights):
    rec = read_log(line)
    assert rec.numbers["weights_gib"] == weights
    assert rec.timestamps["weights_done"]


def test_v064_profiling_results_line_with_gib_typo():
    rec = read_log(
        "INFO 11-24 10:00:20 worker.py:262] Memory profiling results: total_gpu_memory=23.58GiB "
        "initial_memory_usage=15.34GiB peak_torch_memory=17.06GiB memory_usage_post_profile=15.52Gib "
        "non_torch_memory=0.17GiB kv_cache_size=3.99GiB gpu_memory_utilization=0.90")
    n = rec.numbers
    assert (n["gpu_total_gib"], n["initial_memory_gib"], n["peak_torch_gib"]) == (23.58, 15.34, 17.06)
    assert (n["memory_usage_post_profile_gib"], n["non_torch_gib"], n["kv_cache_gib"]) == (15.52, 0.17, 3.99)
    assert rec.settings["gpu_memory_utilization"] == 0.9


def test_breakdown_line_0_10_2_and_mid_versions():
    old = ("INFO 09-01 10:00:00 [gpu_worker.py:1] Free memory on device (23.3/23.56 GiB) on startup. Desired GPU "
           "memory utilization is (0.9, 21.2 GiB). Actual usage is 15.08 GiB for weight, 1.5 GiB for peak activation, "
           "0.12 GiB for non-torch memory, and 0.6 GiB for CUDAGraph memory. Replace gpu_memory_utilization config "
           "with `--kv-cache-memory=4551413350` to fit into requested memory, or `--kv-cache-memory=6958623539` to "
           "fully utilize gpu memory. Current kv cache memory in use is 4710305382 bytes.")
    n = read_log(old).numbers
    assert (n["weights_gib"], n["activation_peak_gib"], n["non_torch_gib"], n["cuda_graph_gib"]) == (
        15.08, 1.5, 0.12, 0.6)
    assert (n["kv_cache_memory_suggest_bytes"], n["kv_cache_memory_full_bytes"]) == (4551413350, 6958623539)
    assert n["kv_cache_gib"] == pytest.approx(4710305382 / 2**30)
    mid = old.replace("`--kv-cache-memory=4551413350`", "`--kv-cache-memory=4551413350` (4.24 GiB)").replace(
        "`--kv-cache-memory=6958623539`", "`--kv-cache-memory=6958623539` (6.48 GiB)").replace(
        "4710305382 bytes", "4.39 GiB")
    n = read_log(mid).numbers
    assert n["kv_cache_memory_suggest_bytes"] == 4551413350 and n["kv_cache_gib"] == 4.39


@pytest.mark.parametrize(
    "line, tokens, blocks, mml, conc",
    [
        ("INFO 01-01 00:00:00 gpu_executor.py:1] # GPU blocks: 3631, # CPU blocks: 512", None, 3631, None, None),
        ("INFO 01-01 00:00:00 executor_base.py:1] # cuda blocks: 3947, # CPU blocks: 2048", None, 3947, None, None),
        ("INFO 01-01 00:00:00 kv_cache_utils.py:1] # GPU blocks: 4520", None, 4520, None, None),
        ("INFO 01-01 00:00:00 [kv_cache_utils.py:1] GPU KV cache size: 72,464 tokens", 72464, None, None, None),
        ("INFO 01-01 00:00:00 [kv_cache_utils.py:1] Maximum concurrency for 32,768 tokens per request: 2.21x",
         None, None, 32768, 2.21),
        ("INFO 01-01 00:00:00 [kv_cache_utils.py:1] GPU + host KV cache size: 1,000 tokens, Maximum concurrency for "
         "1,000 tokens per request: 1.00x", 1000, None, 1000, 1.0),
    ],
)
def test_kv_size_and_concurrency_formats(line, tokens, blocks, mml, conc):
    n = read_log(line).numbers
    assert n.get("kv_cache_tokens") == tokens and n.get("gpu_blocks") == blocks
    assert n.get("max_model_len") == mml and n.get("max_concurrency") == conc


def test_graph_and_encoder_lines():
    n = read_log(
        "INFO 01-01 00:00:00 model_runner.py:1] Graph capturing finished in 25 secs.\n"
        "INFO 01-01 00:00:00 [gpu_model_runner.py:1] Encoder cache will be initialized with a budget of 16,384 "
        "tokens, and profiled with 15 video items of the maximum feature size.\n").numbers
    assert "cuda_graph_gib" not in n  # 0.5.4-0.6.3 printed no memory
    assert (n["encoder_budget_tokens"], n["encoder_items"], n["encoder_modality"]) == (16384, 15, "video")
    rec = read_log("INFO 01-01 00:00:00 [gpu_model_runner.py:1] Skipping memory profiling for multimodal encoder "
                   "and encoder cache.")
    assert rec.settings["skip_mm_profiling"] is True


def test_banners_version_engine_platform():
    rec = read_log("INFO 04-16 11:00:00 [core.py:58] Initializing a V1 LLM engine (v0.8.4) with config: "
                   "model='m', max_seq_len=4096, enforce_eager=True\n"
                   "INFO 04-16 11:00:00 [__init__.py:239] Automatically detected platform cuda.")
    assert (rec.vllm_version, rec.engine, rec.platform) == ("0.8.4", "V1", "cuda")
    assert rec.settings == {"model": "m", "max_model_len": 4096, "enforce_eager": True}
    rec = read_log("INFO 10-23 19:55:00 llm_engine.py:237] Initializing an LLM engine (v0.6.3.post1) with config: "
                   "model='m', max_seq_len=8192")
    assert (rec.vllm_version, rec.engine, rec.settings["max_model_len"]) == ("0.6.3.post1", "V0", 8192)


def test_computed_max_num_seqs_warning_echoes_settings():
    rec = read_log("WARNING 10-29 17:42:42 model_runner.py:1247] Computed max_num_seqs (min(256, 32768 // 147456)) "
                   "to be less than 1. Setting it to the minimum value of 1.")
    assert rec.settings == {"max_num_seqs": 256, "max_num_batched_tokens": 32768}
    assert rec.numbers["mm_tokens_worst_case"] == 147456 and rec.outcome == "unknown"


# -- errors ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, outcome, numbers",
    [
        ("ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when "
         "initializing the engine.", "no_kv_cache", {}),
        ("ValueError: The model's max seq len (32768) is larger than the maximum number of tokens that can be stored "
         "in KV cache (14960). Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when "
         "initializing the engine.", "kv_too_small", {"max_model_len": 32768, "kv_cache_tokens": 14960}),
        ("ValueError: To serve at least one request with the models's max seq len (32768), (1.75 GB KV cache is "
         "needed, which is larger than the available KV cache memory (1.02 GB). Try increasing "
         "`gpu_memory_utilization` or decreasing `max_model_len` when initializing the engine.", "kv_too_small",
         {"max_model_len": 32768, "kv_needed_gib": 1.75, "kv_cache_gib": 1.02}),
        ("ValueError: To serve at least one request with the model's max seq len (32768), (1.75 GiB KV cache is "
         "needed, which is larger than the available KV cache memory (0.98 GiB). Based on the available memory, "
         "the estimated maximum model length is 18336. Try increasing `gpu_memory_utilization`",
         "kv_too_small", {"max_model_len": 32768, "kv_needed_gib": 1.75, "kv_cache_gib": 0.98,
                          "estimated_max_model_len": 18336}),
        ("ValueError: Free memory on device (20.1/23.56 GiB) on startup is less than desired GPU memory utilization "
         "(0.92, 21.68 GiB). Decrease GPU memory utilization or reduce GPU memory used by other processes.",
         "insufficient_free_memory", {"free_gib": 20.1, "gpu_total_gib": 23.56, "gpu_memory_utilization": 0.92,
                                      "requested_gib": 21.68}),
    ],
)
def test_kv_and_startup_errors(text, outcome, numbers):
    rec = read_log("ERROR 01-01 00:00:00 [core.py:1] EngineCore failed to start.\n" + text +
                   "\nRuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}")
    assert rec.outcome == outcome
    assert rec.numbers == numbers


def test_unrecognisable_text():
    rec = read_log("hello world\nnothing to see here\n")
    assert (rec.outcome, rec.phase, rec.numbers, rec.vllm_version) == ("unknown", "unknown", {}, None)
    assert not looks_like_vllm_log("hello world")
    assert looks_like_vllm_log((LOGS / "cpu_no_kv_cache.log").read_text())


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=400))
def test_never_raises_on_odd_text(text):
    rec = read_log(text)
    assert rec.outcome in OUTCOMES and rec.phase in PHASES


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(sorted(p.name for p in LOGS.glob("*.log"))), min_size=1, max_size=3),
       st.sampled_from(["\n", "\r\n"]))
def test_never_raises_on_spliced_fixtures(names, newline):
    text = newline.join((LOGS / n).read_text() for n in names)
    rec = read_log(text)
    assert rec.outcome in OUTCOMES and rec.phase in PHASES


# -- real vLLM 0.32.0 CPU-backend logs recorded on this machine (tiny kit, load_format=dummy) ----------------------
@pytest.mark.parametrize(
    "name, outcome, phase, numbers",
    [
        ("real_cpu_ok.log", "ok", "unknown",
         {"max_model_len": 4096, "kv_cache_gib": 0.06, "gpu_total_gib": 8.59, "kv_cache_tokens": 65536,
          "max_concurrency": 16.0, "init_engine_s": 0.22}),
        ("real_cpu_kv_too_small.log", "kv_too_small", "kv_cache",
         {"max_model_len": 4096, "kv_cache_gib": 0.0, "gpu_total_gib": 10.71, "kv_needed_gib": 0.0,
          "estimated_max_model_len": 896}),
        ("real_cpu_no_kv_cache.log", "no_kv_cache", "kv_cache",
         {"max_model_len": 4096, "kv_cache_gib": 0.0, "gpu_total_gib": 10.71}),
        ("real_cpu_util_too_high.log", "insufficient_free_memory", "startup_check",
         {"max_model_len": 4096, "free_gib": 8.18, "gpu_total_gib": 10.71, "gpu_memory_utilization": 0.97,
          "requested_gib": 10.39}),
        ("real_cpu_request_too_long.log", "error", "request",
         {"max_model_len": 16, "kv_cache_gib": 0.06, "gpu_total_gib": 10.71, "kv_cache_tokens": 8192,
          "max_concurrency": 512.0, "init_engine_s": 0.04}),
    ],
)
def test_real_cpu_backend_logs(name, outcome, phase, numbers):
    rec = log(name)
    assert (rec.outcome, rec.phase, rec.vllm_version, rec.engine, rec.platform) == (
        outcome, phase, "0.32.0", "V1", "cpu")
    assert rec.numbers == numbers
    assert rec.settings["max_num_seqs"] == 4 and rec.settings["enforce_eager"] is True
    assert rec.settings["limit_mm_per_prompt"] == {"image": 1, "video": 0}
    if outcome != "ok":
        assert "ValueError" in rec.error_line or "VLLMValidationError" in rec.error_line
        assert not rec.error_line.lstrip().startswith("raise")
    if outcome == "insufficient_free_memory":
        assert "weights_start" not in rec.timestamps  # the check runs in init_device, before loading
    else:
        assert rec.timestamps["weights_start"].startswith("11-24 ")


def test_real_cpu_compile_mode_auto_sizing_with_encoder_profile():
    rec = log("real_cpu_compile_auto_ok.log")
    assert (rec.outcome, rec.vllm_version, rec.platform) == ("ok", "0.32.0", "cpu")
    assert rec.numbers == {"max_model_len": 4096, "encoder_budget_tokens": 2048, "encoder_items": 3,
                           "encoder_modality": "image", "kv_cache_gib": 2.3, "gpu_total_gib": 10.71,
                           "requested_gib": 3.21, "non_kv_gib": 0.91, "kv_cache_tokens": 2_411_008,
                           "max_concurrency": 588.62, "init_engine_s": 18.33}
    assert rec.settings["max_num_batched_tokens"] == 2048 and rec.settings["gpu_memory_utilization"] == 0.3
    assert list(rec.timestamps) == ["weights_start", "profile_start", "profile_done", "kv_done", "ready"]


@pytest.mark.parametrize("line, cur, eq, same", [
    ("INFO 01-01 00:00:00 [gpu_worker.py:1] CUDA graph memory profiling is enabled (default since v0.21.0). The "
     "current --gpu-memory-utilization=0.9200 is equivalent to --gpu-memory-utilization=0.8975 without CUDA graph "
     "memory profiling. To maintain the same effective KV cache size as before, increase --gpu-memory-utilization "
     "to 0.9425. To disable, set VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=0.", 0.92, 0.8975, 0.9425),
    ("WARNING 01-01 00:00:00 [gpu_worker.py:1] CUDA graph memory profiling is disabled "
     "(VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=0). Without it, CUDA graph memory is not accounted for during KV "
     "cache allocation, which may require lowering --gpu-memory-utilization to avoid OOM. Consider re-enabling it "
     "(the default as of v0.21.0) and increasing --gpu-memory-utilization from 0.9000 to 0.9230.", 0.9, None, 0.923),
])
def test_cuda_graph_profiling_utilization_lines(line, cur, eq, same):
    rec = read_log(line)
    assert rec.settings["gpu_memory_utilization"] == cur
    assert rec.numbers.get("gpu_memory_utilization_without_graph_profiling") == eq
    assert rec.numbers["gpu_memory_utilization_same_kv"] == same
    assert rec.outcome == "unknown"  # advice, not a failure


def test_v0_block_joined_on_one_line_in_a_paste():
    block = [ln for ln in (LOGS / "gpu_v0_block_ok.log").read_text().splitlines() if not ln.startswith("#")][3:6]
    joined = read_log(" ".join(block)).numbers
    separate = read_log("\n".join(block)).numbers
    assert joined == separate
    assert (joined["budget_gib"], joined["activation_peak_gib"], joined["profile_time_s"]) == (23.69, 3.1, 7.5)


# -- streaming (issue #10: a day of server log in bounded memory) -------------------------------------------------
def _all_texts() -> list[tuple[str, str]]:
    import json
    import tomllib

    data = LOGS.parent
    texts = [(p.name, p.read_text()) for p in sorted(LOGS.glob("*.log"))]
    for line in (data / "field_cases" / "cases.jsonl").read_text().splitlines():
        case = json.loads(line)
        if (case.get("log_excerpt") or "").strip():
            texts.append((case["source"], case["log_excerpt"]))
    texts += [(c["id"], c["log"]) for c in map(json.loads, (data / "field_cases" / "cases-2.jsonl").read_text()
                                                .splitlines())]
    for path in sorted((data / "log_formats").glob("k*.toml")):
        texts += [(c["name"], c["text"]) for c in tomllib.loads(path.read_text())["case"]]
    return texts


def test_the_stream_reader_gives_the_same_record_on_every_test_log():
    import io

    from diagnostics.logs.reader import read_log_stream

    texts = [(n, t) for n, t in _all_texts() if "indented as a Markdown code block" not in n]  # pastes, not files
    assert len(texts) > 100
    for name, text in texts:
        assert read_log_stream(io.BytesIO(text.encode())).to_json() == read_log(text).to_json(), name


def test_the_stream_reader_skips_serving_lines_and_stops_at_the_first_failure():
    import io

    from diagnostics.logs.reader import read_log_stream

    start = (LOGS / "gpu_v1_new_breakdown_ok.log").read_text()
    prompt = ("(APIServer pid=1) INFO 11-24 10:05:00 [logger.py:39] Received request chatcmpl-1: prompt: 'RuntimeError: "
              "CUDA out of memory, why?', params: SamplingParams(n=1)\n")
    serving = '(APIServer pid=1) INFO:     10.0.0.1:5000 - "POST /v1/chat/completions HTTP/1.1" 200 OK\n' * 5000
    oom = ("(EngineCore pid=200) ERROR 11-24 11:00:00 [core.py:700] torch.OutOfMemoryError: CUDA out of memory. "
           "Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 23.56 GiB of which 1.10 GiB is free.\n")
    later = "(EngineCore pid=200) ERROR 11-24 12:00:00 [core.py:700] ValueError: something else\n"
    rec = read_log_stream(io.BytesIO((start + prompt + serving + oom + serving + later).encode()))
    assert (rec.outcome, rec.phase) == ("oom_request", "request")
    assert rec.numbers["oom_tried_gib"] == 2.0 and "ValueError" not in (rec.error_line or "")
    ok = read_log_stream(io.BytesIO((start + prompt + serving).encode()))
    assert (ok.outcome, ok.reached) == ("ok", "ready") and ok.error_line is None


# -- a restart begins a new start-up (newcomer-3 defect 2, #14, #352, #353) ----------------------------------------
METRICS = "INFO 11-24 15:01:02 metrics.py:351] Avg prompt throughput: 0.0 tokens/s, Running: 0 reqs\n"


@pytest.mark.parametrize("prefix", [METRICS, METRICS * 3, (LOGS / "gpu_v0_block_ok.log").read_text() + METRICS])
@pytest.mark.parametrize("name, outcome, phase", [
    ("gpu_v063_profile_vision_oom.log", "oom_profile", "vision_encoder"),
    ("gpu_v1_free_memory_error.log", None, None),  # whatever it reads as alone
])
def test_an_earlier_runs_lines_before_the_start_do_not_decide_it(prefix, name, outcome, phase):
    import io

    from diagnostics.logs.reader import read_log_stream

    alone = read_log((LOGS / name).read_text())
    outcome, phase = outcome or alone.outcome, phase or alone.phase
    assert (alone.outcome, alone.phase) == (outcome, phase)
    text = prefix + (LOGS / name).read_text()
    for rec in (read_log(text), read_log_stream(io.BytesIO(text.encode()))):
        assert (rec.outcome, rec.phase) == (outcome, phase)
        assert rec.vllm_version == alone.vllm_version and rec.numbers.get("weights_gib") == alone.numbers.get("weights_gib")


# -- issue 21: several engines in one log ----------------------------------------------------------------------
OMNI = """\
[Stage-0] INFO 03-12 08:21:50 [gpu_model_runner.py:2100] Model loading took 14.2500 GiB and 9.5 seconds
(Worker pid=2291010) [Stage-0] ERROR 03-12 08:22:28 [multiproc_executor.py:800] torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 139.80 GiB of which 1.20 GiB is free.
[Stage-1] INFO 03-12 08:22:28 [diffusion_model_runner.py:133] Model loading took 26.4738 GiB and 13.178609 seconds
"""


def test_vllm_omni_stages_are_read_apart_and_the_failing_one_explained():
    rec = read_log(OMNI)
    assert rec.failed_engine == "Stage-0"
    assert rec.numbers["weights_gib"] == 14.25  # not Stage-1's 26.47
    assert "weights_gib_all" not in rec.numbers
    by = {e["engine"]: e for e in rec.engines}
    assert by["Stage-1"]["numbers"]["weights_gib"] == 26.4738
    assert by["Stage-1"]["outcome"] == "unknown"


def test_data_parallel_ranks_are_engines():
    text = ("(EngineCore_DP0 pid=11) INFO 05-18 14:27:40 [gpu_worker.py:300] Available KV cache memory: 40.10 GiB\n"
            "(EngineCore_DP1 pid=12) INFO 05-18 14:27:40 [gpu_worker.py:300] Available KV cache memory: 12.30 GiB\n"
            "(EngineCore_DP1 pid=12) ERROR 05-18 14:27:49 [core.py:700] ValueError: No available memory for the "
            "cache blocks.\n")
    rec = read_log(text)
    assert (rec.failed_engine, rec.outcome) == ("DP1", "no_kv_cache")
    assert rec.numbers["kv_cache_gib"] == 12.3 and "kv_cache_gib_all" not in rec.numbers


def test_one_engine_logs_carry_no_engine_list():
    rec = read_log("(EngineCore_DP0 pid=11) INFO 05-18 14:27:40 [gpu_worker.py:300] Available KV cache memory: 4.0 GiB")
    assert rec.engines == [] and rec.failed_engine is None


def test_api_server_lines_are_shared_by_the_dp_engines_they_serve():
    text = ("(APIServer pid=1) INFO 05-18 14:27:00 [api_server.py:1] vLLM API server version 0.31.0\n"
            "(APIServer pid=1) INFO 05-18 14:27:01 [api_server.py:2] non-default args: {'max_model_len': 8192}\n"
            "(EngineCore_DP0 pid=11) INFO 05-18 14:27:40 [gpu_worker.py:300] Available KV cache memory: 40.10 GiB\n"
            "(EngineCore_DP1 pid=12) ERROR 05-18 14:27:49 [core.py:700] ValueError: No available memory for the "
            "cache blocks.\n")
    rec = read_log(text)
    assert [e["engine"] for e in rec.engines] == ["DP0", "DP1"] and rec.failed_engine == "DP1"
    assert rec.vllm_version == "0.31.0" and rec.settings["max_model_len"] == 8192
    assert "kv_cache_gib" not in rec.numbers  # DP0's budget is not DP1's


def test_two_vllm_serve_processes_are_told_apart_by_their_engine_cores():
    text = ("(EngineCore pid=100) INFO 05-18 14:27:30 [gpu_model_runner.py:1] Model loading took 7.10 GiB and 3.0 s\n"
            "(EngineCore pid=200) INFO 05-18 14:27:31 [gpu_model_runner.py:1] Model loading took 15.50 GiB and 6.0 s\n"
            "(EngineCore pid=100) INFO 05-18 14:27:40 [gpu_worker.py:300] Available KV cache memory: 9.00 GiB\n"
            "(EngineCore pid=200) ERROR 05-18 14:27:49 [core.py:700] torch.OutOfMemoryError: CUDA out of memory. "
            "Tried to allocate 2.00 GiB.\n")
    rec = read_log(text)
    assert rec.failed_engine == "EngineCore pid=200"
    assert rec.numbers["weights_gib"] == 15.5 and "kv_cache_gib" not in rec.numbers


def test_a_block_line_that_lost_its_leading_hash_is_not_read_from_its_cpu_half():
    # vllm#10517 (a comment's markdown ate the "# " of "# GPU blocks"): the CPU count was read as the GPU blocks
    rec = read_log("Loading model weights took 14.9888 GB\nGPU blocks: 1952, # CPU blocks: 2048\n")
    assert rec.numbers["gpu_blocks"] == 1952 and rec.numbers.get("cpu_blocks") == 2048
    rec = read_log("INFO 10-23 19:55:16 gpu_executor.py:1] # NPU blocks: 700, # CPU blocks: 512\n")
    assert rec.numbers["gpu_blocks"] == 700  # other accelerators' names still read
    assert "gpu_blocks" not in read_log("INFO 10-23 19:55:16 worker.py:1] # CPU blocks: 512\n").numbers


SECOND_START = (
    "(APIServer pid=900) INFO 11-25 09:00:00 [api_server.py:1800] vLLM API server version 0.32.0\n"
    "(EngineCore pid=901) ERROR 11-25 09:00:40 [core.py:700] torch.OutOfMemoryError: CUDA out of memory. Tried to "
    "allocate 2.00 GiB. GPU 0 has a total capacity of 23.64 GiB of which 1.20 GiB is free.\n")


@pytest.mark.parametrize("earlier", ["real_cpu_ok.log", "gpu_v1_new_breakdown_ok.log"])
def test_a_restart_that_prints_only_the_api_server_banner_is_a_new_start(earlier):        # newcomer pass
    alone = read_log(SECOND_START)
    rec = read_log((LOGS / earlier).read_text() + SECOND_START)
    assert alone.outcome != "oom_request"
    assert (rec.outcome, rec.phase) == (alone.outcome, alone.phase)
