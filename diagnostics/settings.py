"""Engine settings: the names we know, `--set KEY=VALUE` parsing, and the defaults each vLLM version fills in.

`resolve()` returns every setting the start-up arithmetic needs, defaults included, the way that version picks
them (docs: vllm-memory.md §4; V1 batch defaults checked in vLLM 0.32's `EngineArgs.get_batch_defaults`):

V0 (0.5.4 - 0.10.x with use_v1=false)
  max_num_seqs 256, gpu_memory_utilization 0.90, limit_mm_per_prompt 1 per modality,
  max_num_batched_tokens = max(max_model_len, 2048), multimodal floor 4096 (0.6.0-0.6.2) / 5120 (0.6.3+),
  512 when chunked prefill is switched on.
V1 (0.7 opt-in, default from 0.8.0)
  max_num_batched_tokens LLM class / API server: 8192 / 2048; 16384 / 8192 on H100/H200 by name (0.7-0.8.4),
  on >= 70 GiB (0.8.5), on >= 70 GiB non-A100 (0.9.0+); 16384 / 16384 on >= 160 GiB (0.30+); CPU backend
  4096 / 2048. max_num_seqs 1024 (0.7.x and 0.8.0-0.8.3 everywhere; 0.8.4 H100/H200; 0.8.5+ where the big MBT
  applies) else 256 (CPU: 256 / 128). From 0.12.0 a defaulted MBT is clamped to max_num_seqs x max_model_len
  and, without chunked prefill, is max(max_model_len, default) (before: max_model_len).
  gpu_memory_utilization 0.90, 0.92 from 0.20.0. limit_mm_per_prompt 1 until 0.8.3, 999 from 0.8.4.
"""

from __future__ import annotations

import json

from diagnostics.cards import Card
from diagnostics.errors import UsageError, one_of
from diagnostics.models import ModelSpec
from diagnostics.versions import Version, engine, parse_version

# name -> accepted type(s) (checked after JSON parsing)
KNOWN_SETTINGS: dict[str, tuple] = {
    "max_num_seqs": (int,),
    "max_model_len": (int,),
    "max_num_batched_tokens": (int,),
    "gpu_memory_utilization": (int, float),
    "limit_mm_per_prompt": (dict,),
    "enforce_eager": (bool,),
    "skip_mm_profiling": (bool,),
    "mm_processor_kwargs": (dict,),
    "kv_cache_memory_bytes": (int,),
    "dtype": (str,),
    "enable_chunked_prefill": (bool,),
    "block_size": (int,),
    "cpu_offload_gb": (int, float),
    "tensor_parallel_size": (int,),
    "max_seq_len_to_capture": (int,),
    "use_v1": (bool,),
    "load_format": (str,),
    "trust_remote_code": (bool,),
    "num_gpu_blocks_override": (int,),
    "swap_space": (int, float),
    "mm_encoder_tp_mode": (str,),
    "performance_mode": (str,),
}

# first vLLM version that has the setting (older ones reject it)
SETTING_SINCE: dict[str, Version] = {
    "skip_mm_profiling": Version(0, 10, 1),
    "kv_cache_memory_bytes": Version(0, 10, 2),
    "mm_encoder_tp_mode": Version(0, 10, 2),
    "performance_mode": Version(0, 17, 0),
    "limit_mm_per_prompt": Version(0, 5, 4),
    "mm_processor_kwargs": Version(0, 6, 2),  # not an EngineArgs field in 0.5.5 (TypeError); vLLM PR #8657
}
SETTING_UNTIL: dict[str, Version] = {  # first version without it
    "swap_space": Version(0, 18, 0),
    "max_seq_len_to_capture": Version(0, 11, 0),
    "use_v1": Version(0, 11, 0),
}

# vLLM's own EngineArgs defaults for the settings whose default does not depend on version, card or entry point.
# The version-, card- and entry-point-dependent ones are filled in by resolve() below; this is the one table.
ENGINE_DEFAULTS: dict = {
    "enforce_eager": False,
    "skip_mm_profiling": False,
    "mm_processor_kwargs": {},
    "kv_cache_memory_bytes": None,
    "dtype": "auto",
    "block_size": 16,
    "cpu_offload_gb": 0,
    "tensor_parallel_size": 1,
    "load_format": "auto",
    "trust_remote_code": False,
    "num_gpu_blocks_override": None,
    "mm_encoder_tp_mode": "weights",
}

DTYPES = {"auto": None, "bfloat16": 2, "float16": 2, "half": 2, "float32": 4, "float": 4}
ENTRYPOINTS = ("llm", "serve")


def setting_available(name: str, version) -> bool:
    v = parse_version(version)
    return SETTING_SINCE.get(name, Version(0, 0, 0)) <= v < SETTING_UNTIL.get(name, Version(99, 0, 0))


def _parse_value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        low = text.strip().lower()
        if low in ("true", "false"):
            return low == "true"
        return text


def check_setting(key: str, value) -> object:
    """Type-check one setting; returns the value (ints accepted where floats are). UsageError otherwise."""
    if key not in KNOWN_SETTINGS:
        raise one_of("setting", key, KNOWN_SETTINGS)
    accepted = KNOWN_SETTINGS[key]
    if value is None and key in ("kv_cache_memory_bytes", "num_gpu_blocks_override", "max_num_batched_tokens",
                                 "use_v1", "max_model_len", "max_num_seqs"):
        return None
    if isinstance(value, bool) and bool not in accepted:
        raise UsageError(f"setting {key}={value!r} has the wrong type; accepted: {_type_names(accepted)}")
    if not isinstance(value, accepted):
        raise UsageError(f"setting {key}={value!r} has the wrong type; accepted: {_type_names(accepted)}")
    if key == "gpu_memory_utilization" and not 0 < value <= 1:
        raise UsageError(f"setting gpu_memory_utilization={value!r} is out of range; accepted: 0 < value <= 1")
    if key in ("max_num_seqs", "max_model_len", "max_num_batched_tokens", "block_size", "tensor_parallel_size",
               "num_gpu_blocks_override") and value < 1:
        raise UsageError(f"setting {key}={value!r} must be a positive integer")
    if key == "limit_mm_per_prompt":
        for m, n in value.items():
            if m not in ("image", "video") or isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise UsageError(f"setting limit_mm_per_prompt={json.dumps(value)} is invalid; accepted: "
                                 "a JSON object like {\"image\": 1, \"video\": 0} (non-negative ints)")
    if key == "dtype" and value not in DTYPES:
        raise one_of("dtype", value, DTYPES)
    if key == "mm_encoder_tp_mode" and value not in ("weights", "data"):
        raise one_of("mm_encoder_tp_mode", value, ("weights", "data"))
    return value


def _type_names(types) -> str:
    return " or ".join({int: "integer", float: "number", bool: "true/false", str: "text", dict: "JSON object"}[t]
                       for t in types)


def parse_set(items) -> dict:
    """`["max_num_seqs=32", 'limit_mm_per_prompt={"image":1}']` -> dict; values are JSON when they parse."""
    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise UsageError(f"--set {item!r} is not KEY=VALUE; accepted keys: {', '.join(sorted(KNOWN_SETTINGS))}")
        key, _, text = item.partition("=")
        key = key.strip().replace("-", "_")
        out[key] = check_setting(key, _parse_value(text))
    return out


def _big_batch_defaults(card: Card, v: Version) -> bool:
    """Does this version give this card the large V1 batch defaults (16384/8192 MBT, 1024 seqs)?"""
    by_name = card.name.startswith(("h100", "h200"))
    if v < (0, 8, 5):
        return by_name
    if v < (0, 9, 0):
        return card.total_gib >= 70
    return card.total_gib >= 70 and not card.is_a100


def _v1_batch_defaults(card: Card, v: Version, entrypoint: str) -> tuple[int, int]:
    """(max_num_batched_tokens, max_num_seqs) defaults for the V1 engine."""
    serve = entrypoint == "serve"
    if card.is_cpu:
        return (2048, 128) if serve else (4096, 256)
    if v >= (0, 30, 0) and card.total_gib >= 160:
        return 16384, 1024
    big = _big_batch_defaults(card, v)
    mbt = (8192 if serve else 16384) if big else (2048 if serve else 8192)
    if v < (0, 8, 4):
        seqs = 1024
    else:
        seqs = 1024 if big else 256
    return mbt, seqs


def v0_multimodal_floor(v: Version) -> int:
    if v < (0, 6, 0):
        return 0
    return 4096 if v < (0, 6, 3) else 5120


def default_limit(v: Version, eng: str) -> int:
    return 999 if (eng == "V1" and v >= (0, 8, 4)) or v >= (0, 12, 0) else 1


def supported_modalities(model: ModelSpec, v: Version, eng: str) -> tuple[str, ...]:
    """MiniCPM-V-2_6 takes video from the merged processor (0.7.1+); the legacy registry knew images only.
    Other VLM families: what their vLLM processor supports (diagnostics.families.MODALITIES)."""
    if model.vision is None:
        return ()
    if model.family is not None:
        return model.family.modalities
    return ("image",) if v <= (0, 7, 0) else ("image", "video")


def resolve(model: ModelSpec, card: Card, version, entrypoint: str = "llm", overrides: dict | None = None) -> dict:
    """Every setting the arithmetic reads, defaults filled in as `version` does for this card and entry point."""
    v = parse_version(version)
    if entrypoint not in ENTRYPOINTS:
        raise one_of("entrypoint", entrypoint, ENTRYPOINTS)
    given = {k: check_setting(k, val) for k, val in (overrides or {}).items()}
    for key, val in given.items():
        if val is not None and not setting_available(key, v):
            since, until = SETTING_SINCE.get(key), SETTING_UNTIL.get(key)
            need = f">= {since}" if since and v < since else f"< {until}"
            raise UsageError(f"setting {key} needs vLLM {need} (planning for {v})")
    eng = engine(v, given.get("use_v1"))
    s: dict = {"max_model_len": given.get("max_model_len") or model.max_position_embeddings, **ENGINE_DEFAULTS,
                "use_v1": eng == "V1"}
    if v < (0, 11, 0):
        s["max_seq_len_to_capture"] = 8192
    if v < (0, 18, 0):
        s["swap_space"] = 4
    if v >= (0, 17, 0):
        s["performance_mode"] = "balanced"
    s.update({k: val for k, val in given.items() if val is not None and k not in ("max_model_len",)})
    s["use_v1"] = eng == "V1"
    mml = s["max_model_len"]

    if eng == "V0":
        s.setdefault("enable_chunked_prefill", False)
        s.setdefault("gpu_memory_utilization", 0.90)
        s.setdefault("max_num_seqs", 256)
        if given.get("max_num_batched_tokens") is None:
            if s["enable_chunked_prefill"]:
                mbt = 512
            else:
                mbt = max(mml, 2048)
                if model.vision is not None:
                    mbt = max(mbt, v0_multimodal_floor(v))
            s["max_num_batched_tokens"] = mbt
    else:
        s.setdefault("enable_chunked_prefill", True)
        s.setdefault("gpu_memory_utilization", 0.92 if v >= (0, 20, 0) else 0.90)
        d_mbt, d_seqs = _v1_batch_defaults(card, v, entrypoint)
        if s.get("performance_mode") == "throughput":
            d_mbt, d_seqs = d_mbt * 2, d_seqs * 2
        seqs_given = given.get("max_num_seqs") is not None
        s.setdefault("max_num_seqs", d_seqs)
        if given.get("max_num_batched_tokens") is None:
            if v >= (0, 12, 0):  # checked in the 0.11.0 / 0.12.0 wheels
                mbt = d_mbt if s["enable_chunked_prefill"] else max(mml, d_mbt)
                mbt = min(s["max_num_seqs"] * mml, mbt)
            else:
                mbt = d_mbt if s["enable_chunked_prefill"] else mml
            s["max_num_batched_tokens"] = mbt
        if not seqs_given:
            s["max_num_seqs"] = min(s["max_num_seqs"], s["max_num_batched_tokens"])

    limit = default_limit(v, eng)
    mods = supported_modalities(model, v, eng)
    user_limits = dict(given.get("limit_mm_per_prompt") or {})
    s["limit_mm_per_prompt"] = {m: int(user_limits.get(m, limit)) for m in mods}
    return s


def version_default(setting: str, version) -> tuple[bool, object]:
    """(known, default) of a setting whose default depends on the vLLM version only (not on the card, model or
    entry point): the ENGINE_DEFAULTS, gpu_memory_utilization, the per-modality limit_mm_per_prompt default and the
    version-bound settings. (False, None) for the others (max_num_seqs, max_num_batched_tokens, max_model_len).
    UsageError for a version outside the planned range."""
    v = parse_version(version)
    if setting in ENGINE_DEFAULTS:
        return True, ENGINE_DEFAULTS[setting]
    eng = engine(v)
    if setting == "gpu_memory_utilization":
        return True, 0.92 if (eng == "V1" and v >= (0, 20, 0)) else 0.90
    if setting == "limit_mm_per_prompt":
        return True, default_limit(v, eng)
    if setting == "enable_chunked_prefill":
        return True, eng == "V1"
    return False, None


# -- before a real start (the suite): what a pinned vLLM and card refuse, decided before the engine starts --------
PRE_AMPERE = ("pascal", "volta", "turing")  # compute capability < 8.0: vLLM refuses bfloat16 there
FIRST_SM120_VLLM = Version(0, 9, 0)  # the first vLLM whose PyPI wheel (torch 2.7, CUDA 12.8) runs on sm_120


def dtype_for_card(settings: dict, card: Card) -> tuple[dict, str | None]:
    """(settings, note): bfloat16 becomes float16 on cards below compute capability 8.0 (T4, V100), where vLLM
    refuses bfloat16 before loading weights ("Bfloat16 is only supported on GPUs with compute capability of at
    least 8.0": worker.py 0.5.5-0.10, platforms/cuda.py 0.11+). Same bytes per parameter: the plan is unchanged."""
    if settings.get("dtype") != "bfloat16" or card.arch not in PRE_AMPERE:
        return settings, None
    return {**settings, "dtype": "float16"}, (f"dtype=bfloat16 -> float16 on {card.name} ({card.arch}): vLLM needs "
                                              "compute capability 8.0 for bfloat16")


def start_refusal(settings: dict, version, card: Card | None = None, model_name: str = "") -> str | None:
    """Why vLLM `version` cannot start with these settings on this card, in one line naming the setting and the
    version that brought or removed it; None when it can. What the child would otherwise meet as a TypeError
    from EngineArgs, or as a start that silently ignores the setting (docs/gpu-box.md, compatibility review)."""
    v = parse_version(version)
    for key, value in settings.items():
        if value is not None and key in KNOWN_SETTINGS and not setting_available(key, v):
            since, until = SETTING_SINCE.get(key), SETTING_UNTIL.get(key)
            when = f"came in vLLM {since}" if since and v < since else f"is gone since vLLM {until}"
            return f"setting {key} {when}; vLLM {v} would reject or ignore it"
    use_v1 = settings.get("use_v1")
    if use_v1 is not None:
        try:
            engine(v, use_v1)
        except UsageError as err:
            return str(err)
    if use_v1 and v < Version(0, 8, 3) and "minicpm" in model_name.lower():
        return f"use_v1=true: MiniCPM-V runs on V1 only from vLLM 0.8.3 (V1 of {v} lacks its multimodal embeddings)"
    if card is not None and card.arch == "blackwell" and v < FIRST_SM120_VLLM:
        return (f"card {card.name} (sm_120) needs vLLM >= {FIRST_SM120_VLLM}: the PyPI wheel of {v} is built for "
                "CUDA 12.4 or older, without Blackwell kernels")
    return None
