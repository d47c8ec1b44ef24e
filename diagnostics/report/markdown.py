"""Markdown that pastes cleanly into a GitHub issue, one look for the three reports: a sweep (`report`), one log
(`explain --format md`) and one prediction (`plan --format md`).

They share the figure labels (units in the label: `weights (GiB)`, `KV tokens`), the cell formatting
(diagnostics.units), the tables (GitHub format), the culprit lines, the folded log blocks and the footer, and
every one is cut to GitHub's 65,536-character limit by `fit_to_limit` (folded log lines go first).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from diagnostics.logs.figures import DERIVED_NUMBERS
from diagnostics.report.content import ENV_LABELS, peak_of
from diagnostics.units import fmt_error, fmt_gib, fmt_tokens, plural

GITHUB_LIMIT = 65_536  # characters GitHub accepts in an issue or comment body
LINE_CHARS = 2_000  # a longer log line is cut: a pasted blob says nothing about memory
KEEP_STEPS = (None, 40, 20, 10, 5, 0)  # folded log lines kept per block while the text is over the limit

# One label per figure, the unit in the label: the sweep's column headers and the single reports' row names.
LABELS = {
    "gpu_total_gib": "GPU memory (GiB)",  # as the sweep's environment block names it (content.ENV_LABELS)
    "peak_device_gib": "peak device (GiB)",
    "peak_process_gib": "peak process (GiB)",
    "weights_gib": "weights (GiB)",
    "activation_peak_gib": "activation peak (GiB)",
    "non_torch_gib": "non-torch (GiB)",
    "cuda_graph_gib": "CUDA graphs (GiB)",
    "kv_cache_gib": "KV cache (GiB)",
    "kv_cache_tokens": "KV tokens",
    "encoder_budget_tokens": "encoder budget (tokens)",
    "encoder_items": "encoder items",
    "peak_gib": "start-up peak (GiB)",
    "startup_s": "start-up (s)",
    "oom_tried_gib": "OOM: tried to allocate (GiB)",
    "oom_free_gib": "OOM: free then (GiB)",
    "other_processes_gib": "OOM: other processes (GiB)",
}
SWEEP_FIGURES = ("peak_device_gib", "peak_process_gib", "weights_gib", "activation_peak_gib", "kv_cache_gib",
                 "kv_cache_tokens", "startup_s")
TABLE_HEADERS = ["combination", "outcome"] + [LABELS[k] for k in SWEEP_FIGURES]
LOG_FIGURE_HEADERS = ["figure", "vLLM printed", "plan predicts", "plan range", "plan − vLLM"]
PLAN_FIGURE_HEADERS = ["figure", "plan predicts", "plan range", "basis"]
FIT_HEADERS = ["settings", "verdict", LABELS["peak_gib"], LABELS["kv_cache_tokens"]]


# -- cells ------------------------------------------------------------------------------------------------
def cell(key: str, value) -> str:
    """A figure in a table whose label names the unit: GiB with two decimals (tiny ones keep two significant
    digits), seconds with one, counts with thousands separators; `-` when unknown."""
    if value is None:
        return "-"
    if key.endswith("_gib"):
        return fmt_gib(value, unit=False)
    if key.endswith("_s"):
        return fmt_gib(value, 1, unit=False)
    return fmt_tokens(value)


def printed_cell(key: str, value) -> str:
    """A figure vLLM printed: as `cell`, but a printed 0 GiB is vLLM's rounding, not an empty pool. A figure derived
    from printed ones (logs.figures.DERIVED_NUMBERS) says so, and its 0 is a true 0."""
    if key in DERIVED_NUMBERS and value is not None:
        return f"{cell(key, value)} (derived: {DERIVED_NUMBERS[key]}; not printed)"
    return "< 0.05 (printed as 0)" if key.endswith("_gib") and value == 0 else cell(key, value)


def difference_cell(key: str, difference, ratio) -> str:
    """`+0.41 (+3%)`: plan's figure minus vLLM's, in the row's unit, and relative to vLLM's figure."""
    if difference is None:
        return "-"
    sign = "+" if difference > 0 else ("-" if difference < 0 else "±")
    text = sign + cell(key, abs(difference))
    if ratio is None:
        return text
    return text + (f" ({ratio:+.0%})" if abs(ratio) >= 0.01 else f" ({ratio:+.1%})")


def range_cell(key: str, low, high) -> str:
    return "-" if low is None or high is None or low == high else f"{cell(key, low)} – {cell(key, high)}"


def _value(v) -> str:
    """A setting's value as `--set` takes it: JSON for objects and booleans (`{"image": 1}`, `true`)."""
    return json.dumps(v) if isinstance(v, (dict, list, bool)) else str(v)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(headers: list[str], rows: list[list]) -> str:
    """A GitHub table; `|` inside a cell is escaped, numbers are left as the cells spell them."""
    from tabulate import tabulate  # lazily: the CLI imports the report package at start-up

    return tabulate([[_cell(x) for x in row] for row in rows], headers=headers, tablefmt="github",
                    disable_numparse=True)


# -- shared blocks ----------------------------------------------------------------------------------------
def fence_for(lines: list[str]) -> str:
    """A backtick fence longer than any backtick run inside the text, so a log cannot close it early."""
    longest = max((len(m) for line in lines for m in re.findall(r"`+", line)), default=0)
    return "`" * max(3, longest + 1)


def _clip(line: str) -> str:
    return line if len(line) <= LINE_CHARS else line[:LINE_CHARS] + f" … ({len(line) - LINE_CHARS:,} characters cut)"


def code_block(lines: list[str]) -> list[str]:
    lines = [_clip(x) for x in lines]
    fence = fence_for(lines)
    return [fence + "text", *lines, fence]


def details(summary: str, lines: list[str], keep: int | None = None) -> list[str]:
    """A folded block of log lines (`<details>`); `keep` = how many of the last lines to keep (None: all)."""
    if keep is not None and len(lines) > keep:
        if keep == 0:
            return [f"<sub>{summary}: {len(lines)} lines left out to fit GitHub's {GITHUB_LIMIT:,}-character "
                    "limit.</sub>"]
        summary += f" (last {keep} of {len(lines)}; the rest left out to fit GitHub's limit)"
        lines = lines[-keep:]
    return ["<details><summary>" + summary + "</summary>", "", *code_block(lines), "", "</details>"]


def culprit_lines(culprits: list[dict]) -> list[str]:
    """`max_num_seqs=128` (was 256): why. One per culprit, best first; values as `--set` takes them."""
    out = []
    for culprit in culprits:
        now = "unset" if culprit.get("value") is None else _value(culprit.get("value"))
        line = f"`{culprit.get('setting')}={_value(culprit.get('suggested'))}` (was {now})"
        if culprit.get("suggested") is None:  # the figures cannot size the change
            line = f"`{culprit.get('setting')}` (now {now})"
        if culprit.get("why"):
            line += f": {str(culprit['why']).rstrip('. ')}"
        out.append(line)
    return out


def footer(command: str) -> str:
    return (f"<sub>Written by vllm-memcheck `{command}`. Tokens, keys, user names, home directories and host names "
            "are redacted.</sub>")


def fit_to_limit(render, limit: int = GITHUB_LIMIT) -> str:
    """render(keep) -> text; the first text under `limit` while folded log blocks shrink (KEEP_STEPS), else the
    last one cut at the limit with a closing note."""
    text = ""
    for keep in KEEP_STEPS:
        text = render(keep)
        if len(text) <= limit:
            return text
    return cut_at_limit(text, limit)


def cut_at_limit(text: str, limit: int = GITHUB_LIMIT) -> str:
    """The last resort: `text` cut to `limit` characters, ending with a note that says so."""
    note = f"\n\n<sub>Cut at GitHub's {limit:,}-character limit.</sub>\n"
    return text[: limit - len(note)] + note


# -- the sweep --------------------------------------------------------------------------------------------
def outcome_cell(c: dict) -> str:
    text = c["outcome"]
    if c.get("outcome") != "ok" and c.get("expected") == c.get("outcome"):
        text += " (expected)"
    if c.get("passed") is False:
        text += " ✗"
    return text


def table_rows(report: dict) -> list[list[str]]:
    return [[c["id"], outcome_cell(c)] + [cell(k, c[k]) for k in SWEEP_FIGURES] for c in report["combinations"]]


ACCURACY_HEADERS = ["combination", "figure", "plan", "actual", "source", "error"]


def accuracy_rows(rows: list[dict]) -> list[list[str]]:
    """Predicted vs actual, one row per figure (report["plan_accuracy"]["rows"])."""
    return [[r["id"], r["figure"], cell(r["figure"], r["predicted"]), cell(r["figure"], r["actual"]), r["source"],
             fmt_error(r["error"])] for r in rows]


def _values(vs: list, cap: int | None) -> str:
    shown = vs if cap is None or len(vs) <= cap else vs[:cap]
    more = f", … ({len(vs)} values)" if len(shown) < len(vs) else ""
    return "{" + ", ".join(_value(x) for x in shown) + more + "}"


def environment_rows(report: dict, cap: int | None = None) -> list[list[str]]:
    """The environment table; `cap` limits the values listed per varied setting (a shortened report.md)."""
    env = report["environment"]
    rows = [[label, _value(env[key])] for key, label in ENV_LABELS.items() if env.get(key) not in (None, "")]
    common = report["settings"]["non_default"]
    if common:
        rows.append(["settings (not vLLM's default)", ", ".join(f"{k}={_value(v)}" for k, v in common.items())])
    varied = report["settings"]["varied"]
    if varied:
        rows.append(["varied across combinations",
                     "; ".join(f"{k} ∈ {_values(vs, cap)}" for k, vs in varied.items())])
    return rows


def failures(report: dict) -> list[dict]:
    """Combinations that did not come up or failed one of the suite's checks."""
    return [c for c in report["combinations"] if c["outcome"] != "ok" or c.get("passed") is False]


def suggested_settings(c: dict) -> list[str]:
    return culprit_lines(c["diagnosis"]["culprits"])


def _failure(c: dict, keep: int | None) -> list[str]:
    phase = f" in {c['phase']}" if c.get("phase") and c["phase"] != "unknown" else ""
    checks = ", failed the suite's checks" if c.get("passed") is False else ""
    out = ["", f"### `{c['id']}`: {c['outcome']}{phase}{checks}", ""]
    out.append(c["diagnosis"]["summary"] or "No diagnosis: the log did not match a known failure.")
    if c["diagnosis"].get("error_line"):
        out += ["", "Root-cause line:", "", *code_block([c["diagnosis"]["error_line"]])]
    if c.get("reasons"):
        out.append("")
    out += [f"- check failed: {reason}" for reason in c.get("reasons") or []]
    suggestions = suggested_settings(c)
    if suggestions:
        out += ["", "Suggested settings: " + "; ".join(suggestions) + "."]
    if c.get("log_tail"):
        out += ["", *details(f"Last {len(c['log_tail'])} lines of {c.get('log_file')}", c["log_tail"], keep)]
    return out


FULL_NAME = "report-full.md"  # the whole sweep report, written beside report.md when report.md had to shrink
SHORT_ROWS = 100  # combination rows report.md keeps once it lists only those that did not pass


@dataclass(frozen=True)
class Shortening:
    """How far report.md is shortened (fit_sweep tries them in SWEEP_STEPS' order): `keep` folded log lines per
    failure (None: all), one entry per distinct diagnosis instead of one per failure (`grouped`), and only the
    combinations that did not pass in the tables (`failed_rows_only`, at most SHORT_ROWS rows)."""

    keep: int | None = None
    grouped: bool = False
    failed_rows_only: bool = False
    counts_only: bool = False  # failures as one count per outcome and phase (every diagnosis its own numbers)

    @property
    def shortened(self) -> bool:
        return self != Shortening()


SWEEP_STEPS = (tuple(Shortening(keep) for keep in KEEP_STEPS)
               + (Shortening(0, grouped=True), Shortening(0, grouped=True, failed_rows_only=True),
                  Shortening(0, grouped=True, failed_rows_only=True, counts_only=True)))


def fit_sweep(report: dict, redact=lambda text: text, limit: int = GITHUB_LIMIT) -> tuple[str, str | None]:
    """(report.md, report-full.md or None): the whole report when it fits one GitHub comment; otherwise the first
    Shortening in SWEEP_STEPS that fits, which links FULL_NAME, and the whole report to write under that name.
    However many combinations failed, report.md is at most `limit` characters (cut with a note as a last resort)."""
    full = redact(render_markdown(report))
    if len(full) <= limit:
        return full, None
    text = full
    for step in SWEEP_STEPS[1:]:
        text = redact(render_markdown(report, step))
        if len(text) <= limit:
            return text, full
    return cut_at_limit(text, limit), full


def _short_note(short: Shortening) -> list[str]:
    done = ["fewer log lines per failure" if short.keep else "no log lines"]
    if short.grouped and not short.counts_only:
        done.append("one entry per distinct diagnosis")
    if short.failed_rows_only:
        done.append("only the combinations that did not come up or failed a check")
    if short.counts_only:
        done.append("failures counted by outcome")
    return [f"> This report is shortened to fit one GitHub comment ({', '.join(done)}). Everything else (every "
            f"combination, every failure with its log lines) is in [{FULL_NAME}]({FULL_NAME}), written beside it: "
            "attach that file to the same comment.", ""]


def _sweep_rows(report: dict, short: Shortening) -> tuple[list[dict], list[str]]:
    """The combinations the tables show, and the line that says what was left out."""
    combos = report["combinations"]
    if not short.failed_rows_only:
        return combos, []
    fails = failures(report)
    shown = fails[:SHORT_ROWS]
    shown_part = f"{len(shown)} of the {len(fails)}" if len(shown) < len(fails) else f"the {len(fails)}"
    return shown, ["", f"Showing {shown_part} combinations that did not come up or failed a check (of "
                   f"{plural(len(combos), 'combination')}, {len(combos) - len(fails)} came up and passed every "
                   f"check); every row is in [{FULL_NAME}]({FULL_NAME})."]


def _grouped_failures(fails: list[dict]) -> list[str]:
    """One entry per distinct diagnosis: outcome, phase, summary and suggestions once, with the combinations'
    ids (the first 20)."""
    groups: dict[tuple, list[dict]] = {}
    for c in fails:
        key = (c["outcome"], c.get("phase"), c.get("passed") is False, c["diagnosis"]["summary"],
               tuple(suggested_settings(c)))
        groups.setdefault(key, []).append(c)
    out: list[str] = []
    for (outcome, phase, failed_checks, summary, suggestions), members in groups.items():
        where = f" in {phase}" if phase and phase != "unknown" else ""
        checks = ", failed the suite's checks" if failed_checks else ""
        ids = ", ".join(f"`{c['id']}`" for c in members[:20]) + (f" and {len(members) - 20} more"
                                                                  if len(members) > 20 else "")
        out += ["", f"### {plural(len(members), 'combination')}: {outcome}{where}{checks}", "", ids, "",
                summary or "No diagnosis: the log did not match a known failure."]
        if suggestions:
            out += ["", "Suggested settings: " + "; ".join(suggestions) + "."]
    return out


def _counted_failures(fails: list[dict]) -> list[str]:
    """One row per outcome and phase: how many, and the first ids."""
    groups: dict[tuple, list[str]] = {}
    for c in fails:
        groups.setdefault((c["outcome"], c.get("phase") or "-", c.get("passed") is False), []).append(c["id"])
    rows = [[outcome, phase, "yes" if checks else "no", str(len(ids)),
             ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")]
            for (outcome, phase, checks), ids in groups.items()]
    return ["", table(["outcome", "phase", "failed a check", "combinations", "first"], rows), "",
            f"Each failure's diagnosis and log lines: [{FULL_NAME}]({FULL_NAME})."]


def render_markdown(report: dict, short: Shortening = Shortening()) -> str:
    """The sweep report; `short` says how far it is shortened (fit_sweep), and a shortened one links FULL_NAME."""
    out = [f"# vLLM start-up memory report: run {report['run']}", ""]
    if short.shortened:
        out += _short_note(short)
    out += [f"**Verdict.** {report['verdict']}", ""]
    accuracy = report.get("plan_accuracy") or {}
    if accuracy:
        out += [f"**Prediction.** {accuracy['line']}.", ""]
    out += ["## Environment", "", table(["", "value"], environment_rows(report, 12 if short.shortened else None))]
    rows, left_out = _sweep_rows(report, short)
    out += ["", "## Combinations", "", table(TABLE_HEADERS, table_rows({"combinations": rows}))] + left_out
    if any(c["peak_device_gib"] is not None for c in report["combinations"]):
        out += ["", "Peak device memory is what NVML saw for the whole card; peak process memory is the engine's "
                "own processes."]
    elif report["combinations"]:
        out += ["", "No device figures (vLLM's CPU backend): peak process memory is the summed RSS of the engine's "
                "process tree."]
    if accuracy.get("rows"):
        out += ["", "## Predicted vs measured", ""]
        if short.failed_rows_only:
            out.append(f"{plural(len(accuracy['rows']), 'row')} of plan's figures beside the measured ones: in "
                       f"`{FULL_NAME}`.")
        else:
            out += ["plan's figure for the settings each start used, beside what vLLM printed (source vllm) or the "
                    "launcher measured; error = (plan - actual) / actual.", "",
                    table(ACCURACY_HEADERS, accuracy_rows(accuracy["rows"]))]
    fails = failures(report)
    if fails:
        out += ["", "## Failures"]
        if short.counts_only:
            out += _counted_failures(fails)
        elif short.grouped:
            out += _grouped_failures(fails)
        else:
            for c in fails:
                out += _failure(c, short.keep)
    if report.get("search"):
        out += ["", search_section(report["search"]).rstrip()]
    out += ["", "## Charts", "",
            f"Peak per combination: `{report['charts']['overview']}`; memory over time per combination: "
            "`charts/<combination>.png` (in the run directory; drag them into the issue to attach them).", ""]
    out.append(footer("report"))
    peak_ids = [c["id"] for c in report["combinations"] if peak_of(c) is None]
    if peak_ids:
        out += ["", f"<sub>No memory figures for: {', '.join(peak_ids)}.</sub>"]
    return "\n".join(out) + "\n"


# -- one log, one prediction ------------------------------------------------------------------------------
def log_figure_rows(rows: list[dict]) -> list[list[str]]:
    return [[LABELS[r["figure"]], printed_cell(r["figure"], r["printed"]), cell(r["figure"], r["predicted"]),
             range_cell(r["figure"], r["low"], r["high"]), difference_cell(r["figure"], r["difference"], r["ratio"])]
            for r in rows]


def plan_figure_rows(rows: list[dict]) -> list[list[str]]:
    return [[LABELS[r["figure"]], cell(r["figure"], r["predicted"]), range_cell(r["figure"], r["low"], r["high"]),
             r["basis"] or "-"] for r in rows]


def _what_to_change(content: dict) -> list[str]:
    out = ["", "## What to change", "", content["summary"] or "No diagnosis beyond the verdict."]
    lines = culprit_lines(content["culprits"])
    if lines:
        out += [""] + [f"{i}. {line}." for i, line in enumerate(lines, 1)]
    if content.get("replan_command"):
        out += ["", "Re-plan with the fix:", "", "```bash", content["replan_command"], "```"]
    return out


def _notes(notes: list[str]) -> list[str]:
    return [""] + [f"- {note}" for note in notes] if notes else []


def render_log_markdown(content: dict, keep: int | None = None) -> str:
    """`explain --format md`: verdict, figures beside plan's, environment, what to change, decisive log lines."""
    out = [f"# {content['title']}", "", f"**Verdict.** {content['verdict']}", ""]
    out += ["## Memory: vLLM's figures and plan's prediction", ""]
    if content["figures"]:  # without a prediction only vLLM's column: empty plan columns say nothing
        width = 2 if content["prediction_gap"] else len(LOG_FIGURE_HEADERS)
        out.append(table(LOG_FIGURE_HEADERS[:width], [r[:width] for r in log_figure_rows(content["figures"])]))
    else:
        out.append("The log prints none of the memory figures.")
    if content["prediction_gap"]:
        out += ["", f"No prediction beside them: {content['prediction_gap']}."]
    out += _notes(content["notes"])
    out += ["", "## Environment (as the log shows it)", "", table(["", "value"], content["environment"])]
    out += _what_to_change(content)
    if content["error_line"]:
        out += ["", "Root-cause line:", "", *code_block([content["error_line"]])]
    if content["evidence"]:
        out += ["", *details(f"Decisive log lines, as the log reader quotes them ({len(content['evidence'])})", content["evidence"], keep)]
    out += ["", footer("explain --format md")]
    return "\n".join(out) + "\n"


def render_plan_markdown(content: dict, keep: int | None = None) -> str:
    """`plan --format md`: verdict, predicted figures with ranges and basis, the settings, what to change, and the
    `--fit` results when there are any. `keep` is unused (nothing folded); it keeps fit_to_limit's signature."""
    out = [f"# {content['title']}", "", f"**Verdict.** {content['verdict']}", ""]
    out += ["## Memory: plan's prediction", "", table(PLAN_FIGURE_HEADERS, plan_figure_rows(content["figures"]))]
    out += _notes(content["notes"])
    out += ["", "## Settings", "", table(["", "value"], content["environment"])]
    if content["outcome"] != "ok" or content["culprits"]:
        out += _what_to_change(content)
    if content.get("fits") is not None:
        rows = [[", ".join(f"{k}={_value(v)}" for k, v in r["settings"].items()) or "(as given)", r["verdict"],
                 cell("peak_gib", r["peak_gib"]), cell("kv_cache_tokens", r["kv_cache_tokens"])]
                for r in content["fits"]]
        out += ["", "## What fits", "", table(FIT_HEADERS, rows) if rows else "Nothing fits on this card."]
    out += ["", footer("plan --format md")]
    return "\n".join(out) + "\n"


def search_section(summary: dict) -> str:
    """The limit search (search.json, suite/search_run.py): predicted vs measured, starts vs grid, each probe."""
    rows = "\n".join(f"| {i} | {p['value']} | {'starts' if p['fits'] else 'fails'} |"
                     for i, p in enumerate(summary["probes"], 1))
    lines = [f"## Limit search: {summary['setting']} on {summary['card']}", "",
             f"Measured limit **{summary['limit']}** (largest value that started, resolution "
             f"{summary['resolution']}); predicted {summary['predicted']} ({summary['prediction_note']}).", "",
             *([f"In the knob's units: measured {summary['limit_label']}, predicted {summary['predicted_label']}; "
                "each start sent one request with an item of the probed size.", ""]
               if summary.get("limit_label") else []),
             f"{summary['starts']} engine starts for a grid of {summary['grid']} values "
             f"({summary['lo']}..{summary['hi']}; bound ceil(log2(grid)) + 1 = {summary['max_starts']}).", "",
             "| start | value | result |", "|---|---|---|", rows]
    if summary["contradictions"]:
        lines += ["", f"Warning: a start above a failed one came up: {summary['contradictions']}."]
    return "\n".join(lines) + "\n"
