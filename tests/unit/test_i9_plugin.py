"""Issue #9 through the pytest plugin (pytester, a stand-in launcher: no engine starts): the gate's holes, options
checked before the first start, --engine-timeout=0, SIGTERM, --card=cpu, the user's Hugging Face environment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
ROOT = Path(__file__).resolve().parents[2]

# A launcher stand-in: prints RAN <id>, writes an OK log and a peak that grows with max_model_len. MEMCHECK_FAKE_SLEEP
# makes each start take that long (for SIGTERM); MEMCHECK_FAKE_TIMEOUT makes every start time out.
STAND_IN = """
import os, time
from pathlib import Path
import diagnostics.suite.plugin as _plugin
import diagnostics.engine.launch as launch
from diagnostics.logs.reader import read_log

_plugin.vllm_missing = lambda: None
OK_LOG = ("(EngineCore pid=N) INFO 11-24 14:05:44 [kv_cache_utils.py:2327] CPU KV cache size: 131,072 tokens, "
          "Maximum concurrency for 512 tokens per request: 256.00x\\n")
SPECS = []

def fake_run_start(spec):
    print("RAN", spec.id, "timeout", spec.timeout_s, "env", sorted(k for k in spec.env if k.endswith("OFFLINE")))
    time.sleep(float(os.environ.get("MEMCHECK_FAKE_SLEEP", "0")))
    timed_out = bool(os.environ.get("MEMCHECK_FAKE_TIMEOUT"))
    text = "" if timed_out else OK_LOG
    Path(spec.log_path).write_text(text)
    Path(spec.timeline_path).write_text("t_s,device_used_gib,process_gib,phase\\n0.0,,1.0,init\\n")
    return launch.StartResult(
        returncode=None if timed_out else 0, signal="SIGKILL" if timed_out else None, timed_out=timed_out,
        wall_s=2.0, startup_s=None if timed_out else 1.5, peak_device_gib=None,
        peak_process_gib=1.0 + spec.settings["max_model_len"] / 1024, phase_peaks_gib={"profile": 1.0},
        torch_peak_gib=None, request=None if timed_out else {"ok": True}, log_path=spec.log_path,
        timeline_path=spec.timeline_path, before_kv_peak_gib=1.0, log=read_log(text))

def pytest_configure(config):
    launch.run_start = fake_run_start
"""
MATRIX = """
[matrix]
model = "stand-in-model"
[defaults]
enforce_eager = true
kv_cache_memory_bytes = 67108864
[scenarios.a]
max_model_len = 256
expect = "ok"
[scenarios.b]
max_model_len = 512
expect = "ok"
"""
ARGS = ("--card=cpu", "--matrix=m.toml", "--benchmark-disable", "-s")


def result_line(rid: str, vllm: str = "0.31.0", peak: float = 1.25, **extra) -> dict:
    return {"schema_version": 1, "run": "r", "id": rid, "outcome": "ok", "status": "passed", "passed": True,
            "expected": "ok", "peak_process_gib": peak, "peak_device_gib": None, "kv_cache_tokens": 131072,
            "startup_s": 1.5, "settings": {"max_model_len": 256},
            "machine_info": {"card": "cpu", "gpu_name": "vLLM CPU backend", "driver": None, "vllm": vllm}, **extra}


@pytest.fixture
def project(pytester):
    pytester.makepyfile(test_startup_matrix=(ROOT / "tests" / "test_startup_matrix.py").read_text())
    pytester.makeconftest(STAND_IN)
    (pytester.path / "m.toml").write_text(MATRIX)
    return pytester


def run(pytester, *args):
    return pytester.runpytest_subprocess("-p", "diagnostics.suite.plugin", "-p", "no:cacheprovider", "-ra", *args)


def usage_error(result) -> str:
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    assert "RAN" not in result.stdout.str()  # refused before the first start
    assert "Traceback" not in result.stderr.str() + result.stdout.str()
    return result.stderr.str()


def write_run(pytester, records, name="20260101-000000") -> Path:
    run_dir = pytester.path / "reports" / name
    run_dir.mkdir(parents=True)
    (run_dir / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (pytester.path / "reports" / "latest").write_text(name + "\n")
    return run_dir


# -- the gate ------------------------------------------------------------------------------------------------------
def test_a_missing_compare_baseline_fails_before_the_first_start(project):
    err = usage_error(run(project, *ARGS, "--compare-baseline=pinned", "--baseline-dir=bl"))
    assert "no baseline 'pinned' under bl" in err and "--save-baseline-if-missing" in err
    assert not (project.path / "bl").exists()


def test_save_baseline_if_missing_records_it_on_purpose(project):
    result = run(project, *ARGS, "--compare-baseline=pinned", "--baseline-dir=bl", "--save-baseline-if-missing")
    assert result.ret == 0, result.stdout.str()
    assert "no baseline 'pinned' yet under bl/; recorded this run as it" in result.stdout.str()
    assert len(list((project.path / "bl").glob("*/pinned.json"))) == 1
    # now it exists: the next run compares with it
    result = run(project, *ARGS, "--compare-baseline=pinned", "--baseline-dir=bl")
    assert result.ret == 0 and "compared with baseline" in result.stdout.str()


def test_a_partial_candidate_fails_the_gate(project):
    (project.path / "full.json").write_text(json.dumps({"name": "full", "results": [result_line(r) for r in "abc"]}))
    result = run(project, *ARGS, "--compare-baseline=./full.json", "--deselect=test_startup_matrix.py::test_startup[b]",
                 "--fail-on-regression=peak:off")
    out = result.stdout.str()
    assert result.ret == 1, out
    assert "2 combinations of the baseline are missing from the candidate: b, c" in out
    assert "baseline: vLLM 0.31.0" in out and "candidate: vLLM " in out


def test_resume_does_not_turn_a_recorded_failure_into_a_pass(project):
    write_run(project, [result_line("a", outcome="oom_profile", status="failed", passed=False,
                                    reasons=["expected ok (matrix), got oom_profile"])])
    result = run(project, *ARGS, "--resume")
    out = result.stdout.str()
    assert result.ret == 1, out
    assert "RAN b" in out and "RAN a" not in out
    assert "a: recorded as failed in" in out and "(--resume)" in out


# -- options checked before the first start ---------------------------------------------------------------------------
@pytest.mark.parametrize("args, says", [
    (("--report-dir=a-file",), "report-dir"),
    (("--report-dir=/proc/memcheck-reports",), "report-dir"),
    (("--save-baseline=bad name!",), "bad baseline name 'bad name!'"),
    (("--save-baseline=p", "--baseline-dir=a-file"), "baseline-dir"),
    (("--save-baseline=p", "--baseline-dir=/proc/memcheck-bl"), "baseline-dir"),
    (("--compare-baseline=./not-json.json",), "not a readable baseline"),
    (("--compare-baseline=bad name!",), "bad baseline name"),
    (("--cards=nope.toml",), "nope.toml"),
    (("--engine-timeout=nan",), "engine_timeout"),
    (("--engine-timeout=inf",), "engine_timeout"),
], ids=["report-dir-file", "report-dir-unwritable", "baseline-name", "baseline-dir-file", "baseline-dir-unwritable",
        "compare-not-json", "compare-bad-name", "cards-missing", "timeout-nan", "timeout-inf"])
def test_bad_options_are_usage_errors_before_the_first_start(project, args, says):
    (project.path / "a-file").write_text("x")
    (project.path / "not-json.json").write_text("hello")
    err = usage_error(run(project, *ARGS, *args))
    assert says in err, err


def test_engine_timeout_zero_means_no_limit(project):
    result = run(project, *ARGS, "--engine-timeout=0", "--deselect=test_startup_matrix.py::test_startup[b]")
    out = result.stdout.str()
    assert result.ret == 0, out
    assert "no engine timeout (--engine-timeout=0)" in out and "RAN a timeout None" in out


def test_a_timed_out_start_names_engine_timeout(project, monkeypatch):
    monkeypatch.setenv("MEMCHECK_FAKE_TIMEOUT", "1")
    result = run(project, *ARGS, "--engine-timeout=7", "--deselect=test_startup_matrix.py::test_startup[b]")
    out = result.stdout.str()
    assert result.ret == 1
    line = next(line for line in out.splitlines() if line.startswith("a on cpu: timeout"))
    assert "did not come up within --engine-timeout=7 s" in line
    assert "started" not in line.split("--engine-timeout")[0]  # no "the engine started" next to "timeout"


# -- --card=cpu -----------------------------------------------------------------------------------------------------------
def test_card_cpu_without_a_matrix_picks_the_cpu_matrix_and_a_kit(project):
    result = run(project, "--card=cpu", "--collect-only")
    out = result.stdout.str()
    assert result.ret == 0, out
    assert "model kit:tiny-text" in out and "cpu-tiny.toml" in out


@pytest.mark.parametrize("model", ["openbmb/MiniCPM-V-2_6", "kit:minicpm-v-2_6"])
def test_card_cpu_refuses_the_16_gb_model_in_one_line(project, model):
    err = usage_error(run(project, "--card=cpu", "--matrix=m.toml", f"--model={model}", "--collect-only"))
    line = next(line for line in err.splitlines() if line.startswith("ERROR:"))
    assert "kit:tiny-text" in line and "kit:minicpm-v-2_6-tiny" in line


# -- SIGTERM ----------------------------------------------------------------------------------------------------------------
def test_sigterm_writes_the_report_and_removes_the_kit_directory(project, tmp_path):
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    env = {**os.environ, "MEMCHECK_FAKE_SLEEP": "4", "TMPDIR": str(tmp), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "diagnostics.suite.plugin", "-p", "no:cacheprovider",
                             *ARGS, "--model=kit:tiny-text"], cwd=project.path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(project.path.glob("reports/*/results.jsonl")):
        time.sleep(0.2)
    assert list(tmp.glob("memcheck-kit-*")), "the kit was not built into TMPDIR"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0, out
    (results,) = project.path.glob("reports/*/results.jsonl")
    assert (results.parent / "report.md").is_file(), out
    assert not list(tmp.glob("memcheck-kit-*")), out


# -- the user's Hugging Face environment ----------------------------------------------------------------------------------
def test_a_hub_model_is_not_forced_offline_and_a_kit_is(project, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    project.makeconftest(STAND_IN + textwrap.dedent("""
        import diagnostics.suite.hub as hub
        hub.download_model = lambda model, load_format, say: print("DOWNLOADED", model, load_format) or model
    """))
    result = run(project, *ARGS, "--deselect=test_startup_matrix.py::test_startup[b]", "--model=org/stand-in")
    out = result.stdout.str()
    assert result.ret == 0, out
    assert "RAN a timeout 900.0 env []" in out and "DOWNLOADED org/stand-in" in out
    result = run(project, *ARGS, "--deselect=test_startup_matrix.py::test_startup[b]", "--model=kit:tiny-text")
    assert "env ['HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE']" in result.stdout.str()


def test_a_hub_model_is_fetched_once_before_the_first_start(project, monkeypatch):
    project.makeconftest(STAND_IN + textwrap.dedent("""
        import diagnostics.suite.hub as hub
        hub.download_model = lambda model, load_format, say: print("DOWNLOADED", model) or model
    """))
    result = run(project, *ARGS, "--model=org/stand-in")
    out = result.stdout.str()
    assert result.ret == 0, out
    assert out.count("DOWNLOADED org/stand-in") == 1 and out.index("DOWNLOADED") < out.index("RAN a")


def test_an_unreachable_hub_is_one_line_before_any_start(project, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there: connection refused at once
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    result = run(project, *ARGS, "--model=org/some-model")
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == 1, out
    assert "RAN" not in out and "Traceback" not in out
    assert "vllm-memcheck: cannot reach the Hugging Face hub to fetch org/some-model (" in out
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = run(project, *ARGS, "--model=org/some-model")
    assert "org/some-model is not in the local Hugging Face cache and HF_HUB_OFFLINE" in result.stdout.str()
