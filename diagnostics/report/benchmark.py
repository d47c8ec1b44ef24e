"""Dashboard results: a sweep's figures as github-action-benchmark's custom JSON (`report RUN_DIR --format benchmark`).

github-action-benchmark (benchmark-action/github-action-benchmark) takes, per tool, a JSON array of
`{"name", "unit", "value", "range"?, "extra"?}`; `tool: customSmallerIsBetter` and `tool: customBiggerIsBetter` are
two files, since one action step reads one tool. Each name is one chart series, so a name carries the model, the
combination, the figure and the card, and not the vLLM version: the series of one combination on one card then
continues across vLLM upgrades, which is what the chart is for; the vLLM version (and the driver) ride in `extra`,
shown on each point. docs/upgrade-gate.md has a CI job that publishes them.
"""

from __future__ import annotations

import json
import math

SMALLER_NAME = "benchmark-smaller.json"  # tool: customSmallerIsBetter
BIGGER_NAME = "benchmark-bigger.json"  # tool: customBiggerIsBetter

# (figure in the report's combination dict, label in the series name, unit), by direction
SMALLER = (("peak_device_gib", "peak (device)", "GiB"), ("peak_process_gib", "peak (process)", "GiB"),
           ("profile_peak_gib", "profile-run peak", "GiB"), ("startup_s", "start-up time", "s"))
BIGGER = (("kv_cache_tokens", "KV cache tokens", "tokens"),)


def benchmark_entries(report: dict) -> tuple[list[dict], list[dict]]:
    """(smaller-is-better entries, bigger-is-better entries) of a report dict (report/content.py build_report,
    already redacted). Only combinations that came up (outcome ok) and figures that were measured (a number,
    finite): a failed start has no peak worth charting, and a missing figure is left out rather than charted as 0."""
    env, card = report.get("environment") or {}, report.get("card") or {}
    model = str(env.get("model") or "model").rsplit("/", 1)[-1]
    where = str(card.get("name") or env.get("gpu") or "card")
    extra = f"vLLM {env.get('vllm') or '?'}; driver {env.get('driver') or '-'}; run {report.get('run') or '-'}"
    out: tuple[list[dict], list[dict]] = ([], [])
    for combo in report.get("combinations") or []:
        if combo.get("outcome") != "ok":
            continue
        for entries, table in zip(out, (SMALLER, BIGGER)):
            for key, label, unit in table:
                value = combo.get(key)
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    continue
                entries.append({"name": f"{model} {combo['id']} {label} [{where}]", "unit": unit,
                                "value": round(float(value), 4) if unit != "tokens" else int(value),
                                "extra": extra})
    return out


def render_benchmark(report: dict) -> dict[str, str]:
    """{file name: JSON text} for the two github-action-benchmark files."""
    smaller, bigger = benchmark_entries(report)
    return {SMALLER_NAME: json.dumps(smaller, indent=2, allow_nan=False) + "\n",
            BIGGER_NAME: json.dumps(bigger, indent=2, allow_nan=False) + "\n"}
