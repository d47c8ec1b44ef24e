"""Which setting caused a start-up failure, found by counterfactual, said in one sentence with numbers.

`explain_plan(plan)` re-runs the estimator with one setting moved along a ladder (powers of two down for
max_num_seqs / max_model_len / max_num_batched_tokens, utilization up or down as the failure calls for, video
off, eager on, ...) and keeps the smallest change that turns the verdict to "ok". `explain_record(record)` does
the same from a log: vLLM's own printed figures set the level (what failed by how much), the estimator only says
how much each change moves a term, and every sentence quotes vLLM's numbers, not ours.

Advice follows the version: raising gpu_memory_utilization cures no_kv_cache / kv_too_small, lowering it cures
OOMs after the profile run (graphs, KV allocation, V0 warm-up/request) and a too-high request at start-up; it is
never offered for an OOM inside the profile run, which runs without any budget.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

from diagnostics.errors import UsageError
from diagnostics.outcomes import MEMORY_FAILURES
from diagnostics.units import GiB, MiB

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
)

UTIL_RAISE_CURES = frozenset({"no_kv_cache", "kv_too_small"})
UTIL_LOWER_CURES_V0 = frozenset({"oom_cuda_graph", "oom_kv_alloc", "oom_warmup", "oom_request", "insufficient_free_memory"})
UTIL_LOWER_CURES_V1 = frozenset({"oom_cuda_graph", "oom_kv_alloc", "insufficient_free_memory"})
UTIL_STEPS_UP = (0.8, 0.85, 0.9, 0.92, 0.95, 0.98, 1.0)
UTIL_STEPS_DOWN = (0.95, 0.92, 0.9, 0.85, 0.8, 0.75, 0.7, 0.6, 0.5)
KV_GIB_MARGIN = 0.05  # what a suggested utilization keeps above the bare minimum (rounding in vLLM's checks)
TERMS = ("weights", "non_torch", "encoder_profile", "activation_peak", "kv_cache", "cuda_graph")


@dataclass
class Culprit:
    setting: str
    value: object
    suggested: object
    term: str
    why: str
    fixes_alone: bool = True  # False: helps, but the verdict stays a failure without other changes
    effect_gib: float = 0.0  # how far the change moves the failing quantity (GiB; positive = towards "ok")
    steps: int = 1  # ladder steps from the current value

    def to_json(self) -> dict:
        return {"setting": self.setting, "value": self.value, "suggested": self.suggested, "term": self.term,
                "why": self.why, "fixes_alone": self.fixes_alone, "effect_gib": round(self.effect_gib, 3)}


@dataclass
class Explanation:
    outcome: str
    phase: str
    culprits: list[Culprit]
    summary: str
    fix: dict
    basis: str = "estimate"  # "estimate" (a plan), "log" (vLLM's figures), "log+estimate", "rules" (no figures)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"outcome": self.outcome, "phase": self.phase, "culprits": [c.to_json() for c in self.culprits],
                "summary": self.summary, "fix": dict(self.fix), "basis": self.basis}


# ----------------------------------------------------------------------------------------------- numbers in text

def num(x: float) -> str:
    """A GiB figure as vLLM prints it: at least 2 decimals, up to 4 when the figure has them (15.7985)."""
    s = f"{x:.4f}".rstrip("0")
    whole, _, dec = s.partition(".")
    return f"{whole}.{dec.ljust(2, '0')}"


def est(x: float) -> str:
    """An estimator figure: 2 decimals (its own precision is far lower than vLLM's printed 4)."""
    return f"{x:.2f}"


def _tok(n) -> str:
    return f"{int(n):,}"


def _show(value) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f'"{k}": {v}' for k, v in value.items()) + "}"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _assign(setting, value) -> str:
    return f"{setting}={_show(value)}"


# ------------------------------------------------------------------------------------------------ plan plumbing

def _version_tuple(text) -> tuple[int, int, int]:
    from diagnostics.versions import parse_version

    return tuple(parse_version(text))


def _user_overrides(plan) -> dict:
    """The settings the user chose: those that differ from what this version would pick by default.

    Re-planning with only these keeps derived defaults live (V0's max_num_batched_tokens follows max_model_len)."""
    given = getattr(plan, "overrides", None)
    if isinstance(given, dict):
        return dict(given)
    from diagnostics import settings as settings_mod

    try:
        defaults = settings_mod.resolve(plan.model, plan.card, plan.vllm_version, plan.entrypoint, {})
    except UsageError:
        return dict(plan.settings)
    return {k: v for k, v in plan.settings.items() if k not in defaults or defaults[k] != v}


class _Planner:
    """Re-plans one base plan with changes, caching results; invalid combinations come back as None."""

    def __init__(self, base):
        self.base = base
        self.user = _user_overrides(base)
        self.cache: dict = {}

    def __call__(self, changes: dict):
        key = repr(sorted(changes.items(), key=lambda kv: kv[0]))
        if key not in self.cache:
            from diagnostics import estimator

            overrides = {**self.user, **changes}
            overrides = {k: v for k, v in overrides.items() if v is not None}
            try:
                self.cache[key] = estimator.plan(self.base.model, self.base.card, self.base.vllm_version,
                                                 self.base.entrypoint, overrides=overrides)
            except (UsageError, ValueError, KeyError, TypeError, ZeroDivisionError):
                self.cache[key] = None
        return self.cache[key]


def _term(plan, name: str) -> float:
    t = (plan.components or {}).get(name)
    return float(t.value_gib) if t is not None else 0.0


def _budget_gib(plan) -> float:
    s = plan.settings
    if s.get("kv_cache_memory_bytes"):
        return None  # the budget is the fixed KV pool, utilization is ignored
    return float(plan.card.total_gib) * float(s.get("gpu_memory_utilization") or 0.0)


def _need_gib(plan) -> float:
    return int(plan.settings.get("max_model_len") or 0) * plan.model.kv_bytes_per_token() / GiB


def _margin(plan, outcome: str) -> float:
    """How far a plan is from failing the way `outcome` fails (GiB; bigger = safer)."""
    if outcome in UTIL_RAISE_CURES:
        if outcome == "kv_too_small" and plan.kv_cache_tokens is not None:
            spare = int(plan.kv_cache_tokens) - int(plan.settings.get("max_model_len") or 0)
            return spare * plan.model.kv_bytes_per_token() / GiB
        return _term(plan, "kv_cache")
    if outcome == "insufficient_free_memory":  # the start-up check reads util x total, whatever the KV knob says
        return -float(plan.card.total_gib) * float(plan.settings.get("gpu_memory_utilization") or 0.0)
    if outcome in AFTER_PROFILE:
        return -_resident_gib(plan)
    return -float(plan.peak_gib or 0.0)


AFTER_PROFILE = frozenset({"oom_cuda_graph", "oom_kv_alloc", "oom_warmup", "oom_request"})


def _resident_gib(plan) -> float:
    """What the device holds once the KV cache and the graphs exist (the profile's activations are freed)."""
    ctx = float(getattr(plan, "cuda_context_gib", 0.0) or 0.0)
    return ctx + sum(_term(plan, t) for t in ("weights", "non_torch", "kv_cache", "cuda_graph"))


def _failing_term(outcome: str, phase: str | None) -> str:
    if outcome == "oom_profile":
        return "encoder_profile" if phase == "vision_encoder" else "activation_peak"
    return {"no_kv_cache": "kv_cache", "kv_too_small": "kv_cache", "oom_kv_alloc": "kv_cache",
            "oom_cuda_graph": "cuda_graph", "oom_warmup": "activation_peak", "oom_request": "activation_peak",
            "insufficient_free_memory": "budget", "oom_weights": "weights"}.get(outcome, "activation_peak")


# ---------------------------------------------------------------------------------------------------- ladders

def _powers_below(current, floor: int) -> list[int]:
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


def util_direction(outcome: str, engine: str) -> int:
    """+1 raise, -1 lower, 0 utilization is no cure for this outcome on this engine."""
    if outcome in UTIL_RAISE_CURES:
        return 1
    lower = UTIL_LOWER_CURES_V0 if engine == "V0" else UTIL_LOWER_CURES_V1
    return -1 if outcome in lower else 0


def _has_video(plan) -> bool:
    return plan.model.vision is not None and plan.family != "v0-legacy"


def ladder(setting: str, plan, outcome: str) -> list:
    """Candidate values for one setting, nearest first; [] when the setting does not apply here."""
    s = plan.settings
    v = _version_tuple(plan.vllm_version)
    mm = plan.model.vision is not None
    is_cpu = bool(getattr(plan.card, "is_cpu", False))
    if setting == "max_num_seqs":
        return _powers_below(s.get("max_num_seqs"), 1)
    if setting == "max_model_len":
        return _powers_below(s.get("max_model_len"), 256)
    if setting == "max_num_batched_tokens":
        mbt = s.get("max_num_batched_tokens")
        floor = 512
        if plan.engine == "V0" and not s.get("enable_chunked_prefill"):
            floor = max(floor, int(s.get("max_model_len") or 0))  # V0 rejects MBT < max_model_len
        return _powers_below(mbt, floor)
    if setting == "gpu_memory_utilization":
        if s.get("kv_cache_memory_bytes"):
            return []
        u = float(s.get("gpu_memory_utilization") or 0.9)
        d = util_direction(outcome, plan.engine)
        if d > 0:
            return [x for x in UTIL_STEPS_UP if x > u + 1e-9]
        if d < 0:
            return [x for x in UTIL_STEPS_DOWN if x < u - 1e-9]
        return []
    if setting == "limit_mm_per_prompt":
        if not mm:
            return []
        lim = dict(s.get("limit_mm_per_prompt") or {})
        image, video = int(lim.get("image", 1)), int(lim.get("video", 1 if _has_video(plan) else 0))
        out = []
        if _has_video(plan) and video > 0:
            out.append({**lim, "video": 0})
        if image > 1:
            out.append({**lim, "image": 1})
            if _has_video(plan) and video > 0:
                out.append({**lim, "image": 1, "video": 0})
        return out
    if setting == "enforce_eager":
        return [] if (s.get("enforce_eager") or is_cpu) else [True]
    if setting == "skip_mm_profiling":
        return [True] if (mm and plan.engine == "V1" and v >= (0, 10, 1) and not s.get("skip_mm_profiling")) else []
    if setting == "mm_processor_kwargs":
        if not mm or plan.family == "v0-legacy":
            return []  # the legacy dummy-data factory takes no processor kwargs
        kw = dict(s.get("mm_processor_kwargs") or {})
        cur = int(kw.get("max_slice_nums", plan.model.vision.max_slice_nums))
        return [{**kw, "max_slice_nums": n} for n in _powers_below(cur, 1)]
    if setting == "kv_cache_memory_bytes":
        if not (plan.engine == "V1" and v >= (0, 10, 2)) and not is_cpu:
            return []
        need = _need_gib(plan)
        if outcome in UTIL_RAISE_CURES:
            base = max(need, 0.25)
            return [int(math.ceil(base * k * GiB / (256 * MiB)) * 256 * MiB) for k in (1, 1.5, 2, 4)]
        kv = _term(plan, "kv_cache")
        if kv > need > 0:
            return [int(math.ceil(max(need, kv * f) * GiB / (256 * MiB)) * 256 * MiB) for f in (0.75, 0.5, 0.25)]
        return []
    raise UsageError(f"unknown setting {setting!r}; accepted: {', '.join(SEARCHED)}")


def _relative_change(setting: str, old, new) -> float:
    try:
        if isinstance(old, bool) or isinstance(new, bool) or old is None:
            return 1.0
        return abs(float(new) - float(old)) / abs(float(old))
    except (TypeError, ValueError, ZeroDivisionError):
        return 1.0


# ------------------------------------------------------------------------------------------------- the search

@dataclass
class _Trial:
    setting: str
    value: object
    steps: int
    plan: object
    ok: bool
    effect: float


def _shrunk_term(setting: str, base, after) -> str:
    if setting == "gpu_memory_utilization":
        return "budget"
    if setting == "kv_cache_memory_bytes":
        return "kv_cache"
    drops = {t: _term(base, t) - _term(after, t) for t in TERMS if t != "kv_cache"}
    best = max(drops, key=drops.get)
    if drops[best] > 0.01:
        return best
    if setting == "max_model_len":
        return "kv_cache"  # one max_model_len request needs less KV
    return "kv_cache" if _term(after, "kv_cache") > _term(base, "kv_cache") + 0.01 else best


def _search_one(planner: _Planner, setting: str, outcome: str, accept) -> tuple[_Trial | None, _Trial | None]:
    """(first accepted change, change with the largest positive effect) along the setting's ladder."""
    base = planner.base
    first_ok, best = None, None
    for i, value in enumerate(ladder(setting, base, outcome), start=1):
        p = planner({setting: value})
        if p is None:
            continue
        effect = _margin(p, outcome) - _margin(base, outcome)
        t = _Trial(setting, value, i, p, bool(accept(p)), effect)
        if outcome == "insufficient_free_memory" and p.verdict != outcome:
            if best is None or best.plan.verdict == outcome:
                best = t  # the nearest value that passes the start-up check; what fails next is another story
        elif best is None or (effect > best.effect + 1e-6 and best.plan.verdict == outcome):
            best = t
        if t.ok:
            first_ok = t
            break
    return first_ok, best


def _card_phrase(card) -> str:
    if getattr(card, "is_cpu", False):
        return "the CPU backend's memory"
    return f"a {card.total_gib:.2f} GiB {card.label}"


def _profile_phrase(plan) -> str:
    pr = plan.profile or {}
    items, vit = pr.get("encoder_items"), pr.get("vit_tokens")
    if pr.get("encoder_skipped") or plan.settings.get("skip_mm_profiling"):
        return "no dummy items (the encoder is not profiled; a large real image can then run out of memory)"
    if not items:
        return ""
    modality = pr.get("modality") or "image"
    noun = f"dummy {modality}s" if int(items) != 1 else f"dummy {modality}"
    parts = [f"{_tok(items)} {noun}"]
    extra = []
    if pr.get("encoder_slices"):
        extra.append(f"{_tok(pr['encoder_slices'])} slice" + ("s" if int(pr["encoder_slices"]) != 1 else ""))
    if vit:
        extra.append(f"{_tok(vit)} ViT tokens")
    if extra:
        parts.append(f"({', '.join(extra)})")
    return " ".join(parts)


def why_sentence(setting: str, base, trial: _Trial, outcome: str, fix: dict | None = None) -> str:
    """One sentence a user understands: what the current value costs, what the suggested value gives."""
    cur = base.settings.get(setting)
    after = trial.plan
    term = _shrunk_term(setting, base, after)
    card = _card_phrase(base.card)
    if trial.ok:
        tail = f"which fits {card}"
    elif fix:
        tail = "not enough alone; combined: " + ", ".join(_assign(k, v) for k, v in fix.items())
    else:
        tail = "not enough alone"
    new = _assign(setting, trial.value)
    if term == "encoder_profile" and (base.profile or {}).get("encoder_items"):
        lead = f"{_assign(setting, cur)} makes the profile run push {_profile_phrase(base)} through the vision " \
               f"encoder, about {est(_term(base, 'encoder_profile'))} GiB"
        if setting == "max_model_len" and base.engine == "V0":
            lead += f" (it sets max_num_batched_tokens={_tok(base.settings.get('max_num_batched_tokens') or 0)})"
        res = _profile_phrase(after) or "no encoder profile"
        return f"{lead}; {new} brings it to {res} and the start-up peak to {est(after.peak_gib)} GiB, {tail}."
    if term == "activation_peak":
        return (f"{_assign(setting, cur)} sizes the profile run's language-model/sampler pass at about "
                f"{est(_term(base, 'activation_peak'))} GiB; {new} brings it to {est(_term(after, 'activation_peak'))} "
                f"GiB and the start-up peak to {est(after.peak_gib)} GiB, {tail}.")
    if term == "cuda_graph":
        return (f"with {_assign(setting, cur)} CUDA graphs take about {est(_term(base, 'cuda_graph'))} GiB outside "
                f"the profiled budget; {new} makes that {est(_term(after, 'cuda_graph'))} GiB, so the device holds "
                f"{est(_resident_gib(after))} GiB once KV cache and graphs exist, {tail}.")
    if term == "budget" and outcome == "insufficient_free_memory":
        ctx = float(getattr(base, "cuda_context_gib", 0.0) or 0.0)
        b0, b1 = _budget_gib(base) or 0.0, _budget_gib(after) or 0.0
        nxt = "" if after.verdict in ("ok", outcome) else f" (then it fails with {after.verdict})"
        return (f"{_assign(setting, cur)} asks for {est(b0)} GiB up front but only about "
                f"{est(base.card.total_gib - ctx)} GiB is free once the CUDA context exists; {new} asks for "
                f"{est(b1)} GiB{nxt}, {tail}.")
    if term == "budget":
        b0, b1 = _budget_gib(base), _budget_gib(after)
        if setting == "gpu_memory_utilization" and b0 is not None and b1 is not None:
            if trial.value > (cur or 0):
                return (f"{_assign(setting, cur)} gives vLLM {est(b0)} GiB of {est(base.card.total_gib)} GiB and "
                        f"weights + profile peak + non-torch leave {est(_term(base, 'kv_cache'))} GiB for the KV "
                        f"cache; {new} gives {est(b1)} GiB, leaving {est(_term(after, 'kv_cache'))} GiB "
                        f"({_tok(after.kv_cache_tokens or 0)} tokens), {tail}.")
            return (f"{_assign(setting, cur)} lets the KV cache grow to {est(_term(base, 'kv_cache'))} GiB, so "
                    f"weights + KV + CUDA graphs (~{est(_term(base, 'cuda_graph'))} GiB, not in the budget) need "
                    f"{est(_resident_gib(base))} GiB; {new} caps the KV cache at {est(_term(after, 'kv_cache'))} GiB "
                    f"and the total at {est(_resident_gib(after))} GiB, {tail}.")
    if term == "kv_cache":
        mml = int(after.settings.get("max_model_len") or 0)
        kv_tokens = after.kv_cache_tokens
        if setting == "max_model_len":
            return (f"{_assign(setting, cur)} needs {est(_need_gib(base))} GiB of KV cache for one request but the "
                    f"pool holds {_tok(base.kv_cache_tokens or 0)} tokens ({est(_term(base, 'kv_cache'))} GiB); "
                    f"{new} needs {est(_need_gib(after))} GiB, {tail}.")
        if setting == "kv_cache_memory_bytes":
            lead = (f"kv_cache_memory_bytes={cur} ({est(cur / GiB)} GiB) holds {_tok(base.kv_cache_tokens or 0)} "
                    f"tokens" if cur else f"kv_cache_memory_bytes (unset) leaves the KV pool to "
                    f"gpu_memory_utilization ({est(_term(base, 'kv_cache'))} GiB)")
            return (f"{lead}; {_assign(setting, trial.value)} "
                    f"({est(trial.value / GiB)} GiB) fixes it at {_tok(kv_tokens or 0)} tokens, enough for "
                    f"max_model_len={_tok(mml)}, {tail}.")
        return (f"{_assign(setting, cur)} leaves {est(_term(base, 'kv_cache'))} GiB for the KV cache; {new} leaves "
                f"{est(_term(after, 'kv_cache'))} GiB, {tail}.")
    return (f"{_assign(setting, cur)} -> {new} moves {term} from {est(_term(base, term))} to "
            f"{est(_term(after, term))} GiB and the start-up peak to {est(after.peak_gib)} GiB, {tail}.")


def _combo_cost(combo: list[tuple[str, object, int]], base) -> tuple:
    steps = sum(s for _, _, s in combo)
    rel = sum(_relative_change(k, base.settings.get(k), v) for k, v, _ in combo)
    return (len(combo), steps, rel)


def _find_fix(planner: _Planner, outcome: str, helpful: list[str], accept, max_size: int = 3, per_ladder: int = 6):
    """Smallest combined change (fewest settings, then fewest ladder steps) that the estimator accepts.

    Utilization joins a combination only in the direction the rest of the combination still needs: the seed
    fix (max_model_len=4096 + max_num_seqs=32 + gpu_memory_utilization=1.0 on a 3090) raises it because the
    shrunken profile then fails on KV space, not because raising it helps a profile-run OOM."""
    base = planner.base
    others = [s for s in helpful if s != "gpu_memory_utilization"][:5]
    for size in range(1, max_size + 1):
        candidates = []
        for names in itertools.combinations(others, size):
            lads = [[(n, v, i) for i, v in enumerate(ladder(n, base, outcome)[:per_ladder], start=1)] for n in names]
            candidates.extend(list(c) for c in itertools.product(*lads))
        # utilization as the last member of a combination of size-1 others
        if size >= 2:
            for names in itertools.combinations(others, size - 1):
                lads = [[(n, v, i) for i, v in enumerate(ladder(n, base, outcome)[:per_ladder], start=1)]
                        for n in names]
                candidates.extend(list(c) + [("gpu_memory_utilization", None, 0)] for c in itertools.product(*lads))
        candidates.sort(key=lambda c: _combo_cost([x for x in c if x[1] is not None], base))
        best = None
        for combo in candidates:
            fixed = [x for x in combo if x[1] is not None]
            if best is not None and _combo_cost(fixed, base) >= best[0]:
                break
            changes = {k: v for k, v, _ in fixed}
            p = planner(changes)
            if p is None:
                continue
            if len(fixed) == len(combo):
                if accept(p):
                    return changes
                continue
            d = util_direction(p.verdict, p.engine) if p.verdict != "ok" else 0
            if d == 0:
                continue
            ups = UTIL_STEPS_UP if d > 0 else UTIL_STEPS_DOWN
            u = float(p.settings.get("gpu_memory_utilization") or 0.9)
            for i, x in enumerate([x for x in ups if (x > u + 1e-9 if d > 0 else x < u - 1e-9)], start=1):
                q = planner({**changes, "gpu_memory_utilization": x})
                if q is not None and accept(q):
                    cost = _combo_cost(fixed + [("gpu_memory_utilization", x, i)], base)
                    if best is None or cost < best[0]:
                        best = (cost, {**changes, "gpu_memory_utilization": x})
                    break
        if best is not None:
            return best[1]
    return {}


def _counterfactuals(base, outcome: str, phase: str | None, accept):
    planner = _Planner(base)
    d_util = util_direction(outcome, base.engine)
    trials = []
    for setting in SEARCHED:
        if setting == "gpu_memory_utilization" and d_util == 0:
            continue  # never offered for a profile-run OOM (nor the wrong way round)
        ok, best = _search_one(planner, setting, outcome, accept)
        if ok is not None:
            trials.append(ok)
        elif best is not None and best.effect > 0.01 and outcome != "oom_weights":
            trials.append(best)  # helps, not enough alone (for weights, only a real fix is worth naming)
    singles = [t for t in trials if t.ok]
    if singles:
        cheapest = min(singles, key=lambda t: (t.steps, _relative_change(t.setting, base.settings.get(t.setting),
                                                                          t.value)))
        fix = {cheapest.setting: cheapest.value}
    else:
        helpful = [t.setting for t in sorted(trials, key=lambda t: -t.effect)]
        fix = _find_fix(planner, outcome, helpful, accept)
    culprits = []
    for t in trials:
        shown = t
        if not t.ok and t.setting in fix:
            p = planner({t.setting: fix[t.setting]})
            if p is not None:
                shown = _Trial(t.setting, fix[t.setting], t.steps, p, False,
                               _margin(p, outcome) - _margin(base, outcome))
        culprits.append(Culprit(
            setting=t.setting, value=base.settings.get(t.setting), suggested=shown.value,
            term=_shrunk_term(t.setting, base, shown.plan), why=why_sentence(t.setting, base, shown, outcome, fix),
            fixes_alone=t.ok, effect_gib=shown.effect, steps=t.steps))
    culprits.sort(key=lambda c: (-c.effect_gib, _relative_change(c.setting, c.value, c.suggested)))
    return culprits, fix, planner


def explain_plan(plan) -> "Explanation":
    """Culprits and the smallest fix for a predicted failure (an "ok" plan has none)."""
    outcome = plan.verdict
    phase = plan.failing_phase or "unknown"
    if outcome == "ok":
        return Explanation("ok", "unknown", [], _ok_summary(plan), {}, "estimate")
    if outcome not in MEMORY_FAILURES:  # e.g. "unknown" for the CPU pseudo-card without a known total
        notes = list(getattr(plan, "notes", []) or [])
        return Explanation(outcome, phase, [], f"No memory verdict for this plan ({outcome}). " + " ".join(notes),
                           {}, "estimate")
    culprits, fix, planner = _counterfactuals(plan, outcome, phase, lambda p: p.verdict == "ok")
    summary = _plan_summary(plan, outcome, phase, culprits, fix, planner)
    return Explanation(outcome, phase, culprits, summary, fix, "estimate")


def _ok_summary(plan) -> str:
    kv = plan.kv_cache_tokens
    return (f"Predicted to start: start-up peak {est(plan.peak_gib)} GiB on {_card_phrase(plan.card)}"
            + (f", KV cache {_tok(kv)} tokens." if kv else "."))


def _plan_summary(plan, outcome, phase, culprits, fix, planner) -> str:
    head = {
        "oom_profile": f"The profile run would run out of memory ({phase.replace('_', ' ')}): predicted peak "
                       f"{est(plan.peak_gib)} GiB on {_card_phrase(plan.card)}.",
        "no_kv_cache": f"Nothing would be left for the KV cache ({est(_term(plan, 'kv_cache'))} GiB) after weights "
                       f"and the profile run.",
        "kv_too_small": f"The KV cache would hold {_tok(plan.kv_cache_tokens or 0)} tokens, fewer than "
                        f"max_model_len={_tok(plan.settings.get('max_model_len') or 0)}.",
        "oom_cuda_graph": f"CUDA graph capture would run out of memory (about {est(_term(plan, 'cuda_graph'))} GiB "
                          f"outside the budget).",
        "insufficient_free_memory": "The requested share of memory would exceed what is free at start-up.",
        "oom_weights": f"The weights ({est(_term(plan, 'weights'))} GiB) would not fit on {_card_phrase(plan.card)}; "
                       f"none of the searched settings changes weight memory (cpu_offload_gb, a quantized "
                       f"checkpoint or tensor parallelism do).",
        "oom_kv_alloc": f"Allocating the KV cache ({est(_term(plan, 'kv_cache'))} GiB) would run out of memory.",
    }.get(outcome, f"Predicted outcome {outcome} in phase {phase}.")
    if fix:
        p = planner(fix)
        tail = f" Smallest fix: {', '.join(_assign(k, v) for k, v in fix.items())}"
        if p is not None:
            tail += f" (peak {est(p.peak_gib)} GiB" + (f", KV {_tok(p.kv_cache_tokens)} tokens)." if p.kv_cache_tokens
                                                      else ").")
        return head + tail
    return head + " No change of the searched settings fits this card."


# ------------------------------------------------------------------------------------------------ from a log

def _record_model(record, model):
    from diagnostics import models

    if model is not None:
        return models.get_model(model)
    hay = " ".join(str(v) for v in (record.settings or {}).values())
    hay += " " + " ".join(str(x) for x in (getattr(record, "evidence", None) or []))
    hay += " " + str(getattr(record, "error_line", "") or "")
    low = hay.lower().replace(".", "_")
    if "minicpm-v-2_6" in low or "minicpm_v_2_6" in low:
        return models.get_model("minicpm-v-2_6")
    return None


def _record_card(record, card):
    from diagnostics import cards

    if card is not None:
        return cards.get_card(card)
    err = str(getattr(record, "error_line", "") or "")
    if (record.platform or "") == "cpu" or "on node 0" in err or "CPU backend" in err:
        return cards.get_card(cards.CPU_CARD)
    total = (record.numbers or {}).get("gpu_total_gib") or (record.numbers or {}).get("oom_total_gib")
    if total:
        gpu = [c for c in cards.list_cards() if not getattr(c, "is_cpu", False)]
        return min(gpu, key=lambda c: abs(c.total_gib - float(total)))
    return None


def _record_version(record) -> str:
    from diagnostics.versions import NEWEST, parse_version

    try:
        return str(parse_version(record.vllm_version)) if record.vllm_version else NEWEST
    except UsageError:
        return NEWEST


def _record_plan(record, model_spec, card, version):
    if model_spec is None or card is None or getattr(card, "is_cpu", False):
        return None
    from diagnostics import estimator
    from diagnostics.settings import KNOWN_SETTINGS

    from diagnostics.settings import check_setting, setting_available

    overrides = {}
    for k, v in (record.settings or {}).items():
        if k not in KNOWN_SETTINGS or v is None:
            continue
        try:
            if setting_available(k, version):
                overrides[k] = check_setting(k, v)
        except UsageError:
            continue  # a value the log printed in a form we do not plan with (e.g. an odd dtype): leave default
    if record.engine == "V0" and _version_tuple(version) >= (0, 7, 0) and "use_v1" not in overrides:
        overrides["use_v1"] = False
    for attempt in (overrides, {k: v for k, v in overrides.items() if k != "use_v1"}):
        try:
            return estimator.plan(model_spec, card, version, "llm", overrides=attempt)
        except (UsageError, ValueError, TypeError, KeyError):
            continue
    return None


def _setting(record, key, numbers_key=None):
    n = record.numbers or {}
    if numbers_key and n.get(numbers_key) is not None:
        return n[numbers_key]
    return (record.settings or {}).get(key)


def _breakdown(n: dict) -> str:
    """vLLM's own figures, in its words, for every summary that has them."""
    parts = []
    if n.get("gpu_total_gib") is not None and n.get("gpu_memory_utilization") is not None:
        budget = n.get("budget_gib", n.get("requested_gib", round(n["gpu_total_gib"] * n["gpu_memory_utilization"], 2)))
        parts.append(f"budget {num(n['gpu_total_gib'])} GiB x {n['gpu_memory_utilization']:.2f} = {num(budget)} GiB")
    for key, label in (("weights_gib", "weights"), ("non_torch_gib", "non-torch"),
                       ("activation_peak_gib", "activation peak"), ("cuda_graph_gib", "CUDA graphs"),
                       ("kv_cache_gib", "KV cache")):
        if n.get(key) is not None:
            parts.append(f"{label} {num(n[key])} GiB")
    if n.get("kv_cache_tokens") is not None:
        parts.append(f"KV cache {_tok(n['kv_cache_tokens'])} tokens")
    if n.get("gpu_blocks") is not None:
        parts.append(f"{_tok(n['gpu_blocks'])} GPU blocks")
    if n.get("encoder_budget_tokens") is not None:
        items = n.get("encoder_items")
        parts.append(f"encoder budget {_tok(n['encoder_budget_tokens'])} tokens"
                     + (f" profiled with {_tok(items)} {n.get('encoder_modality') or 'multimodal'} items"
                        if items is not None else ""))
    return ("vLLM's own figures: " + "; ".join(parts) + ".") if parts else ""


def _printed_budget(n: dict, total, util) -> float:
    """total x util as vLLM printed it (budget / requested line) when it did, else computed."""
    for key in ("budget_gib", "requested_gib"):
        if n.get(key) is not None:
            return float(n[key])
    return float(total) * float(util or 0.0)


def _ceil2(x: float) -> float:
    return math.ceil(round(x * 100, 6)) / 100


def _floor2(x: float) -> float:
    return math.floor(round(x * 100, 6)) / 100


def _estimated_effects(plan, outcome: str, metric) -> list[tuple[str, object, int, float]]:
    """(setting, value, steps, GiB the estimator says the change frees) for every ladder value, nearest first."""
    if plan is None:
        return []
    planner = _Planner(plan)
    out = []
    for setting in SEARCHED:
        if setting in ("gpu_memory_utilization", "kv_cache_memory_bytes"):
            continue  # handled from the log's own figures
        for i, value in enumerate(ladder(setting, plan, outcome), start=1):
            p = planner({setting: value})
            if p is not None:
                out.append((setting, value, i, metric(plan) - metric(p), p))
    return out


def _first_enough(effects, need_gib: float):
    """Per setting, the nearest value whose estimated saving covers `need_gib` (else the biggest saving)."""
    by_setting: dict[str, tuple] = {}
    for setting, value, steps, saved, p in effects:
        cur = by_setting.get(setting)
        enough = saved >= need_gib
        if cur is None or (enough and not cur[4]) or (not cur[4] and saved > cur[3] + 1e-6):
            by_setting[setting] = (setting, value, steps, saved, enough, p)
    return [v for v in by_setting.values() if v[3] > 0.01]


def explain_record(record, model=None, card=None) -> "Explanation":
    """Explain an observed start-up from its log record; vLLM's printed figures win over the estimator."""
    outcome, phase = record.outcome, record.phase or "unknown"
    n = dict(record.numbers or {})
    version = _record_version(record)
    model_spec = _record_model(record, model)
    card_obj = _record_card(record, card)
    plan = _record_plan(record, model_spec, card_obj, version)
    engine = record.engine or (plan.engine if plan is not None else ("V1" if _version_tuple(version) >= (0, 8, 0)
                                                                      else "V0"))
    handler = {
        "kv_too_small": _rec_kv_too_small,
        "no_kv_cache": _rec_no_kv,
        "insufficient_free_memory": _rec_insufficient,
        "oom_profile": _rec_oom_profile,
        "oom_cuda_graph": _rec_after_profile,
        "oom_kv_alloc": _rec_after_profile,
        "oom_warmup": _rec_after_profile,
        "oom_request": _rec_after_profile,
    }.get(outcome)
    ctx = _Ctx(record, n, version, engine, model_spec, card_obj, plan)
    if handler is None:
        return _rec_other(ctx)
    exp = handler(ctx)
    if plan is not None and plan.verdict != "ok" and not any(c.suggested is not None for c in exp.culprits):
        _add_plan_culprits(exp, plan, outcome, engine)
    elif plan is not None and plan.verdict == "ok" and outcome in MEMORY_FAILURES:
        exp.summary += (f" The estimator predicts these settings fit (start-up peak {est(plan.peak_gib)} GiB on "
                        f"{_card_phrase(plan.card)}): look for other processes on the device, or a term it "
                        f"underrates.")
    return exp


def _add_plan_culprits(exp: Explanation, plan, outcome: str, engine: str) -> None:
    """The log printed nothing to size a change: fall back on the estimator's counterfactual for these settings."""
    sub = explain_plan(plan)
    d = util_direction(outcome, engine)
    agree = plan.verdict == outcome
    kept = []
    for c in sub.culprits:
        if c.setting == "gpu_memory_utilization" and (d == 0 or (c.suggested - (c.value or 0)) * d <= 0):
            continue  # the observed failure decides the direction, never the estimate
        if not agree:
            c.fixes_alone = False
        kept.append(c)
    exp.culprits = kept + [c for c in exp.culprits if c.setting not in {k.setting for k in kept}]
    if agree:
        exp.fix = {k: v for k, v in sub.fix.items() if k != "gpu_memory_utilization" or d > 0}
    exp.summary += (" Estimate for these settings: " + sub.summary if agree else
                    f" The estimator predicts {plan.verdict} for these settings (the log shows {outcome}); its "
                    f"counterfactuals are hints only.")
    exp.basis = "log+estimate" if exp.basis in ("log", "log+estimate") else "estimate"


@dataclass
class _Ctx:
    record: object
    n: dict
    version: str
    engine: str
    model: object
    card: object
    plan: object

    @property
    def is_cpu(self) -> bool:
        err = str(getattr(self.record, "error_line", "") or "")
        return ((self.record.platform or "") == "cpu" or bool(getattr(self.card, "is_cpu", False))
                or "on node 0" in err or "CPU backend" in err)

    def setting(self, key, numbers_key=None):
        """What the log says (numbers first, then echoed settings), else this version's default from the plan."""
        v = _setting(self.record, key, numbers_key)
        if v is None and self.plan is not None:
            v = self.plan.settings.get(key)
        return v

    def total_gib(self):
        t = self.n.get("gpu_total_gib", self.n.get("oom_total_gib"))
        if t is None and self.card is not None and not getattr(self.card, "is_cpu", False):
            t = self.card.total_gib
        return t

    def has_kv_bytes_knob(self) -> bool:
        return self.is_cpu or (self.engine == "V1" and _version_tuple(self.version) >= (0, 10, 2))

    def basis(self) -> str:
        printed = any(k in self.n for k in ("weights_gib", "activation_peak_gib", "kv_cache_gib", "oom_tried_gib",
                                            "estimated_max_model_len", "kv_cache_tokens", "gpu_blocks", "free_gib",
                                            "requested_gib", "budget_gib"))
        if printed and self.plan is not None:
            return "log+estimate"
        return "log" if printed else ("estimate" if self.plan is not None else "rules")


def _explanation(ctx: _Ctx, culprits, head: str, fix: dict) -> Explanation:
    text = " ".join(x for x in (head, _breakdown(ctx.n)) if x)
    if fix:
        text += " Smallest fix: " + ", ".join(_assign(k, v) for k, v in fix.items()) + "."
    return Explanation(ctx.record.outcome, ctx.record.phase or "unknown", culprits, text, fix, ctx.basis())


def _kv_bytes_suggestion(current_bytes, have_tokens, want_tokens) -> int | None:
    if not current_bytes or not have_tokens:
        return None
    need = float(current_bytes) * float(want_tokens) / float(have_tokens)
    return int(math.ceil(need / MiB) * MiB)


def _rec_kv_too_small(ctx: _Ctx) -> Explanation:
    n = ctx.n
    mml = ctx.setting("max_model_len", "max_model_len")
    est_len = n.get("estimated_max_model_len")
    if est_len is None and n.get("kv_cache_tokens") is not None:
        est_len = n["kv_cache_tokens"]
    if est_len is None and n.get("gpu_blocks") is not None:
        est_len = int(n["gpu_blocks"]) * int((ctx.record.settings or {}).get("block_size") or 16)
    culprits = []
    fix = {}
    kv_bytes = (ctx.record.settings or {}).get("kv_cache_memory_bytes")
    pool = f"the KV pool holds {_tok(est_len)} tokens" if est_len is not None else "the KV pool is too small"
    if n.get("kv_cache_gib") is not None:
        pool += f" ({num(n['kv_cache_gib'])} GiB)"
    if mml is not None:
        sugg = int(est_len) if est_len is not None else None
        why = (f"max_model_len={_tok(mml)} needs KV space for {_tok(mml)} tokens in one request but {pool}"
               + (f" (vLLM's estimated maximum model length is {_tok(est_len)})" if n.get("estimated_max_model_len")
                  is not None else "")
               + (f": set max_model_len<={_tok(sugg)}" if sugg else ": lower max_model_len")
               + " or give the KV cache more memory.")
        culprits.append(Culprit("max_model_len", mml, sugg, "kv_cache", why, True,
                                float((mml - (est_len or 0)) * _kvpt(ctx) / GiB), 1))
        if sugg:
            fix = {"max_model_len": sugg}
    if ctx.has_kv_bytes_knob() and mml is not None:
        s = _kv_bytes_suggestion(kv_bytes, est_len, mml) if kv_bytes else (
            int(math.ceil(mml * _kvpt(ctx) / MiB) * MiB) if ctx.model is not None else None)
        if s:
            why = (f"with kv_cache_memory_bytes={_show(kv_bytes)} {pool}; kv_cache_memory_bytes={s} "
                   f"({est(s / GiB)} GiB) holds max_model_len={_tok(mml)}"
                   + (" (scaled from the printed estimate)" if kv_bytes else "") + ".")
            culprits.append(Culprit("kv_cache_memory_bytes", kv_bytes, s, "kv_cache", why, True,
                                    float((s - (kv_bytes or 0)) / GiB), 1))
    if ctx.has_kv_bytes_knob() and mml is not None and est_len and not any(
            c.setting == "kv_cache_memory_bytes" for c in culprits):
        why = (f"kv_cache_memory_bytes (or gpu_memory_utilization) sizes the KV pool: it must grow at least "
               f"{mml / est_len:.2f}x ({_tok(mml)} / {_tok(est_len)} tokens) to hold one max_model_len={_tok(mml)} request.")
        # The log did not echo the pool size, so the suggestion is the factor it must grow by.
        culprits.append(Culprit("kv_cache_memory_bytes", kv_bytes, f">= {mml / est_len:.2f}x the current pool",
                                "kv_cache", why, False, 0.0, 1))
    util = ctx.setting("gpu_memory_utilization", "gpu_memory_utilization")
    total = ctx.total_gib()
    if not kv_bytes and util is not None and ctx.model is not None and total and mml is not None and est_len is not None:
        extra = (mml - est_len) * _kvpt(ctx) / GiB
        new_u = _ceil2(float(util) + (extra + KV_GIB_MARGIN) / float(total))
        if new_u <= 1.0:
            why = (f"gpu_memory_utilization={util:g} leaves room for {_tok(est_len)} tokens; one "
                   f"max_model_len={_tok(mml)} request needs {est(extra)} GiB more, which "
                   f"gpu_memory_utilization={new_u:g} gives.")
            culprits.append(Culprit("gpu_memory_utilization", util, new_u, "budget", why, True, extra, 1))
    elif not kv_bytes and util is not None and not culprits[1:]:
        why = (f"gpu_memory_utilization={util:g} sets how much memory the KV cache gets; raising it (or setting "
               f"kv_cache_memory_bytes where supported) makes room for max_model_len={_tok(mml or 0)}.")
        culprits.append(Culprit("gpu_memory_utilization", util, _ceil2(min(1.0, float(util) + 0.05)), "budget",
                                why, False, 0.0, 1))
    head = (f"The KV cache is smaller than one max_model_len request: {pool} but max_model_len="
            f"{_tok(mml) if mml is not None else '?'}.")
    return _explanation(ctx, culprits, head, fix)


def _kvpt(ctx: _Ctx) -> float:
    return float(ctx.model.kv_bytes_per_token()) if ctx.model is not None else 0.0


def _rec_no_kv(ctx: _Ctx) -> Explanation:
    n = ctx.n
    total, util = n.get("gpu_total_gib"), ctx.setting("gpu_memory_utilization", "gpu_memory_utilization")
    parts = {k: n.get(k) for k in ("weights_gib", "activation_peak_gib", "non_torch_gib")}
    if parts["weights_gib"] is None and n.get("consumed_gib") is not None:  # 0.27+: weights + non-torch in one
        parts = {"consumed_gib": n["consumed_gib"], "activation_peak_gib": n.get("activation_peak_gib")}
    used = sum(v for v in parts.values() if v is not None) if all(v is not None for v in parts.values()) else None
    if used is not None and n.get("cuda_graph_gib") is not None and ctx.engine == "V1":
        used += n["cuda_graph_gib"]
    kv = n.get("kv_cache_gib")
    if kv is None and used is not None and total and util is not None:
        kv = float(total) * float(util) - used
    if used is None and kv is not None and n.get("requested_gib") is not None:
        used = float(n["requested_gib"]) - float(kv)  # vLLM printed the request and what was left of it
        parts = None
        if util is None and total:
            util = round(float(n["requested_gib"]) / float(total), 2)
    mml = ctx.setting("max_model_len", "max_model_len")
    need = (mml * _kvpt(ctx) / GiB) if (mml and ctx.model is not None) else 0.0
    culprits, fix = [], {}
    kv_bytes = (ctx.record.settings or {}).get("kv_cache_memory_bytes")
    if used is not None and total and util is not None:
        margin = need + KV_GIB_MARGIN
        new_u = _ceil2((used + margin) / float(total))
        ok = new_u <= 1.0
        if parts and "consumed_gib" in parts:
            what = (f"consumed (weights + non-torch) {num(parts['consumed_gib'])} + activation "
                    f"{num(parts['activation_peak_gib'])}")
        elif parts:
            what = (f"weights {num(parts['weights_gib'])} + activation {num(parts['activation_peak_gib'])} + "
                    f"non-torch {num(parts['non_torch_gib'])}")
        else:
            what = "non-KV memory"
        if n.get("cuda_graph_gib") is not None and ctx.engine == "V1" and parts:
            what += f" + CUDA graphs {num(n['cuda_graph_gib'])}"
        why = (f"{what} = {num(used)} GiB exceed total x util = {num(total)} x {util:.2f} = "
               f"{num(_printed_budget(n, total, util))} GiB: raise gpu_memory_utilization to >= "
               f"({num(used)} + {est(margin)}) / {num(total)} = {new_u:g}"
               + (f" ({est(need)} GiB is one max_model_len={_tok(mml)} request)" if need else "")
               + ("" if ok else ", more than the card has: shrink the profile run instead") + ".")
        if not kv_bytes:
            culprits.append(Culprit("gpu_memory_utilization", util, min(new_u, 1.0), "budget", why, ok,
                                    float(total) * (min(new_u, 1.0) - float(util)), 1))
            if ok:
                fix = {"gpu_memory_utilization": new_u}
    elif not kv_bytes:
        cur = f"gpu_memory_utilization={util:g}" if util is not None else "gpu_memory_utilization"
        why = (f"{cur} leaves nothing for the KV cache after weights and the profile run; raise it (vLLM's own "
               f"advice)" + (" or set kv_cache_memory_bytes" if ctx.has_kv_bytes_knob() else "")
               + ", or shrink the profile run (the log prints no figures to size the change).")
        culprits.append(Culprit("gpu_memory_utilization", util,
                                _ceil2(min(1.0, float(util) + 0.1)) if util is not None else None, "budget", why,
                                False, 0.0, 1))
    if kv_bytes and ctx.has_kv_bytes_knob():
        want = max(need, float(kv_bytes) / GiB * 2)
        s = int(math.ceil(want * GiB / MiB) * MiB)
        why = (f"kv_cache_memory_bytes={kv_bytes} is smaller than one KV block; kv_cache_memory_bytes={s} "
               f"({est(s / GiB)} GiB)" + (f" holds max_model_len={_tok(mml)}" if need else "") + ".")
        culprits.append(Culprit("kv_cache_memory_bytes", kv_bytes, s, "kv_cache", why, True, want, 1))
        fix = fix or {"kv_cache_memory_bytes": s}
    act = (parts or {}).get("activation_peak_gib")
    if act is not None and kv is not None:
        short = need + KV_GIB_MARGIN - kv
        for setting, value, steps, saved, enough, p in _first_enough(
                _estimated_effects(ctx.plan, "no_kv_cache", lambda q: _term(q, "activation_peak")
                                   + _term(q, "encoder_profile")), short):
            cur = ctx.plan.settings.get(setting)
            why = (f"the profile run's activation peak is {num(act)} GiB (vLLM's figure) with {_assign(setting, cur)}; "
                   f"{_assign(setting, value)} shrinks it by about {est(saved)} GiB (estimate), "
                   + ("enough to leave room for the KV cache." if enough else
                      f"short of the {est(short)} GiB needed."))
            culprits.append(Culprit(setting, cur, value, "activation_peak", why, enough, saved, steps))
    culprits.sort(key=lambda c: (not c.fixes_alone, -c.effect_gib))
    head = "No memory was left for the KV cache" + (f" ({num(kv)} GiB)" if kv is not None else "") + "."
    if ctx.is_cpu:
        head += " On the CPU backend gpu_memory_utilization is the share of NUMA node 0's memory."
    return _explanation(ctx, culprits, head, fix)


def _rec_insufficient(ctx: _Ctx) -> Explanation:
    n = ctx.n
    free, total = n.get("free_gib", n.get("oom_free_gib")), n.get("gpu_total_gib")
    util = ctx.setting("gpu_memory_utilization", "gpu_memory_utilization")
    culprits, fix = [], {}
    where = "node 0" if ctx.is_cpu else "the device"
    if free is not None and total:
        new_u = _floor2((float(free) - KV_GIB_MARGIN) / float(total))
        why = (f"gpu_memory_utilization={_show(util)} asks for {num(_printed_budget(n, total, util))} GiB but only "
               f"{num(free)} of {num(total)} GiB are free on {where} at start-up: set gpu_memory_utilization<="
               f"{new_u:g} or free memory used by other processes.")
        culprits.append(Culprit("gpu_memory_utilization", util, new_u, "budget", why, True,
                                float(total) * (float(util or 0) - new_u), 1))
        fix = {"gpu_memory_utilization": new_u}
    elif util is not None:
        why = (f"gpu_memory_utilization={_show(util)} asks for more than is free on {where}: lower it or stop "
               f"other processes.")
        culprits.append(Culprit("gpu_memory_utilization", util, _floor2(float(util) - 0.1), "budget", why, False))
    if ctx.has_kv_bytes_knob():
        why = ("kv_cache_memory_bytes sizes the KV cache directly and skips the start-up utilization check"
               + (" (the CPU backend's recommended setting)." if ctx.is_cpu else "."))
        culprits.append(Culprit("kv_cache_memory_bytes", (ctx.record.settings or {}).get("kv_cache_memory_bytes"),
                                64 * MiB if ctx.is_cpu else None, "kv_cache", why, True, 0.0, 1))
    head = f"Less memory is free on {where} than gpu_memory_utilization asks for."
    return _explanation(ctx, culprits, head, fix)


def _rec_oom_profile(ctx: _Ctx) -> Explanation:
    n = ctx.n
    tried, free = n.get("oom_tried_gib"), n.get("oom_free_gib")
    short = (float(tried) - float(free) + KV_GIB_MARGIN) if (tried is not None and free is not None) else None
    term = _failing_term("oom_profile", ctx.record.phase)
    culprits, fix = [], {}
    if ctx.plan is not None:
        if short is not None:
            effects = _first_enough(_estimated_effects(ctx.plan, "oom_profile", lambda q: float(q.peak_gib or 0.0)),
                                    short)
            for setting, value, steps, saved, enough, p in effects:
                cur = ctx.plan.settings.get(setting)
                lead = (f"{_assign(setting, cur)} makes the profile run push {_profile_phrase(ctx.plan)} through the "
                        f"vision encoder" if term == "encoder_profile" and _profile_phrase(ctx.plan)
                        else f"{_assign(setting, cur)} sizes the profile run")
                why = (f"{lead}; the run asked for {num(tried)} GiB more with {num(free)} GiB free, and "
                       f"{_assign(setting, value)} "
                       + (f"brings it to {_profile_phrase(p)}, " if term == "encoder_profile" and _profile_phrase(p)
                          else "")
                       + f"saving about {est(saved)} GiB (estimate), "
                       + ("enough." if enough else f"short of the {est(short)} GiB needed."))
                culprits.append(Culprit(setting, cur, value, _shrunk_term(setting, ctx.plan, p), why, enough, saved,
                                        steps))
            culprits.sort(key=lambda c: (not c.fixes_alone, -c.effect_gib, c.steps))
            if culprits and culprits[0].fixes_alone:
                best = min((c for c in culprits if c.fixes_alone), key=lambda c: c.steps)
                fix = {best.setting: best.suggested}
        elif ctx.plan.verdict == "oom_profile":
            sub = explain_plan(ctx.plan)
            culprits = [c for c in sub.culprits if c.setting != "gpu_memory_utilization"]
            fix = {k: v for k, v in sub.fix.items() if k != "gpu_memory_utilization"} if culprits else {}
        else:  # the estimator thinks it fits; the log says it did not: name what shrinks the peak, size unknown
            effects = _first_enough(_estimated_effects(ctx.plan, "oom_profile", lambda q: float(q.peak_gib or 0.0)),
                                    float("inf"))
            for setting, value, steps, saved, enough, p in effects:
                cur = ctx.plan.settings.get(setting)
                why = (f"{_assign(setting, cur)} sizes the profile run"
                       + (f" ({_profile_phrase(ctx.plan)})" if term == "encoder_profile" and _profile_phrase(ctx.plan)
                          else "")
                       + f"; {_assign(setting, value)} cuts its peak by about {est(saved)} GiB (estimate); the log "
                         f"does not say by how much the run overshot.")
                culprits.append(Culprit(setting, cur, value, _shrunk_term(setting, ctx.plan, p), why, False, saved,
                                        steps))
            culprits.sort(key=lambda c: (-c.effect_gib, c.steps))
    if not culprits:
        culprits = _rule_culprits(ctx, term)
    where = {"vision_encoder": " in the vision encoder", "language_model": " in the language-model pass",
             "sampler": " in the sampler"}.get(ctx.record.phase or "", "")
    head = "The profile run ran out of memory" + where
    if tried is not None and free is not None:
        head += f": it tried to allocate {num(tried)} GiB with {num(free)} GiB free"
        total = n.get("gpu_total_gib", n.get("oom_total_gib"))
        if total is not None:
            head += f" of {num(total)} GiB"
    head += ". gpu_memory_utilization does not help here: the profile run is not limited by it."
    return _explanation(ctx, culprits, head, fix)


def _rule_culprits(ctx: _Ctx, term: str) -> list[Culprit]:
    """Rules of thumb (vllm-memory.md §7) when neither figures nor a model let us compute a change."""
    s = ctx.record.settings or {}
    out = []
    if term == "encoder_profile":
        if ctx.engine == "V0":
            names = ("max_num_seqs", "max_model_len", "limit_mm_per_prompt")
            why = "in V0 the dummy image count is min(max_num_seqs, max_num_batched_tokens / tokens-per-image)"
        else:
            names = ("max_num_batched_tokens", "limit_mm_per_prompt")
            why = "in V1 the encoder budget equals max_num_batched_tokens, and video items are the largest"
            if _version_tuple(ctx.version) >= (0, 10, 1):
                names += ("skip_mm_profiling",)
    else:
        names = ("max_num_batched_tokens", "max_num_seqs")
        why = "the language-model pass covers max_num_batched_tokens tokens and the sampler max_num_seqs rows"
    for name in names:
        cur = s.get(name)
        sugg = {"limit_mm_per_prompt": {"image": 1, "video": 0}, "skip_mm_profiling": True}.get(name)
        if sugg is None and isinstance(cur, int) and cur > 1:
            sugg = cur // 2
        out.append(Culprit(name, cur, sugg, term, f"{name}: {why} (no figures to size the change).", False, 0.0, 1))
    return out


def _rec_after_profile(ctx: _Ctx) -> Explanation:
    n = ctx.n
    outcome = ctx.record.outcome
    if outcome == "oom_kv_alloc" and n.get("kv_cache_gib") is not None and n["kv_cache_gib"] < 0:
        return _rec_no_kv(ctx)  # a negative KV request (CPU backend): the budget is too small, not too big
    tried, free, total = n.get("oom_tried_gib"), n.get("oom_free_gib"), n.get("gpu_total_gib")
    util = ctx.setting("gpu_memory_utilization", "gpu_memory_utilization")
    culprits, fix = [], {}
    where = {"oom_cuda_graph": "CUDA graph capture", "oom_kv_alloc": "KV cache allocation",
             "oom_warmup": "the warm-up", "oom_request": "the first request"}[outcome]
    if util is not None and util_direction(outcome, ctx.engine) < 0 and not (ctx.record.settings or {}).get(
            "kv_cache_memory_bytes"):
        if tried is not None and free is not None and total:
            new_u = _floor2(float(util) - (float(tried) - float(free) + KV_GIB_MARGIN) / float(total))
            why = (f"gpu_memory_utilization={util:g} leaves {est(float(total) * (1 - float(util)))} GiB outside vLLM's "
                   f"budget but {where} asked for {num(tried)} GiB with {num(free)} GiB free: "
                   f"gpu_memory_utilization={new_u:g} leaves enough.")
            ok = True
        else:
            new_u = _floor2(float(util) - 0.05)
            why = (f"gpu_memory_utilization={util:g} leaves too little outside vLLM's budget for {where}: lower it, "
                   f"e.g. to {new_u:g}.")
            ok = False
        culprits.append(Culprit("gpu_memory_utilization", util, new_u, "budget", why, ok,
                                float(total or 0) * (float(util) - new_u), 1))
        if ok:
            fix = {"gpu_memory_utilization": new_u}
    s = ctx.record.settings or {}
    if outcome == "oom_cuda_graph" and not s.get("enforce_eager"):
        cg = n.get("cuda_graph_gib")
        why = ("enforce_eager=True skips CUDA graph capture" + (f" ({num(cg)} GiB)" if cg is not None else "")
               + "; fewer graphs also come from a smaller max_num_seqs.")
        culprits.append(Culprit("enforce_eager", bool(s.get("enforce_eager", False)), True, "cuda_graph", why, True,
                                float(cg or 0.0), 1))
        fix = fix or {"enforce_eager": True}
    if ctx.has_kv_bytes_knob() and outcome in ("oom_cuda_graph", "oom_kv_alloc"):
        kv = n.get("kv_cache_gib")
        if kv is not None and tried is not None and free is not None:
            s_bytes = int(max(float(kv) - (float(tried) - float(free)) - KV_GIB_MARGIN, 0.0) * GiB // MiB * MiB)
            if s_bytes > 0:
                why = (f"the KV cache took {num(kv)} GiB; kv_cache_memory_bytes={s_bytes} ({est(s_bytes / GiB)} GiB) "
                       f"frees what {where} lacked.")
                culprits.append(Culprit("kv_cache_memory_bytes", s.get("kv_cache_memory_bytes"), s_bytes, "kv_cache",
                                        why, True, float(kv) - s_bytes / GiB, 1))
    head = f"{where[0].upper() + where[1:]} ran out of memory after the profile run"
    if tried is not None and free is not None:
        head += f" (tried {num(tried)} GiB, {num(free)} GiB free)"
    head += "; lowering gpu_memory_utilization leaves more room for it." if any(
        c.setting == "gpu_memory_utilization" for c in culprits) else "."
    return _explanation(ctx, culprits, head, fix)


def _rec_other(ctx: _Ctx) -> Explanation:
    outcome = ctx.record.outcome
    if outcome == "ok":
        head = "The engine started."
    elif outcome == "unknown":
        head = "This does not read as a vLLM start-up that failed on memory (outcome unknown)."
    else:
        head = f"Outcome {outcome} in phase {ctx.record.phase or 'unknown'}"
        err = getattr(ctx.record, "error_line", None)
        head += f": {err.strip()}" if err else "."
        if outcome == "oom_unknown":
            head += " The log does not show which phase ran out of memory, so no setting can be blamed from it."
    return _explanation(ctx, [], head, {})
