"""report/charts.py: the memory-over-time chart's axes, phases and card lines (matplotlib, no files)."""

from __future__ import annotations

import json
from pathlib import Path

from diagnostics.redact import Redactor
from diagnostics.report.content import build_report

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "results"
RESULTS = FIXTURE / "sweep-a10.jsonl"


def test_memory_chart_has_labelled_axes_phases_and_card_lines():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from diagnostics.report.charts import chart_figures, figure_texts

    report = build_report(RESULTS, Redactor())
    figures = dict(chart_figures(report, FIXTURE, Redactor()))
    fig = figures["charts/mml4096-seqs32-util0.9.png"]
    FigureCanvasAgg(fig).draw()
    texts = figure_texts(fig)
    for expected in ("device memory (GiB)", "time since start (s)", "card total 22.18 GiB", "profile threshold 21.68 GiB",
                     "weights", "profile", "kv_cache", "cuda_graph", "ready",
                     "mml4096-seqs32-util0.9: ok, peak 20.50 GiB"):
        assert expected in texts
    overview = figures["charts/overview.png"]
    FigureCanvasAgg(overview).draw()
    texts = figure_texts(overview)
    assert "peak device memory (GiB)" in texts and "mml8192-seqs32-util0.9" in texts
    assert "kv_too_small, check failed  19.80 GiB" in texts and "ok  20.50 GiB" in texts
    assert "failed a check" in texts


def test_chart_lines_follow_the_limits_the_sweep_asserted():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from diagnostics.report.charts import figure_texts, memory_figure

    card = {"name": "3090", "total_gib": 23.69, "profile_threshold_gib": 23.19, "headroom_gib": 1.0}
    combo = {"id": "x", "outcome": "ok", "peak_device_gib": 21.0, "peak_process_gib": None, "settings":
             {"gpu_memory_utilization": 0.9}, "limits_gib": {}}
    rows = [{"t_s": 0.0, "device_used_gib": 1.0, "process_gib": None, "phase": "weights"},
            {"t_s": 1.0, "device_used_gib": 21.0, "process_gib": None, "phase": "kv_cache"}]
    fig = memory_figure(combo, rows, card)
    FigureCanvasAgg(fig).draw()
    texts = figure_texts(fig)
    assert "profile threshold 23.19 GiB" in texts  # 0.9 x 23.69 + 1.0 below:
    assert "peak limit 22.32 GiB (the overall peak the test allows)" in texts
    combo["limits_gib"] = {"profile_peak": 6.0, "peak": 7.5}
    fig = memory_figure(combo, rows, {"name": "cpu", "total_gib": 10.96, "profile_threshold_gib": 0.0, "headroom_gib": 0.0})
    FigureCanvasAgg(fig).draw()
    texts = figure_texts(fig)
    assert {"profile threshold 6.00 GiB", "peak limit 7.50 GiB (the overall peak the test allows)"} <= set(texts)
    assert "card total 10.96 GiB" not in texts  # the host's memory: no line on a CPU chart (newcomer-3 defect 9)


# -- issue #9: expected failures marked, CPU runs labelled host memory -------------------------------------------
def cpu_record(rid: str, outcome: str = "ok", status: str = "passed") -> dict:
    return {"schema_version": 1, "run": "r", "id": rid, "model": "kit:tiny-text", "settings": {"max_model_len": 256},
            "outcome": outcome, "phase": "unknown", "status": status, "passed": True,
            "expected": "ok" if outcome == "ok" else outcome, "reasons": [], "peak_device_gib": None,
            "peak_process_gib": 1.9, "startup_s": 20.0,
            "card": {"name": "cpu", "total_gib": 20.0, "profile_threshold_gib": 0.0, "headroom_gib": 0.0},
            "machine_info": {"card": "cpu", "gpu_name": "vLLM CPU backend", "vllm": "0.32.0"},
            "diagnosis": {"summary": "", "culprits": [], "error_line": None}}


def test_charts_mark_expected_failures_and_label_cpu_runs_as_host_memory():
    import tempfile

    from diagnostics.report.charts import figure_texts, overview_figure

    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "results.jsonl").write_text(json.dumps(cpu_record("ok-256")) + "\n"
                                             + json.dumps(cpu_record("kv-too-small", "kv_too_small", "xfail")) + "\n")
        texts = figure_texts(overview_figure(build_report(tmp)))
    assert any(t.strip().startswith("kv_too_small (expected)") for t in texts), texts
    assert "peak host memory (GiB, RSS of the engine processes)" in texts
    assert "(expected): the matrix expects this failure" in texts


def test_overview_marks_plans_predicted_peak_only_beside_device_measurements():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from diagnostics.report.charts import figure_texts, overview_figure

    combos = [{"id": "gpu", "outcome": "ok", "peak_device_gib": 20.5, "peak_process_gib": None,
               "prediction": {"peak_gib": 21.3}},
              {"id": "cpu", "outcome": "ok", "peak_device_gib": None, "peak_process_gib": 2.0,
               "prediction": {"peak_gib": 0.6}}]
    report = {"combinations": combos, "card": {"name": "a10", "total_gib": 22.18}, "environment": {}}
    fig = overview_figure(report)
    FigureCanvasAgg(fig).draw()
    assert "plan's predicted peak" in figure_texts(fig)
    (marks,) = fig.axes[0].collections
    assert [round(x, 2) for x, _ in marks.get_offsets()] == [21.3]  # the CPU bar (RSS) gets no mark
    combos[0]["prediction"] = None
    fig = overview_figure(report)
    FigureCanvasAgg(fig).draw()
    assert "plan's predicted peak" not in figure_texts(fig)


def test_overview_legend_fits_and_expected_failures_are_drawn_lighter(tmp_path):             # newcomer-3 defect 9
    from diagnostics.report.charts import EXPECTED_ALPHA, expected_failure, overview_figure

    report = build_report(RESULTS, Redactor())
    report["combinations"][-1]["expected"] = report["combinations"][-1]["outcome"]  # the fixture's oom, expected
    fig = overview_figure(report)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    page = fig.get_window_extent(renderer)
    for legend in fig.legends:
        box = legend.get_window_extent(renderer)
        assert page.x0 <= box.x0 and box.x1 <= page.x1, (box, page)  # nothing cut off left or right
    ax = fig.axes[0]
    alphas = {round(bar.get_alpha() or 1.0, 2) for bar in ax.patches}
    assert any(expected_failure(c) for c in report["combinations"]) and EXPECTED_ALPHA in alphas


def test_cpu_charts_follow_the_curve_not_the_hosts_memory():                                 # newcomer-3 defect 9
    from diagnostics.report.charts import memory_figure, overview_figure

    card = {"name": "cpu", "total_gib": 23.59, "profile_threshold_gib": 23.09}
    combo = {"id": "ok-256", "outcome": "ok", "peak_device_gib": None, "peak_process_gib": 2.1, "settings": {}}
    timeline = [{"t_s": 0.0, "device_used_gib": None, "process_gib": 0.5, "phase": "init"},
                {"t_s": 5.0, "device_used_gib": None, "process_gib": 2.1, "phase": "ready"}]
    assert memory_figure(combo, timeline, card).axes[0].get_ylim()[1] < 3
    report = {"combinations": [{**combo, "passed": True, "prediction": None}], "card": card,
              "environment": {"gpu": "vLLM CPU backend", "vllm": "0.32.0"}}
    assert overview_figure(report).axes[0].get_xlim()[1] < 3
