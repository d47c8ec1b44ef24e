"""What `plan` says besides the arithmetic: starts vLLM refuses for a reason that is not memory, how the version
rewrote the user's settings, and the known limits of the model, each only where it applies.

Sources: docs/vllm-version-audit.md (rows named in each sentence) and vllm-memory.md. Pure; no vLLM import.
"""

from __future__ import annotations

from diagnostics.models import ModelSpec
from diagnostics.versions import Version


def startup_blocker(model: ModelSpec, v: Version, eng: str) -> str | None:
    """Why this start fails for a reason that is not memory, or None: a model class marked SupportsV0Only (its
    family's window: MiniCPM-V before 0.8.3, whose V1 in 0.7.x has no `get_multimodal_embeddings` and 0.8.0-0.8.2
    raise for VLLM_USE_V1=1, audit a7/b5) started on V1. A model class this vLLM lacks is refused before
    (families.check_version)."""
    until = model.family.v0_only_until if model.family is not None else None
    if eng == "V1" and until is not None and v < until:
        return (f"{model.architecture} cannot run on the V1 engine before vLLM {until} (SupportsV0Only; no "
                f"get_multimodal_embeddings): with use_v1=true the start fails for a reason that is not memory")
    return None


def setting_notes(v: Version, eng: str, overrides: dict, settings: dict, fallback: str | None) -> list[str]:
    """How vLLM treats what the user set or left unset, where that differs from what they might expect."""
    notes = []
    if fallback and overrides.get("use_v1") is None:
        notes.append(f"vLLM {v} runs this start on V0: {fallback} (set use_v1=true to force V1)")
    if eng == "V1" and v < (0, 12, 0) and overrides.get("enable_chunked_prefill") is False:
        notes.append(f"vLLM {v} forces enable_chunked_prefill=true on V1 (audit a9): your false is overwritten, "
                     f"so max_num_batched_tokens stays {settings['max_num_batched_tokens']}")
    if eng == "V0" and settings.get("enable_chunked_prefill") and overrides.get("enable_chunked_prefill") is None:
        notes.append(f"vLLM {v} switches chunked prefill on for max_model_len > 32768 on V0 (audit a2): "
                     f"max_num_batched_tokens {settings['max_num_batched_tokens']}")
    if settings.get("kv_cache_dtype", "auto") != "auto":
        notes.append(f"kv_cache_dtype={settings['kv_cache_dtype']}: KV bytes per token follow that dtype")
    options = settings.get("mm_dummy_options") or {}
    if any(k in o for o in options.values() for k in ("width", "height")):
        notes.append("limit_mm_per_prompt width/height dummy options are not modelled (frames and slices are "
                      "counted at full size)")
    return notes


def known_limits(model: ModelSpec, v: Version, eng: str, settings: dict) -> list[str]:
    """The model's known gaps that bear on this plan (audit 'not modelled' list), one sentence each."""
    notes = []
    if eng == "V1" and (0, 7, 0) <= v < (0, 9, 1):
        notes.append(f"vLLM {v} V1 counts everything on the device as non-torch memory (audit c3): the CUDA "
                     "context is subtracted from the KV budget here, but other processes on the GPU would be too")
    if v >= (0, 33, 0):
        notes.append("vLLM 0.33 moves cuBLAS workspaces into the start-up baseline and adds a second sampler "
                     "pass to the profile run; neither is modelled (each well under 1 GiB)")
    if settings.get("enable_extensible_kv_cache"):
        notes.append(f"vLLM {v}'s extensible KV cache also keeps the warmup steps' own peak free when it exceeds "
                     "the profile run's (record_transient_peak, v1/worker/extensible_kv_cache.py:268) and caps "
                     "torch's allocator 0.5 GiB below what is left; plan uses the profiled peak only")
    if model.vision is None and settings.get("max_model_len", 0) > 32768 and model.source != "built-in":
        notes.append("max_model_len comes from the config's length keys and rope scaling as vLLM derives them; "
                     "the tokenizer_config.json's model_max_length, which vLLM also reads, is not")
    gaps = getattr(model.family.module, "known_gaps", None) if model.family is not None else None
    if gaps is not None:  # a family's own (families/__init__.py)
        notes += gaps(model.family.shape, v, settings)
    return notes


def encoder_tp_data(model: ModelSpec, settings: dict) -> bool:
    """Does mm_encoder_tp_mode="data" take effect: TP > 1 and a model class that supports it (its family's
    Variant.encoder_tp_data: MiniCPM-V, Qwen2/2.5/3-VL; vLLM 0.32 config/model.py:822-830 falls back to "weights"
    otherwise; the HF-format InternVL runs as interns1.py, which lacks it)? The vision tower is then whole on every
    rank."""
    return (settings.get("mm_encoder_tp_mode") == "data" and int(settings.get("tensor_parallel_size", 1)) > 1
            and model.family is not None and model.family.info.encoder_tp_data)


def unread_mm_kwargs_notes(model: ModelSpec, v: Version, settings: dict) -> list[str]:
    """A note naming mm_processor_kwargs keys the family does not read (its MM_KWARGS), e.g. a typo `max_pixel`.
    A warning, not a refusal, as vLLM: it checks no key names and passes them on to the Hugging Face processor
    (vllm 0.32 multimodal/processing/context.py:413-420, get_allowed_kwarg_only_overrides with
    allow_var_kwargs=True), and a transformers processor ignores a key it does not know with a warning
    (transformers processing_utils.py ProcessorMixin._merge_kwargs); plan counts such a key as changing nothing."""
    family = model.family
    given = settings.get("mm_processor_kwargs") or {}
    if family is None or not given:
        return []
    reads = tuple(getattr(family.module, "MM_KWARGS", ()))
    unread = sorted(k for k in given if k not in reads)
    if not unread:
        return []
    return [f"mm_processor_kwargs {', '.join(unread)}: not a key plan reads for {family.variant} (it reads: "
            f"{', '.join(reads) or 'none'}); vLLM {v} does not check key names and hands them to the processor, "
            "where a transformers processor ignores an unknown key with a warning (a remote-code one may differ), "
            "so plan counts it as changing nothing; a typo of a key above?"]


def mm_guard_notes(model: ModelSpec, v: Version, settings: dict, tokens_per_item: dict) -> list[str]:
    """What the multimodal switches change, and when a setting leaves real requests bigger than what the profile
    run measured (the profile run no longer guards them). tokens_per_item: the profile's per-modality maxima."""
    if model.vision is None:
        return []
    notes = unread_mm_kwargs_notes(model, v, settings)
    mode, tp = settings.get("mm_encoder_tp_mode"), int(settings.get("tensor_parallel_size", 1))
    if mode == "data" and tp == 1:
        notes.append("mm_encoder_tp_mode=data changes nothing with tensor_parallel_size=1")
    elif mode == "data" and not encoder_tp_data(model, settings):
        notes.append(f"mm_encoder_tp_mode=data: vLLM falls back to weights for {model.architecture} (its class "
                     "lacks supports_encoder_tp_data; vllm/config/model.py:822-830)")
    elif mode == "data":
        notes.append(f"mm_encoder_tp_mode=data: the vision tower's weights are whole on each of the {tp} ranks "
                     "(in the weights term) and each rank encodes 1/tp of the profile run's items at full width "
                     "(about the activation bytes of weights mode, which encodes every item at 1/tp width)")
    minicpm = model.family is not None and model.family.variant.startswith("minicpm")  # MiniCPM-o: MiniCPM-V's rules
    if minicpm and v >= (0, 8, 4):
        asked = (settings.get("mm_processor_kwargs") or {}).get("max_slice_nums")
        if asked is not None and int(asked) > model.vision.max_slice_nums:
            notes.append(f"max_slice_nums={asked} is above the checkpoint's max_slice_num "
                         f"({model.vision.max_slice_nums}): vLLM's dummy image (448 x "
                         f"{448 * model.vision.max_slice_nums}, minicpmv.py:768-774) does not grow with it, so the "
                         "profile run does not guard real images cut into more slices")
    options = settings.get("mm_dummy_options") or {}
    if options and minicpm and v < (0, 28, 0):
        notes.append(f"vLLM {v} reads only the count of a limit_mm_per_prompt object for MiniCPM-V; its dummy "
                     "options (num_frames, width, height) change the dummy items from 0.28")
    frames = (options.get("video") or {}).get("num_frames")
    variant = model.family.variant if model.family is not None else ""
    # who lowers the dummy video to num_frames: a family whose size knobs have it in this version (its module's
    # data: MiniCPM-V from 0.28, Qwen2-VL / Qwen2.5-VL from 0.12)
    honoured = model.family is not None and any(k.name == "num_frames" for k in model.family.size_knobs(v, ("video",)))
    if frames and not honoured and not minicpm and tokens_per_item.get("video"):
        notes.append(f"limit_mm_per_prompt video num_frames={frames} is not modelled for {variant or model.name}: "
                     "plan counts the dummy video at full frames")
    if frames and honoured and tokens_per_item.get("video"):
        notes.append(f"limit_mm_per_prompt video num_frames={frames} sizes only the profile run's dummy video; "
                     f"vLLM still accepts real videos of up to {tokens_per_item['video']:,} tokens, which the "
                     "profile run then did not measure")
    return notes
