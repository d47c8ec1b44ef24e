"""Handlers of the reader's rules for the messages the catalogue (diagnostics/data/log_messages.toml) added in
issue 21: the init-engine time and compile time, the serving loop failing, weight creation failing, the 0.33-0.34
memory lines (free memory grew, external weights, budget after disk fallback), max_model_len auto-fit,
num_gpu_blocks_override, skipped and profiled CUDA-graph capture. Each is (scan, line, match) -> None, as
logs.reader.RULES calls it."""

from __future__ import annotations

import re

from diagnostics.logs.figures import gib
from diagnostics.logs.lines import Line
from diagnostics.logs.scan import Scan


def init_engine(s: Scan, line: Line, m: re.Match) -> None:
    """The engine is up: the init time, and the torch.compile time the 0.20+ form adds (0.34 splits it between the
    language model and the encoder; v1/engine/core.py:441-460, 0.34)."""
    s.ready(line)
    for key, group in (("init_engine_s", "s"), ("compilation_s", "c"), ("compilation_language_model_s", "lm"),
                       ("compilation_encoder_s", "enc")):
        if m.group(group) is not None:
            s.num(key, gib(m.group(group)))


def serving_failed(s: Scan, line: Line, m: re.Match) -> None:
    """V1 `AsyncLLM output_handler failed.` / V0 `Engine background task failed`: the serving loop failed, so the
    error that follows failed a request (v1/engine/async_llm.py, engine/async_llm_engine.py)."""
    s.at.setdefault("serving_failed", line.index)


def weight_create_failed(s: Scan, line: Line, m: re.Match) -> None:
    s.reach("weights")


def free_grew(s: Scan, line: Line, m: re.Match) -> None:
    """0.34 gpu_worker.py:166: free memory grew during the profile run; the KV cache is sized from torch's reserve."""
    s.mark("profile_done", line)
    for key, group in (("free_grew_gib", "grew"), ("initial_free_gib", "init"), ("free_after_profile_gib", "cur"),
                       ("torch_reserved_gib", "res")):
        s.num(key, gib(m.group(group)))


def graph_profiling_disabled(s: Scan, line: Line, m: re.Match) -> None:
    s.setting("VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS", False)


def external_weights(s: Scan, line: Line, m: re.Match) -> None:
    """0.33+ v1/worker/utils.py: the budget, the part a weight server holds, what is left to the engine (GiB)."""
    s.num("requested_gib", gib(m.group("req")))
    s.num("external_weights_gib", gib(m.group("ext")))
    s.num("engine_budget_gib", gib(m.group("eng")))


def budget_updated(s: Scan, line: Line, m: re.Match) -> None:
    s.num("requested_gib", gib(m.group("req")))


def extensible_measured(s: Scan, line: Line, m: re.Match) -> None:
    """0.34 v1/worker/extensible_kv_cache.py:693-707: memory after warmup and the KV blocks it fits (GiB, blocks)."""
    for key, group in (("free_after_warmup_gib", "free"), ("kv_committed_gib", "committed"),
                       ("transient_kept_gib", "kept"), ("transient_peak_gib", "peak"), ("torch_growth_gib", "growth"),
                       ("extensible_kv_gib", "kv"), ("requested_gib", "req")):
        s.num(key, gib(m.group(group)))
    s.num("extensible_kv_blocks", int(m.group("blocks")))


def extensible_extended(s: Scan, line: Line, m: re.Match) -> None:
    """0.34 extensible_kv_cache.py:536-540: the KV cache's final committed size (blocks, GiB)."""
    s.num("extensible_kv_blocks", int(m.group("blocks")))
    s.num("extensible_kv_gib", gib(m.group("kv")))


def extensible_util_cap(s: Scan, line: Line, m: re.Match) -> None:
    """0.34 extensible_kv_cache.py:662-676: an explicit util below 1.0 keeps free memory out of the KV cache."""
    s.num("requested_gib", gib(m.group("req")))
    s.num("util_withheld_gib", gib(m.group("held")))


def auto_fit(s: Scan, line: Line, m: re.Match) -> None:
    """max_model_len auto-fit (0.20+, kv_cache_utils / kv_cache_planning): the length chosen and the KV memory."""
    if m.group("orig"):
        s.num("max_model_len_requested", int(m.group("orig")))
    fit = m.group("fit") or m.group("full") or m.group("using")
    s.num("max_model_len", int(fit))
    s.setting("max_model_len", int(fit))
    s.num("kv_cache_gib", gib(m.group("kv")))


def blocks_override(s: Scan, line: Line, m: re.Match) -> None:
    """num_gpu_blocks_override replaces the blocks the profile run sized (engine/llm_engine.py, v1/core/
    kv_cache_utils.py): both counts."""
    s.num("gpu_blocks_profiled", int(m.group("n")))
    s.setting("num_gpu_blocks_override", int(m.group("o")))


def graph_capture_skipped(s: Scan, line: Line, m: re.Match) -> None:
    s.num("cuda_graph_captured", False)


def graph_profiling_start(s: Scan, line: Line, m: re.Match) -> None:
    """0.18+ profile_cudagraph_memory begins (v1/worker/gpu_model_runner.py): graphs to capture per mode."""
    s.mark("profile_start", line)
    s.at.setdefault("graph_profiling", line.index)
    sizes = re.findall(r"(\w+)=(\d+) \(largest=(\d+)\)", m.group("modes"))
    if sizes:
        s.num("cuda_graphs_to_capture", sum(int(n) for _, n, _ in sizes))
