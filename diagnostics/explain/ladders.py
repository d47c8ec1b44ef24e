"""Candidate values per setting, nearest first: powers of two down for max_num_seqs / max_model_len /
max_num_batched_tokens / max_slice_nums, utilization up or down as the failure calls for, video off, eager on,
the encoder profile skipped (V1 0.10.1+), a fixed KV pool (V1 0.10.2+ and the CPU backend), and a 16-bit dtype
for dtype=float32 (bfloat16 from compute capability 8.0, float16 below)."""

from __future__ import annotations

import math

from diagnostics.errors import UsageError
from diagnostics.explain.terms import UTIL_RAISE_CURES, need_gib, resident_gib, term, util_direction
from diagnostics.predict.mm_fit import size_knob_fix
from diagnostics.settings import DTYPES, default_gpu_memory_utilization
from diagnostics.units import GiB, MiB
from diagnostics.versions import parse_version

SEARCHED = (
    "max_num_seqs",
    "max_model_len",
    "max_num_batched_tokens",
    "gpu_memory_utilization",
    "limit_mm_per_prompt",
    "enforce_eager",
    "skip_mm_profiling",
    "mm_processor_kwargs",
    "kv_cache_memory_bytes",
    "dtype",
)
UTIL_STEPS_UP = (0.8, 0.85, 0.9, 0.92, 0.95, 0.98, 1.0)
UTIL_STEPS_DOWN = (0.95, 0.92, 0.9, 0.85, 0.8, 0.75, 0.7, 0.6, 0.5)


def powers_below(current, floor: int) -> list[int]:
    """Powers of two below `current` down to `floor`, largest first ([] for an unset value)."""
    if not current:
        return []
    current = int(current)
    p = 1 << (max(current - 1, 1).bit_length() - 1)  # largest power of two below current
    out = []
    while p >= floor:
        if p < current:
            out.append(p)
        p //= 2
    return out


def util_steps(current: float, direction: int) -> list[float]:
    """The utilization steps beyond `current` in `direction` (+1 up, -1 down), nearest first."""
    if direction > 0:
        return [x for x in UTIL_STEPS_UP if x > current + 1e-9]
    if direction < 0:
        return [x for x in UTIL_STEPS_DOWN if x < current - 1e-9]
    return []


def has_video(plan) -> bool:
    fam = plan.model.family
    return fam is not None and "video" in fam.modalities(plan.vllm_version)


def _max_num_seqs(plan, outcome: str) -> list:
    return powers_below(plan.settings.get("max_num_seqs"), 1)


def _max_model_len(plan, outcome: str) -> list:
    return powers_below(plan.settings.get("max_model_len"), 256)


def _max_num_batched_tokens(plan, outcome: str) -> list:
    s = plan.settings
    floor = 512
    if plan.engine == "V0" and not s.get("enable_chunked_prefill"):
        floor = max(floor, int(s.get("max_model_len") or 0))  # V0 rejects MBT < max_model_len
    return powers_below(s.get("max_num_batched_tokens"), floor)


def _gpu_memory_utilization(plan, outcome: str) -> list:
    s = plan.settings
    if s.get("kv_cache_memory_bytes"):
        return []
    util = s.get("gpu_memory_utilization") or default_gpu_memory_utilization(plan.vllm_version)
    return util_steps(float(util), util_direction(outcome, plan.engine))


def _limit_mm_per_prompt(plan, outcome: str) -> list:
    if plan.model.vision is None:
        return []
    lim = dict(plan.settings.get("limit_mm_per_prompt") or {})
    fam = plan.model.family
    modalities = fam.modalities(plan.vllm_version) if fam is not None else ("image",)
    # every modality besides image the family has in this version (video, MiniCPM-o's audio) off, one at a time,
    # then all of them; then one image, alone and with the others off
    others = [m for m in modalities if m != "image" and not isinstance(lim.get(m, 1), dict) and int(lim.get(m, 1))]
    image = int(lim.get("image", 1))
    out = [{**lim, m: 0} for m in others]
    if len(others) > 1:
        out.append({**lim, **dict.fromkeys(others, 0)})
    if image > 1:
        out.append({**lim, "image": 1})
        if others:
            out.append({**lim, "image": 1, **dict.fromkeys(others, 0)})
    return out


def _enforce_eager(plan, outcome: str) -> list:
    return [] if (plan.settings.get("enforce_eager") or plan.card.is_cpu) else [True]


def _skip_mm_profiling(plan, outcome: str) -> list:
    s = plan.settings
    ok = plan.model.vision is not None and plan.engine == "V1" and parse_version(plan.vllm_version) >= (0, 10, 1)
    return [True] if (ok and not s.get("skip_mm_profiling")) else []


def _mm_processor_kwargs(plan, outcome: str) -> list:
    """Each family's processor knobs (its data: Qwen max_pixels, InternVL max_patches with crop_to_patches,
    Gemma 3 pan-and-scan off, MiniCPM-V max_slice_nums), smaller first."""
    if plan.model.family is None or plan.family == "v0-legacy":
        return []  # the legacy dummy-data factory takes no processor kwargs
    steps = []
    for knob in plan.model.family.knobs:
        if knob.setting == "mm_processor_kwargs" and knob.applies(plan.settings):
            steps += [knob.setting_value(plan.settings, x) for x in knob.steps(knob.current(plan.settings))]
    fitted = size_knob_fix(plan)  # the largest value that plans ok (plan --fit KNOB), first
    if fitted is None:
        return steps
    first = fitted.at.overrides["mm_processor_kwargs"]
    return [first] + [x for x in steps if x != first]


def _kv_cache_memory_bytes(plan, outcome: str) -> list:
    if not (plan.engine == "V1" and parse_version(plan.vllm_version) >= (0, 10, 2)) and not plan.card.is_cpu:
        return []
    need = need_gib(plan)
    if outcome in UTIL_RAISE_CURES:
        base = max(need, 0.25)
        return [int(math.ceil(base * k * GiB / (256 * MiB)) * 256 * MiB) for k in (1, 1.5, 2, 4)]
    kv = term(plan, "kv_cache")
    if kv > need > 0:
        steps = [int(math.ceil(max(need, kv * f) * GiB / (256 * MiB)) * 256 * MiB) for f in (0.75, 0.5, 0.25)]
        # a pool far above the card (a typo's extra zeros): halving never gets there, so also the largest pool the
        # card leaves once the rest is resident (whole 256 MiB, rounded down)
        fits = float(plan.card.total_gib) - (resident_gib(plan) - kv)
        if need < fits < kv * 0.25:
            steps.append(int(math.floor(fits * GiB / (256 * MiB)) * 256 * MiB))
        return steps
    return []


def _dtype(plan, outcome: str) -> list:
    """float32 halves to the 16-bit dtype the card runs: bfloat16 from compute capability 8.0, else float16."""
    if DTYPES.get(plan.settings.get("dtype", "auto")) != 4:
        return []
    cap = plan.card.capability
    return ["float16" if cap is not None and cap < (8, 0) else "bfloat16"]


LADDERS = {
    "max_num_seqs": _max_num_seqs,
    "max_model_len": _max_model_len,
    "max_num_batched_tokens": _max_num_batched_tokens,
    "gpu_memory_utilization": _gpu_memory_utilization,
    "limit_mm_per_prompt": _limit_mm_per_prompt,
    "enforce_eager": _enforce_eager,
    "skip_mm_profiling": _skip_mm_profiling,
    "mm_processor_kwargs": _mm_processor_kwargs,
    "kv_cache_memory_bytes": _kv_cache_memory_bytes,
    "dtype": _dtype,
}


def ladder(setting: str, plan, outcome: str) -> list:
    """Candidate values for one setting, nearest first; [] when the setting does not apply here.

    UsageError for a setting outside SEARCHED."""
    if setting not in LADDERS:
        raise UsageError(f"unknown setting {setting!r}; accepted: {', '.join(SEARCHED)}")
    return LADDERS[setting](plan, outcome)


def relative_change(old, new) -> float:
    """|new - old| / |old| for numbers; 1.0 for booleans, dicts and unset values."""
    try:
        if isinstance(old, bool) or isinstance(new, bool) or old is None:
            return 1.0
        return abs(float(new) - float(old)) / abs(float(old))
    except (TypeError, ValueError, ZeroDivisionError):
        return 1.0
