"""One report over runs from several machines (`python -m diagnostics report RUN_DIR RUN_DIR ...`): a column per
card, a row per combination, and one overview chart. Pure (the chart is report/charts.py's `cross_card_figure`).

Each run is one card's CI job of the job matrix (docs/upgrade-gate.md) that uploaded its run directory. Columns
are named by the card (and by the vLLM version where two runs share a card); a combination a run did not start
shows "-". Redacted like every report.
"""

from __future__ import annotations

from diagnostics.errors import UsageError
from diagnostics.redact import Redactor
from diagnostics.report.content import REPORT_SCHEMA_VERSION, load_records, peak_of
from diagnostics.units import utc_now


def _column(records: list[dict]) -> dict:
    first = records[0]
    profile = first.get("card") if isinstance(first.get("card"), dict) else {"name": first.get("card")}  # or its name
    machine = first.get("machine_info") or {}
    return {"card": profile.get("name") or machine.get("card") or "?", "vllm": machine.get("vllm"),
            "gpu_name": machine.get("gpu_name"), "total_gib": profile.get("total_gib"), "run": first.get("run")}


def build_cross_card(sources, redactor: Redactor | None = None) -> dict:
    """The merged report dict: columns (one per run), rows (one per combination id, in first-seen order) whose
    cells are {outcome, peak_gib, passed} or None. UsageError for fewer than two runs or an unreadable one."""
    if len(sources) < 2:
        raise UsageError("a cross-card report needs two or more run directories; accepted: RUN_DIR RUN_DIR ...")
    runs = [load_records(s) for s in sources]
    columns = [_column(records) for _, records in runs]
    names = [c["card"] for c in columns]
    for c in columns:  # two runs of one card: tell them apart by version, then by run
        if names.count(c["card"]) > 1:
            c["label"] = f"{c['card']} (vLLM {c['vllm']})" if c["vllm"] else f"{c['card']} ({c['run']})"
        else:
            c["label"] = c["card"]
    labels = [c["label"] for c in columns]
    if len(set(labels)) < len(labels):
        raise UsageError(f"two runs have the same card and vLLM ({', '.join(labels)}); pass one run per column")
    order: list[str] = []
    cells: dict[str, dict] = {}
    for column, (_, records) in zip(columns, runs):
        for r in records:
            if r["id"] not in cells:
                order.append(r["id"])
                cells[r["id"]] = {}
            cells[r["id"]][column["label"]] = {"outcome": r.get("outcome"), "peak_gib": peak_of(r),
                                               "passed": r.get("passed")}
    rows = [{"id": rid, "cells": {label: cells[rid].get(label) for label in labels}} for rid in order]
    report = {"schema_version": REPORT_SCHEMA_VERSION, "generated_at": utc_now(), "kind": "cross-card",
              "columns": columns, "rows": rows,
              "ok": {label: sum(1 for row in rows if (row["cells"][label] or {}).get("outcome") == "ok")
                     for label in labels},
              "charts": {"overview": "cross-card.png"}}
    red = redactor or Redactor.for_this_machine()
    red.learn(report)
    return red.obj(report)


def _cell(cell: dict | None) -> str:
    if cell is None:
        return "-"
    peak = cell["peak_gib"]
    text = cell["outcome"] + (f" {peak:.2f}" if isinstance(peak, (int, float)) else "")
    return text + (" (check failed)" if cell["passed"] is False else "")


def render_cross_card_markdown(report: dict) -> str:
    """A GitHub table: combination x card, each cell "outcome peak-GiB"."""
    from tabulate import tabulate

    labels = [c["label"] for c in report["columns"]]
    head = [f"# vLLM start-up memory across {len(labels)} cards", "",
            "Each cell: outcome and peak memory in GiB (device peak on a GPU, process RSS on the CPU backend).", ""]
    env = [[c["label"], c.get("gpu_name") or "-", c.get("vllm") or "-", c.get("run") or "-",
            f"{report['ok'][c['label']]} of {len(report['rows'])} ok"] for c in report["columns"]]
    table = [[row["id"], *(_cell(row["cells"][label]) for label in labels)] for row in report["rows"]]
    return "\n".join(head + [tabulate(env, headers=["card", "GPU", "vLLM", "run", "started"], tablefmt="github",
                                      disable_numparse=True), "",
                             tabulate(table, headers=["combination", *labels], tablefmt="github",
                                      disable_numparse=True), "",
                             f"Overview chart: `{report['charts']['overview']}`.", ""])
