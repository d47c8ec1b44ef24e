"""Bad-input catalog: run many bad inputs through every command and every pytest-plugin option, report what broke.

    python tests/tools/bad_inputs.py                 # all cases; exit 1 when any case has a problem
    python tests/tools/bad_inputs.py --only explain  # the cases whose id starts with "explain"
    python tests/tools/bad_inputs.py --list          # the case ids, what each feeds in, and the contract

Each case is one command line (`python -m diagnostics ...`, or `python -m pytest ...` in a sandbox project whose
engine launcher is a stand-in: no engine starts, no GPU, no vLLM start needed) and its contract: the exit codes
accepted (2 = a CLI usage error, 4 = a pytest usage error, 1 = a failed gate) and, where the issue asks for it,
words the output must contain. A problem is any of: a Python traceback, an exit code outside the contract, a
usage error that is not exactly one line on stderr, a missing word, or a run past the case's time limit.
Every child runs under a 4 GiB address-space limit, so an endless input ends as a MemoryError, not a swapped box.

The contracts are issue #9's (the main job, the gate, input and output); the inputs are the issue's plus our own.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # newcomer3_inputs.py beside this file

ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / "tests" / "data" / "logs"
OOM_LOG = LOGS / "gpu_v063_profile_vision_oom.log"
SWEEP = ROOT / "tests" / "data" / "results" / "sweep-a10.jsonl"
MEMORY_LIMIT = 4 << 30

CLI, PYTEST = "cli", "pytest"


@dataclass
class Case:
    id: str
    argv: list[str]
    rc: tuple[int, ...]
    kind: str = CLI
    says: tuple[str, ...] = ()  # substrings (case-insensitive) the output must contain
    stdin: str | None = None  # a sandbox file fed to standard input
    env: dict = field(default_factory=dict)
    timeout: float = 60.0
    one_line: bool = True  # a CLI usage error is one stderr line (False: argparse's help is the answer)
    avoid: tuple[str, ...] = ()  # substrings the output must NOT contain (a leaked file, a wrong answer)
    stdout: str | None = None  # a path standard output goes to (e.g. /dev/full); then only stderr is judged
    creates: str | None = None  # a sandbox path (glob) that must exist afterwards (--out honoured)
    absent: str | None = None  # a sandbox glob that must match nothing afterwards (no write outside the run)


# -- the sandbox: input files and a stand-in pytest project --------------------------------------------------------
STAND_IN_CONFTEST = '''
import os
from pathlib import Path
import diagnostics.suite.plugin as _plugin
import diagnostics.engine.launch as launch
from diagnostics.logs.reader import read_log

_plugin.vllm_missing = lambda: None
OK_LOG = ("(EngineCore pid=N) INFO 11-24 14:05:44 [kv_cache_utils.py:2327] CPU KV cache size: 131,072 tokens, "
          "Maximum concurrency for 512 tokens per request: 256.00x\\n")

def fake_run_start(spec):
    Path(spec.log_path).write_text(OK_LOG)
    Path(spec.timeline_path).write_text("t_s,device_used_gib,process_gib,phase\\n0.0,,1.0,init\\n")
    return launch.StartResult(
        returncode=0, signal=None, timed_out=False, wall_s=2.0, startup_s=1.5, peak_device_gib=None,
        peak_process_gib=1.0 + spec.settings["max_model_len"] / 1024, phase_peaks_gib={"profile": 1.0},
        torch_peak_gib=None, request={"ok": True}, log_path=spec.log_path, timeline_path=spec.timeline_path,
        before_kv_peak_gib=1.0, log=read_log(OK_LOG))

def pytest_configure(config):
    launch.run_start = fake_run_start
'''
STAND_IN_MATRIX = """
[matrix]
model = "stand-in-model"
[defaults]
enforce_eager = true
dtype = "float32"
kv_cache_memory_bytes = 67108864
[scenarios.a]
max_model_len = 256
expect = "ok"
[scenarios.b]
max_model_len = 512
expect = "ok"
"""


def result_line(rid: str, outcome: str = "ok", peak: float = 1.25, vllm: str = "0.31.0", **extra) -> dict:
    return {"schema_version": 1, "run": "r", "id": rid, "outcome": outcome, "status": "passed", "passed": True,
            "peak_process_gib": peak, "peak_device_gib": None, "kv_cache_tokens": 131072, "startup_s": 1.5,
            "settings": {}, "machine_info": {"card": "cpu", "gpu_name": "vLLM CPU backend", "driver": None,
                                             "vllm": vllm}, **extra}


def jsonl(records) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def write_run(project: Path, name: str, records: list[dict]) -> None:
    run_dir = project / "reports" / name
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "results.jsonl").write_text(jsonl(records))
    (project / "reports" / "latest").write_text(name + "\n")


def make_sandbox(root: Path) -> None:
    """Every input file the cases name (relative to `root`), and the stand-in project under root/proj."""
    text = OOM_LOG.read_text(encoding="utf-8")
    files = {
        "empty.log": b"",
        "blank.log": b"\n \n\t\n",
        "binary.bin": os.urandom(4096),
        "nul.log": b"\0" * 65536,
        "utf16-bom.log": text.encode("utf-16"),
        "utf16le-nobom.log": text.encode("utf-16-le"),
        "utf16be-nobom.log": text.encode("utf-16-be"),
        "oom.log.gz": gzip.compress(text.encode()),
        "latin1.log": ("INFO host caf\xe9: started\n" + text).encode("latin-1"),
        "one-line.log": b"x" * (8 << 20),
        "not-json.jsonl": b"hello\nworld\n",
        "array.json": b"[1, 2, 3]\n",
        "baseline-bad-results.json": json.dumps({"results": [1, 2]}).encode(),
        "results/old.jsonl": jsonl(result_line(r) for r in "abc").encode(),
        "results/new.jsonl": jsonl(result_line(r, vllm="0.32.0") for r in "abc").encode(),
        "results/partial.jsonl": jsonl(result_line(r, vllm="0.32.0") for r in "a").encode(),
        "results/truncated.jsonl": (jsonl(result_line(r, vllm="0.32.0") for r in "ab")
                                    + json.dumps(result_line("c"))[:40]).encode(),
        "results/no-id.jsonl": b'{"outcome": "ok"}\n{"id": 5, "outcome": "ok"}\n',
        "results/ids-only.jsonl": b'{"id": "a", "outcome": "ok"}\n{"id": "b", "outcome": null, "peak_process_gib": "x"}\n',
        "cards-bad.toml": b"[cards.mine\ntotal_gib = 1\n",
        "cards-badvalue.toml": b'[cards.mine]\ntotal_gib = "lots"\n',
        "cards-negative.toml": b"[cards.mine]\ntotal_gib = -4\n",
        "model-nocfg/.keep": b"",
        "model-badcfg/config.json": b"{not json",
        "model-emptycfg/config.json": b"{}",
        "kit-full/config.json": b"{}",
        "a-file": b"x",
        "fake-mods/tokenizers.py": b"raise ModuleNotFoundError(\"No module named 'tokenizers'\", name='tokenizers')\n",
        "proj/conftest.py": STAND_IN_CONFTEST.encode(),
        "proj/test_startup_matrix.py": (ROOT / "tests" / "test_startup_matrix.py").read_bytes(),
        "proj/m.toml": STAND_IN_MATRIX.encode(),
        "proj/matrix-bad.toml": b"[axes]\nmax_model_len = [2048]\nmax_num_seqs = []\n",
        "proj/matrix-badkey.toml": b"[scenarios.a]\nmax_modle_len = 256\n",
        "proj/matrix-badexpect.toml": b'[scenarios.a]\nmax_model_len = 256\nexpect = "fine"\n',
        "proj/matrix-syntax.toml": b"[scenarios.a\n",
        "proj/not-json.json": b"hello",
        "proj/full.json": json.dumps({"name": "full", "results": [result_line(r) for r in "abc"]}).encode(),
        "proj/a-file": b"x",
        "proj-ini/pytest.ini": b"[pytest]\nmemcheck_engine_timeout = soon\n",
    }
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    for name in ("conftest.py", "test_startup_matrix.py", "m.toml"):
        (root / "proj-ini" / name).write_bytes((root / "proj" / name).read_bytes())
    (root / "kit-full" / "extra").write_text("x")
    os.mkfifo(root / "fifo")


def resume_projects(root: Path) -> None:
    """proj-failed: a run whose recorded result for `a` failed; --resume must not pass the session."""
    failed = root / "proj-failed"
    failed.mkdir(exist_ok=True)
    for name in ("conftest.py", "test_startup_matrix.py", "m.toml"):
        (failed / name).write_bytes((root / "proj" / name).read_bytes())
    write_run(failed, "20260101-000000", [result_line("a", outcome="oom_profile", status="failed", passed=False,
                                                      reasons=["expected ok (matrix), got oom_profile"])])
    garbage = root / "proj-garbage"
    garbage.mkdir(exist_ok=True)
    for name in ("conftest.py", "test_startup_matrix.py", "m.toml"):
        (garbage / name).write_bytes((root / "proj" / name).read_bytes())
    (garbage / "reports" / "20260101-000000").mkdir(parents=True)
    (garbage / "reports" / "20260101-000000" / "results.jsonl").write_bytes(b"\x00\xff garbage\nmore\n")
    (garbage / "reports" / "latest").write_text("20260101-000000\n")


# -- the cases -----------------------------------------------------------------------------------------------------
def explain_cases() -> list[Case]:
    c = []
    for name in ("nope.log", "results", "fifo-absent"):
        c.append(Case(f"explain-missing-{name}", ["explain", name], (2,)))
    c += [
        Case("explain-empty", ["explain", "empty.log"], (2,), says=("empty",)),
        Case("explain-blank", ["explain", "blank.log"], (2,), says=("empty",)),
        Case("explain-empty-stdin", ["explain", "-"], (2,), says=("empty",), stdin="empty.log"),
        Case("explain-binary", ["explain", "binary.bin"], (2,), says=("binary",)),
        Case("explain-nul", ["explain", "nul.log"], (2,), says=("zero bytes",)),
        Case("explain-dev-zero", ["explain", "/dev/zero"], (2,), says=("zero bytes",), timeout=60),
        Case("explain-dev-zero-stdin", ["explain", "-"], (2,), says=("zero bytes",), stdin="/dev/zero", timeout=60),
        Case("explain-utf16-bom", ["explain", "utf16-bom.log"], (0,), says=("outcome: oom_profile",)),
        Case("explain-utf16le-nobom", ["explain", "utf16le-nobom.log"], (0,), says=("outcome: oom_profile",)),
        Case("explain-utf16be-nobom", ["explain", "utf16be-nobom.log"], (0,), says=("outcome: oom_profile",)),
        Case("explain-gzip", ["explain", "oom.log.gz"], (0,), says=("outcome: oom_profile",)),
        Case("explain-gzip-stdin", ["explain", "-"], (0,), says=("outcome: oom_profile",), stdin="oom.log.gz"),
        Case("explain-latin1", ["explain", "latin1.log"], (0,), says=("outcome: oom_profile",)),
        Case("explain-one-8mib-line", ["explain", "one-line.log"], (0, 2)),
        Case("explain-bad-model", ["explain", str(OOM_LOG), "--model", "bogus"], (2,)),
        Case("explain-model-nocfg", ["explain", str(OOM_LOG), "--model", "model-nocfg"], (2,)),
        Case("explain-model-badcfg", ["explain", str(OOM_LOG), "--model", "model-badcfg"], (2,)),
        Case("explain-bad-card", ["explain", str(OOM_LOG), "--card", "bogus"], (2,)),
        Case("explain-no-arg", ["explain"], (2,)),
        Case("explain-bad-flag", ["explain", str(OOM_LOG), "--jsn"], (2,)),
    ]
    return c


def plan_cases() -> list[Case]:
    bad_sets = {
        "no-equals": "max_model_len", "unknown-key": "max_modle_len=4096", "negative": "max_model_len=-5",  # -1 is auto from vLLM 0.14 (plan accepts it)
        "zero-seqs": "max_num_seqs=0", "text": "max_model_len=abc", "float-len": "max_model_len=40.5",
        "util-high": "gpu_memory_utilization=1.5", "util-zero": "gpu_memory_utilization=0",
        "util-text": "gpu_memory_utilization=high", "mm-badjson": 'limit_mm_per_prompt={"image":',
        "mm-negative": 'limit_mm_per_prompt={"image":-1}', "mm-list": "limit_mm_per_prompt=[1]",
        "inf": "max_model_len=1e400", "nan": "gpu_memory_utilization=NaN", "dtype": "dtype=float7",
        "empty-key": "=5", "bool-len": "max_model_len=true",
    }
    c = [Case(f"plan-set-{k}", ["plan", "--set", v], (2,)) for k, v in bad_sets.items()]
    c += [
        Case("plan-bad-card", ["plan", "--card", "bogus"], (2,)),
        Case("plan-card-cpu", ["plan", "--card", "cpu"], (2,), says=("cpu",)),
        Case("plan-bad-vllm", ["plan", "--vllm", "bogus"], (2,)),
        Case("plan-old-vllm", ["plan", "--vllm", "0.1.0"], (2,)),
        Case("plan-bad-entrypoint", ["plan", "--entrypoint", "grpc"], (2,)),
        Case("plan-cards-missing", ["plan", "--cards", "nope.toml"], (2,)),
        Case("plan-cards-syntax", ["plan", "--cards", "cards-bad.toml"], (2,)),
        Case("plan-cards-badvalue", ["plan", "--cards", "cards-badvalue.toml", "--card", "mine"], (2,)),
        Case("plan-cards-negative", ["plan", "--cards", "cards-negative.toml", "--card", "mine"], (2,)),
        Case("plan-model-missing", ["plan", "--model", "nope-dir/"], (2,)),
        Case("plan-model-nocfg", ["plan", "--model", "model-nocfg"], (2,)),
        Case("plan-model-badcfg", ["plan", "--model", "model-badcfg"], (2,)),
        Case("plan-model-emptycfg", ["plan", "--model", "model-emptycfg"], (2,)),
        # vLLM refuses these at start-up (SchedulerConfig / ModelConfig); plan must say so, in vLLM's words
        Case("plan-mnbt-below-seqs", ["plan", "--vllm", "0.6.3", "--set", "max_num_batched_tokens=16",
                                      "--set", "max_num_seqs=32", "--set", "max_model_len=16"], (2,),
             says=("must be greater than or equal to max_num_seqs",)),
        Case("plan-mnbt-below-len", ["plan", "--vllm", "0.6.3", "--set", "max_num_batched_tokens=2048",
                                     "--set", "max_model_len=4096", "--set", "max_num_seqs=8"], (2,),
             says=("is smaller than max_model_len",)),
        Case("plan-len-above-model", ["plan", "--set", "max_model_len=1000000"], (2,),
             says=("derived max_model_len",)),
    ]
    return c


def model_kit_cases() -> list[Case]:
    return [
        Case("model-kit-bad-model", ["model-kit", "llava", "kit-out-1"], (2,)),
        Case("model-kit-bad-size", ["model-kit", "minicpm-v-2_6", "kit-out-2", "--size", "huge"], (2,)),
        Case("model-kit-bad-weights", ["model-kit", "minicpm-v-2_6", "kit-out-3", "--weights", "real"], (2,)),
        Case("model-kit-real-random", ["model-kit", "minicpm-v-2_6", "kit-out-4", "--weights", "random"], (2,)),
        Case("model-kit-nonempty", ["model-kit", "minicpm-v-2_6", "kit-full"], (2,)),
        Case("model-kit-out-is-file", ["model-kit", "minicpm-v-2_6", "a-file"], (2,)),
        Case("model-kit-out-unwritable", ["model-kit", "minicpm-v-2_6", "/proc/kit"], (2,)),
        Case("model-kit-empty-out", ["model-kit", "minicpm-v-2_6", " "], (2,)),
        Case("model-kit-no-tokenizers", ["model-kit", "minicpm-v-2_6", "kit-out-5"], (2,),
             says=("tokenizers", "install"), env={"PYTHONPATH": "{sandbox}/fake-mods"}),
    ]


def report_compare_cases() -> list[Case]:
    return [
        Case("report-missing", ["report", "nope"], (2,)),
        Case("report-empty-dir", ["report", "model-nocfg"], (2,)),
        Case("report-empty-file", ["report", "empty.log"], (2,)),
        Case("report-not-json", ["report", "not-json.jsonl"], (2,)),
        Case("report-binary", ["report", "binary.bin"], (2,)),
        Case("report-no-id", ["report", "results/no-id.jsonl"], (2,)),
        Case("report-ids-only", ["report", "results/ids-only.jsonl", "--out", "out-ids", "--format", "md"], (0, 2)),
        Case("report-bad-format", ["report", "results/old.jsonl", "--format", "pdf"], (2,)),
        Case("report-out-is-file", ["report", "results/old.jsonl", "--out", "a-file"], (2,)),
        Case("report-out-unwritable", ["report", "results/old.jsonl", "--out", "/proc/memcheck-out"], (2,)),
        Case("report-truncated", ["report", "results/truncated.jsonl", "--out", "out-trunc", "--format", "md"], (0,),
             says=("truncated",)),
        Case("compare-missing", ["compare", "nope.jsonl", "results/new.jsonl"], (2,)),
        Case("compare-empty", ["compare", "empty.log", "results/new.jsonl"], (2,)),
        Case("compare-binary", ["compare", "results/old.jsonl", "binary.bin"], (2,)),
        Case("compare-array", ["compare", "array.json", "results/new.jsonl"], (2,)),
        Case("compare-baseline-bad-results", ["compare", "baseline-bad-results.json", "results/new.jsonl"], (2,)),
        Case("compare-no-id", ["compare", "results/no-id.jsonl", "results/new.jsonl"], (2,)),
        Case("compare-ids-only", ["compare", "results/ids-only.jsonl", "results/new.jsonl"], (2,)),
        Case("compare-partial-candidate", ["compare", "results/old.jsonl", "results/partial.jsonl"], (1,),
             says=("missing",)),
        Case("compare-truncated", ["compare", "results/old.jsonl", "results/truncated.jsonl"], (1,),
             says=("truncated",)),
        Case("compare-same-file", ["compare", "results/old.jsonl", "results/old.jsonl"], (0,), says=("same file",)),
        Case("compare-names-versions", ["compare", "results/old.jsonl", "results/new.jsonl"], (0,),
             says=("0.31.0", "0.32.0")),
        *[Case(f"compare-spec-{i}", ["compare", "results/old.jsonl", "results/new.jsonl", "--fail-on-regression", s],
               (2,)) for i, s in enumerate(("peak", "peak:abc", "bogus:5%", "peak:-5%", "peak:1000%", "peak:5%%",
                                            "peak:5%;kv_tokens:5%"))],
        Case("env-bad-flag", ["env", "--bogus"], (2,)),
        Case("cli-unknown-command", ["bogus"], (2,)),
        Case("cli-no-command", [], (2,), one_line=False),
    ]


def plugin_cases() -> list[Case]:
    base = ["--card=cpu", "--matrix=m.toml"]
    c = [
        Case("plugin-card-bogus", ["--card=bogus"], (4,)),
        Case("plugin-card-cpu-picks-cpu-matrix", ["--card=cpu", "--collect-only"], (0,),
             says=("test_startup[ok-256]",)),  # the CPU matrix's scenarios
        Case("plugin-card-cpu-16gb-model", ["--card=cpu", "--matrix=m.toml", "--model=openbmb/MiniCPM-V-2_6",
                                            "--collect-only"], (4,), says=("kit:tiny-text",)),
        Case("plugin-card-cpu-real-kit", ["--card=cpu", "--matrix=m.toml", "--model=kit:minicpm-v-2_6",
                                          "--collect-only"], (4,), says=("kit:minicpm-v-2_6-tiny",)),
        Case("plugin-cards-missing", ["--card=cpu", "--cards=nope.toml", *base[1:]], (4,)),
        Case("plugin-cards-syntax", [*base, "--cards=../cards-bad.toml"], (4,)),
        Case("plugin-matrix-missing", ["--card=cpu", "--matrix=nope.toml"], (4,)),
        Case("plugin-matrix-empty-axis", ["--card=cpu", "--matrix=matrix-bad.toml"], (4,)),
        Case("plugin-matrix-bad-key", ["--card=cpu", "--matrix=matrix-badkey.toml"], (4,)),
        Case("plugin-matrix-bad-expect", ["--card=cpu", "--matrix=matrix-badexpect.toml"], (4,)),
        Case("plugin-matrix-syntax", ["--card=cpu", "--matrix=matrix-syntax.toml"], (4,)),
        Case("plugin-model-kit-bogus", [*base, "--model=kit:bogus"], (4,)),
        Case("plugin-model-path-missing", [*base, "--model=./nope"], (4,)),
        Case("plugin-load-format-bogus", [*base, "--load-format=fast"], (4,)),
        Case("plugin-timeout-text", [*base, "--engine-timeout=soon"], (4,)),
        Case("plugin-timeout-negative", [*base, "--engine-timeout=-5"], (4,)),
        Case("plugin-timeout-nan", [*base, "--engine-timeout=nan"], (4,)),
        Case("plugin-timeout-inf", [*base, "--engine-timeout=inf"], (4,)),
        Case("plugin-timeout-zero-is-no-limit", [*base, "--engine-timeout=0", "--collect-only", "-v"], (0,),
             says=("no engine timeout",)),
        Case("plugin-ini-timeout-text", ["--card=cpu", "--matrix=m.toml"], (4,)),
        Case("plugin-report-dir-is-file", [*base, "--report-dir=a-file"], (4,)),
        Case("plugin-report-dir-unwritable", [*base, "--report-dir=/proc/memcheck-reports"], (4,)),
        Case("plugin-save-baseline-bad-name", [*base, "--save-baseline=bad name!"], (4,)),
        Case("plugin-baseline-dir-is-file", [*base, "--save-baseline=pinned", "--baseline-dir=a-file"], (4,)),
        Case("plugin-baseline-dir-unwritable", [*base, "--save-baseline=p", "--baseline-dir=/proc/memcheck-bl"], (4,)),
        Case("plugin-compare-baseline-missing-name", [*base, "--compare-baseline=pinned", "--baseline-dir=bl-none"],
             (4,), says=("--save-baseline-if-missing",)),
        Case("plugin-compare-baseline-missing-file", [*base, "--compare-baseline=./nope.json"], (4,)),
        Case("plugin-compare-baseline-not-json", [*base, "--compare-baseline=./not-json.json"], (4,)),
        Case("plugin-compare-baseline-bad-name", [*base, "--compare-baseline=bad name!"], (4,)),
        Case("plugin-compare-partial-run", [*base, "--compare-baseline=./full.json", "-k", "a",
                                            "--fail-on-regression=peak:off"], (1,), says=("missing",)),
        Case("plugin-compare-names-versions", [*base, "--compare-baseline=./full.json"], (1,),
             says=("0.31.0",)),
        Case("plugin-fail-on-regression-bogus", [*base, "--fail-on-regression=peak"], (4,)),
        Case("plugin-resume-failed-run", [*base, "--resume"], (1,), timeout=90),
        Case("plugin-resume-garbage-run", [*base, "--resume"], (4,), timeout=90),
    ]
    for case in c:
        case.kind = PYTEST
        case.timeout = max(case.timeout, 180.0)  # a stand-in sweep still writes its reports (matplotlib)
    return c


from newcomer3_inputs import newcomer3_cases, newcomer3_sandbox

CASES = (explain_cases() + plan_cases() + model_kit_cases() + report_compare_cases() + plugin_cases()
         + newcomer3_cases(Case, CLI, PYTEST))
CWD_OF = {"plugin-resume-failed-run": "proj-failed", "plugin-resume-garbage-run": "proj-garbage",
          "plugin-ini-timeout-text": "proj-ini", "n3-plugin-ini-bad-card": "pini", "n3-plugin-ini-resume-str": "pini2",
          "n3-plugin-resume-dup-lines": "rr3", "n3-plugin-resume-other-matrix": "rr4",
          "n3-plugin-resume-latest-missing-dir": "rr1", "n3-plugin-resume-latest-dotdot": "rr2"}


# -- running and judging ---------------------------------------------------------------------------------------------
def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_case(case: Case, sandbox: Path, python: str) -> tuple[int | None, str, str, float]:
    if case.kind == CLI:
        cmd, cwd = [python, "-m", "diagnostics", *case.argv], sandbox
    else:
        cmd = [python, "-m", "pytest", "-p", "diagnostics.suite.plugin", "-p", "no:cacheprovider", "-q", *case.argv]
        cwd = sandbox / CWD_OF.get(case.id, "proj")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "COLUMNS": "200"}
    for key, value in case.env.items():
        env[key] = value.format(sandbox=sandbox) + (os.pathsep + str(ROOT) if key == "PYTHONPATH" else "")
    stdin = subprocess.DEVNULL
    if case.stdin:
        stdin = open(case.stdin if case.stdin.startswith("/") else sandbox / case.stdin, "rb")
    stdout = open(case.stdout, "wb") if case.stdout else subprocess.PIPE
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE,
                              timeout=case.timeout, preexec_fn=_limit_memory)
        rc, out, err = proc.returncode, proc.stdout or b"", proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc, out, err = None, exc.stdout or b"", exc.stderr or b""
    finally:
        if stdin is not subprocess.DEVNULL:
            stdin.close()
        if case.stdout:
            stdout.close()
    decode = lambda b: b.decode("utf-8", errors="replace")
    return rc, decode(out), decode(err), time.monotonic() - t0


def problems(case: Case, rc: int | None, out: str, err: str, sandbox: Path | None = None) -> list[str]:
    found = []
    both = out + err
    if rc is None:
        return [f"no answer within {case.timeout:g} s"]
    if "Traceback (most recent call last)" in both or re.search(r"^MemoryError", both, re.M):
        found.append("traceback")
    if rc not in case.rc:
        found.append(f"exit {rc}, expected {'/'.join(map(str, case.rc))}")
    if case.kind == CLI and rc == 2 and case.one_line:
        lines = [line for line in err.splitlines() if line.strip()]
        if len(lines) != 1:
            found.append(f"usage error on {len(lines)} stderr lines, expected 1")
    if case.kind == PYTEST and rc == 4 and "ERROR:" not in err:
        found.append("usage error without an 'ERROR:' line")
    missing = [word for word in case.says if word.lower() not in both.lower()]
    if missing:
        found.append("does not say " + ", ".join(repr(w) for w in missing))
    said = [word for word in case.avoid if word.lower() in both.lower()]
    if said:
        found.append("says " + ", ".join(repr(w) for w in said))
    if sandbox is not None and case.creates and not list(sandbox.glob(case.creates)):
        found.append(f"did not write {case.creates}")
    if sandbox is not None and case.absent and list(sandbox.glob(case.absent)):
        found.append(f"wrote {', '.join(str(p.relative_to(sandbox)) for p in sandbox.glob(case.absent))}")
    return found


def first_line(out: str, err: str) -> str:
    for text in (err, out):
        for line in text.splitlines():
            if line.strip() and not line.startswith(("=", "WARNING")):
                return line.strip()[:160]
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="run the cases whose id starts with this")
    parser.add_argument("--python", default=sys.executable, help="interpreter to run the tool with")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--json", metavar="FILE", help="also write every case's result as JSON")
    args = parser.parse_args(argv)
    cases = [c for c in CASES if c.id.startswith(args.only)]
    if args.list:
        for c in cases:
            print(f"{c.id:42} rc {'/'.join(map(str, c.rc)):5} {c.kind:6} {' '.join(c.argv)}"
                  + (f"  says {list(c.says)}" if c.says else ""))
        return 0
    rows, bad = [], 0
    with tempfile.TemporaryDirectory(prefix="memcheck-bad-inputs-") as tmp:
        sandbox = Path(tmp)
        make_sandbox(sandbox)
        resume_projects(sandbox)
        newcomer3_sandbox(sandbox)
        for case in cases:
            rc, out, err, took = run_case(case, sandbox, args.python)
            found = problems(case, rc, out, err, sandbox)
            bad += bool(found)
            rows.append({"id": case.id, "rc": rc, "seconds": round(took, 1), "problems": found,
                         "answer": first_line(out, err)})
            mark = "PROBLEM" if found else "ok"
            print(f"{mark:7} {case.id:42} rc={rc!s:4} {took:5.1f}s  {'; '.join(found) or first_line(out, err)}",
                  flush=True)
    tracebacks = sum("traceback" in r["problems"] for r in rows)
    hangs = sum(any(p.startswith("no answer within") for p in r["problems"]) for r in rows)
    print(f"\n{len(cases)} bad inputs, {bad} with a problem ({tracebacks} tracebacks, {hangs} hangs)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
