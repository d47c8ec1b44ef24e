"""The content of the two single-start reports, built once and redacted: one log (`explain --format md`) and one
prediction (`plan --format md`). Pure: the Markdown layout is report/markdown.py, shared with the sweep report.

`log_report(record, answer, ...)` puts vLLM's printed figures beside plan's prediction for the settings the log
echoes (when the model and card are known), the environment the log shows, the culprits, the fix and whether the
fix re-plans to a start, and the decisive log lines. `plan_report(plan, explanation, fits=None)` is the same story
for a prediction; `fits` (plans found by a `--fit` search, issue #14) adds one row per plan.
GiB as floats and counts as ints throughout; formatting happens in the renderer (and in the verdict sentence).
"""

from __future__ import annotations

import json
import shlex

from diagnostics.errors import UsageError
from diagnostics.explain.context import record_card, record_model, record_plan, record_version
from diagnostics.predict.estimator import plan as replan
from diagnostics.redact import Redactor
from diagnostics.settings import vllm_refusal
from diagnostics.units import fmt_gib, fmt_tokens

# The figures both reports compare, in the order vLLM's start-up meets them: (numbers key, plan component or None).
FIGURES = (
    ("gpu_total_gib", None),
    ("weights_gib", "weights"),
    ("activation_peak_gib", "activation_peak"),
    ("non_torch_gib", "non_torch"),
    ("cuda_graph_gib", "cuda_graph"),
    ("kv_cache_gib", "kv_cache"),
    ("kv_cache_tokens", None),
    ("encoder_budget_tokens", None),
    ("encoder_items", None),
    ("peak_gib", None),
    ("oom_tried_gib", None),
    ("oom_free_gib", None),
    ("other_processes_gib", None),
)
# Where a figure has another name in LogRecord.numbers (the total the CUDA OOM message prints).
PRINTED_AS = {"gpu_total_gib": ("gpu_total_gib", "oom_total_gib")}
# Plan's profile-run key for the figures that are not components.
PROFILE_KEYS = {"encoder_budget_tokens": "encoder_budget_tokens", "encoder_items": "encoder_items"}
# Settings the log echoes that say nothing about memory, left out of the environment block.
QUIET_SETTINGS = ("seed", "device", "served_model_name", "tokenizer", "revision", "code_revision",
                  "tokenizer_revision", "disable_log_stats", "disable_log_requests")


def _value(v) -> str:
    """A setting value as the user writes it on the command line (JSON for dicts and booleans)."""
    return json.dumps(v) if isinstance(v, (dict, list, bool)) or v is None else str(v)


def settings_text(settings: dict) -> str:
    """`k=v, k=v` in the order given (what `--set` takes, JSON values)."""
    return ", ".join(f"{k}={_value(v)}" for k, v in settings.items())


def card_text(card) -> str:
    """`NVIDIA GeForce RTX 3090 (23.69 GiB)`; the CPU pseudo-card's total is read at run time."""
    size = "total read at run time" if card.is_cpu and not card.total_gib else fmt_gib(card.total_gib)
    return f"{card.label} ({size})"


# -- the figures table ------------------------------------------------------------------------------------
def plan_figures(plan) -> dict:
    """{key: (value, low, high, basis)} of a Plan for every FIGURES key it has (GiB floats, counts ints)."""
    out = {}
    for key, component in FIGURES:
        if component is not None:
            t = plan.components[component]
            out[key] = (t.value_gib, t.low_gib, t.high_gib, t.basis)
        elif key == "kv_cache_tokens" and plan.kv_cache_tokens is not None:
            out[key] = (plan.kv_cache_tokens, None, None, plan.components["kv_cache"].basis)
        elif key == "peak_gib":
            out[key] = (plan.peak_gib, None, None, "sum: CUDA context + weights + non-torch + activation peak")
        elif key == "gpu_total_gib" and not plan.card.is_cpu:
            out[key] = (plan.card.total_gib, None, None, f"the card profile ({plan.card.name})")
        elif key in PROFILE_KEYS and plan.profile.get(PROFILE_KEYS[key]) is not None:
            out[key] = (plan.profile[PROFILE_KEYS[key]], None, None, "derived: the profile run's dummy items")
    return out


def figure_rows(printed: dict | None, plan) -> list[dict]:
    """One row per FIGURES key that vLLM printed or plan predicts: {figure (the key), printed, predicted, low, high,
    basis, difference (predicted - printed, same unit), ratio (difference / printed; None when printed is 0 or
    absent)}. GiB figures in GiB, counts as counts."""
    printed = printed or {}
    predicted = plan_figures(plan) if plan is not None else {}
    rows = []
    for key, _ in FIGURES:
        p = next((printed[k] for k in PRINTED_AS.get(key, (key,)) if printed.get(k) is not None), None)
        p = p if isinstance(p, (int, float)) and not isinstance(p, bool) else None
        value, low, high, basis = predicted.get(key, (None, None, None, None))
        if p is None and value is None:
            continue
        diff = value - p if p is not None and value is not None else None
        rows.append({"figure": key, "printed": p, "predicted": value, "low": low, "high": high, "basis": basis,
                     "difference": diff, "ratio": diff / p if diff is not None and p else None})
    return rows


# -- whether a fix starts ---------------------------------------------------------------------------------
def check_fix(plan, fix: dict) -> dict | None:
    """plan's verdict for `plan`'s own settings with `fix` applied: {verdict, peak_gib, kv_cache_tokens, phase};
    None without a plan or a fix, or when the planner refuses the combination (UsageError)."""
    if plan is None or not fix:
        return None
    try:
        p = replan(plan.model, plan.card, plan.vllm_version, plan.entrypoint, {**plan.overrides, **fix},
                   plan.coefficients)
    except UsageError:
        return None
    if vllm_refusal(p.settings, p.model):  # `plan` would exit 2 on these settings: no re-plan to offer
        return None
    return {"verdict": p.verdict, "peak_gib": p.peak_gib, "kv_cache_tokens": p.kv_cache_tokens,
            "phase": p.failing_phase}


def replan_command(plan, fix: dict, model=None) -> str | None:
    """`python -m diagnostics plan --model M --card C --vllm V --set k=v ...`: plan's settings with the fix applied,
    as a shell command (values JSON, quoted); None without a plan or a fix. `model`: what the user passed."""
    if plan is None or not fix:
        return None
    words = ["python", "-m", "diagnostics", "plan", "--model", str(model or plan.model.name), "--card",
             plan.card.name, "--vllm", plan.vllm_version]
    if plan.entrypoint != "llm":
        words += ["--entrypoint", plan.entrypoint]
    for k, v in {**plan.overrides, **fix}.items():
        words += ["--set", f"{k}={v if isinstance(v, str) else json.dumps(v)}"]
    return " ".join(shlex.quote(w) for w in words)


def fix_sentence(fix: dict, check: dict | None, card_label: str | None, source: str = "the log shows") -> str:
    """`Fix: set max_num_seqs=128; plan predicts it starts (peak 18.52 GiB, KV cache 51,888 tokens on ...).`"""
    if not fix:
        return f"No setting change is suggested from what {source}."
    text = f"Fix: set {settings_text(fix)}"
    if check is None:
        return text + "; not re-planned (no plan for these settings)."
    where = f" on {card_label}" if card_label else ""
    if check["verdict"] == "ok":
        return (text + f"; plan predicts it starts (peak {fmt_gib(check['peak_gib'])}, KV cache "
                f"{fmt_tokens(check['kv_cache_tokens'])} tokens{where}).")
    return text + f"; plan predicts it still fails with {check['verdict']}{where}: change more than this."


def _cause(culprits: list[dict], fix: dict, verb: str = "caused") -> str:
    """The culprit the fix changes (else the first one that has a suggestion) as a sentence; without one, the
    settings named with no figures to size a change; "" without culprits."""
    sized = [c for c in culprits if c.get("suggested") is not None]
    if sized:
        c = next((c for c in sized if c.get("setting") in fix), sized[0])
        now = "unset" if c.get("value") is None else _value(c.get("value"))
        return f" The setting that {verb} it: {c['setting']}={now}."
    if not culprits:
        return ""
    names = ", ".join(c["setting"] for c in culprits)
    return f" Settings that drive it: {names} (the log prints no figures to size a change)."


# -- one log ----------------------------------------------------------------------------------------------
def _prediction_gap(record, model_spec, card, plan) -> str | None:
    """Why there is no prediction column (None when there is one)."""
    if plan is not None:
        return None
    if model_spec is None:
        return "the log names no model the planner knows; pass --model (minicpm-v-2_6 or a directory with config.json)"
    if card is None:
        return "the log prints no GPU total; pass --card (3090, a100-80, ...)"
    if card.is_cpu:
        return "this is vLLM's CPU backend; plan predicts GPU start-ups"
    return "the planner could not plan the settings this log echoes"


def log_verdict(record, answer: dict, plan, check: dict | None) -> str:
    """The one-paragraph verdict: outcome and phase, the setting that caused it, the fix, and whether the fix is
    predicted to start."""
    if record.vllm_version:
        who = f"vLLM {record.vllm_version}" + (f" ({record.engine})" if record.engine else "")
    else:
        who = f"vLLM ({record.engine + ', ' if record.engine else ''}version not in the log)"
    phase = "" if record.phase in (None, "unknown") else f" in the {record.phase.replace('_', ' ')} phase"
    if record.outcome == "ok":
        head = f"{who} started: the log shows no start-up failure."
    elif record.outcome == "unknown":
        reached = f"; the last phase it shows begun is {record.reached.replace('_', ' ')}" if record.reached else ""
        head = f"{who}: the log does not show how the start ended{phase} (no root-cause line){reached}."
    else:
        head = f"{who} stopped with {record.outcome}{phase}."
    parts = [head + _cause(answer["culprits"], answer["fix"])]
    if record.outcome != "ok" or answer["fix"]:
        parts.append(fix_sentence(answer["fix"], check, plan.card.label if plan is not None else None))
    if plan is not None:
        newest = "the newest known" + (" with V0 as its default engine" if record.engine == "V0" else "")
        assumed = "" if record.vllm_version else f", assuming vLLM {plan.vllm_version} ({newest})"
        parts.append(f"For the settings the log echoes (vLLM's defaults for the rest){assumed}, plan predicts "
                     f"{plan.verdict}"
                     + (f" ({plan.failing_phase})" if plan.failing_phase else "") + ".")
    return " ".join(parts)


def _log_environment(record, model_spec, card, card_given: bool) -> list[list[str]]:
    rows = [["vLLM", record.vllm_version or "not in the log"], ["engine", record.engine or "not in the log"],
            ["platform", record.platform or "not in the log"]]
    total = record.numbers.get("gpu_total_gib", record.numbers.get("oom_total_gib"))
    rows.append(["GPU memory (GiB)", fmt_gib(total, unit=False) if total is not None else "not in the log"])
    if card is not None:
        how = "--card" if card_given else ("the CPU backend" if card.is_cpu else "nearest built-in card to that total")
        rows.append(["card for the prediction", f"{card.name}: {card_text(card)}; {how}"])
    model = record.settings.get("model")
    rows.append(["model", str(model) if model else (model_spec.name if model_spec else "not named in the log")])
    rows.append(["last phase begun", record.reached.replace("_", " ") if record.reached else "not in the log"])
    if record.gpu_processes:
        rows.append(["processes on the GPU (OOM message)", ", ".join(
            f"{'this process' if p['this_process'] else 'pid ' + str(p['pid'])}: {fmt_gib(p['gib'])}"
            for p in record.gpu_processes)])
    echoed = {k: v for k, v in record.settings.items() if k != "model" and k not in QUIET_SETTINGS}
    if echoed:
        rows.append(["settings the log echoes", settings_text(echoed)])
    return rows


def log_report(record, answer: dict, model=None, card=None, redactor: Redactor | None = None) -> dict:
    """The redacted content of `explain --format md`.

    record: a logs.record.LogRecord; answer: commands.explain.explain()'s {"culprits", "summary", "fix", "plan"};
    model / card: what the user passed (--model, --card), None to take them from the log.
    UsageError for an unknown model or card."""
    model_spec = record_model(record, model)
    card_obj = record_card(record, card)
    # the plan explain() worked the answer out with (its --calibration too); planned here only for an answer
    # that does not carry one
    plan = answer["plan"] if "plan" in answer else record_plan(record, model_spec, card_obj, record_version(record))
    check = check_fix(plan, answer["fix"])
    notes = list(plan.notes) if plan is not None else []
    modality = record.numbers.get("encoder_modality")
    if plan is not None and modality and plan.profile.get("modality") and modality != plan.profile["modality"]:
        notes.append(f"vLLM profiled {modality} items; plan's profile run uses {plan.profile['modality']} items")
    content = {
        "kind": "log",
        "title": "vLLM start-up memory report: one log",
        "verdict": log_verdict(record, answer, plan, check),
        "outcome": record.outcome,
        "phase": record.phase,
        "figures": figure_rows(record.numbers, plan),
        "prediction_gap": _prediction_gap(record, model_spec, card_obj, plan),
        "notes": notes,
        "environment": _log_environment(record, model_spec, card_obj, card is not None),
        "summary": answer["summary"],
        "culprits": list(answer["culprits"]),
        "fix": dict(answer["fix"]),
        "fix_check": check,
        "replan_command": replan_command(plan, answer["fix"], model) if check is not None else None,
        "error_line": record.error_line,
        "evidence": [line for line in record.evidence if line != record.error_line],
    }
    return _redacted(content, redactor)


# -- one prediction ---------------------------------------------------------------------------------------
def plan_verdict(plan, explanation, check: dict | None) -> str:
    """The one-paragraph verdict of a prediction, worded like log_verdict."""
    where = f"{plan.model.name} on {card_text(plan.card)}, vLLM {plan.vllm_version} ({plan.engine})"
    if plan.verdict == "unknown":
        head = f"plan cannot tell whether {where} starts" + (f": {plan.notes[-1]}." if plan.notes else ".")
    elif plan.verdict == "ok":
        head = (f"plan predicts {where} starts: peak {fmt_gib(plan.peak_gib)}, KV cache "
                f"{fmt_tokens(plan.kv_cache_tokens)} tokens.")
    else:
        phase = f" in the {plan.failing_phase.replace('_', ' ')} phase" if plan.failing_phase else ""
        head = f"plan predicts {where} fails with {plan.verdict}{phase}."
    culprits = [c.to_json() for c in explanation.culprits] if explanation is not None else []
    parts = [head + _cause(culprits, explanation.fix if explanation else {}, "causes")]
    if plan.verdict not in ("ok", "unknown"):
        parts.append(fix_sentence(explanation.fix if explanation else {}, check, plan.card.label, "the plan shows"))
    return " ".join(parts)


def fit_rows(plan, fits) -> list[dict]:
    """One row per plan of a `--fit` search: {settings (what differs from `plan`'s), verdict, peak_gib,
    kv_cache_tokens}."""
    rows = []
    for p in fits or []:
        changed = {k: v for k, v in p.settings.items() if plan.settings.get(k) != v}
        rows.append({"settings": changed, "verdict": p.verdict, "peak_gib": p.peak_gib,
                     "kv_cache_tokens": p.kv_cache_tokens})
    return rows


def plan_report(plan, explanation=None, fits=None, redactor: Redactor | None = None) -> dict:
    """The redacted content of `plan --format md`: plan is a predict.estimator.Plan, explanation the
    explain.explain_plan() answer (None when there is none), fits the plans of a `--fit` search (or None)."""
    fix = dict(explanation.fix) if explanation is not None else {}
    check = check_fix(plan, fix)
    pr = plan.profile
    env = [["model", plan.model.name],
           ["card", f"{plan.card.name}: {card_text(plan.card)}"],
           ["vLLM", f"{plan.vllm_version} ({plan.engine}, {plan.family})"],
           ["entry point", plan.entrypoint],
           ["settings given", settings_text(plan.overrides) or "none (vLLM's defaults)"],
           ["profile run", f"{pr['encoder_items']} dummy {pr['modality'] or '-'} items, {pr['encoder_slices']} "
                           f"slices, {fmt_tokens(pr['vit_tokens'])} ViT tokens; LLM pass "
                           f"{fmt_tokens(pr['max_num_batched_tokens'])} tokens"]]
    content = {
        "kind": "plan",
        "title": f"vLLM start-up memory prediction: {plan.model.name} on {plan.card.name}",
        "verdict": plan_verdict(plan, explanation, check),
        "outcome": plan.verdict,
        "phase": plan.failing_phase,
        "figures": figure_rows(None, plan),
        "notes": list(plan.notes),
        "environment": env,
        "summary": explanation.summary if explanation is not None else "",
        "culprits": [c.to_json() for c in explanation.culprits] if explanation is not None else [],
        "fix": fix,
        "fix_check": check,
        "replan_command": replan_command(plan, fix) if check is not None else None,  # plan would refuse it
        "fits": fit_rows(plan, fits) if fits is not None else None,
    }
    return _redacted(content, redactor)


def _redacted(content: dict, redactor: Redactor | None) -> dict:
    red = redactor or Redactor.for_this_machine()
    red.learn(content)
    return red.obj(content)
