"""Outcome and phase vocabularies shared by the log reader, the estimator, the explainer and the reports."""

from __future__ import annotations

OUTCOMES = (
    "ok",
    "insufficient_free_memory",  # "Free memory on device ... is less than desired ... utilization" (GPU or CPU twin)
    "oom_weights",
    "oom_profile",
    "no_kv_cache",  # "No available memory for the cache blocks"
    "kv_too_small",  # KV pool smaller than one max_model_len request
    "oom_kv_alloc",
    "oom_cuda_graph",
    "oom_warmup",
    "oom_request",
    "oom_unknown",
    "crash",
    "timeout",
    "error",
    "unknown",
)

PHASES = (
    "weights",
    "vision_encoder",
    "language_model",
    "sampler",
    "kv_cache",
    "cuda_graph",
    "warmup",
    "request",
    "startup_check",
    "unknown",
)

# Outcomes that mean "the engine did not come up because memory ran out / did not fit".
MEMORY_FAILURES = frozenset(o for o in OUTCOMES if o.startswith("oom_")) | {
    "insufficient_free_memory",
    "no_kv_cache",
    "kv_too_small",
}
