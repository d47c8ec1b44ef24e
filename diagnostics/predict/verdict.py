"""The verdict of a plan: which check of vLLM's start-up fails first, in the order vLLM runs them.

Order (vllm-memory.md §1-§2): V1's free-memory check at start (0.9.1+), weights, the profile run's peak, "no
available memory for the cache blocks", one max_model_len request must fit in the KV pool (less 0.33's null
block), the resident KV
allocation, CUDA graphs outside the KV budget.
"""

from __future__ import annotations

from dataclasses import dataclass

from diagnostics.cards import Card
from diagnostics.predict.terms import KVCache, Term
from diagnostics.units import fmt_gib
from diagnostics.versions import Version


@dataclass(frozen=True)
class StartupTerms:
    """What the verdict weighs, GiB throughout: the terms, the peak and the phase sizes of the profile run."""

    weights: Term
    non_torch: Term
    activation: Term
    kv: KVCache
    graphs: Term
    graphs_budgeted: bool  # V1 0.20+: CUDA graphs are subtracted from the KV budget
    encoder_gib: float  # encoder-pass peak
    llm_gib: float  # encoder outputs + LLM pass + sampler
    sampler_gib: float
    peak_gib: float  # CUDA context + weights + non-torch + activation peak
    cuda_context_gib: float


NULL_BLOCK_SINCE = (0, 29, 0)


def null_block_tokens(v: Version, s: dict) -> int:
    """vLLM reserves one null block before its one-request check and max_model_len auto-fit from 0.29.0
    (v1/core/kv_cache_utils.py 0.29.0:2316-2321 and :974-983, 0.32.0:2627-2633; kv_cache_planning.py 0.33.0:170-178;
    absent in 0.28.0; audit c9 had it from 0.33). Tokens: block_size (a hybrid pool's block is one page of a group's
    layers, fewer tokens at the averaged per-token cost: the check is then slightly strict there)."""
    return s["block_size"] if v >= NULL_BLOCK_SINCE else 0


def verdict(card: Card, v: Version, eng: str, s: dict, t: StartupTerms, notes: list[str]) -> tuple[str, str | None]:
    """(outcome, failing phase) — "ok" and None when every check passes. Appends an explanatory note where the
    check needs one (the V1 free-memory check)."""
    total = card.total_gib
    fixed = s.get("kv_cache_memory_bytes") is not None or bool(s.get("num_gpu_blocks_override"))
    if total <= 0:  # cpu pseudo-card without a known total: only a fixed KV pool can be checked
        if not fixed:
            return "unknown", None
        return ("kv_too_small", "kv_cache") if t.kv.tokens < s["max_model_len"] else ("ok", None)
    util = float(s["gpu_memory_utilization"])
    free_at_start = total - t.cuda_context_gib
    # 0.34 skips the check with the extensible KV cache: util is only a cap there (v1/worker/utils.py:783-788)
    if eng == "V1" and v >= (0, 9, 1) and util * total > free_at_start and not s.get("enable_extensible_kv_cache"):
        notes.append(f"V1 asks for util x total = {fmt_gib(util * total)} up front but only "
                     f"~{fmt_gib(free_at_start)} is free after the CUDA context")
        return "insufficient_free_memory", "startup_check"
    if t.cuda_context_gib + t.weights.value_gib + t.non_torch.low_gib > total:
        return "oom_weights", "weights"
    if t.peak_gib > total:
        if t.encoder_gib >= t.llm_gib:
            return "oom_profile", "vision_encoder"
        return "oom_profile", ("sampler" if t.sampler_gib > t.llm_gib / 2 else "language_model")
    if (not fixed and t.kv.value_gib <= 0) or t.kv.tokens <= 0:
        return "no_kv_cache", "kv_cache"
    if t.kv.tokens - null_block_tokens(v, s) < s["max_model_len"]:
        return "kv_too_small", "kv_cache"
    resident = t.cuda_context_gib + t.weights.value_gib + t.non_torch.value_gib + t.kv.term.value_gib
    if resident > total:
        return "oom_kv_alloc", "kv_cache"
    if t.graphs.value_gib and not t.graphs_budgeted and resident + t.graphs.value_gib > total:
        return "oom_cuda_graph", "cuda_graph"
    return "ok", None
