"""Engine settings: the names we know, `--set KEY=VALUE` parsing, and the defaults each vLLM version fills in.

`resolve()` returns every setting the start-up arithmetic needs, defaults included, the way that version picks
them (docs: vllm-memory.md §4; V1 batch defaults checked in vLLM 0.32's `EngineArgs.get_batch_defaults`):

V0 (0.4.0 - 0.10.x with use_v1=false, or where vLLM's V1 oracle falls back: versions.v1_fallback)
  max_num_seqs 256, gpu_memory_utilization 0.90, limit_mm_per_prompt 1 per modality,
  max_num_batched_tokens = max(max_model_len, 2048); 512 (before 0.7.0) / 2048 when chunked prefill is on, which
  vLLM switches on by itself for text models with max_model_len > 32768 (audit a2); the multimodal floor 4096
  (0.6.0-0.6.2) / 5120 (0.6.3+) is applied after that (audit a3).
V1 (0.7 opt-in, default from 0.8.0)
  max_num_batched_tokens LLM class / API server: 8192 / 2048; 16384 / 8192 on H100/H200 by name (0.7-0.8.4),
  on >= 70 GiB (0.8.5), on >= 70 GiB non-A100 (0.9.0+); 16384 / 16384 on >= 160 GiB (0.28+); CPU backend
  4096 / 2048. max_num_seqs 1024 (0.7.x and 0.8.0-0.8.3 everywhere; 0.8.4 H100/H200; 0.8.5+ where the big MBT
  applies) else 256 (CPU: 256 / 128, 128 / 32 before 0.10.1). From 0.12.0 a defaulted MBT is clamped to max_num_seqs x max_model_len
  and, without chunked prefill, is max(max_model_len, default) (before: max_model_len).
  enable_chunked_prefill is forced on before 0.12.0 (a user's false is overwritten, audit a9).
  gpu_memory_utilization 0.90, 0.92 from 0.20.0. limit_mm_per_prompt 1 until 0.8.3, 999 from 0.8.4; from 0.12.0
  a modality's limit may be a dummy-options object {"count", "num_frames", "width", "height"} (count 999 unset).
  max_model_len "auto" / -1 (0.14+) fits the length to the KV cache after profiling (`plan` reports it).
0.34 (CUDA): extensible KV cache -> gpu_memory_utilization 1.0, else 0.92 (config/cache.py:493-501); block_size 64.
"""

from __future__ import annotations

import json

from diagnostics.cards import Card
from diagnostics.errors import UsageError, one_of
from diagnostics.setting_values import (MODALITIES, batch_refusal, check_load_format, check_once, check_value,
                                         env_text, heads_refusal, unique_keys)
from diagnostics.models import ModelSpec, get_model
from diagnostics.versions import Version, engine, parse_version, v1_fallback

# name -> accepted type(s) (checked after JSON parsing)
KNOWN_SETTINGS: dict[str, tuple] = {
    "max_num_seqs": (int,),
    "max_model_len": (int, str),
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
    "tensor_parallel_size": (int,), "pipeline_parallel_size": (int,), "VLLM_PP_LAYER_PARTITION": (str,),
    "max_seq_len_to_capture": (int,),
    "use_v1": (bool,),
    "load_format": (str,),
    "trust_remote_code": (bool,),
    "num_gpu_blocks_override": (int,),
    "swap_space": (int, float),
    "mm_encoder_tp_mode": (str,),
    "performance_mode": (str,),
    "kv_cache_dtype": (str,),
    "VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS": (bool, int),
    "enable_extensible_kv_cache": (bool,),
}

# first vLLM version that has the setting (older ones reject it)
SETTING_SINCE: dict[str, Version] = {
    "skip_mm_profiling": Version(0, 10, 1),
    "kv_cache_memory_bytes": Version(0, 10, 2),
    "mm_encoder_tp_mode": Version(0, 10, 2),
    "performance_mode": Version(0, 17, 0),
    "limit_mm_per_prompt": Version(0, 5, 4),
    "VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS": Version(0, 18, 0),
    "mm_processor_kwargs": Version(0, 6, 2),  # not an EngineArgs field in 0.5.5 (TypeError); vLLM PR #8657
    "enable_extensible_kv_cache": Version(0, 34, 0),  # 0.34 config/cache.py:395, engine/arg_utils.py:615
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
    "cpu_offload_gb": 0,
    "tensor_parallel_size": 1, "pipeline_parallel_size": 1,
    "load_format": "auto",
    "trust_remote_code": False,
    "num_gpu_blocks_override": None,
    "mm_encoder_tp_mode": "weights",
    "kv_cache_dtype": "auto",
}

# vLLM defaults that changed at a release and depend on nothing else: setting -> ((since, default), ...), oldest first
VERSIONED_DEFAULTS: dict[str, tuple[tuple[Version, object], ...]] = {
    "block_size": ((Version(0, 4, 0), 16), (Version(0, 34, 0), 64)),  # config/cache.py:185 (0.33: 16, 0.34: 64)
    # os.getenv(..., "0") in 0.19.0 envs.py:1654-1655, "1" from 0.20.0 envs.py:1724-1725 (its log's "default since
    # v0.21.0", gpu_worker.py:456, is wrong; docs/vllm-releases.md)
    "VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS": ((Version(0, 18, 0), False), (Version(0, 20, 0), True)),
}
EXTENSIBLE_KV_SINCE = Version(0, 34, 0)


def dated_default(setting: str, version):
    """The default of a VERSIONED_DEFAULTS setting in `version` (None before its first entry). KeyError for a
    setting not in the table; UsageError for a version outside the planned range."""
    v = parse_version(version)
    return next((value for since, value in reversed(VERSIONED_DEFAULTS[setting]) if v >= since), None)


# bytes per KV element: "auto" follows the model dtype; fp8 variants store one byte (vLLM CacheDType)
KV_CACHE_DTYPES = {"auto": None, "bfloat16": 2, "float16": 2, "fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1, "fp8_inc": 1}
MAX_MODEL_LEN_AUTO = ("auto", -1)  # vLLM 0.14+: fit max_model_len to the KV cache
AUTO_LEN_SINCE = Version(0, 14, 0)
DUMMY_OPTIONS_SINCE = Version(0, 12, 0)  # limit_mm_per_prompt values may be {"count", "num_frames", ...}
DUMMY_OPTION_KEYS = ("count", "num_frames", "width", "height")

DTYPES = {"auto": None, "bfloat16": 2, "float16": 2, "half": 2, "float32": 4, "float": 4}
ENTRYPOINTS = ("llm", "serve")


def setting_available(name: str, version) -> bool:
    v = parse_version(version)
    return SETTING_SINCE.get(name, Version(0, 0, 0)) <= v < SETTING_UNTIL.get(name, Version(99, 0, 0))


def _parse_value(text: str):
    try:
        return json.loads(text, object_pairs_hook=unique_keys)  # setting_values.py: a key twice is refused
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
    if key == "max_model_len":
        return _check_max_model_len(value)
    if (isinstance(value, bool) and bool not in accepted) or not isinstance(value, accepted):
        raise UsageError(f"setting {key}={value!r} has the wrong type; accepted: {_type_names(accepted)}")
    if key == "gpu_memory_utilization" and not 0 < value <= 1:
        raise UsageError(f"setting gpu_memory_utilization={value!r} is out of range; accepted: 0 < value <= 1")
    if key in ("max_num_seqs", "max_num_batched_tokens", "block_size", "tensor_parallel_size", "pipeline_parallel_size",
               "num_gpu_blocks_override") and value < 1:
        raise UsageError(f"setting {key}={value!r} must be a positive integer")
    check_value(key, value)  # setting_values.py: negative sizes, load_format, max_slice_nums
    if key == "limit_mm_per_prompt":
        _check_limits(value)
    choices = {"dtype": DTYPES, "kv_cache_dtype": KV_CACHE_DTYPES, "mm_encoder_tp_mode": ("weights", "data")}
    if key in choices and value not in choices[key]:
        raise one_of(key, value, choices[key])
    if key == "VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS":
        if value not in (0, 1):
            raise UsageError(f"setting {key}={value!r} is invalid; accepted: 0, 1, true or false")
        return bool(value)
    return value


def _check_max_model_len(value) -> int | str:
    """A positive integer, or "auto" for -1 / auto; one wording for every bad value (4096.0 said "integer or text")."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) or isinstance(value, str) and \
            value.strip().lower() != "auto":
        raise UsageError(f"setting max_model_len={value!r} has the wrong type; accepted: integer, -1 or auto")
    if isinstance(value, str) or value == -1:
        return "auto"
    if value < 1:
        raise UsageError(f"setting max_model_len={value!r} is out of range; accepted: a positive integer, -1 or auto")
    return value


def _check_limits(value: dict) -> None:
    """limit_mm_per_prompt: modality -> non-negative int, or (0.12+) a dummy-options object."""
    bad = UsageError(f"setting limit_mm_per_prompt={json.dumps(value)} is invalid; accepted: a JSON object like "
                     "{\"image\": 1, \"video\": 0} (modalities " + ", ".join(MODALITIES) + "; non-negative ints) "
                     "or, for vLLM >= 0.12, {\"video\": {\"count\": 1, \"num_frames\": 8}}")
    for m, n in value.items():
        if m not in MODALITIES:
            raise bad
        if isinstance(n, dict):
            if not n or any(k not in DUMMY_OPTION_KEYS or isinstance(x, bool) or not isinstance(x, int) or x < 0
                            for k, x in n.items()):
                raise bad
        elif isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise bad


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
        out[key] = check_once(out, key, check_setting(key, env_text(key, _parse_value(text))))
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
    if card.is_cpu:  # 128 / 32 seqs in 0.9.2 (arg_utils.py:1666-1673), 256 / 128 from 0.10.1 (:1678-1683); audit a8
        if v < (0, 10, 1):
            return (2048, 32) if serve else (4096, 128)
        return (2048, 128) if serve else (4096, 256)
    if v >= (0, 28, 0) and card.total_gib >= 160:  # 0.28.0 arg_utils.py:2582 (audit a13)
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
    """What the model's vLLM processor supports in this version (its family's data; MiniCPM-V: video from the
    merged processor, 0.7.1+)."""
    if model.vision is None or model.family is None:
        return ()
    return model.family.modalities(v)


def engine_choice(model: ModelSpec, card: Card, version, given: dict | None = None) -> tuple[str, str | None]:
    """(engine, why vLLM's V1 oracle picks V0 or None) for this model, card and the user's settings."""
    v, given = parse_version(version), given or {}
    db = DTYPES.get(given.get("dtype") or "auto") or model.dtype_bytes
    reason = v1_fallback(v, capability=card.capability, dtype_bytes=db, pp=given.get("pipeline_parallel_size") or 1,
                         kv_cache_dtype=given.get("kv_cache_dtype") or "auto", gguf=model.is_gguf,
                         v0_only_until=model.family.v0_only_until if model.family else None)
    return engine(v, given.get("use_v1"), reason), reason


def _checked(overrides: dict | None, v: Version) -> dict:
    given = {k: check_setting(k, val) for k, val in (overrides or {}).items()}
    for key, val in given.items():
        if val is not None and not setting_available(key, v):
            since, until = SETTING_SINCE.get(key), SETTING_UNTIL.get(key)
            need = f">= {since}" if since and v < since else f"< {until}"
            raise UsageError(f"setting {key} needs vLLM {need} (planning for {v})")
    if given.get("max_model_len") == "auto" and v < AUTO_LEN_SINCE:
        raise UsageError(f"setting max_model_len=auto needs vLLM >= {AUTO_LEN_SINCE} (planning for {v}); "
                         "accepted here: a positive integer")
    return given


def resolve(model: ModelSpec, card: Card, version, entrypoint: str = "llm", overrides: dict | None = None) -> dict:
    """Every setting the arithmetic reads, defaults filled in as `version` does for this card and entry point.

    max_model_len=auto resolves to the model's length with `max_model_len_auto: True` (vLLM profiles at the full
    length, then fits it to the KV cache). Dummy options of limit_mm_per_prompt go to `mm_dummy_options`.
    UsageError for an unknown setting, a wrong type, or a setting that version lacks."""
    v = parse_version(version)
    if entrypoint not in ENTRYPOINTS:
        raise one_of("entrypoint", entrypoint, ENTRYPOINTS)
    given = check_load_format(_checked(overrides, v), v, model)  # setting_values.py: a loader vLLM v lacks
    eng, _ = engine_choice(model, card, v, given)
    s: dict = {"max_model_len": model.derived_max_model_len, **ENGINE_DEFAULTS,
               "block_size": dated_default("block_size", v)}
    if v < (0, 11, 0):
        s["max_seq_len_to_capture"] = 8192
    if v < (0, 18, 0):
        s["swap_space"] = 4
    if v >= (0, 17, 0):
        s["performance_mode"] = "balanced"
    s.update({k: val for k, val in given.items() if val is not None})
    if s["max_model_len"] == "auto":
        s.update(max_model_len=model.derived_max_model_len, max_model_len_auto=True)
    s["use_v1"] = eng == "V1"
    if eng == "V0":
        _v0_batch(model, v, s, given)
    else:
        _v1_batch(card, v, entrypoint, s, given)
    s["limit_mm_per_prompt"], options = _limits(model, v, eng, given)
    if options:
        s["mm_dummy_options"] = options
    return s


def vllm_refusal(s: dict, model: ModelSpec) -> str | None:
    """What vLLM raises at start-up for resolved settings `s` (ValueError text, vLLM's words), or None.

    Follows SchedulerConfig.verify_max_model_len (vllm/config/scheduler.py; vllm/config.py `_verify_args` before
    0.10) and ModelConfig's `_get_and_verify_max_len` (vllm/config/model.py); the same rules in every planned
    version. The rope-scaled limit is model.derived_max_model_len.
    """
    mbt, mml, seqs = s["max_num_batched_tokens"], s["max_model_len"], s["max_num_seqs"]
    if mml > model.derived_max_model_len and (model.model_max_length is None or mml > model.model_max_length):
        derived = float(model.max_position_embeddings * model.rope_factor)  # vLLM prints it times a float factor
        return (f"User-specified max_model_len ({mml}) is greater than the derived max_model_len "
                f"({model.max_len_key}={derived} or model_max_length={model.model_max_length} in model's "
                "config.json). To allow overriding this maximum, set the env var VLLM_ALLOW_LONG_MAX_MODEL_LEN=1.")
    if mbt < mml and not s.get("enable_chunked_prefill"):
        return (f"max_num_batched_tokens ({mbt}) is smaller than max_model_len ({mml}). This effectively limits "
                "the maximum sequence length to max_num_batched_tokens and makes vLLM reject longer sequences. "
                "Please increase max_num_batched_tokens or decrease max_model_len.")
    if mbt < seqs:
        return f"max_num_batched_tokens ({mbt}) must be greater than or equal to max_num_seqs ({seqs})."
    return heads_refusal(s, model)  # setting_values.py: tensor_parallel_size must divide the heads


def _v0_batch(model: ModelSpec, v: Version, s: dict, given: dict) -> None:
    """V0: chunked prefill switches itself on for text models above 32K context (0.5.5 arg_utils.py:820-838,
    0.10.2 :1570); the multimodal floor applies after the chunked value (0.6.3 config.py:983-999)."""
    mml = s["max_model_len"]
    s.setdefault("gpu_memory_utilization", default_gpu_memory_utilization(v))
    s.setdefault("max_num_seqs", 256)
    if given.get("enable_chunked_prefill") is None:
        s["enable_chunked_prefill"] = model.vision is None and mml > 32768 and v >= (0, 5, 4)
    if given.get("max_num_batched_tokens") is None:
        if s["enable_chunked_prefill"]:
            mbt = 512 if v < (0, 7, 0) else 2048
        else:
            mbt = max(mml, 2048)
        if model.vision is not None:
            mbt = max(mbt, v0_multimodal_floor(v))
        s["max_num_batched_tokens"] = mbt


def _v1_batch(card: Card, v: Version, entrypoint: str, s: dict, given: dict) -> None:
    """V1: chunked prefill is forced on before 0.12.0 (0.8.5 arg_utils.py:1569 ... 0.11.0 :1548); batch
    defaults per card (`_v1_batch_defaults`), clamped from 0.12.0 (0.13.0 :1953-1976)."""
    mml = s["max_model_len"]
    if v < (0, 12, 0):
        s["enable_chunked_prefill"] = True
    s.setdefault("enable_chunked_prefill", True)
    if v >= EXTENSIBLE_KV_SINCE:
        s["enable_extensible_kv_cache"] = extensible_kv_cache(card, v, s)
    s.setdefault("gpu_memory_utilization", default_gpu_memory_utilization(v, s.get("enable_extensible_kv_cache")))
    d_mbt, d_seqs = _v1_batch_defaults(card, v, entrypoint)
    if s.get("performance_mode") == "throughput":
        d_mbt, d_seqs = d_mbt * 2, d_seqs * 2
    s.setdefault("max_num_seqs", d_seqs)
    if given.get("max_num_batched_tokens") is None:
        mbt = d_mbt
        if v >= (0, 12, 0):
            mbt = d_mbt if s["enable_chunked_prefill"] else max(mml, d_mbt)
            mbt = min(s["max_num_seqs"] * mml, mbt)
        s["max_num_batched_tokens"] = mbt
    if given.get("max_num_seqs") is None:
        s["max_num_seqs"] = min(s["max_num_seqs"], s["max_num_batched_tokens"])


def extensible_kv_cache(card: Card, version, s: dict) -> bool:
    """Does vLLM >= 0.34 size this start's KV cache from memory measured after warmup (extensible KV cache)? Unset: on
    for CUDA without kv_cache_memory_bytes / num_gpu_blocks_override (0.34 config/vllm.py:3180-3254); vLLM's refusals
    of a true are UsageErrors. False before 0.34 and on the CPU backend."""
    v, asked = parse_version(version), s.get("enable_extensible_kv_cache")
    fixed = next((k for k in ("kv_cache_memory_bytes", "num_gpu_blocks_override") if s.get(k) is not None), None)
    if asked and (v < EXTENSIBLE_KV_SINCE or card.is_cpu or fixed):
        why = f"cannot go with {fixed}, which overrides its measured size" if fixed else "needs a CUDA card"
        raise UsageError(f"setting enable_extensible_kv_cache=true {why} (vLLM >= {EXTENSIBLE_KV_SINCE}; planning "
                         f"for {card.name}, {v}); accepted here: false or unset")
    return v >= EXTENSIBLE_KV_SINCE and not card.is_cpu and not fixed and asked is not False


def _limits(model: ModelSpec, v: Version, eng: str, given: dict) -> tuple[dict, dict]:
    """({modality: items per prompt}, {modality: dummy options other than count}) as vLLM reads them."""
    limit, user = default_limit(v, eng), dict(given.get("limit_mm_per_prompt") or {})
    counts, options = {}, {}
    supported = supported_modalities(model, v, eng)
    for m, n in user.items():  # a value plan would otherwise drop in silence
        if isinstance(n, dict) and v < DUMMY_OPTIONS_SINCE:
            raise UsageError(f"limit_mm_per_prompt as an object needs vLLM >= {DUMMY_OPTIONS_SINCE} (planning "
                             f"for {v}); accepted here: a non-negative integer per modality")
        if m not in supported and (isinstance(n, dict) or n):
            raise UsageError(f"limit_mm_per_prompt names {m!r}, which {model.name} does not profile in vLLM {v} "
                             f"(its dummy data there: {', '.join(supported) or 'none'}); accepted: "
                             f"{', '.join(supported) or 'no modality'} (or {m}: 0)")
    for m in supported:
        n = user.get(m, limit)
        if isinstance(n, dict):
            if v < DUMMY_OPTIONS_SINCE:
                raise UsageError(f"limit_mm_per_prompt as an object needs vLLM >= {DUMMY_OPTIONS_SINCE} (planning "
                                 f"for {v}); accepted here: a non-negative integer per modality")
            options[m] = {k: x for k, x in n.items() if k != "count"}
            n = n.get("count", 999)
        counts[m] = int(n)
    return counts, options


def default_gpu_memory_utilization(version, extensible: bool | None = False) -> float:
    """vLLM's default gpu_memory_utilization (a fraction of the card's total) for a version: 0.90; 0.92 on V1 from
    0.20.0; 1.0 with 0.34's extensible KV cache (`extensible`; config/cache.py:493-501). The one home of this
    default: settings resolution, the suite's limits and explain's ladders read it. UsageError for a version
    outside the planned range."""
    v = parse_version(version)
    if extensible and v >= EXTENSIBLE_KV_SINCE:
        return 1.0
    return 0.92 if (engine(v) == "V1" and v >= (0, 20, 0)) else 0.90


def version_default(setting: str, version) -> tuple[bool, object]:
    """(known, default) of a setting whose default depends on the vLLM version only (not on the card, model or
    entry point): the ENGINE_DEFAULTS, gpu_memory_utilization, the per-modality limit_mm_per_prompt default and the
    version-bound settings. (False, None) for the others (max_num_seqs, max_num_batched_tokens, max_model_len).
    UsageError for a version outside the planned range."""
    v = parse_version(version)
    if setting in ENGINE_DEFAULTS:
        return True, ENGINE_DEFAULTS[setting]
    if setting in VERSIONED_DEFAULTS and dated_default(setting, v) is not None:
        return True, dated_default(setting, v)
    eng = engine(v)
    if setting == "gpu_memory_utilization":
        if v >= EXTENSIBLE_KV_SINCE:  # 1.0 with the extensible KV cache (card- and setting-dependent), else 0.92
            return False, None
        return True, default_gpu_memory_utilization(v)
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


def _v0_only_until(model_name: str) -> Version | None:
    """The family's first vLLM whose V1 engine runs this model (None: always, or a name plan does not know)."""
    try:
        family = get_model(model_name).family if model_name else None
    except UsageError:
        return None
    return family.v0_only_until if family is not None else None


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
    v0_until = _v0_only_until(model_name)
    if use_v1 and v0_until is not None and v < v0_until:
        return (f"use_v1=true: {model_name} runs on V1 only from vLLM {v0_until} (V1 of {v} lacks its multimodal "
                "embeddings)")
    if card is not None and card.arch == "blackwell" and v < FIRST_SM120_VLLM:
        return (f"card {card.name} (sm_120) needs vLLM >= {FIRST_SM120_VLLM}: the PyPI wheel of {v} is built for "
                "CUDA 12.4 or older, without Blackwell kernels")
    return batch_refusal(settings)  # vllm_refusal's rule that needs no model
