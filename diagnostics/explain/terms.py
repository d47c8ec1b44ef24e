"""The memory terms a change moves and the margin a failure is measured by (GiB), read off a predicted Plan.

Which way gpu_memory_utilization cures a failure follows vLLM's memory accounting (vllm-memory.md §3-§5): raising
it cures no_kv_cache / kv_too_small; lowering it cures OOMs after the profile run (graphs, KV allocation, V0
warm-up/request) and a too-high request at start-up; it never cures an OOM inside the profile run."""

from __future__ import annotations

from diagnostics.units import GiB

TERMS = ("weights", "non_torch", "encoder_profile", "activation_peak", "kv_cache", "cuda_graph")
UTIL_RAISE_CURES = frozenset({"no_kv_cache", "kv_too_small"})
UTIL_LOWER_CURES_V0 = frozenset({"oom_cuda_graph", "oom_kv_alloc", "oom_warmup", "oom_request", "insufficient_free_memory"})
UTIL_LOWER_CURES_V1 = frozenset({"oom_cuda_graph", "oom_kv_alloc", "insufficient_free_memory"})
AFTER_PROFILE = frozenset({"oom_cuda_graph", "oom_kv_alloc", "oom_warmup", "oom_request"})
KV_GIB_MARGIN = 0.05  # what a suggested utilization keeps above the bare minimum (rounding in vLLM's checks)


def util_direction(outcome: str, engine: str) -> int:
    """+1 raise, -1 lower, 0 utilization is no cure for this outcome on this engine ("V0" | "V1")."""
    if outcome in UTIL_RAISE_CURES:
        return 1
    lower = UTIL_LOWER_CURES_V0 if engine == "V0" else UTIL_LOWER_CURES_V1
    return -1 if outcome in lower else 0


def term(plan, name: str) -> float:
    """One predicted term of the plan in GiB (0.0 when the plan has no such term)."""
    t = (plan.components or {}).get(name)
    return float(t.value_gib) if t is not None else 0.0


def budget_gib(plan) -> float | None:
    """total x gpu_memory_utilization (GiB); None when kv_cache_memory_bytes fixes the KV pool instead."""
    s = plan.settings
    if s.get("kv_cache_memory_bytes"):
        return None  # the budget is the fixed KV pool, utilization is ignored
    return float(plan.card.total_gib) * float(s.get("gpu_memory_utilization") or 0.0)


def need_gib(plan) -> float:
    """KV cache one max_model_len request needs (GiB)."""
    return int(plan.settings.get("max_model_len") or 0) * plan.model.kv_bytes_per_token() / GiB


def resident_gib(plan) -> float:
    """What the device holds once the KV cache and the graphs exist (the profile's activations are freed)."""
    return float(plan.cuda_context_gib or 0.0) + sum(term(plan, t) for t in ("weights", "non_torch", "kv_cache",
                                                                               "cuda_graph"))


def margin(plan, outcome: str) -> float:
    """How far a plan is from failing the way `outcome` fails (GiB; bigger = safer)."""
    if outcome in UTIL_RAISE_CURES:
        if outcome == "kv_too_small" and plan.kv_cache_tokens is not None:
            spare = int(plan.kv_cache_tokens) - int(plan.settings.get("max_model_len") or 0)
            return spare * plan.model.kv_bytes_per_token() / GiB
        return term(plan, "kv_cache")
    if outcome == "insufficient_free_memory":  # the start-up check reads util x total, whatever the KV knob says
        return -float(plan.card.total_gib) * float(plan.settings.get("gpu_memory_utilization") or 0.0)
    if outcome in AFTER_PROFILE:
        return -resident_gib(plan)
    return -float(plan.peak_gib or 0.0)


def failing_term(outcome: str, phase: str | None) -> str:
    """The term (or "budget") an outcome in a phase points at."""
    if outcome == "oom_profile":
        return "encoder_profile" if phase == "vision_encoder" else "activation_peak"
    return {"no_kv_cache": "kv_cache", "kv_too_small": "kv_cache", "oom_kv_alloc": "kv_cache",
            "oom_cuda_graph": "cuda_graph", "oom_warmup": "activation_peak", "oom_request": "activation_peak",
            "insufficient_free_memory": "budget", "oom_weights": "weights"}.get(outcome, "activation_peak")


def shrunk_term(setting: str, base, after) -> str:
    """The term a change from plan `base` to plan `after` moved most (GiB), or "budget"."""
    if setting == "gpu_memory_utilization":
        return "budget"
    if setting == "kv_cache_memory_bytes":
        return "kv_cache"
    drops = {t: term(base, t) - term(after, t) for t in TERMS if t != "kv_cache"}
    best = max(drops, key=drops.get)
    if drops[best] > 0.01:
        return best
    if setting == "max_model_len":
        return "kv_cache"  # one max_model_len request needs less KV
    return "kv_cache" if term(after, "kv_cache") > term(base, "kv_cache") + 0.01 else best
