"""Markdown report that pastes cleanly into a GitHub issue (tables in GitHub format, logs folded)."""

from __future__ import annotations

import re

from diagnostics.report.content import ENV_LABELS, peak_of
from diagnostics.units import fmt_gib, fmt_tokens

TABLE_HEADERS = [
    "combination", "outcome", "peak device (GiB)", "peak process (GiB)", "weights (GiB)",
    "activation peak (GiB)", "KV cache (GiB)", "KV tokens", "start-up (s)",
]


def _n(v, digits=2) -> str:
    """A table cell whose header names the unit; tiny figures (CPU-backend KV pools of a few MiB) keep two
    significant digits (diagnostics.units.fmt_gib)."""
    return fmt_gib(v, digits, unit=False)


def _value(v) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, bool):
        return str(v)
    return str(v)


def outcome_cell(c: dict) -> str:
    text = c["outcome"]
    if c.get("outcome") != "ok" and c.get("expected") == c.get("outcome"):
        text += " (expected)"
    if c.get("passed") is False:
        text += " ✗"
    return text


def table_rows(report: dict) -> list[list[str]]:
    return [
        [c["id"], outcome_cell(c), _n(c["peak_device_gib"]), _n(c["peak_process_gib"]), _n(c["weights_gib"]),
         _n(c["activation_peak_gib"]), _n(c["kv_cache_gib"]), fmt_tokens(c["kv_cache_tokens"]), _n(c["startup_s"], 1)]
        for c in report["combinations"]
    ]


def environment_rows(report: dict) -> list[list[str]]:
    env = report["environment"]
    rows = [[label, _value(env[key])] for key, label in ENV_LABELS.items() if env.get(key) not in (None, "")]
    common = report["settings"]["non_default"]
    if common:
        rows.append(["settings (not vLLM's default)", ", ".join(f"{k}={_value(v)}" for k, v in common.items())])
    varied = report["settings"]["varied"]
    if varied:
        rows.append(["varied across combinations",
                     "; ".join(f"{k} ∈ {{{', '.join(_value(x) for x in vs)}}}" for k, vs in varied.items())])
    return rows


def failures(report: dict) -> list[dict]:
    """Combinations that did not come up or failed one of the suite's checks."""
    return [c for c in report["combinations"] if c["outcome"] != "ok" or c.get("passed") is False]


def suggested_settings(c: dict) -> list[str]:
    out = []
    for culprit in c["diagnosis"]["culprits"]:
        setting = culprit.get("setting")
        line = f"`{setting}={_value(culprit.get('suggested'))}` (was {_value(culprit.get('value'))})"
        if culprit.get("why"):
            line += f": {str(culprit['why']).rstrip('. ')}"
        out.append(line)
    return out


def fence_for(lines: list[str]) -> str:
    """A backtick fence longer than any backtick run inside the text, so a log cannot close it early."""
    longest = max((len(m) for line in lines for m in re.findall(r"`+", line)), default=0)
    return "`" * max(3, longest + 1)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(report: dict) -> str:
    from tabulate import tabulate  # lazily: the CLI imports the report package at start-up

    env = report["environment"]
    out = [f"# vLLM start-up memory report: run {report['run']}", "", f"**Verdict.** {report['verdict']}", ""]
    out += ["## Environment", ""]
    out.append(tabulate([[_cell(a), _cell(b)] for a, b in environment_rows(report)], headers=["", "value"],
                        tablefmt="github", disable_numparse=True))
    out += ["", "## Combinations", ""]
    out.append(tabulate(table_rows(report), headers=TABLE_HEADERS, tablefmt="github", disable_numparse=True))
    if any(c["peak_device_gib"] is not None for c in report["combinations"]):
        out += ["", "Peak device memory is what NVML saw for the whole card; peak process memory is the engine's "
                "own processes."]
    elif report["combinations"]:
        out += ["", "No device figures (vLLM's CPU backend): peak process memory is the summed RSS of the engine's "
                "process tree."]
    fails = failures(report)
    if fails:
        out += ["", "## Failures"]
        for c in fails:
            phase = f" in {c['phase']}" if c.get("phase") and c["phase"] != "unknown" else ""
            checks = ", failed the suite's checks" if c.get("passed") is False else ""
            out += ["", f"### `{c['id']}`: {c['outcome']}{phase}{checks}", ""]
            summary = c["diagnosis"]["summary"] or "No diagnosis: the log did not match a known failure."
            out.append(summary)
            if c["diagnosis"].get("error_line"):
                line = c["diagnosis"]["error_line"]
                fence = fence_for([line])
                out += ["", "Root-cause line:", "", fence + "text", line, fence]
            if c.get("reasons"):
                out.append("")
            for reason in c.get("reasons") or []:
                out.append(f"- check failed: {reason}")
            suggestions = suggested_settings(c)
            if suggestions:
                out += ["", "Suggested settings: " + "; ".join(suggestions) + "."]
            tail = c.get("log_tail")
            if tail:
                fence = fence_for(tail)
                out += ["", "<details><summary>Last " + str(len(tail)) + " lines of " + str(c.get("log_file"))
                        + "</summary>", "", fence + "text", *tail, fence, "", "</details>"]
    out += ["", "## Charts", "",
            f"Peak per combination: `{report['charts']['overview']}`; memory over time per combination: "
            "`charts/<combination>.png` (in the run directory; drag them into the issue to attach them).", ""]
    out.append("<sub>Written by vllm-memcheck `report`. Tokens, keys, user names, home directories and host names "
               "are redacted.</sub>")
    peak_ids = [c["id"] for c in report["combinations"] if peak_of(c) is None]
    if peak_ids:
        out.append("")
        out.append(f"<sub>No memory figures for: {', '.join(peak_ids)}.</sub>")
    return "\n".join(out) + "\n"
