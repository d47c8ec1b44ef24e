"""Issue #9 through the command line: every fix starts, plan refuses what vLLM refuses, explain reads every log form,
compare fails on an incomplete candidate. Subprocess calls, so the contracts are the CLI's (exit codes, one line)."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / "tests" / "data" / "logs"
OOM_LOG = LOGS / "gpu_v063_profile_vision_oom.log"
PLANNED = ("max_model_len", "max_num_seqs", "max_num_batched_tokens", "gpu_memory_utilization",
           "limit_mm_per_prompt", "enforce_eager", "kv_cache_memory_bytes")


def cli(*args, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "diagnostics", *map(str, args)], capture_output=True, cwd=ROOT,
                          input=stdin, timeout=120)


def usage_line(proc) -> str:
    """The one stderr line of a usage error (exit 2), and nothing else."""
    err = proc.stderr.decode()
    assert proc.returncode == 2, (proc.returncode, err, proc.stdout.decode())
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


def plan_json(card: str, vllm: str, settings: dict) -> dict:
    sets = [x for k, v in settings.items() for x in ("--set", f"{k}={json.dumps(v)}")]
    proc = cli("plan", "--card", card, "--vllm", vllm, "--json", *sets)
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout)


# -- every fix that explain or plan offers must start ---------------------------------------------------------------
def assert_fixes_start(card: str, vllm: str, base: dict, offered: dict) -> None:
    # a culprit that fixes it alone (its why says "enough" / "which fits") and the combined fix must both start
    offers = [({c["setting"]: c["suggested"]}, f"culprit {c['setting']}") for c in offered["culprits"]
              if c.get("suggested") is not None and c.get("fixes_alone")]
    if offered.get("fix"):
        offers.append((dict(offered["fix"]), "fix"))
    assert offers, offered
    for change, what in offers:
        replanned = plan_json(card, vllm, {**base, **change})
        assert replanned["verdict"] == "ok", (what, change, replanned["verdict"], replanned.get("culprits"))


def test_every_fix_explain_offers_for_the_v063_vision_oom_log_starts():
    proc = cli("explain", OOM_LOG, "--json", "--card", "3090")
    assert proc.returncode == 0, proc.stderr.decode()
    answer = json.loads(proc.stdout)
    base = {k: v for k, v in answer["settings"].items() if k in PLANNED}
    assert base["max_model_len"] == 32768
    assert_fixes_start("3090", "0.6.3", base, answer)


@pytest.mark.parametrize("card, vllm, settings", [
    ("3090", "0.6.3", {}),
    ("3090", "0.6.3", {"max_model_len": 32768, "max_num_seqs": 128}),
    ("3090", "0.6.3", {"max_model_len": 8192}),
    ("l4", "0.10.1", {}),
    ("4090", "0.7.3", {"max_num_seqs": 128}),
])
def test_every_fix_plan_offers_starts(card, vllm, settings):
    planned = plan_json(card, vllm, settings)
    if planned["verdict"] == "ok":
        assert not planned["fix"]
        return
    assert_fixes_start(card, vllm, settings, planned)


# -- plan refuses what vLLM refuses, in vLLM's words ------------------------------------------------------------------
def test_plan_refuses_fewer_batched_tokens_than_sequences():
    line = usage_line(cli("plan", "--vllm", "0.6.3", "--set", "max_num_batched_tokens=16", "--set",
                          "max_num_seqs=32", "--set", "max_model_len=16"))
    assert "max_num_batched_tokens (16) must be greater than or equal to max_num_seqs (32)" in line


def test_plan_refuses_fewer_batched_tokens_than_max_model_len_without_chunked_prefill():
    line = usage_line(cli("plan", "--vllm", "0.6.3", "--set", "max_num_batched_tokens=2048", "--set",
                          "max_model_len=4096", "--set", "max_num_seqs=8"))
    assert "max_num_batched_tokens (2048) is smaller than max_model_len (4096)" in line
    # with chunked prefill vLLM accepts it
    proc = cli("plan", "--vllm", "0.6.3", "--set", "max_num_batched_tokens=2048", "--set", "max_model_len=4096",
               "--set", "max_num_seqs=8", "--set", "enable_chunked_prefill=true")
    assert proc.returncode == 0, proc.stderr.decode()


def test_plan_refuses_a_max_model_len_above_what_the_model_allows():
    line = usage_line(cli("plan", "--set", "max_model_len=1000000"))
    assert "max_model_len (1000000) is greater than the derived max_model_len" in line


def test_plan_card_cpu_refuses_in_one_line():
    line = usage_line(cli("plan", "--card", "cpu"))
    assert "cpu" in line and "--card=cpu" in line


# -- explain reads every form a log arrives in, and names what is not a log -------------------------------------------
@pytest.mark.parametrize("encode", [
    lambda t: t.encode("utf-16"), lambda t: t.encode("utf-16-le"), lambda t: t.encode("utf-16-be"),
    lambda t: gzip.compress(t.encode()), lambda t: b"\xef\xbb\xbf" + t.encode(),
], ids=["utf16-bom", "utf16le", "utf16be", "gzip", "utf8-bom"])
def test_explain_reads_utf16_and_gzip_logs(tmp_path, encode):
    path = tmp_path / "vllm.log"
    path.write_bytes(encode(OOM_LOG.read_text(encoding="utf-8")))
    proc = cli("explain", path)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().startswith("outcome: oom_profile   phase: vision_encoder")
    piped = cli("explain", "-", stdin=path.read_bytes())
    assert piped.stdout == proc.stdout


@pytest.mark.parametrize("data, says", [
    (b"", "is empty"), (b"\n  \n", "is empty"), (b"\0" * 5000, "all zero bytes"),
    (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, "a PNG image"), (bytes(range(256)) * 32, "binary data"),
])
def test_explain_names_what_is_not_a_log(tmp_path, data, says):
    path = tmp_path / "input"
    path.write_bytes(data)
    line = usage_line(cli("explain", path))
    assert says in line and "accepted:" in line


def test_explain_dev_zero_is_one_line_not_a_memory_error():
    line = usage_line(cli("explain", "/dev/zero"))
    assert "'/dev/zero' is all zero bytes" in line


# -- compare fails on an incomplete candidate, warns on a truncated line, names both versions --------------------------
def record(rid: str, vllm: str, peak: float = 1.25) -> dict:
    return {"id": rid, "outcome": "ok", "peak_process_gib": peak, "kv_cache_tokens": 131072, "startup_s": 1.5,
            "machine_info": {"card": "cpu", "gpu_name": "vLLM CPU backend", "driver": None, "vllm": vllm}}


def write(path: Path, records, tail: str = "") -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail)
    return path


def test_compare_fails_when_the_candidate_misses_combinations(tmp_path):
    old = write(tmp_path / "old.jsonl", [record(r, "0.31.0") for r in "abc"])
    new = write(tmp_path / "new.jsonl", [record("a", "0.32.0")])
    proc = cli("compare", old, new)
    out = proc.stdout.decode()
    assert proc.returncode == 1, out
    assert "2 combinations of the baseline are missing from the candidate: b, c" in out


def test_compare_warns_on_a_truncated_last_line(tmp_path):
    old = write(tmp_path / "old.jsonl", [record(r, "0.31.0") for r in "ab"])
    new = write(tmp_path / "new.jsonl", [record("a", "0.32.0")], tail=json.dumps(record("b", "0.32.0"))[:30])
    proc = cli("compare", old, new)
    text = proc.stdout.decode() + proc.stderr.decode()
    assert f"{new}:2: truncated last line" in text
    assert proc.returncode == 1  # b is then missing


def test_compare_names_both_vllm_versions_and_notes_the_same_file(tmp_path):
    old = write(tmp_path / "old.jsonl", [record(r, "0.31.0") for r in "ab"])
    new = write(tmp_path / "new.jsonl", [record(r, "0.32.0") for r in "ab"])
    proc = cli("compare", old, new)
    assert proc.returncode == 0
    out = proc.stdout.decode()
    assert "baseline: vLLM 0.31.0" in out and "candidate: vLLM 0.32.0" in out
    same = cli("compare", old, old)
    assert same.returncode == 0 and "both inputs are the same file" in same.stdout.decode()


# -- model-kit names the install that brings a missing library ---------------------------------------------------------
def test_model_kit_without_tokenizers_is_one_line_naming_the_install(tmp_path):
    fake = tmp_path / "mods"
    fake.mkdir()
    (fake / "tokenizers.py").write_text("raise ModuleNotFoundError(\"No module named 'tokenizers'\", "
                                        "name='tokenizers')\n")
    proc = subprocess.run([sys.executable, "-m", "diagnostics", "model-kit", "minicpm-v-2_6", str(tmp_path / "kit")],
                          capture_output=True, cwd=ROOT, env={"PYTHONPATH": f"{fake}:{ROOT}", "PATH": "/usr/bin"})
    line = usage_line(proc)
    assert "tokenizers" in line and "pip install" in line
