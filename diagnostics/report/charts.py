"""PNG charts (matplotlib, Agg, no pyplot state): memory over time per combination, and peaks per combination.

Sized for GitHub's ~900 px column: 9 x 4 inches at 100 dpi. Every text a chart shows comes from the
redacted report dict (ids, outcomes, phase names), so `figure_texts(fig)` is what a reader can see.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from diagnostics.outcomes import MEMORY_FAILURES, TIMELINE_PHASES
from diagnostics.redact import Redactor
from diagnostics.report.content import CHARTS_DIR, chart_name, peak_of, read_timeline
from diagnostics.units import fmt_gib

WIDTH_IN, HEIGHT_IN, DPI = 9, 4, 100
Y_LABEL = "memory (GiB)"
HOST_LABEL = "host memory (GiB, RSS of the engine processes)"  # the cpu card: vLLM's CPU backend


def expected_failure(c: dict) -> bool:
    """A failure the matrix expected (the test was xfail): marked, so it does not read as a regression."""
    return c.get("status") == "xfail" or (c.get("outcome") != "ok" and c.get("expected") == c.get("outcome"))


def y_label(card: dict) -> str:
    """What the memory axis shows: device memory on a GPU, the engine's host memory on the CPU backend."""
    return HOST_LABEL if card.get("name") == "cpu" else "device " + Y_LABEL
X_LABEL = "time since start (s)"
# the timeline's phases (diagnostics.outcomes.TIMELINE_PHASES) in start-up order, then labels older runs used
PHASE_COLORS = {
    **dict(zip(TIMELINE_PHASES, ("#eeeeee", "#cfe2f3", "#fce5cd", "#d9ead3", "#fff2cc", "#d0e0e3"))),
    "cuda_graph": "#ead1dc", "start": "#eeeeee", "vision_encoder": "#fce5cd", "request": "#d9d2e9", "unknown": "#f3f3f3",
}
EXTRA_COLORS = ["#e6b8af", "#c9daf8", "#b6d7a8", "#ffe599", "#b4a7d6"]


def _phase_spans(rows: list[dict]) -> list[tuple[str, float, float]]:
    spans: list[tuple[str, float, float]] = []
    for i, row in enumerate(rows):
        end = rows[i + 1]["t_s"] if i + 1 < len(rows) else row["t_s"]
        if spans and spans[-1][0] == row["phase"]:
            spans[-1] = (row["phase"], spans[-1][1], end)
        else:
            spans.append((row["phase"], row["t_s"], end))
    return spans


def _card_lines(ax, card: dict, combination: dict) -> list[float]:
    """Card total; the profile-phase threshold and the overall peak limit the test asserted (the record's
    limits_gib when the sweep wrote them, else the card profile's threshold and util x total + headroom)."""
    levels = []
    limits = combination.get("limits_gib") or {}
    settings = combination.get("settings") or {}
    total = card.get("total_gib")
    if total:
        ax.axhline(total, color="#cc0000", lw=1.6, label=f"card total {fmt_gib(total)}")
        levels.append(total)
    threshold = limits.get("profile_peak") or card.get("profile_threshold_gib")
    peak_limit = limits.get("peak")
    util = settings.get("gpu_memory_utilization")
    if peak_limit is None and total and isinstance(util, (int, float)) and card.get("headroom_gib"):
        peak_limit = util * total + card["headroom_gib"]
    if threshold:
        name = "profile threshold = peak limit" if peak_limit == threshold else "profile threshold"
        ax.axhline(threshold, color="#e69138", lw=1.4, ls="--", label=f"{name} {fmt_gib(threshold)}")
        levels.append(threshold)
    if peak_limit and (not total or peak_limit < total) and peak_limit != threshold:
        ax.axhline(peak_limit, color="#674ea7", lw=1.2, ls=":",
                   label=f"peak limit {fmt_gib(peak_limit)} (the overall peak the test allows)")
        levels.append(peak_limit)
    return levels


def memory_figure(combination: dict, timeline: list[dict], card: dict) -> Figure:
    """Memory over time for one combination, phases shaded, the card's total and threshold drawn."""
    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    phase_colors = dict(PHASE_COLORS)
    phase_handles = []
    for phase, start, end in _phase_spans(timeline):
        if phase not in phase_colors:
            phase_colors[phase] = EXTRA_COLORS[len(phase_colors) % len(EXTRA_COLORS)]
        ax.axvspan(start, end, color=phase_colors[phase], alpha=0.9, lw=0)
        if phase not in [h.get_label() for h in phase_handles]:
            phase_handles.append(Patch(color=phase_colors[phase], label=phase))
    t = [r["t_s"] for r in timeline]
    device = [r["device_used_gib"] for r in timeline]
    process = [r["process_gib"] for r in timeline]
    tops = []
    if any(v is not None for v in device):
        ax.plot(t, [v if v is not None else float("nan") for v in device], color="#1c4587", lw=1.8,
                label="device used (all processes)")
        tops += [v for v in device if v is not None]
    if any(v is not None for v in process):
        only = not tops  # on the CPU backend the process tree is the one series: draw it as the main line
        ax.plot(t, [v if v is not None else float("nan") for v in process], color="#1c4587" if only else "#38761d",
                lw=1.8 if only else 1.3, ls="-" if only else "-.",
                label="engine processes (RSS)" if only else "engine processes")
        tops += [v for v in process if v is not None]
    if tops:
        series = device if any(v is not None for v in device) else process
        i_peak = max((i for i, v in enumerate(series) if v is not None), key=lambda i: series[i])
        ax.plot([t[i_peak]], [series[i_peak]], marker="o", color="#1c4587", ms=5)
    # on the CPU backend the "card total" is the host's memory: drawn, it would squash a 2 GiB curve flat; the
    # limits the sweep asserted (limits_gib) are still drawn
    levels = _card_lines(ax, _engine_lines(card), combination)
    top = max(tops + levels + [peak_of(combination) or 0, 0.1 if _is_cpu(card) else 1.0])
    ax.set_ylim(0, top * 1.08)
    if t:
        ax.set_xlim(min(t), max(t) if max(t) > min(t) else min(t) + 1)
    else:
        ax.text(0.5, 0.5, "no timeline recorded", transform=ax.transAxes, ha="center", va="center", color="#666666")
    ax.set_xlabel(X_LABEL)
    ax.set_ylabel(y_label(card))
    peak = peak_of(combination)
    title = f"{combination['id']}: {combination['outcome']}"
    if peak is not None:
        title += f", peak {fmt_gib(peak)}"
    ax.set_title(title, fontsize=11, loc="left")
    ax.grid(axis="y", color="#dddddd", lw=0.6)
    line_handles, _ = ax.get_legend_handles_labels()
    fig.legend(handles=line_handles + phase_handles, loc="outside lower center", ncol=4, fontsize=8, frameon=False)
    return fig


def _is_cpu(card: dict) -> bool:
    return card.get("name") == "cpu"


def _engine_lines(card: dict) -> dict:
    """The card profile whose lines a chart draws: on the CPU backend without the host's total (and the threshold
    derived from it), which no engine is measured against."""
    if not _is_cpu(card):
        return card
    return {k: v for k, v in card.items() if k not in ("total_gib", "profile_threshold_gib", "headroom_gib")}


EXPECTED_ALPHA = 0.5  # an expected failure's bar: the failure colour, lighter (the legend's "(expected)" swatch)


def _bar_color(outcome: str) -> str:
    if outcome == "ok":
        return "#6aa84f"
    if outcome in MEMORY_FAILURES:
        return "#cc4125"
    return "#999999"


def _predicted_marks(ax, combos: list[dict], ids: list[str]) -> list:
    """plan's predicted device peak (issue #13) as a diamond on each bar measured on a device (NVML); on the CPU
    backend the bar is the process tree's RSS, which plan does not predict, so no mark is drawn."""
    marks = [(i, (c.get("prediction") or {}).get("peak_gib")) for i, c in enumerate(combos)
             if c.get("peak_device_gib") is not None]
    marks = [(i, p) for i, p in marks if p is not None]
    if not marks:
        return []
    return [ax.scatter([p for _, p in marks], [ids[i] for i, _ in marks], marker="D", s=28, color="#000000",
                       zorder=3, label="plan's predicted peak")]


def overview_figure(report: dict) -> Figure:
    """Peak memory per combination (horizontal bars, one per combination) against the card's lines."""
    combos = report["combinations"]
    height = max(2.8, 0.28 * len(combos) + 1.6)
    fig = Figure(figsize=(WIDTH_IN, height), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ids = [c["id"] for c in combos][::-1]
    peaks = [peak_of(c) or 0.0 for c in combos][::-1]
    colors = [_bar_color(c["outcome"]) for c in combos][::-1]
    bars = ax.barh(ids, peaks, color=colors, height=0.65)
    card = report.get("card") or {}
    card = _engine_lines(card)  # the host's memory is no line to measure the engine against (see memory_figure)
    top = max(peaks + [card.get("total_gib") or 0, 0.1 if _is_cpu(report.get("card") or {}) else 1.0])
    for bar, c in zip(bars, combos[::-1]):
        value = peak_of(c)
        if expected_failure(c):
            bar.set_alpha(EXPECTED_ALPHA)
        if c.get("passed") is False:  # a thick outline, not a hatch: the label inside must stay readable
            bar.set_edgecolor("#000000")
            bar.set_linewidth(2.5)
        note = ", check failed" if c.get("passed") is False else " (expected)" if expected_failure(c) else ""
        label = f"{c['outcome']}{note}  " + (
            "no figure" if value is None else fmt_gib(value))
        inside = bar.get_width() > 0.45 * top
        ax.text(bar.get_width() if not inside else bar.get_width() - 0.01 * top,
                bar.get_y() + bar.get_height() / 2, label if inside else " " + label, va="center",
                ha="right" if inside else "left", fontsize=8, color="white" if inside else "#333333")
    handles = _predicted_marks(ax, combos[::-1], ids)
    top = max([top] + [x for x in ax.get_xlim()[1:]])
    if card.get("total_gib"):
        handles.append(ax.axvline(card["total_gib"], color="#cc0000", lw=1.6, label=f"card total {fmt_gib(card['total_gib'])}"))
    if card.get("profile_threshold_gib"):
        handles.append(ax.axvline(card["profile_threshold_gib"], color="#e69138", lw=1.4, ls="--",
                                  label=f"profile threshold {fmt_gib(card['profile_threshold_gib'])}"))
    ax.set_xlim(0, top * 1.12)
    ax.set_xlabel("peak " + y_label(card))
    ax.tick_params(axis="y", labelsize=8 if len(combos) > 12 else 9)
    env = report.get("environment") or {}
    ax.set_title(f"Peak memory per combination: {env.get('gpu') or card.get('name') or ''}, vLLM {env.get('vllm') or '?'}",
                 fontsize=11, loc="left")
    handles += [Patch(color="#6aa84f", label="came up"), Patch(color="#cc4125", label="memory failure"),
                Patch(color="#999999", label="other failure")]
    if any(expected_failure(c) for c in combos):  # the label says "(expected)"; the legend says what it means
        handles.append(Patch(facecolor="#cc4125", alpha=EXPECTED_ALPHA, label="(expected): the matrix expects this failure"))
    if any(c.get("passed") is False for c in combos):
        handles.append(Patch(facecolor="white", edgecolor="#000000", linewidth=2.5, label="failed a check"))
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8, frameon=False)  # 6 columns clipped
    ax.grid(axis="x", color="#dddddd", lw=0.6)
    return fig


def figure_texts(fig: Figure) -> list[str]:
    """Every text drawn on a figure (titles, labels, tick labels, legends, annotations)."""
    from matplotlib.text import Text

    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


def chart_figures(report: dict, run_dir: Path, redactor=None) -> list[tuple[str, Figure]]:
    """(relative path, figure) for the overview and each combination."""
    red = redactor or Redactor.for_this_machine()
    card = report.get("card") or {}
    figures = [(report["charts"]["overview"], overview_figure(report))]
    records_by_id = {c["id"]: c for c in report["combinations"]}
    for c in report["combinations"]:
        rows = read_timeline(Path(run_dir), {"timeline_file": c.get("timeline_file")})
        for row in rows:
            row["phase"] = red.text(row["phase"])
        figures.append((c["chart"], memory_figure(records_by_id[c["id"]], rows, card)))
    return figures


def write_charts(report: dict, run_dir: Path, out_dir: Path, redactor=None) -> list[Path]:
    (Path(out_dir) / CHARTS_DIR).mkdir(parents=True, exist_ok=True)
    written = []
    for rel, fig in chart_figures(report, run_dir, redactor):
        path = Path(out_dir) / rel
        fig.savefig(path, dpi=DPI, metadata={"Software": "vllm-memcheck"})
        written.append(path)
    return written


__all__ = ["memory_figure", "overview_figure", "figure_texts", "chart_figures", "write_charts", "chart_name"]


def cross_card_figure(report: dict) -> Figure:
    """The cross-card overview (report/crosscard.py): per combination, one bar per card (its peak), coloured by
    outcome, hatched per card so the cards read apart without colour."""
    labels = [c["label"] for c in report["columns"]]
    rows = report["rows"]
    n = len(labels)
    height = max(3.0, 0.22 * len(rows) * n + 1.8)
    fig = Figure(figsize=(WIDTH_IN, height), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    hatches = ["", "//", "..", "xx", "\\\\", "oo", "++", "--"]
    bar_h = 0.8 / max(n, 1)
    for k, label in enumerate(labels):
        ys = [len(rows) - 1 - i + (n / 2 - k - 0.5) * bar_h for i in range(len(rows))]
        cells = [row["cells"][label] for row in rows]
        peaks = [(c or {}).get("peak_gib") or 0.0 for c in cells]
        colors = [_bar_color((c or {}).get("outcome") or "none") for c in cells]
        ax.barh(ys, peaks, height=bar_h * 0.9, color=colors, hatch=hatches[k % len(hatches)], edgecolor="#333333",
                linewidth=0.4, label=label)
    ax.set_yticks(range(len(rows)), [row["id"] for row in rows][::-1], fontsize=8)
    ax.set_xlabel("peak " + Y_LABEL)
    ax.set_title(f"Peak memory per combination on {n} cards", fontsize=11, loc="left")
    handles = [Patch(facecolor="white", edgecolor="#333333", hatch=hatches[k % len(hatches)], label=label)
               for k, label in enumerate(labels)]
    handles += [Patch(color="#6aa84f", label="came up"), Patch(color="#cc4125", label="memory failure"),
                Patch(color="#999999", label="other failure / not run")]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), fontsize=8, frameon=False)
    ax.grid(axis="x", color="#dddddd", lw=0.6)
    return fig


def write_cross_card_chart(report: dict, out_dir: Path) -> Path:
    path = Path(out_dir) / report["charts"]["overview"]
    cross_card_figure(report).savefig(path)
    return path
