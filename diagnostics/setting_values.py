"""Value checks of single engine settings beyond their JSON type (settings.check_setting calls check_value), kept
apart so settings.py stays within the project's 500 lines. UsageError (one line) for a value vLLM cannot take."""

from __future__ import annotations

import json

from diagnostics.errors import UsageError, one_of
from diagnostics.versions import Version

# vLLM's load formats: LoadFormats in vllm/model_executor/model_loader/__init__.py:33 (0.32), plus the older
# bitsandbytes and gguf (vllm/config.py LoadFormat, 0.6-0.10); vLLM lowercases the value (config/load.py:136)
LOAD_FORMATS = ("auto", "bitsandbytes", "dummy", "fastsafetensors", "gguf", "hf", "instanttensor", "ipc_cache",
                "mistral", "modelexpress", "npcache", "pt", "runai_streamer", "runai_streamer_sharded", "safetensors",
                "sharded_state", "tensorizer")

# load formats vLLM dropped: gguf is gone from the LoadFormats of 0.24.0 (model_loader/__init__.py:33 there; 0.23.0:40
# has it), bitsandbytes from 0.28.0 (0.27.0:36 has it, 0.28.0 not)
LOAD_FORMAT_UNTIL = {"gguf": Version(0, 24, 0), "bitsandbytes": Version(0, 28, 0)}

# mm_processor_kwargs keys the families' processors read as counts (whole numbers >= 1) and their upper bound: a
# pixel count past 10**9 (a 31,623-pixel square) is no image, and the Qwen resize's divisor search would not end
MM_COUNTS = {"max_slice_nums": 10**6, "max_dynamic_patch": 10**6, "min_dynamic_patch": 10**6, "max_patches": 10**6,
             "pan_and_scan_max_num_crops": 10**6, "pan_and_scan_min_crop_size": 10**9, "num_frames": 10**6,
             "max_pixels": 10**9, "min_pixels": 10**9}
MM_FLAGS = ("do_pan_and_scan",)
# The modalities limit_mm_per_prompt may name and a family may declare (Variant.modalities): MiniCPM-o adds audio
MODALITIES = ("image", "video", "audio")
# limit_mm_per_prompt's dummy-options keys per modality, as vLLM 0.32 declares them (vllm/config/multimodal.py:212-239:
# BaseDummyOptions.count ge=0; VideoDummyOptions num_frames/width/height gt=0; ImageDummyOptions width/height gt=0;
# each forbids other keys). AudioDummyOptions.length is not modelled here, so only count is accepted for audio. The
# upper bounds are ours (as MM_COUNTS): past them the item arithmetic would not end.
DUMMY_OPTIONS = {"image": ("count", "width", "height"), "video": ("count", "num_frames", "width", "height"),
                 "audio": ("count",)}
DUMMY_BOUNDS = {"count": (0, 10**9), "num_frames": (1, 10**6), "width": (1, 10**5), "height": (1, 10**5)}


def check_value(key: str, value) -> None:
    """Sizes that cannot be negative, a load format vLLM has, mm_processor_kwargs' counts whole numbers >= 1 within
    MM_COUNTS' bounds, its flags true or false, and min_pixels <= max_pixels."""
    if key in ("cpu_offload_gb", "swap_space", "kv_cache_memory_bytes") and value < 0:
        raise UsageError(f"setting {key}={value!r} must be >= 0")
    if key == "load_format" and value.lower() not in LOAD_FORMATS:
        raise one_of("load_format", value, LOAD_FORMATS)
    if key == "mm_processor_kwargs":
        _check_mm_kwargs(value)
    if key == "limit_mm_per_prompt" and isinstance(value, dict):
        _check_dummy_options(value)


def _check_dummy_options(value: dict) -> None:
    """limit_mm_per_prompt's per-modality dummy options: only the keys vLLM's *DummyOptions class of that modality
    has, each a whole number within DUMMY_BOUNDS (num_frames, width, height > 0 as vLLM's Field(gt=0))."""
    for m, opts in value.items():
        if m not in DUMMY_OPTIONS or not isinstance(opts, dict):
            continue  # settings._check_limits answers unknown modalities and plain counts
        for k, x in opts.items():
            head = f"setting limit_mm_per_prompt={json.dumps(value)} is invalid: {m}.{k}"
            if k not in DUMMY_OPTIONS[m]:
                raise UsageError(f"{head} is not a dummy option of {m}; accepted keys for {m}: "
                                 f"{', '.join(DUMMY_OPTIONS[m])}")
            lo, hi = DUMMY_BOUNDS[k]
            if isinstance(x, bool) or not isinstance(x, int) or not lo <= x <= hi:
                raise UsageError(f"{head} must be a whole number from {lo} to {hi:,} (vLLM 0.32 "
                                 f"config/multimodal.py: {k} {'ge=0' if lo == 0 else 'gt=0'})")


def _check_mm_kwargs(value: dict) -> None:
    def bad(why: str) -> UsageError:
        return UsageError(f"setting mm_processor_kwargs={json.dumps(value)} is invalid: {why}")

    for name, top in MM_COUNTS.items():
        if name in value:
            v = value[name]
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= top:
                raise bad(f"{name} must be a whole number from 1 to {top:,}; accepted: e.g. "
                          f"{{\"{name}\": {9 if 'slice' in name else 4 if 'patch' in name or 'crops' in name else 1003520}}}")
    for name in MM_FLAGS:
        if name in value and not isinstance(value[name], bool):
            raise bad(f"{name} must be true or false")
    if isinstance(value.get("min_pixels"), int) and isinstance(value.get("max_pixels"), int) \
            and value["min_pixels"] > value["max_pixels"]:
        raise bad("min_pixels is above max_pixels")


def check_load_format(given: dict, v: Version, model) -> dict:
    """`given` (the checked --set values), unless load_format names a loader vLLM `v` lacks (LOAD_FORMAT_UNTIL) or
    gguf for a checkpoint with no .gguf file (vLLM's GGUFModelLoader raises "Unrecognised GGUF reference",
    model_loader/gguf_loader.py:77, 0.23.0): UsageError, one line."""
    fmt = str(given.get("load_format") or "auto").lower()
    until = LOAD_FORMAT_UNTIL.get(fmt)
    if until is not None and v >= until:
        raise UsageError(f"setting load_format={fmt}: vLLM {v} has no {fmt} loader (gone since vLLM {until}); "
                         f"accepted: a load format of {v} such as auto or safetensors, or --vllm below {until}")
    if fmt == "gguf" and not model.is_gguf:
        raise UsageError(f"setting load_format=gguf: {model.name} has no .gguf file (vLLM's GGUF loader needs one); "
                         "accepted: load_format=auto, or a .gguf checkpoint as --model")
    return given


# settings that are environment variables vLLM reads as text (VLLM_PP_LAYER_PARTITION: get_pp_indices splits the text
# on commas, vllm/distributed/utils.py:142, 0.32): `--set VLLM_PP_LAYER_PARTITION=36` parses as the number 36
ENV_TEXT = ("VLLM_PP_LAYER_PARTITION",)


def env_text(key: str, value):
    """`value`, as the text the environment would hold when `key` is one of ENV_TEXT and `value` a whole number."""
    return str(value) if key in ENV_TEXT and isinstance(value, int) and not isinstance(value, bool) else value


def unique_keys(pairs: list) -> dict:
    """json.loads' object_pairs_hook: a JSON object with a key twice (`{"image":1,"image":2}`) is UsageError, where
    json would keep the last value in silence."""
    keys = [k for k, _ in pairs]
    twice = next((k for k in keys if keys.count(k) > 1), None)
    if twice is not None:
        text = "{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in pairs) + "}"
        raise UsageError(f"--set value {text} has the key {json.dumps(twice)} twice; accepted: each key once")
    return dict(pairs)


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
