"""Value checks of single engine settings beyond their JSON type (settings.check_setting calls check_value), kept
apart so settings.py stays within the project's 500 lines. UsageError (one line) for a value vLLM cannot take."""

from __future__ import annotations

import json

from diagnostics.errors import UsageError, one_of

# vLLM's load formats: LoadFormats in vllm/model_executor/model_loader/__init__.py:33 (0.32), plus the older
# bitsandbytes and gguf (vllm/config.py LoadFormat, 0.6-0.10); vLLM lowercases the value (config/load.py:136)
LOAD_FORMATS = ("auto", "bitsandbytes", "dummy", "fastsafetensors", "gguf", "hf", "instanttensor", "ipc_cache",
                "mistral", "modelexpress", "npcache", "pt", "runai_streamer", "runai_streamer_sharded", "safetensors",
                "sharded_state", "tensorizer")


def check_value(key: str, value) -> None:
    """Sizes that cannot be negative, a load format vLLM has, MiniCPM-V's max_slice_nums a positive integer."""
    if key in ("cpu_offload_gb", "swap_space", "kv_cache_memory_bytes") and value < 0:
        raise UsageError(f"setting {key}={value!r} must be >= 0")
    if key == "load_format" and value.lower() not in LOAD_FORMATS:
        raise one_of("load_format", value, LOAD_FORMATS)
    if key == "mm_processor_kwargs":
        slices = value.get("max_slice_nums")
        if "max_slice_nums" in value and (isinstance(slices, bool) or not isinstance(slices, int) or slices < 1):
            raise UsageError(f"setting mm_processor_kwargs={json.dumps(value)} is invalid: max_slice_nums must be "
                             "a positive integer (MiniCPM-V's image slices); accepted: e.g. {\"max_slice_nums\": 9}")


def check_once(given: dict, key: str, value):
    """`value`, unless `--set KEY=...` came twice with two values: UsageError (the last would win silently)."""
    if key in given and given[key] != value:
        raise UsageError(f"--set {key} given twice ({json.dumps(given[key])} and {json.dumps(value)}); accepted: "
                         "one value per setting")
    return value


def batch_refusal(settings: dict) -> str | None:
    """vLLM's SchedulerConfig refusal that needs no model: max_num_batched_tokens below max_num_seqs."""
    mbt, seqs = settings.get("max_num_batched_tokens"), settings.get("max_num_seqs")
    if isinstance(mbt, int) and isinstance(seqs, int) and mbt < seqs:
        return f"max_num_batched_tokens ({mbt}) must be greater than or equal to max_num_seqs ({seqs})."
    return None


def heads_refusal(s: dict, model) -> str | None:
    """ModelConfig.verify_with_parallel_config (vllm/config/model.py, 0.32): the attention heads must divide by
    tensor_parallel_size."""
    tp, heads = int(s.get("tensor_parallel_size") or 1), getattr(model, "heads", None)
    if heads and heads % tp:
        return f"Total number of attention heads ({heads}) must be divisible by tensor parallel size ({tp})."
    return None
