"""The pytest plugin end to end through pytester (no engine starts here: the test bodies are stand-ins)."""

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

from diagnostics.suite.plugin import detect_gpu

pytest_plugins = ["pytester"]

NO_GPU_HERE = detect_gpu()[0] is None
needs_no_gpu = pytest.mark.skipif(not NO_GPU_HERE, reason="this machine has a GPU; the no-GPU path is not reachable")

MATRIX = """
    [defaults]
    enforce_eager = true
    dtype = "float32"
    kv_cache_memory_bytes = 67108864
    [scenarios.a]
    max_model_len = 256
    [scenarios.b]
    max_model_len = 512
    [scenarios.c]
    max_model_len = 1024
"""

# Tests whose starts are stand-ins need no vLLM either: this conftest line says vLLM is there.
VLLM_STAND_IN = "import diagnostics.suite.plugin as _plugin\n_plugin.vllm_missing = lambda: None\n"

# A stand-in for tests/test_startup_matrix.py that records which combination ran, without starting an engine.
STAND_IN = """
    import pytest
    pytestmark = pytest.mark.gpu

    def test_startup(memcheck, memcheck_combination):
        print("RAN", memcheck_combination.id)
"""


@pytest.fixture
def project(pytester):
    pytester.makepyfile(test_startup=textwrap.dedent(STAND_IN))
    pytester.makeconftest(VLLM_STAND_IN)
    (pytester.path / "tiny.toml").write_text(textwrap.dedent(MATRIX))
    return pytester


def run(pytester, *args):
    return pytester.runpytest_subprocess("-p", "diagnostics.suite.plugin", "-ra", "-p", "no:cacheprovider", *args)


@needs_no_gpu
def test_gpu_tests_skip_with_exactly_one_line_without_a_gpu(pytester):
    pytester.makepyfile(test_startup=textwrap.dedent(STAND_IN))
    result = run(pytester, "-m", "gpu", "--card=3090")
    result.assert_outcomes(skipped=48)  # the shipped matrix: 45 + 3
    lines = [line for line in result.outlines if line.startswith("SKIPPED")]
    assert len(lines) == 1, lines
    assert lines[0].startswith("SKIPPED [48] test_startup.py: no usable GPU (")
    assert "run `python -m diagnostics plan --card 3090` for a prediction, or --card=cpu" in lines[0]
    assert "RAN" not in result.stdout.str()


def test_unknown_card_is_a_usage_error_listing_the_names(project):
    result = run(project, "--card=bogus")
    assert result.ret == pytest.ExitCode.USAGE_ERROR == 4
    err = result.stderr.str()
    assert "ERROR: unknown card 'bogus'; accepted: 3090, 4090, 5090, a10, a100-40" in err
    assert "l4, " in err and "cpu" in err


def test_malformed_matrix_is_a_usage_error_naming_file_and_line(project):
    bad = project.path / "bad.toml"
    bad.write_text("[axes]\nmax_model_len = [2048]\nmax_num_seqs = []\n")
    result = run(project, "--card=cpu", f"--matrix={bad}")
    assert result.ret == 4
    assert f"ERROR: {bad}:3: axis 'max_num_seqs' is empty" in result.stderr.str()


def test_unknown_kit_and_bad_tolerance_are_usage_errors(project):
    result = run(project, "--card=cpu", "--model=kit:nope")
    assert result.ret == 4 and "unknown model kit 'kit:nope'; accepted: kit:minicpm-v-2_6" in result.stderr.str()
    result = run(project, "--card=cpu", "--model", "")  # an empty --model is not the default model (newcomer)
    assert result.ret == 4 and "--model is empty; accepted:" in result.stderr.str()
    result = run(project, "--card=cpu", "--compare-baseline=x", "--fail-on-regression=peak:lots")
    assert result.ret == 4 and "bad tolerance 'peak:lots'" in result.stderr.str()


def test_ini_twins_set_card_matrix_and_model(project):
    project.makeini(f"""
        [pytest]
        memcheck_card = cpu
        memcheck_matrix = {project.path / 'tiny.toml'}
        memcheck_model = kit:tiny-text
        memcheck_engine_timeout = 120
    """)
    result = run(project, "--collect-only")
    assert result.ret == 0
    out = result.stdout.str()
    assert "vllm-memcheck: card cpu, model kit:tiny-text (load_format auto)" in out
    assert "(3 combinations)" in out
    assert [line.strip() for line in result.outlines if "<Function" in line] == [
        "<Function test_startup[a]>", "<Function test_startup[b]>", "<Function test_startup[c]>"]
    # the CLI wins over the ini
    result = run(project, "--collect-only", "--card=3090", "--model=kit:minicpm-v-2_6")
    # the MiniCPM-V kit has no weights: dummy weights are forced
    assert "vllm-memcheck: card 3090, model kit:minicpm-v-2_6 (load_format dummy)" in result.stdout.str()


def test_help_lists_every_option_with_its_ini_twin(pytester):
    result = run(pytester, "--help")
    out = result.stdout.str()
    for flag in ("--card=NAME|auto|cpu", "--cards=FILE", "--model=ID|PATH", "--matrix=FILE", "--load-format",
                 "--engine-timeout=SECONDS", "--report-dir=DIR", "--resume", "--allow-card-mismatch",
                 "--save-baseline=NAME", "--compare-baseline=NAME|FILE", "--fail-on-regression=SPEC",
                 "--baseline-dir=DIR"):
        assert flag in out, flag
    for ini in ("card ", "cards ", "model ", "matrix ", "load_format ", "engine_timeout ", "report_dir ",
                "resume ", "allow_card_mismatch ", "save_baseline ", "compare_baseline ", "fail_on_regression ",
                "baseline_dir "):
        assert any(line.strip().startswith("memcheck_" + ini) for line in result.outlines), ini


def result_line(rid, peak=1.5, outcome="ok", startup=20.0):
    """A complete results.jsonl record as a CPU-backend sweep writes it."""
    return {
        "schema_version": 1, "run": "20260101-000000", "id": rid, "scenario": rid, "model": "kit:tiny-text",
        "load_format": "dummy", "settings": {"max_model_len": 256},
        "card": {"name": "cpu", "total_gib": 20.0, "profile_threshold_gib": 0.0, "headroom_gib": 0.0},
        "machine_info": {"card": "cpu", "gpu_name": "vLLM CPU backend", "gpu_total_gib": 20.0, "driver": None,
                         "cuda": None, "torch": "2.13.0+cpu", "vllm": "0.32.0", "python": "3.11.7",
                         "platform": "Linux"},
        "expected": "ok", "outcome": outcome, "phase": "unknown", "passed": True, "status": "passed",
        "reasons": [], "startup_s": startup, "wall_s": startup + 1, "returncode": 0, "signal": None,
        "timed_out": False, "peak_device_gib": None, "peak_process_gib": peak, "phase_peaks_gib": {},
        "torch_peak_gib": None, "vllm_numbers": {"kv_cache_tokens": 2048}, "kv_cache_gib": 0.06,
        "kv_cache_tokens": 2048, "weights_gib": None, "activation_peak_gib": None,
        "diagnosis": {"summary": "started", "culprits": []}, "request": None,
        "log_file": f"logs/{rid}.log", "timeline_file": f"timelines/{rid}.csv",
        "started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:00:21Z",
    }


def write_run(pytester, records, name="20260101-000000"):
    run_dir = pytester.path / "reports" / name
    run_dir.mkdir(parents=True)
    (run_dir / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (pytester.path / "reports" / "latest").write_text(name + "\n")
    return run_dir


def test_resume_skips_the_finished_ids_and_runs_the_rest(project):
    run_dir = write_run(project, [result_line("a"), result_line("c")])
    result = run(project, "--card=cpu", "--matrix=tiny.toml", "--resume", "-s")
    result.assert_outcomes(passed=1, skipped=2)
    out = result.stdout.str()
    assert "RAN b" in out and "RAN a" not in out and "RAN c" not in out
    assert f"SKIPPED [2] test_startup.py: already recorded in {run_dir / 'results.jsonl'} (--resume)" in out
    assert f"vllm-memcheck: resuming {run_dir} (2 finished)" in out
    # the summary table shows every combination of the run
    assert "vllm-memcheck: 2 combinations in" in out
    # without --resume nothing is skipped
    result = run(project, "--card=cpu", "--matrix=tiny.toml", "-s")
    result.assert_outcomes(passed=3)


def test_save_then_compare_baseline_fails_the_session_on_a_regression(project):
    write_run(project, [result_line("a"), result_line("b"), result_line("c")])
    result = run(project, "--card=cpu", "--matrix=tiny.toml", "--resume", "--save-baseline=pinned",
                 "--baseline-dir=bl")
    assert result.ret == 0
    saved = list((project.path / "bl").glob("*/pinned.json"))
    assert len(saved) == 1 and "saved baseline 'pinned'" in result.stdout.str()

    # a candidate run whose peak grew by 50 % on one combination
    write_run(project, [result_line("a"), result_line("b", peak=2.25), result_line("c")], name="20260102-000000")
    result = run(project, "--card=cpu", "--matrix=tiny.toml", "--resume", "--compare-baseline=pinned",
                 "--baseline-dir=bl", "--fail-on-regression=peak:5%")
    out = result.stdout.str()
    assert result.ret == 1, out
    assert "regressed" in out and "peak memory 1.50 -> 2.25" in out
    assert "regression beyond tolerance, or combinations missing: the session fails" in out
    # a 60 % tolerance lets it pass
    result = run(project, "--card=cpu", "--matrix=tiny.toml", "--resume", "--compare-baseline=pinned",
                 "--baseline-dir=bl", "--fail-on-regression=peak:60%")
    assert result.ret == 0

    # a baseline from another machine is a warning naming both, not a crash
    other = [result_line(rid) for rid in "abc"]
    for record in other:
        record["machine_info"].update(gpu_name="NVIDIA GeForce RTX 3090", driver="550.54")
    write_run(project, other, name="20260103-000000")
    result = run(project, "--card=cpu", "--matrix=tiny.toml", "--resume", "--compare-baseline=pinned",
                 "--baseline-dir=bl")
    assert result.ret == 0
    assert ("warning: baseline measured on vLLM CPU backend (driver none), this run on NVIDIA GeForce RTX 3090 "
            "(driver 550.54)") in result.stdout.str()


def test_compare_without_a_baseline_fails_unless_told_to_record_one(project):
    write_run(project, [result_line("a"), result_line("b"), result_line("c")])
    result = run(project, "--card=cpu", "--matrix=tiny.toml", "--resume", "--compare-baseline=first",
                 "--baseline-dir=bl")
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # issue #9: never the candidate as its own baseline, passing
    assert "no baseline 'first' under bl/" in result.stderr.str() and not (project.path / "bl").exists()
    result = run(project, "--card=cpu", "--matrix=tiny.toml", "--resume", "--compare-baseline=first",
                 "--baseline-dir=bl", "--save-baseline-if-missing")
    assert result.ret == 0
    assert "no baseline 'first' yet under bl/; recorded this run as it" in result.stdout.str()
    assert len(list((project.path / "bl").glob("*/first.json"))) == 1


def test_pedantic_runs_the_start_once_even_with_benchmark_disabled(pytester):
    pytester.makepyfile(test_b="""
        calls = []
        def test_b(benchmark):
            assert benchmark.pedantic(lambda: calls.append(1) or 7, rounds=1, iterations=1) == 7
            assert calls == [1]
    """)
    pytester.runpytest_subprocess("--benchmark-disable").assert_outcomes(passed=1)
    pytester.runpytest_subprocess("--benchmark-enable").assert_outcomes(passed=1)


# -- the whole flow with a stand-in launcher (no engine): results, xfail, diagnosis, summary, xdist -------------
# Log lines copied verbatim from shared/cpu-vllm/README.md (§3 explicit sizing, §4 case 1).
OK_LOG = """\
(Worker pid=N) INFO 11-24 14:05:44 [cpu_worker.py:260] Explicitly set (0.06/11.34) GiB for KV cache on node 0.
(EngineCore pid=N) INFO 11-24 14:05:44 [kv_cache_utils.py:2327] CPU KV cache size: 131,072 tokens, Maximum concurrency for 512 tokens per request: 256.00x
(EngineCore pid=N) INFO 11-24 14:05:44 [core.py:402] init engine (profile, create kv cache, warmup model) took 0.04 s
"""
KV_SMALL_LOG = """\
ValueError: To serve at least one request with the model's max seq len (4096), (0.0 GiB KV cache is needed, which is larger than the available KV cache memory (0.0 GiB). Based on the available memory, the estimated maximum model length is 1920. Try increasing `gpu_memory_utilization` (which also controls CPU memory on the CPU backend) or decreasing `max_model_len` when initializing the engine. See https://docs.vllm.ai/en/latest/configuration/conserving_memory/ for more details.
"""
# Verbatim from shared/cpu-vllm/README.md §1b (the GPU wheel on a machine without a GPU): not a memory failure.
BROKEN_LOG = "RuntimeError: Device string must not be empty\n"
FAKE_LAUNCHER = VLLM_STAND_IN + f"""
import os
from pathlib import Path
import diagnostics.engine.launch as launch
from diagnostics.logs.reader import read_log

OK_LOG = {OK_LOG!r}
KV_SMALL_LOG = {KV_SMALL_LOG!r}
BROKEN_LOG = {BROKEN_LOG!r}

def fake_run_start(spec):
    broken = spec.settings.get("max_num_seqs") == 3
    small = broken or spec.settings.get("kv_cache_memory_bytes") == 1048576  # both: no engine came up
    text = BROKEN_LOG if broken else KV_SMALL_LOG if small else OK_LOG
    Path(spec.log_path).write_text(text)
    Path(spec.timeline_path).write_text("t_s,device_used_gib,process_gib,phase\\n0.0,,1.0,init\\n")
    peak = 1.0 + spec.settings["max_model_len"] / 1024
    return launch.StartResult(
        returncode=1 if small else 0, signal=None, timed_out=False, wall_s=2.0, startup_s=None if small else 1.5,
        peak_device_gib=None, peak_process_gib=peak, phase_peaks_gib={{"profile": 1.0}}, torch_peak_gib=None,
        request=None if small else {{"ok": True}}, log_path=spec.log_path, timeline_path=spec.timeline_path,
        before_kv_peak_gib=1.0, log=read_log(text))

def pytest_configure(config):
    launch.run_start = fake_run_start
"""
FLOW_MATRIX = """
    [matrix]
    model = "stand-in-model"
    [defaults]
    enforce_eager = true
    kv_cache_memory_bytes = 67108864
    [thresholds.cpu]
    peak_gib = 2.0
    [scenarios.ok-256]
    max_model_len = 256
    expect = "ok"
    [scenarios.kv-too-small]
    max_model_len = 4096
    kv_cache_memory_bytes = 1048576
    expect = "kv_too_small"
    [scenarios.too-big]
    max_model_len = 2048
    expect = "ok"
    [scenarios.unasserted]
    max_model_len = 512
"""


@pytest.fixture
def flow(pytester):
    from pathlib import Path

    real_module = Path(__file__).resolve().parents[1] / "test_startup_matrix.py"
    pytester.makepyfile(test_startup_matrix=real_module.read_text())
    pytester.makeconftest(FAKE_LAUNCHER)
    (pytester.path / "flow.toml").write_text(textwrap.dedent(FLOW_MATRIX))
    return pytester


def flow_records(pytester) -> list[dict]:
    (path,) = pytester.path.glob("reports/*/results.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_flow_records_every_start_and_fails_with_the_diagnosis(flow, xdist):
    result = run(flow, "--card=cpu", "--matrix=flow.toml", "--benchmark-disable", *xdist)
    result.assert_outcomes(passed=2, xfailed=1, failed=1)
    records = {r["id"]: r for r in flow_records(flow)}
    assert sorted(records) == ["kv-too-small", "ok-256", "too-big", "unasserted"]  # one run dir, even with xdist
    assert len(list(flow.path.glob("reports/2*"))) == 1
    assert records["ok-256"]["status"] == "passed" and records["ok-256"]["kv_cache_tokens"] == 131072
    assert records["unasserted"]["status"] == "recorded" and records["unasserted"]["expected"] is None
    small = records["kv-too-small"]
    assert (small["outcome"], small["status"]) == ("kv_too_small", "xfail")
    big = records["too-big"]
    assert big["reasons"] == ["overall peak 3.00 GiB > 2.00 GiB allowed on cpu"] and big["passed"] is False
    out = result.stdout.str()
    # the failure is one paragraph (the diagnosis) plus the numbers section, no traceback
    failure = out[out.index("test_startup[too-big]"):out.index("short test summary")]
    assert "too-big on cpu: ok. Failed: overall peak 3.00 GiB > 2.00 GiB allowed on cpu." in failure
    assert "Traceback" not in failure and "memcheck.verify" not in failure
    assert "vllm-memcheck" in failure and "overall limit    2.00 GiB" in failure
    assert "FAILED test_startup_matrix.py::test_startup[too-big] - too-big on cpu" in out
    # the summary table: one row per combination
    table = out[out.index("vllm-memcheck: 4 combinations in"):]
    for rid, status in (("ok-256", "passed"), ("kv-too-small", "xfail"), ("too-big", "failed"),
                        ("unasserted", "recorded")):
        assert any(line.split()[:1] == [rid] and status in line.split() for line in table.splitlines()), rid


# NVML in the subprocess: the real nvidia-ml-py wrappers over the fake driver of tests/unit/fake_nvml_driver.py
FAKE_NVML = VLLM_STAND_IN + f"""
import sys, types
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
from fake_nvml_driver import FakeDriver, FakeGpu
FakeDriver([FakeGpu(GPU_NAME)]).install(types.SimpleNamespace(setattr=setattr))
"""


def fake_nvml(gpu_name: str) -> str:
    return FAKE_NVML.replace("GPU_NAME", repr(gpu_name))


def test_card_against_what_nvml_reports(project):
    project.makeconftest(fake_nvml("NVIDIA GeForce RTX 4090"))
    result = run(project, "--card=3090", "--collect-only")
    assert result.ret == 4
    assert ("ERROR: --card=3090 (NVIDIA GeForce RTX 3090) but NVML reports 'NVIDIA GeForce RTX 4090' (card 4090); "
            "pass the right --card, or --allow-card-mismatch") in result.stderr.str()
    result = run(project, "--card=3090", "--allow-card-mismatch", "--collect-only")
    assert result.ret == 0
    assert "vllm-memcheck: warning: --card=3090 (NVIDIA GeForce RTX 3090) but NVML reports" in result.stdout.str()
    result = run(project, "--collect-only")  # --card auto
    assert result.ret == 0 and "vllm-memcheck: card 4090," in result.stdout.str()
    assert "gpu tests skip" not in result.stdout.str()


@pytest.mark.parametrize("named, gpu, detected", [("a10", "NVIDIA A100-SXM4-80GB", "a100-80"), ("l4", "NVIDIA L40S", "l40s"),
                                                  ("l40", "NVIDIA L40S", "l40s"), ("h20", "NVIDIA H200", "h200")])
def test_card_mismatch_check_is_not_fooled_by_prefixes(project, named, gpu, detected):   # review F1
    project.makeconftest(fake_nvml(gpu))
    result = run(project, f"--card={named}", "--collect-only")
    assert result.ret == 4 and f"but NVML reports {gpu!r} (card {detected})" in result.stderr.str()
    result = run(project, "--collect-only")  # --card auto
    assert result.ret == 0 and f"vllm-memcheck: card {detected}," in result.stdout.str()


# Without an asserted expectation a memory failure is recorded, but a start that broke for another reason measured
# nothing: it must fail (the stand-in launcher writes BROKEN_LOG for max_num_seqs = 3).
UNASSERTED_MATRIX = """
    [matrix]
    model = "stand-in-model"
    [defaults]
    enforce_eager = true
    kv_cache_memory_bytes = 67108864
    [scenarios.broken]
    max_model_len = 512
    max_num_seqs = 3
    [scenarios.kv-small]
    max_model_len = 4096
    kv_cache_memory_bytes = 1048576
"""


def test_a_non_memory_failure_fails_even_where_nothing_is_asserted(pytester):
    real_module = Path(__file__).resolve().parents[1] / "test_startup_matrix.py"
    pytester.makepyfile(test_startup_matrix=real_module.read_text())
    pytester.makeconftest(FAKE_LAUNCHER)
    (pytester.path / "m.toml").write_text(textwrap.dedent(UNASSERTED_MATRIX))
    result = run(pytester, "--card=cpu", "--matrix=m.toml", "--benchmark-disable")
    result.assert_outcomes(passed=1, failed=1)
    records = {r["id"]: r for r in flow_records(pytester)}
    assert (records["kv-small"]["status"], records["kv-small"]["outcome"]) == ("recorded", "kv_too_small")
    broken = records["broken"]
    assert broken["status"] == "failed" and broken["outcome"] not in ("ok", "kv_too_small")
    assert broken["reasons"][0].startswith("the start did not come up and not for memory: ")
    assert "Device string must not be empty" in broken["reasons"][0]


def test_a_model_path_that_does_not_exist_is_a_usage_error(project, tmp_path):
    result = run(project, "--card=cpu", "--matrix=tiny.toml", f"--model={tmp_path / 'nope'}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"ERROR: model path '{tmp_path / 'nope'}' does not exist; accepted: a local model directory" \
        in result.stderr.str()
    (tmp_path / "empty").mkdir()
    result = run(project, "--card=cpu", "--matrix=tiny.toml", f"--model={tmp_path / 'empty'}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "has no config.json" in result.stderr.str()

# -- issue #9: the gate's holes, options checked before the first start, --engine-timeout=0, SIGTERM, --card=cpu,
# the user's Hugging Face environment (a stand-in launcher that prints what each start got) -----------------------
ROOT = Path(__file__).resolve().parents[2]

# A launcher stand-in: prints RAN <id>, writes an OK log and a peak that grows with max_model_len. MEMCHECK_FAKE_SLEEP
# makes each start take that long (for SIGTERM); MEMCHECK_FAKE_TIMEOUT makes every start time out.
GATE_STAND_IN = """
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

# -- --search (issue #14): a stand-in launcher whose engine starts up to max_model_len 1920 -------------------------
SEARCH_LAUNCHER = FAKE_LAUNCHER.replace(
    'small = broken or spec.settings.get("kv_cache_memory_bytes") == 1048576',
    'small = broken or spec.settings["max_model_len"] > 1920') + """
import diagnostics.suite.run as _run
_run.CPU_REFUSED = ()  # the stand-in engine starts nothing: MiniCPM-V-2_6's shapes only seed plan --fit (issue #9 refusal)
import diagnostics.suite.hub as _hub
_hub.download_model = lambda model, load_format, say: model  # no hub fetch (main's suite/hub) for the stand-in
"""
SEARCH_MATRIX = """
    [matrix]
    model = "openbmb/MiniCPM-V-2_6"
    [defaults]
    enforce_eager = true
    kv_cache_memory_bytes = 114688000   # 2,000 tokens of MiniCPM-V-2_6 (57,344 B each): plan --fit predicts 2000
    [scenarios.never-run]
    max_model_len = 256
"""


@pytest.fixture
def searching(pytester):
    real_module = Path(__file__).resolve().parents[1] / "test_startup_matrix.py"
    pytester.makepyfile(test_startup_matrix=real_module.read_text())
    pytester.makeconftest(SEARCH_LAUNCHER)
    (pytester.path / "search.toml").write_text(textwrap.dedent(SEARCH_MATRIX))
    return pytester


def test_search_finds_the_limit_seeded_by_the_prediction(searching):
    from diagnostics.cards import load_cards_toml

    result = run(searching, "--card=cpu", "--matrix=search.toml", "--search=max_model_len")
    result.assert_outcomes(passed=1, deselected=1)  # the matrix's test is not run
    records = flow_records(searching)
    (run_dir,) = searching.path.glob("reports/2*")
    summary = json.loads((run_dir / "search.json").read_text())
    assert summary["limit"] == 1920 and summary["predicted"] == 2000 and summary["grid"] == 2048
    assert summary["probes"][0] == {"value": 2000, "fits": False}  # the first start is the prediction
    assert len(records) == summary["starts"] <= summary["max_starts"] == 12
    assert [r["id"] for r in records] == summary["ids"] and records[0]["id"] == "search-mml2000"
    assert {r["outcome"] for r in records} == {"ok", "kv_too_small"}
    assert "Measured limit **1920**" in (run_dir / "search.md").read_text()
    assert "## Limit search: max_model_len on cpu" in (run_dir / "report.md").read_text()
    cards = load_cards_toml(run_dir / "cards-snippet.toml")  # ready to paste: it loads
    assert "cpu" in cards and "measured limit 1920 (predicted 2000)" in (run_dir / "cards-snippet.toml").read_text()
    out = result.stdout.str()
    assert f"--search max_model_len: measured limit 1920, predicted 2000; {len(records)} starts for a grid of 2048" in out


def test_search_stops_on_a_non_memory_failure_and_rejects_unknown_settings(searching):
    (searching.path / "broken.toml").write_text(textwrap.dedent(SEARCH_MATRIX).replace(
        "enforce_eager = true", "enforce_eager = true\nmax_num_seqs = 3"))
    result = run(searching, "--card=cpu", "--matrix=broken.toml", "--search=max_model_len")
    result.assert_outcomes(failed=1, deselected=1)
    assert "--search max_model_len: search-mml2000 failed with" in result.stdout.str()
    result = run(searching, "--card=cpu", "--matrix=search.toml", "--search=gpu_memory_utilization")
    assert result.ret == 4 and "unknown --search setting 'gpu_memory_utilization'; accepted: max_model_len" \
        in result.stderr.str()


# -- --search KNOB (issue #23): the stand-in engine starts up to max_slice_nums 5; each start sends one image ------
KNOB_LAUNCHER = SEARCH_LAUNCHER.replace(
    'small = broken or spec.settings["max_model_len"] > 1920',
    'small = broken or (spec.settings.get("mm_processor_kwargs") or {}).get("max_slice_nums", 9) > 5').replace(
    "def fake_run_start(spec):\n", "def fake_run_start(spec):\n    print('PROBE', spec.id, spec.request, spec.planted_budget_bytes, list(spec.image_size))\n")


def test_search_a_knob_sends_an_item_of_the_probed_size(searching):
    searching.makeconftest(KNOB_LAUNCHER)
    (searching.path / "knob.toml").write_text(textwrap.dedent(SEARCH_MATRIX).replace(
        "enforce_eager = true", "enforce_eager = true\nmax_model_len = 4096").replace(
        "[matrix]", "[matrix]\nplanted_budget_mib = 64"))
    result = run(searching, "-s", "--card=cpu", "--matrix=knob.toml", "--search=max_slice_nums")
    result.assert_outcomes(passed=1, deselected=1)
    (run_dir,) = searching.path.glob("reports/2*")
    summary = json.loads((run_dir / "search.json").read_text())
    assert summary["limit"] == 5 and summary["grid"] == 9 and summary["starts"] <= summary["max_starts"] == 5
    assert summary["limit_label"] == "5 slices" and summary["knob"]["setting"] == "mm_processor_kwargs"
    probes = [line[line.index("PROBE"):].split() for line in result.stdout.str().splitlines() if "PROBE" in line]
    assert len(probes) == summary["starts"]
    for _, cid, request, budget, *size in probes:  # one 448 x 448n image per start: it fills max_slice_nums = n
        n = int(cid.removeprefix("search-slices"))
        assert request == "True" and size == ["[448,", f"{448 * n}]"]
        assert budget == str(64 << 20)  # the matrix's planted budget reaches every probe (cpu card)
    assert summary["planted_budget_mib"] == 64 and "plan does not model it" in summary["prediction_note"]
    assert "--search max_slice_nums: measured limit 5 slices" in result.stdout.str()


def test_search_a_knob_of_a_text_model_is_refused_at_collection(searching):               # newcomer pass
    (searching.path / "text").mkdir()
    (searching.path / "text" / "config.json").write_text(json.dumps({
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2, "vocab_size": 512,
        "max_position_embeddings": 4096, "torch_dtype": "float32"}))
    result = run(searching, "--card=cpu", "--matrix=search.toml", f"--model={searching.path / 'text'}",
                 "--search=max_pixels")
    err = result.stderr.str().strip()
    assert result.ret == 4 and "PROBE" not in result.stdout.str()
    line = err.splitlines()[-1]
    assert "--search max_pixels: not a multimodal knob of" in line and \
        "accepted: none (no vision tower) (or an engine setting: max_model_len, max_num_seqs)" in line


def test_search_takes_the_knob_aliases_plan_fit_takes(searching):                          # newcomer pass
    result = run(searching, "--collect-only", "-q", "--card=3090", "--model=OpenGVLab/InternVL3_5-8B-HF",
                 "--search=max_dynamic_patch")  # plan --fit max_dynamic_patch's alias of max_patches
    assert result.ret == 0, result.stderr.str()
    assert "test_search_limit" in result.stdout.str() and "test_startup[" not in result.stdout.str()
    result = run(searching, "--collect-only", "--card=3090", "--search=max_dynamic_patchez")
    assert result.ret == 4 and "(or an alias: max_dynamic_patch, " in result.stderr.str()


def test_without_search_the_search_test_is_not_collected(searching):
    result = run(searching, "--card=cpu", "--matrix=search.toml", "--collect-only", "-q")
    assert "test_startup[never-run]" in result.stdout.str() and "test_search_limit" not in result.stdout.str()


# -- several GPUs in one box (issue #14): xdist workers pinned to their own GPU, a TP=2 start claims two ---------------
GPU_BOX = VLLM_STAND_IN + f"""
import os, sys
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
from pathlib import Path
import pytest
from fake_nvml_driver import FakeDriver, FakeGpu
# the real nvidia-ml-py, answered by a fake driver of four H100s (undone when the process ends)
FakeDriver([FakeGpu(name="NVIDIA H100 80GB HBM3", total=80 << 30, used=300 << 20) for _ in range(4)]).install(
    pytest.MonkeyPatch())
import diagnostics.engine.launch as launch
from diagnostics.logs.reader import read_log

OK_LOG = {OK_LOG!r}

def fake_run_start(spec):
    Path(spec.log_path).write_text(OK_LOG)
    Path(spec.timeline_path).write_text("t_s,device_used_gib,process_gib,phase\\n0.0,1.0,1.0,init\\n")
    Path(str(spec.log_path) + ".worker").write_text(os.environ.get("PYTEST_XDIST_WORKER", "-"))
    peaks = {{str(d): 10.0 + d for d in spec.devices}}
    return launch.StartResult(
        returncode=0, signal=None, timed_out=False, wall_s=2.0, startup_s=1.5, peak_device_gib=sum(peaks.values()),
        peak_process_gib=1.0, phase_peaks_gib={{"profile": 1.0}}, torch_peak_gib=None, request={{"ok": True}},
        log_path=spec.log_path, timeline_path=spec.timeline_path, before_kv_peak_gib=1.0, log=read_log(OK_LOG),
        device_peaks_gib=peaks)

def pytest_configure(config):
    launch.run_start = fake_run_start
"""
GATE_MATRIX = """
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
GATE_ARGS = ("--card=cpu", "--matrix=m.toml", "--benchmark-disable", "-s")


def gate_line(rid: str, vllm: str = "0.31.0", peak: float = 1.25, **extra) -> dict:
    return {"schema_version": 1, "run": "r", "id": rid, "outcome": "ok", "status": "passed", "passed": True,
            "expected": "ok", "peak_process_gib": peak, "peak_device_gib": None, "kv_cache_tokens": 131072,
            "startup_s": 1.5, "settings": {"enforce_eager": True, "kv_cache_memory_bytes": 67108864,  # GATE_MATRIX's
                                           "max_model_len": {"a": 256, "b": 512}.get(rid, 1024)},
            "machine_info": {"card": "cpu", "gpu_name": "vLLM CPU backend", "driver": None, "vllm": vllm}, **extra}


@pytest.fixture
def stand_in(pytester):
    pytester.makepyfile(test_startup_matrix=(ROOT / "tests" / "test_startup_matrix.py").read_text())
    pytester.makeconftest(GATE_STAND_IN)
    (pytester.path / "m.toml").write_text(GATE_MATRIX)
    return pytester


def usage_error(result) -> str:
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    assert "RAN" not in result.stdout.str()  # refused before the first start
    assert "Traceback" not in result.stderr.str() + result.stdout.str()
    return result.stderr.str()


def write_gate_run(pytester, records, name="20260101-000000") -> Path:
    run_dir = pytester.path / "reports" / name
    run_dir.mkdir(parents=True)
    (run_dir / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (pytester.path / "reports" / "latest").write_text(name + "\n")
    return run_dir


# -- the gate ------------------------------------------------------------------------------------------------------
def test_a_missing_compare_baseline_fails_before_the_first_start(stand_in):
    err = usage_error(run(stand_in, *GATE_ARGS, "--compare-baseline=pinned", "--baseline-dir=bl"))
    assert "no baseline 'pinned' under bl" in err and "--save-baseline-if-missing" in err
    assert not (stand_in.path / "bl").exists()


def test_save_baseline_if_missing_records_it_on_purpose(stand_in):
    result = run(stand_in, *GATE_ARGS, "--compare-baseline=pinned", "--baseline-dir=bl", "--save-baseline-if-missing")
    assert result.ret == 0, result.stdout.str()
    assert "no baseline 'pinned' yet under bl/; recorded this run as it" in result.stdout.str()
    assert len(list((stand_in.path / "bl").glob("*/pinned.json"))) == 1
    # now it exists: the next run compares with it
    result = run(stand_in, *GATE_ARGS, "--compare-baseline=pinned", "--baseline-dir=bl")
    assert result.ret == 0 and "compared with baseline" in result.stdout.str()


def test_a_partial_candidate_fails_the_gate(stand_in):
    (stand_in.path / "full.json").write_text(json.dumps({"name": "full", "results": [gate_line(r) for r in "abc"]}))
    result = run(stand_in, *GATE_ARGS, "--compare-baseline=./full.json", "--deselect=test_startup_matrix.py::test_startup[b]",
                 "--fail-on-regression=peak:off")
    out = result.stdout.str()
    assert result.ret == 1, out
    assert "2 combinations of the baseline are missing from the candidate: b, c" in out
    assert "baseline: vLLM 0.31.0" in out and "candidate: vLLM " in out


def test_resume_does_not_turn_a_recorded_failure_into_a_pass(stand_in):
    write_gate_run(stand_in, [gate_line("a", outcome="oom_profile", status="failed", passed=False,
                                    reasons=["expected ok (matrix), got oom_profile"])])
    result = run(stand_in, *GATE_ARGS, "--resume")
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
def test_bad_options_are_usage_errors_before_the_first_start(stand_in, args, says):
    (stand_in.path / "a-file").write_text("x")
    (stand_in.path / "not-json.json").write_text("hello")
    err = usage_error(run(stand_in, *GATE_ARGS, *args))
    assert says in err, err


def test_engine_timeout_zero_means_no_limit(stand_in):
    result = run(stand_in, *GATE_ARGS, "--engine-timeout=0", "--deselect=test_startup_matrix.py::test_startup[b]")
    out = result.stdout.str()
    assert result.ret == 0, out
    assert "no engine timeout (--engine-timeout=0)" in out and "RAN a timeout None" in out


def test_a_timed_out_start_names_engine_timeout(stand_in, monkeypatch):
    monkeypatch.setenv("MEMCHECK_FAKE_TIMEOUT", "1")
    result = run(stand_in, *GATE_ARGS, "--engine-timeout=7", "--deselect=test_startup_matrix.py::test_startup[b]")
    out = result.stdout.str()
    assert result.ret == 1
    line = next(line for line in out.splitlines() if line.startswith("a on cpu: timeout"))
    assert "did not come up within --engine-timeout=7 s" in line
    assert "started" not in line.split("--engine-timeout")[0]  # no "the engine started" next to "timeout"


# -- --card=cpu -----------------------------------------------------------------------------------------------------------
def test_card_cpu_without_a_matrix_picks_the_cpu_matrix_and_a_kit(stand_in):
    result = run(stand_in, "--card=cpu", "--collect-only")
    out = result.stdout.str()
    assert result.ret == 0, out
    assert "model kit:tiny-text" in out and "cpu-tiny.toml" in out


@pytest.mark.parametrize("model", ["openbmb/MiniCPM-V-2_6", "kit:minicpm-v-2_6", "qwen2.5-vl-7b",
                                   "kit:qwen2.5-vl-7b", "moonshotai/Kimi-VL-A3B-Instruct"])  # newcomer pass: any size
def test_card_cpu_refuses_the_16_gb_model_in_one_line(stand_in, model):
    err = usage_error(run(stand_in, "--card=cpu", "--matrix=m.toml", f"--model={model}", "--collect-only"))
    line = next(line for line in err.splitlines() if line.startswith("ERROR:"))
    assert "kit:tiny-text" in line and "kit:minicpm-v-2_6-tiny" in line


# -- SIGTERM ----------------------------------------------------------------------------------------------------------------
def test_sigterm_writes_the_report_and_removes_the_kit_directory(stand_in, tmp_path):
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    env = {**os.environ, "MEMCHECK_FAKE_SLEEP": "4", "TMPDIR": str(tmp), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "diagnostics.suite.plugin", "-p", "no:cacheprovider",
                             *GATE_ARGS, "--model=kit:tiny-text"], cwd=stand_in.path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(stand_in.path.glob("reports/*/results.jsonl")):
        time.sleep(0.2)
    assert list(tmp.glob("memcheck-kit-*")), "the kit was not built into TMPDIR"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0, out
    (results,) = stand_in.path.glob("reports/*/results.jsonl")
    assert (results.parent / "report.md").is_file(), out
    assert not list(tmp.glob("memcheck-kit-*")), out


# -- the user's Hugging Face environment ----------------------------------------------------------------------------------
def test_a_hub_model_is_not_forced_offline_and_a_kit_is(stand_in, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    stand_in.makeconftest(GATE_STAND_IN + textwrap.dedent("""
        import diagnostics.suite.hub as hub
        hub.download_model = lambda model, load_format, say: print("DOWNLOADED", model, load_format) or model
    """))
    result = run(stand_in, *GATE_ARGS, "--deselect=test_startup_matrix.py::test_startup[b]", "--model=org/stand-in")
    out = result.stdout.str()
    assert result.ret == 0, out
    assert "RAN a timeout 900.0 env []" in out and "DOWNLOADED org/stand-in" in out
    result = run(stand_in, *GATE_ARGS, "--deselect=test_startup_matrix.py::test_startup[b]", "--model=kit:tiny-text")
    assert "env ['HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE']" in result.stdout.str()


def test_a_hub_model_is_fetched_once_before_the_first_start(stand_in, monkeypatch):
    stand_in.makeconftest(GATE_STAND_IN + textwrap.dedent("""
        import diagnostics.suite.hub as hub
        hub.download_model = lambda model, load_format, say: print("DOWNLOADED", model) or model
    """))
    result = run(stand_in, *GATE_ARGS, "--model=org/stand-in")
    out = result.stdout.str()
    assert result.ret == 0, out
    assert out.count("DOWNLOADED org/stand-in") == 1 and out.index("DOWNLOADED") < out.index("RAN a")


def test_an_unreachable_hub_is_one_line_before_any_start(stand_in, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there: connection refused at once
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)  # CI (.ci/run) exports both
    result = run(stand_in, *GATE_ARGS, "--model=org/some-model")
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == 1, out
    assert "RAN " not in out and "Traceback" not in out  # "RAN <id>": the stand-in launcher started something
    assert "vllm-memcheck: cannot reach the Hugging Face hub to fetch org/some-model (" in out
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = run(stand_in, *GATE_ARGS, "--model=org/some-model")
    assert "org/some-model is not in the local Hugging Face cache and HF_HUB_OFFLINE" in result.stdout.str()

# A start whose environment is refused fails in one line; a start that leaves the device unclean is recorded
# before the sweep stops (issue #16: review F12/F13).
UNCLEAN_LAUNCHER = FAKE_LAUNCHER + """
from diagnostics.errors import UsageError

def refusing_run_start(spec):
    if spec.settings.get("max_num_seqs") == 5:
        raise UsageError("CUDA_DEVICE_ORDER=FASTEST_FIRST: CUDA would number the GPUs otherwise than NVML")
    result = fake_run_start(spec)
    err = launch.DeviceNotClean("device memory of X did not return to baseline after unclean")
    err.result = result
    raise err

def pytest_configure(config):
    launch.run_start = refusing_run_start
"""
UNCLEAN_MATRIX = """
    [matrix]
    model = "stand-in-model"
    [defaults]
    enforce_eager = true
    kv_cache_memory_bytes = 67108864
    [scenarios.a-env]
    max_model_len = 512
    max_num_seqs = 5
    [scenarios.b-unclean]
    max_model_len = 512
    max_num_seqs = 6
"""


def test_a_refused_environment_fails_in_one_line_and_an_unclean_start_is_recorded(pytester):
    real_module = Path(__file__).resolve().parents[1] / "test_startup_matrix.py"
    pytester.makepyfile(test_startup_matrix=real_module.read_text())
    pytester.makeconftest(UNCLEAN_LAUNCHER)
    (pytester.path / "m.toml").write_text(textwrap.dedent(UNCLEAN_MATRIX))
    result = run(pytester, "--card=cpu", "--matrix=m.toml", "--benchmark-disable")
    out = result.stdout.str()
    assert "vllm-memcheck: CUDA_DEVICE_ORDER=FASTEST_FIRST" in out and "raise UsageError" not in out
    assert "did not return to baseline after unclean" in out + result.stderr.str()
    (path,) = pytester.path.glob("reports/*/results.jsonl")
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == ["b-unclean"]


GPU_BOX_MATRIX = """
    [matrix]
    model = "stand-in-model"
    [defaults]
    max_num_seqs = 4
""" + "".join(f"""
    [scenarios.s{i}]
    max_model_len = {256 * (i + 1)}
""" for i in range(7)) + """
    [scenarios.tp2]
    max_model_len = 4096
    tensor_parallel_size = 2
"""


@pytest.mark.parametrize("gpus", [None, "0,2,3"])
def test_xdist_workers_each_get_their_own_gpu(pytester, gpus):
    real_module = Path(__file__).resolve().parents[1] / "test_startup_matrix.py"
    pytester.makepyfile(test_startup_matrix=real_module.read_text())
    pytester.makeconftest(GPU_BOX)
    (pytester.path / "box.toml").write_text(textwrap.dedent(GPU_BOX_MATRIX))
    extra = [f"--gpus={gpus}"] if gpus else []
    result = run(pytester, "--card=h100-80", "--matrix=box.toml", "-n", "4", *extra)
    result.assert_outcomes(passed=8)
    (run_dir,) = pytester.path.glob("reports/2*")  # one run for all four workers
    records = {r["id"]: r for r in flow_records(pytester)}
    assert len(records) == 8
    listed = [int(g) for g in gpus.split(",")] if gpus else [0, 1, 2, 3]
    workers = set()
    for rid, record in records.items():
        worker = (run_dir / "logs" / f"{rid}.log.worker").read_text()
        workers.add(worker)
        own = listed[int(worker[2:]) % len(listed)]
        claimed = [int(d) for d in record["device_peaks_gib"]]
        if rid == "tp2":
            assert claimed == [own, listed[(listed.index(own) + 1) % len(listed)]]
            assert record["device_peaks_sum_gib"] == sum(10.0 + d for d in claimed)
        else:
            assert claimed == [own], (rid, worker, record["device_peaks_gib"])
    assert len(workers) > 1  # the load really was spread over workers


# -- cache state, repeats and the worst-case request (issue 25) ---------------------------------------------------
SPYING_LAUNCHER = FAKE_LAUNCHER + """
import json
calls = []
_fake = fake_run_start

def spying_run_start(spec):
    result = _fake(spec)
    calls.append(1)
    result.peak_process_gib += 0.01 * len(calls)  # a spread between the repeats
    with open("starts.jsonl", "a") as f:
        f.write(json.dumps({"log": Path(spec.log_path).name, "env": {k: spec.env.get(k) for k in
                            ("VLLM_CACHE_ROOT", "TORCHINDUCTOR_CACHE_DIR")}, "request": spec.request,
                            "worst_case": spec.worst_case}) + "\\n")
    return result

def pytest_configure(config):
    launch.run_start = spying_run_start
"""


def spied(pytester) -> list[dict]:
    return [json.loads(line) for line in (pytester.path / "starts.jsonl").read_text().splitlines()]


def test_warm_starts_after_a_discarded_warm_up_and_repeats_carry_their_spread(flow):
    flow.makeconftest(SPYING_LAUNCHER)
    result = run(flow, "--card=cpu", "--matrix=flow.toml", "--benchmark-disable", "-k", "ok-256",
                 "--cache-state=warm", "--repeat=2", "--worst-case=on")
    result.assert_outcomes(passed=1, deselected=4)
    starts = spied(flow)
    assert [s["log"] for s in starts] == ["ok-256.warmup.log", "ok-256.log", "ok-256.r2.log"]
    assert starts[0]["worst_case"] is None and starts[1]["worst_case"]  # the warm-up serves nothing
    roots = {s["env"]["VLLM_CACHE_ROOT"] for s in starts}
    assert len(roots) == 1 and None not in roots  # one cache, filled by the warm-up, used by both measured starts
    (record,) = flow_records(flow)
    assert record["cache_state"] == "warm" and record["warmup"]["log_file"] == "logs/ok-256.warmup.log"
    peak = record["repeat"]["figures"]["peak"]
    assert record["repeat"]["n"] == 2 and (peak["min"], peak["max"]) == (1.25 + 0.02, 1.25 + 0.03)
    assert not Path(roots.pop()).exists()  # the run's caches are removed


def test_cold_starts_each_get_fresh_caches_and_the_worst_case_goes_to_the_child(flow):
    flow.makeconftest(SPYING_LAUNCHER)
    result = run(flow, "--card=cpu", "--matrix=flow.toml", "--benchmark-disable", "-k", "ok-256", "--repeat=2",
                 "--worst-case=on")
    result.assert_outcomes(passed=1, deselected=4)
    first, second = spied(flow)
    assert first["env"]["VLLM_CACHE_ROOT"] != second["env"]["VLLM_CACHE_ROOT"]
    assert first["env"]["TORCHINDUCTOR_CACHE_DIR"].startswith(first["env"]["VLLM_CACHE_ROOT"].rsplit("/", 1)[0])
    case = first["worst_case"]
    assert (case["max_model_len"], case["prompt_tokens"], case["batch"]) == (256, 240, 1)
    assert flow_records(flow)[0]["cache_state"] == "cold"


def test_bad_repeat_and_a_baseline_of_another_cache_state_are_usage_errors(flow, tmp_path):
    result = run(flow, "--card=cpu", "--matrix=flow.toml", "--repeat=0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "bad repeat '0'; accepted: a whole number of starts from 1 to 20" in result.stderr.str()
    baseline = tmp_path / "warm.json"
    baseline.write_text(json.dumps({"name": "w", "results": [{"id": "ok-256", "outcome": "ok", "cache_state": "warm"}]}))
    result = run(flow, "--card=cpu", "--matrix=flow.toml", f"--compare-baseline={baseline}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "baseline ran with warm compile caches, the candidate with cold" in result.stderr.str()


def test_thresholds_for_an_unknown_card_fail_before_the_first_start(stand_in):              # newcomer-3 #245
    (stand_in.path / "m.toml").write_text(GATE_MATRIX + "[thresholds.cpuu]\npeak_gib = 0.001\n")
    err = usage_error(run(stand_in, *GATE_ARGS))
    assert "thresholds for unknown card 'cpuu'" in err


# -- the installed plugin (issue #27): a pytest11 entry point, used from another directory --------------------------
def _entry_point_installed() -> bool:
    from importlib.metadata import entry_points

    return any(ep.value == "diagnostics.suite.plugin" for ep in entry_points(group="pytest11"))


def _pytest_elsewhere(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "VLLM_MEMCHECK"))}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_installed_plugin_runs_the_shipped_suite_from_any_directory_with_options_in_the_space_form(tmp_path):
    """No conftest, no -p: the entry point loads the plugin before pytest parses the command line, so
    `--matrix PATH` is an option, not a test path, and the shipped start-up tests are collected with --pyargs."""
    assert _entry_point_installed(), "the pytest11 entry point is missing: reinstall (scripts/install.sh)"
    elsewhere = tmp_path / "their-repo"
    elsewhere.mkdir()
    (elsewhere / "m.toml").write_text(textwrap.dedent(MATRIX))
    done = _pytest_elsewhere(elsewhere, "--pyargs", "diagnostics.suite", "--collect-only", "-q",
                             "--card", "cpu", "--matrix", str(elsewhere / "m.toml"), "--report-dir", "rd")
    assert done.returncode == 0, done.stdout + done.stderr
    collected = [line for line in done.stdout.splitlines() if "::test_startup[" in line]
    assert [line.rsplit("[", 1)[1] for line in collected] == ["a]", "b]", "c]"]
    assert "test_startup_matrix.py" in collected[0]
    bad = _pytest_elsewhere(elsewhere, "--pyargs", "diagnostics.suite", "--card", "nope")
    assert bad.returncode == 4 and "ERROR: unknown card 'nope'; accepted:" in bad.stderr


def test_an_installed_plugin_leaves_a_session_that_does_not_use_it_alone(tmp_path):
    assert _entry_point_installed(), "the pytest11 entry point is missing: reinstall (scripts/install.sh)"
    (tmp_path / "test_theirs.py").write_text("def test_theirs():\n    assert True\n")
    done = _pytest_elsewhere(tmp_path)
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout + done.stderr
    assert "vllm-memcheck:" not in done.stdout  # no header lines, no summary (only the "plugins:" list names it)
    assert not (tmp_path / "reports").exists()
    listed = _pytest_elsewhere(tmp_path, "--help")  # the options are there all the same
    assert "--card=NAME|auto|cpu" in listed.stdout and "memcheck_card" in listed.stdout


@pytest.mark.parametrize("args, says", [
    (["--cache-state=hot"], "ERROR: unknown --cache-state value 'hot'; accepted: cold, user, warm"),
    (["--worst-case", "maybe"], "ERROR: unknown --worst-case value 'maybe'; accepted: auto, off, on"),
    (["-o", "memcheck_cache_state=hot"], "ERROR: unknown --cache-state value 'hot'; accepted: cold, user, warm"),
])
def test_a_bad_choice_is_one_usage_line_from_the_command_line_or_the_ini(project, args, says):
    """argparse's `choices` printed pytest's five-line usage block (README promises one line) and never saw the
    ini twin, which was taken as given (newcomer pass)."""
    result = run(project, "--card=cpu", "--matrix=tiny.toml", "--collect-only", *args)
    err = [line for line in result.stderr.str().splitlines() if line.strip()]
    assert result.ret == 4 and err == [says], err


def test_matrix_outside_the_rootdir_with_a_space_collects_as_the_equals_form(project, tmp_path_factory):
    # pytest picks the rootdir before it knows --matrix: the value counted as a path, the ini went unread and a
    # module outside testpaths was collected too (each combination twice)
    project.makeini("[pytest]\ntestpaths = tests\n")
    (project.path / "tests").mkdir()
    (project.path / "tests" / "test_startup.py").write_text(textwrap.dedent(STAND_IN))
    outside = tmp_path_factory.mktemp("elsewhere") / "m.toml"
    outside.write_text(textwrap.dedent(MATRIX))
    for form in ([f"--matrix={outside}"], ["--matrix", str(outside)]):
        result = run(project, "-m", "gpu", "--card=cpu", "--collect-only", "-q", *form)
        assert result.ret == 0, form
        assert [line for line in result.outlines if "::test_startup[" in line] == [
            f"tests/test_startup.py::test_startup[{s}]" for s in "abc"], form
