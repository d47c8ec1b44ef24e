"""The counterfactual search: re-plan with one setting moved along its ladder, keep the smallest change that turns
the verdict to "ok"; when no single change does, the smallest combination (fewest settings, then fewest steps).

Every re-plan is diagnostics.predict.estimator.plan with the user's own overrides plus the change, so derived
defaults stay live (V0's max_num_batched_tokens follows max_model_len)."""

from __future__ import annotations

import itertools

from diagnostics.errors import UsageError
from diagnostics.explain.ladders import SEARCHED, ladder, relative_change, util_steps
from diagnostics.explain.model import Culprit, Explanation, Trial
from diagnostics.explain.terms import margin, shrunk_term, util_direction
from diagnostics.explain.words import ok_summary, plan_summary, why_sentence
from diagnostics.outcomes import MEMORY_FAILURES
from diagnostics.predict import estimator
from diagnostics.predict.exact import carry
from diagnostics.settings import default_gpu_memory_utilization


class Planner:
    """Re-plans one base plan with changes ({setting: value}), caching results; invalid combinations give None."""

    def __init__(self, base):
        self.base = base
        self.user = dict(base.overrides)
        self.cache: dict = {}

    def __call__(self, changes: dict):
        key = repr(sorted(changes.items(), key=lambda kv: kv[0]))
        if key not in self.cache:
            overrides = {k: v for k, v in {**self.user, **changes}.items() if v is not None}
            try:
                self.cache[key] = self._plan(overrides)
            except (UsageError, ValueError, KeyError, TypeError, ZeroDivisionError):
                self.cache[key] = None
        return self.cache[key]


    def _plan(self, overrides: dict):
        """The re-plan; with the base plan's vLLM figures where they still hold (predict.exact.carry)."""
        b = self.base
        p = estimator.plan(b.model, b.card, b.vllm_version, b.entrypoint, overrides=overrides,
                           coefficients=b.coefficients)
        exact = carry(b.exact, p.settings)
        if exact is None:
            return p
        return estimator.plan(b.model, b.card, b.vllm_version, b.entrypoint, overrides, b.coefficients, exact)


def search_one(planner: Planner, setting: str, outcome: str, accept) -> tuple[Trial | None, Trial | None]:
    """(first accepted change, change with the largest positive effect) along the setting's ladder."""
    base = planner.base
    first_ok, best = None, None
    for i, value in enumerate(ladder(setting, base, outcome), start=1):
        p = planner({setting: value})
        if p is None:
            continue
        t = Trial(setting, value, i, p, bool(accept(p)), margin(p, outcome) - margin(base, outcome))
        if outcome == "insufficient_free_memory" and p.verdict != outcome:
            if best is None or best.plan.verdict == outcome:
                best = t  # the nearest value that passes the start-up check; what fails next is another story
        elif best is None or (t.effect > best.effect + 1e-6 and best.plan.verdict == outcome):
            best = t
        if t.ok:
            first_ok = t
            break
    return first_ok, best


def combo_cost(combo: list[tuple[str, object, int]], base) -> tuple:
    """(settings changed, ladder steps, summed relative change): smaller is a smaller fix."""
    steps = sum(s for _, _, s in combo)
    rel = sum(relative_change(base.settings.get(k), v) for k, v, _ in combo)
    return (len(combo), steps, rel)


def _candidates(base, outcome: str, others: list[str], size: int, per_ladder: int) -> list[list]:
    """Combinations of `size` settings' ladder values; from size 2, also size-1 others + a utilization slot
    (value None, filled in by `_with_utilization`)."""
    def lads(names):
        return [[(n, v, i) for i, v in enumerate(ladder(n, base, outcome)[:per_ladder], start=1)] for n in names]

    out = []
    for names in itertools.combinations(others, size):
        out.extend(list(c) for c in itertools.product(*lads(names)))
    if size >= 2:
        for names in itertools.combinations(others, size - 1):
            out.extend(list(c) + [("gpu_memory_utilization", None, 0)] for c in itertools.product(*lads(names)))
    out.sort(key=lambda c: combo_cost([x for x in c if x[1] is not None], base))
    return out


def _with_utilization(planner: Planner, changes: dict, fixed: list, accept):
    """(cost, changes + the nearest utilization that the shrunken plan's own failure calls for), or None."""
    p = planner(changes)
    d = util_direction(p.verdict, p.engine) if p.verdict != "ok" else 0
    if d == 0:
        return None
    u = float(p.settings.get("gpu_memory_utilization") or default_gpu_memory_utilization(p.vllm_version))
    for i, x in enumerate(util_steps(u, d), start=1):
        q = planner({**changes, "gpu_memory_utilization": x})
        if q is not None and accept(q):
            return combo_cost(fixed + [("gpu_memory_utilization", x, i)], planner.base), \
                {**changes, "gpu_memory_utilization": x}
    return None


def find_fix(planner: Planner, outcome: str, helpful: list[str], accept, max_size: int = 3, per_ladder: int = 6):
    """Smallest combined change (fewest settings, then fewest ladder steps) that the estimator accepts; {} if none.

    Utilization joins a combination only in the direction the rest of the combination still needs: the seed
    fix (max_model_len=4096 + max_num_seqs=32 + gpu_memory_utilization=1.0 on a 3090) raises it because the
    shrunken profile then fails on KV space, not because raising it helps a profile-run OOM."""
    base = planner.base
    others = [s for s in helpful if s != "gpu_memory_utilization"][:5]
    for size in range(1, max_size + 1):
        best = None
        for combo in _candidates(base, outcome, others, size, per_ladder):
            fixed = [x for x in combo if x[1] is not None]
            if best is not None and combo_cost(fixed, base) >= best[0]:
                break
            changes = {k: v for k, v, _ in fixed}
            if planner(changes) is None:
                continue
            if len(fixed) == len(combo):
                if accept(planner(changes)):
                    return changes
                continue
            found = _with_utilization(planner, changes, fixed, accept)
            if found is not None and (best is None or found[0] < best[0]):
                best = found
        if best is not None:
            return best[1]
    return {}


def _trials(planner: Planner, outcome: str, accept) -> list[Trial]:
    d_util = util_direction(outcome, planner.base.engine)
    trials = []
    for setting in SEARCHED:
        if setting == "gpu_memory_utilization" and d_util == 0:
            continue  # never offered for a profile-run OOM (nor the wrong way round)
        ok, best = search_one(planner, setting, outcome, accept)
        if ok is not None:
            trials.append(ok)
        elif best is not None and best.effect > 0.01 and (outcome != "oom_weights" or setting == "dtype"):
            trials.append(best)  # helps, not enough alone (for weights, only a real fix or the dtype is worth naming)
    return trials


def counterfactuals(base, outcome: str, accept) -> tuple[list[Culprit], dict, Planner]:
    """(culprits best first, the smallest fix, the planner with its cache) for a plan failing with `outcome`;
    `accept(plan) -> bool` says which re-plans count as fixed."""
    planner = Planner(base)
    trials = _trials(planner, outcome, accept)
    singles = [t for t in trials if t.ok]
    if singles:
        # skip_mm_profiling last: it fixes the start by no longer guarding requests (issue 23)
        cheapest = min(singles, key=lambda t: (t.setting == "skip_mm_profiling", t.steps,
                                               relative_change(base.settings.get(t.setting), t.value)))
        fix = {cheapest.setting: cheapest.value}
    else:
        fix = find_fix(planner, outcome, [t.setting for t in sorted(trials, key=lambda t: -t.effect)], accept)
    culprits = []
    for t in trials:
        shown = t
        if not t.ok and t.setting in fix:
            p = planner({t.setting: fix[t.setting]})
            if p is not None:
                shown = Trial(t.setting, fix[t.setting], t.steps, p, False, margin(p, outcome) - margin(base, outcome))
        culprits.append(Culprit(
            setting=t.setting, value=base.settings.get(t.setting), suggested=shown.value,
            term=shrunk_term(t.setting, base, shown.plan), why=why_sentence(t.setting, base, shown, outcome, fix),
            fixes_alone=t.ok, effect_gib=shown.effect, steps=t.steps))
    culprits.sort(key=lambda c: (-c.effect_gib, relative_change(c.value, c.suggested)))
    return culprits, fix, planner


def _fix_after_dtype(plan, planner: Planner) -> dict:
    """dtype=float32 that does not fit: the 16-bit dtype first, then the smallest fix of what fails next."""
    values = ladder("dtype", plan, "oom_weights")
    halved = planner({"dtype": values[0]}) if values else None
    if halved is None or halved.verdict == "oom_weights":
        return {}
    if halved.verdict == "ok":
        return {"dtype": values[0]}
    if halved.verdict not in MEMORY_FAILURES:
        return {}
    _, rest, _ = counterfactuals(halved, halved.verdict, lambda p: p.verdict == "ok")
    return {"dtype": values[0], **rest} if rest else {}


def explain_plan(plan) -> Explanation:
    """Culprits and the smallest fix for a predicted failure (an "ok" plan has none).

    plan: a diagnostics.predict.estimator.Plan. Never raises for a plan the estimator made."""
    outcome = plan.verdict
    phase = plan.failing_phase or "unknown"
    if outcome == "ok":
        return Explanation("ok", "unknown", [], ok_summary(plan), {}, "estimate")
    if outcome not in MEMORY_FAILURES:  # e.g. "unknown" for the CPU pseudo-card without a known total
        return Explanation(outcome, phase, [], f"No memory verdict for this plan ({outcome}). "
                           + " ".join(n.rstrip(".") + "." for n in plan.notes),
                           {}, "estimate")
    culprits, fix, planner = counterfactuals(plan, outcome, lambda p: p.verdict == "ok")
    if not fix and outcome == "oom_weights":
        fix = _fix_after_dtype(plan, planner)
    summary = plan_summary(plan, outcome, phase, fix, planner(fix) if fix else None)
    return Explanation(outcome, phase, culprits, summary, fix, "estimate")
