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

# The memory terms of vLLM's start-up in its own categories (vLLM's mem_utils / "Memory profiling results"):
# key -> label. `Plan.components` uses the keys; the log reader's numbers and the JSON use key + "_gib";
# reports and sentences use the labels.
MEMORY_TERMS = {
    "weights": "weights",
    "non_torch": "non-torch",
    "encoder_profile": "encoder profile",
    "activation_peak": "activation peak",
    "kv_cache": "KV cache",
    "cuda_graph": "CUDA graphs",
}

# Phases of a measured timeline, in start-up order (engine/timeline.py labels every reading with one; charts
# colour them). The first three come before the KV cache is allocated: the profile threshold gates their peak.
TIMELINE_PHASES = ("init", "weights", "profile", "kv_cache", "cuda_graph", "warmup", "ready")
BEFORE_KV_PHASES = TIMELINE_PHASES[:3]
# Start-up markers a log prints (LogRecord.timestamps keys) -> the timeline phase that begins there; list order
# breaks ties within one second.
MARKER_PHASES = (
    ("weights_start", "weights"),
    ("weights_done", "profile"),
    ("profile_start", "profile"),
    ("profile_done", "kv_cache"),
    ("kv_done", "kv_cache"),
    ("graphs_done", "warmup"),
    ("ready", "ready"),
)
