"""explain_record(record): the culprits of an observed start-up, from its log record. vLLM's own printed figures
set the level (what failed by how much); the estimator only says how much each change moves a term, and every
sentence quotes vLLM's numbers, not ours."""

from __future__ import annotations

from diagnostics.explain import kv_advice, oom_advice
from diagnostics.explain.context import Ctx, record_card, record_model, record_plan, record_version
from diagnostics.explain.model import Explanation
from diagnostics.explain.oom_advice import BLAME_NONE
from diagnostics.explain.search import explain_plan
from diagnostics.explain.terms import util_direction
from diagnostics.explain.words import card_phrase, est
from diagnostics.outcomes import MEMORY_FAILURES
from diagnostics.versions import parse_version

ADVICE = {
    "kv_too_small": kv_advice.kv_too_small,
    "no_kv_cache": kv_advice.no_kv_cache,
    "insufficient_free_memory": oom_advice.insufficient_free_memory,
    "oom_profile": oom_advice.oom_profile,
    "oom_cuda_graph": oom_advice.after_profile,
    "oom_kv_alloc": oom_advice.after_profile,
    "oom_warmup": oom_advice.after_profile,
    "oom_request": oom_advice.after_profile,
}


def explain_record(record, model=None, card=None, coefficients=None) -> Explanation:
    """Explain an observed start-up from its log record; vLLM's printed figures win over the estimator.

    record: a diagnostics.logs.record.LogRecord; model: a model name or directory (default: the one the log
    names, if known); card: a card name or Card (default: the CPU backend or the card nearest the printed total);
    coefficients: Coefficients or a Calibration for the plan (`--calibration`; default: the built-in ones).
    The Explanation carries that plan (`.plan`, None when none could be made): model -> card -> plan is worked
    out here once. UsageError for an unknown model or card."""
    version = record_version(record)
    model_spec = record_model(record, model)
    card_obj = record_card(record, card)
    plan = record_plan(record, model_spec, card_obj, version, coefficients)
    exp = _explain(record, version, model_spec, card_obj, plan)
    exp.plan = plan
    return exp


def _explain(record, version: str, model_spec, card_obj, plan) -> Explanation:
    engine = record.engine or (plan.engine if plan is not None else ("V1" if parse_version(version) >= (0, 8, 0)
                                                                      else "V0"))
    ctx = Ctx(record, dict(record.numbers or {}), version, engine, model_spec, card_obj, plan)
    advice = ADVICE.get(record.outcome)
    if advice is None:
        exp = oom_advice.other(ctx)
        if record.outcome == "oom_unknown":
            predict_phase(exp, plan, model_spec is not None, card_obj is not None)
        return exp
    exp = advice(ctx)
    if plan is not None and plan.verdict != "ok" and not any(c.suggested is not None for c in exp.culprits):
        _add_plan_culprits(exp, plan, record.outcome, engine)
    elif plan is not None and plan.verdict == "ok" and record.outcome in MEMORY_FAILURES:
        exp.summary += (f" The estimator predicts these settings fit (start-up peak {est(plan.peak_gib)} GiB on "
                        f"{card_phrase(plan.card)}): look for other processes on the device, or a term it "
                        f"underrates.")
    return exp


def predict_phase(exp: Explanation, plan, model_known: bool, card_known: bool) -> None:
    """An OOM whose phase the log does not show: when the log echoes the model and the card (or --model/--card name
    them), say which phase `plan` expects to exceed the budget for these settings and the fix it re-plans, labelled
    as a prediction (exp.basis "log+estimate"); "no setting can be blamed" stays only when nothing is known.

    exp: the Explanation oom_advice.other gave (changed in place); plan: record_plan's Plan or None."""
    if plan is None:
        missing = [w for w, known in (("the model (--model)", model_known), ("the card (--card)", card_known))
                   if not known]
        if missing:
            exp.summary += (" Name " + " and ".join(missing) + " to have plan predict which phase would exceed the "
                            "budget for the settings this log echoes.")
        return
    budget = plan.card.total_gib * float(plan.settings.get("gpu_memory_utilization") or 0.9)
    where = f"plan for the settings this log echoes, on {card_phrase(plan.card)}, vLLM {plan.vllm_version}"
    if plan.verdict == "ok":
        exp.summary += (f" Prediction ({where}; not read from the log): these settings fit (start-up peak "
                        f"{est(plan.peak_gib)} GiB, budget {est(budget)} GiB), so the missing memory is one plan does "
                        f"not see: other processes on the device, or a term it underrates.")
        exp.basis = "log+estimate"
        return
    if plan.verdict not in MEMORY_FAILURES:
        return
    sub = explain_plan(plan)
    phase = (plan.failing_phase or "unknown").replace("_", " ")
    fix = ", ".join(f"{k}={v}" for k, v in sub.fix.items())
    exp.summary = exp.summary.replace(BLAME_NONE, " The log does not show which phase ran out of memory.")
    exp.summary += (f" Prediction ({where}; not read from the log): the {phase} phase is expected to exceed the "
                    f"budget (plan's verdict {plan.verdict}; start-up peak {est(plan.peak_gib)} GiB, budget "
                    f"{est(budget)} GiB)." + (f" Re-planned fix: {fix}." if fix else ""))
    for c in sub.culprits:
        c.fixes_alone = False  # a prediction: the log did not show this phase
    exp.culprits = exp.culprits + [c for c in sub.culprits if c.setting not in {k.setting for k in exp.culprits}]
    exp.fix = dict(sub.fix)
    exp.basis = "log+estimate"
    exp.notes.append(f"phase predicted by plan: {plan.failing_phase} ({plan.verdict})")


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
