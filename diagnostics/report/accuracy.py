"""The accuracy tables of `calibrate` (terminal text and docs/accuracy.md): coefficients, per-figure errors before
calibration / in-sample / leave-one-out, and one row per printed figure. Layout only; numbers from
diagnostics.predict.calibrate."""

from __future__ import annotations

from diagnostics.predict.accuracy import LABELS, UNITS
from diagnostics.predict.calibrate import GROUP_MIN, term_summary
from diagnostics.predict.coefficients import DEFAULT, FIELDS
from diagnostics.units import fmt_error

# the stated bounds docs/accuracy.md promises and tests/unit/test_report_accuracy.py checks: worst |error| in-sample
# per figure (fractions); leave-one-out where the data allow (None: too few figures to state one)
BOUNDS = {"weights_gib": (0.02, 0.02), "non_torch_gib": (0.75, 1.00), "activation_peak_gib": (0.25, 0.25),
          "peak_torch_gib": (0.05, None), "kv_cache_gib": (0.05, 0.10), "kv_cache_tokens": (0.05, 0.10)}


def _v(value) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(_v(x) for x in value) + ")"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def coefficient_rows(fit, spread: dict) -> list[list[str]]:
    """coefficient, built-in, fitted, leave-one-out spread (min - max), figures it rests on."""
    rows = []
    for name in FIELDS:
        fitted = getattr(fit.coefficients, name)
        used = fit.used.get(name) or (fit.used.get("non_torch_gib") if name == "nccl_extra_gib" else None)
        lo_hi = spread.get(name)
        rows.append([name, _v(getattr(DEFAULT, name)), _v(fitted) if used else "not fitted",
                     f"{lo_hi[0]:.4g} - {lo_hi[1]:.4g}" if used and lo_hi else "-",
                     f"{len(used)}: " + "; ".join(used) if used else "no figure"])
    return rows


def summary_rows(rows) -> list[list[str]]:
    """Per figure: n, median and worst |error| before, in-sample, leave-one-out, and the stated bound."""
    out = []
    for entry in term_summary(rows):
        cells = [LABELS.get(entry["figure"], entry["figure"]), str(entry["n"])]
        for which in ("before", "fitted", "loo"):
            med, worst = entry[which]
            cells.append("-" if med is None else f"{med * 100:.1f}% / {worst * 100:.1f}%")
        bound = BOUNDS.get(entry["figure"])
        cells.append("-" if bound is None else " / ".join("-" if b is None else f"{b * 100:.0f}%" for b in bound))
        out.append(cells)
    return out


def figure_rows(samples, rows) -> list[list[str]]:
    """One row per printed figure: case, model, card, version, figure, printed, before, fitted, LOO (+ errors)."""
    by = {s.label: s for s in samples}
    out = []
    for r in rows:
        s = by[r.sample]
        unit = UNITS.get(r.figure, "")
        fmt = (lambda x, unit=unit: "-" if x is None else (f"{x:,.0f}" if unit in ("tokens", "count") else f"{x:.2f}"))
        out.append([r.sample, getattr(s.model, "name", "-").rsplit("/", 1)[-1], s.card.name, s.version,
                    f"{LABELS.get(r.figure, r.figure)} [{unit}]", fmt(r.printed),
                    f"{fmt(r.before)} ({fmt_error(r.error('before'))})",
                    f"{fmt(r.fitted)} ({fmt_error(r.error('fitted'))})",
                    f"{fmt(r.loo)} ({fmt_error(r.error('loo'))})"])
    return out


COEF_HEAD = ["coefficient", "built-in", "fitted", "LOO spread", "figures"]
SUMMARY_HEAD = ["figure", "n", "before: median / worst", "in-sample", "leave-one-out", "bound (in / LOO)"]
FIGURE_HEAD = ["case", "model", "card", "vLLM", "figure", "printed", "before (error)", "fitted (error)",
               "leave-one-out (error)"]


def text(samples, fit, rows, spread, skipped) -> str:
    from tabulate import tabulate

    parts = [tabulate(coefficient_rows(fit, spread), headers=COEF_HEAD, tablefmt="simple"), "",
             tabulate(summary_rows(rows), headers=SUMMARY_HEAD, tablefmt="simple"), "",
             tabulate(figure_rows(samples, rows), headers=FIGURE_HEAD, tablefmt="simple")]
    parts += [f"skipped: {line}" for line in skipped]
    for name, coef in sorted(fit.groups.items()):
        parts.append(f"group {name}: its own " + ", ".join(f"{k}={_v(getattr(coef, k))}" for k in FIELDS
                                                            if getattr(coef, k) != getattr(fit.coefficients, k)))
    return "\n".join(parts)


TARGETS = {"activation_peak_gib": 0.25, "kv_cache_tokens": 0.05}  # issue #13: on cases not fitted on


def targets(rows) -> list[str]:
    """Issue #13's targets (activation within 25 %, KV tokens within 5 %, leave-one-out) against the data."""
    out = ["## Targets (leave-one-out)", ""]
    by = {e["figure"]: e for e in term_summary(rows)}
    for figure, bound in TARGETS.items():
        entry = by.get(figure)
        if entry is None or entry["loo"][1] is None:
            out.append(f"* {LABELS[figure]} within {bound * 100:.0f} %: no figure to test it on.")
            continue
        worst, n = entry["loo"][1], entry["n"]
        verdict = "met" if worst <= bound else "missed"
        out.append(f"* {LABELS[figure]} within {bound * 100:.0f} %: {verdict}, worst {worst * 100:.1f} % on {n} "
                   f"case{'s' if n != 1 else ''}" + (" (too few to call it shown)" if n < 3 else "") + ".")
    return out


def markdown(samples, fit, rows, spread, skipped, command: str) -> str:
    from tabulate import tabulate

    def md(body, head):
        return tabulate(body, headers=head, tablefmt="github", disable_numparse=True)

    out = ["# plan's accuracy against what vLLM printed", "",
           f"Generated by `{command}`; "
           "checked by `tests/unit/test_report_accuracy.py` (a figure's worst error past its bound fails).", "",
           "Error = (predicted - printed) / printed. *before*: the built-in coefficients; *in-sample*: the "
           "calibration fitted on every input below; *leave-one-out*: refitted without the case, then predicted "
           "(the error on a case the fit did not see).", "",
           "Where the figures come from: every input is a figure a user's vLLM printed in a public thread (the "
           "field cases); none was measured by us on a GPU (no GPU was at hand for issue #13). CPU-backend runs "
           "score plan too (`calibrate reports/<run>`), but the CPU backend prints only the KV pool, which a fixed "
           "`kv_cache_memory_bytes` makes exact.", "",
           *targets(rows), "",
           "## Per figure", "", md(summary_rows(rows), SUMMARY_HEAD), "",
           "## Coefficients", "", md(coefficient_rows(fit, spread), COEF_HEAD), "",
           "LOO spread: the coefficient's range over the leave-one-out refits. A wide one means one case decides "
           "it; with one figure per branch of the activation peak (max of the LLM pass and the sampler) a refit "
           "without the other case may assign a figure to the other branch, so read the spread, not only the "
           "value.", "",
           (f"Groups fitted on their own (>= {GROUP_MIN} figures of a term): " + ", ".join(sorted(fit.groups))
            if fit.groups else f"Groups (card architecture / vLLM family): none has {GROUP_MIN} figures of a term "
                               "of its own yet; every coefficient above is pooled."), "",
           "## Per case", "", md(figure_rows(samples, rows), FIGURE_HEAD), "", "## Inputs", ""]
    out += [f"* **{s.label}** ({s.card.name}, vLLM {s.version}, settings `{s.settings}`): {s.note}" for s in samples]
    out += ["", "Not fitted on:", ""] + [f"* {line}" for line in skipped]
    out += ["", "## Beyond the fit", "", "vLLM's own classes against the pure rules (weights, KV spec per layer) and "
            "the profile run's LLM pass on fake tensors against the formula, leave-one-out: docs/vllm-exact.md "
            "(issue #20; written by hand from tests/cpu_backend/test_vllm_exact_agreement.py and "
            "`python tests/tools/activation_check.py field`)."]
    return "\n".join(out) + "\n"
