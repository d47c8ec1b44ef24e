"""`explain LOGFILE|-`: text and --json answers, exit codes, field cases through the command line."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from diagnostics.cli import main

ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / "tests" / "data" / "logs"
CASES = [json.loads(x) for x in (ROOT / "tests" / "data" / "field_cases" / "cases.jsonl").read_text().splitlines()
         if x.strip()]
JSON_KEYS = {"outcome", "phase", "reached", "vllm_version", "engine", "error_line", "evidence", "failed_engine",
             "engines", "numbers", "gpu_processes", "settings", "culprits", "summary", "fix", "prediction"}


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "diagnostics", "explain", *args], input=stdin, text=True,
                          capture_output=True, cwd=ROOT, env=env, timeout=120)


def test_json_via_subprocess_is_one_object_with_the_contract_keys():
    proc = run_cli("--json", str(LOGS / "cpu_util_too_high.log"))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)  # exactly one object: json.loads rejects trailing text
    assert set(data) == JSON_KEYS
    assert (data["outcome"], data["phase"]) == ("insufficient_free_memory", "startup_check")
    assert data["numbers"] == {"gpu_total_gib": 11.34, "gpu_memory_utilization": 0.95, "free_gib": 9.99,
                               "requested_gib": 10.77}
    assert isinstance(data["culprits"], list) and isinstance(data["summary"], str) and data["summary"]


def test_json_numbers_types_gib_floats_counts_ints(capsys):
    assert main(["explain", "--json", str(LOGS / "gpu_v1_new_breakdown_ok.log")]) == 0
    data = json.loads(capsys.readouterr().out)
    n = data["numbers"]
    assert (data["outcome"], data["vllm_version"], data["engine"]) == ("ok", "0.33.0", "V1")
    assert n["kv_cache_tokens"] == 72464 and isinstance(n["kv_cache_tokens"], int)
    assert n["weights_gib"] == 15.1 and isinstance(n["weights_gib"], float)
    assert isinstance(n["kv_cache_gib"], float) and isinstance(n["encoder_items"], int)
    assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in n.values())
    assert data["settings"]["max_num_seqs"] == 32


def test_culprits_are_setting_value_suggested_why_dicts(capsys):
    assert main(["explain", "--json", str(LOGS / "gpu_v063_profile_vision_oom.log")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["outcome"], data["phase"]) == ("oom_profile", "vision_encoder")
    for c in data["culprits"]:
        assert {"setting", "value", "suggested", "why"} <= set(c)


def test_text_answer_names_outcome_phase_root_cause_and_numbers(capsys):
    assert main(["explain", str(LOGS / "cpu_kv_too_small.log")]) == 0
    out = capsys.readouterr().out
    assert "outcome: kv_too_small" in out and "phase: kv_cache" in out
    assert "root cause: ValueError: To serve at least one request" in out
    assert "estimated_max_model_len: 1920" in out
    assert "summary: " in out


def test_stdin_dash_via_subprocess():
    text = (LOGS / "cpu_no_kv_cache.log").read_text()
    proc = run_cli("-", "--json", stdin=text)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["outcome"] == "no_kv_cache"


def test_unrecognisable_input_is_unknown_and_exit_0():
    proc = run_cli("-", "--json", stdin="just some words\n")
    assert proc.returncode == 0
    data = json.loads(proc.stdout)
    assert (data["outcome"], data["numbers"], data["settings"]) == ("unknown", {}, {})


def test_missing_file_is_one_line_exit_2(tmp_path, capsys):
    missing = tmp_path / "nope.log"
    assert main(["explain", str(missing)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nope.log" in err and err.startswith("vllm-memcheck explain: error:")


def test_directory_is_unreadable_exit_2(tmp_path):
    proc = run_cli(str(tmp_path))
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1


def test_unknown_card_is_exit_2_listing_names(capsys):
    assert main(["explain", str(LOGS / "cpu_no_kv_cache.log"), "--card", "bogus"]) == 2
    err = capsys.readouterr().err
    assert "bogus" in err and "3090" in err


def test_model_and_card_are_passed_through(capsys):
    assert main(["explain", "--json", "--model", "minicpm-v-2_6", "--card", "3090",
                 str(LOGS / "gpu_v063_profile_vision_oom.log")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["outcome"] == "oom_profile" and isinstance(data["culprits"], list)


def test_binary_garbage_is_named_in_one_line_not_crashed(tmp_path, capsys):
    path = tmp_path / "bin.log"
    path.write_bytes(bytes(range(256)) * 4)
    assert main(["explain", "--json", str(path)]) == 2  # issue #9: binary input is a usage error that says what it is
    captured = capsys.readouterr()
    assert captured.out == "" and f"'{path}' is binary data (1,024 bytes read), not a text log" in captured.err


@pytest.mark.parametrize("case", [c for c in CASES if (c.get("log_excerpt") or "").strip()],
                         ids=lambda c: c["source"][:40])
def test_every_field_case_through_the_command(case, tmp_path, capsys):
    from diagnostics.logs.reader import read_log

    path = tmp_path / "case.log"
    path.write_text(case["log_excerpt"])
    assert main(["explain", "--json", str(path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == JSON_KEYS
    assert data["outcome"] == read_log(case["log_excerpt"]).outcome


def test_json_carries_the_machine_readable_fix_in_plans_shape(capsys):
    from diagnostics.explain import Culprit

    assert main(["explain", "--json", str(LOGS / "cpu_util_too_high.log")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["fix"] == {"gpu_memory_utilization": 0.87}  # floor((9.99 free - 0.05) / 11.34 total, 2 decimals)
    assert "Smallest fix: gpu_memory_utilization=0.87." in data["summary"]
    first = data["culprits"][0]
    assert set(first) == set(Culprit("s", 1, 2, "t", "w").to_json())  # the one Culprit JSON shape
    assert (first["setting"], first["suggested"], first["fixes_alone"]) == ("gpu_memory_utilization", 0.87, True)


def test_json_fix_is_empty_when_nothing_is_to_fix(capsys):
    assert main(["explain", "--json", str(LOGS / "gpu_v1_new_breakdown_ok.log")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["outcome"], data["fix"], data["culprits"]) == ("ok", {}, [])


# -- --format md: the paste-ready report (issue #15) ------------------------------------------------------
def _field_logs() -> list[tuple[str, str]]:
    """(id, log) of every field case with a log, from both files."""
    cases2 = [json.loads(x) for x in (ROOT / "tests" / "data" / "field_cases" / "cases-2.jsonl").read_text()
              .splitlines() if x.strip()]
    out = [(c["source"], c["log_excerpt"]) for c in CASES if (c.get("log_excerpt") or "").strip()]
    return out + [(c["id"], c["log"]) for c in cases2 if (c.get("log") or "").strip()]


FIELD_LOGS = _field_logs()
PLANTED = {"hf": "hf_Q3vT9xLm2PzR8wKc5NbY7dHj4GsA6eFuXo", "bearer": "Zk29fjQpL0xVw8eR", "user": "zqmallory",
           "host": "zhgpunode17", "other": "zoeve42", "key": "s3cr3tValue99zz"}


def _planted(log: str) -> str:
    p = PLANTED
    return "\n".join([
        f"INFO 11-30 10:00:00 loading /home/{p['other']}/models/MiniCPM-V-2_6 on {p['host']} as {p['user']}",
        f"export HF_TOKEN={p['hf']}",
        f"DEBUG headers: Authorization: Bearer {p['bearer']}",
        log,
        f"vllm serve m --api-key {p['key']} --max-model-len 4096",
    ])


def markdown_tokens(text: str):
    """The Markdown as a CommonMark + GitHub-tables renderer parses it (markdown-it-py)."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").enable("table").parse(text)


def test_field_cases_are_counted():
    assert len(FIELD_LOGS) == 31  # 23 excerpts in cases.jsonl + 8 logs in cases-2.jsonl


@pytest.mark.parametrize("case_id, log", FIELD_LOGS, ids=[c[:40] for c, _ in FIELD_LOGS])
def test_every_field_case_writes_a_redacted_report_that_renders_and_fits(case_id, log, tmp_path):
    from unittest import mock

    from diagnostics.logs.reader import read_log

    path, out = tmp_path / "case.log", tmp_path / "report.md"
    path.write_text(_planted(log))
    with mock.patch("getpass.getuser", return_value=PLANTED["user"]), \
            mock.patch("socket.gethostname", return_value=PLANTED["host"]):
        assert main(["explain", str(path), "--format", "md", "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert len(text) <= 65_536
    for secret in PLANTED.values():
        assert secret not in text, f"{secret} leaked"
    record = read_log(_planted(log))
    assert f"stopped with {record.outcome}" in text or record.outcome in ("ok", "unknown")
    tokens = markdown_tokens(text)
    kinds = [t.type for t in tokens]
    assert kinds.count("heading_open") >= 3 and "paragraph_open" in kinds
    figures = "The log prints none of the memory figures." not in text
    assert kinds.count("table_open") == 1 + figures  # the figures (when any) and the environment
    assert "| vLLM printed" in text or not figures
    if set(record.evidence) - {record.error_line}:  # the decisive lines, folded: HTML blocks around a fence
        html = [t.content for t in tokens if t.type == "html_block"]
        assert any(h.startswith("<details>") for h in html) and any("</details>" in h for h in html)
    assert all(t.markup.startswith("```") for t in tokens if t.type == "fence")


def test_md_to_stdout_and_a_huge_log_still_fits(tmp_path, capsys):
    huge = tmp_path / "huge.log"
    line = "ERROR 11-30 10:00:00 worker.py:1] torch.OutOfMemoryError: CUDA out of memory. " + "x" * 200
    huge.write_text((LOGS / "gpu_v063_profile_vision_oom.log").read_text() + (line + "\n") * 3000)
    assert main(["explain", str(huge), "--format", "md"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("# vLLM start-up memory report: one log") and len(text) <= 65_536


def test_json_and_format_md_disagree_exit_2(capsys):
    assert main(["explain", str(LOGS / "cpu_no_kv_cache.log"), "--json", "--format", "md"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--json and --format md" in err


def test_out_to_an_unwritable_path_is_exit_2(tmp_path, capsys):
    assert main(["explain", str(LOGS / "cpu_no_kv_cache.log"), "--format", "md", "--out", str(tmp_path)]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_readme_example_is_the_commands_output(tmp_path, monkeypatch, capsys):
    """README's "Why did my start fail?" example is what `explain vllm.log --format md` prints for vllm#6124."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- example: explain vllm.log --format md -->\n", 1)[1].split("<!-- end of example -->")[0]
    shown = "\n".join(line[2:] if line.startswith("> ") else line.lstrip(">") for line in block.splitlines())
    log = next(json.loads(x)["log"] for x in (ROOT / "tests" / "data" / "field_cases" / "cases-2.jsonl")
               .read_text().splitlines() if x.strip() and json.loads(x)["id"] == "vllm-6124-kv-too-small-phi3v")
    (tmp_path / "vllm.log").write_text(log)
    monkeypatch.chdir(tmp_path)
    assert main(["explain", "vllm.log", "--format", "md"]) == 0
    assert capsys.readouterr().out.rstrip("\n") == shown.rstrip("\n")
# -- issue #9 (through the command line, in a subprocess: exit codes and one-line errors) -------------------------
I9_ROOT = Path(__file__).resolve().parents[2]


def i9_cli(*args, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "diagnostics", *map(str, args)], capture_output=True, cwd=I9_ROOT,
                          input=stdin, timeout=120)


def usage_line(proc) -> str:
    """The one stderr line of a usage error (exit 2), and nothing else."""
    err = proc.stderr.decode()
    assert proc.returncode == 2, (proc.returncode, err, proc.stdout.decode())
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


OOM_LOG = I9_ROOT / "tests" / "data" / "logs" / "gpu_v063_profile_vision_oom.log"


# -- explain reads every form a log arrives in, and names what is not a log -------------------------------------------
@pytest.mark.parametrize("encode", [
    lambda t: t.encode("utf-16"), lambda t: t.encode("utf-16-le"), lambda t: t.encode("utf-16-be"),
    lambda t: gzip.compress(t.encode()), lambda t: b"\xef\xbb\xbf" + t.encode(),
], ids=["utf16-bom", "utf16le", "utf16be", "gzip", "utf8-bom"])
def test_explain_reads_utf16_and_gzip_logs(tmp_path, encode):
    path = tmp_path / "vllm.log"
    path.write_bytes(encode(OOM_LOG.read_text(encoding="utf-8")))
    proc = i9_cli("explain", path)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().startswith("outcome: oom_profile   phase: vision_encoder")
    piped = i9_cli("explain", "-", stdin=path.read_bytes())
    assert piped.stdout == proc.stdout


@pytest.mark.parametrize("data, says", [
    (b"", "is empty"), (b"\n  \n", "is empty"), (b"\0" * 5000, "all zero bytes"),
    (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, "a PNG image"), (bytes(range(256)) * 32, "binary data"),
])
def test_explain_names_what_is_not_a_log(tmp_path, data, says):
    path = tmp_path / "input"
    path.write_bytes(data)
    line = usage_line(i9_cli("explain", path))
    assert says in line and "accepted:" in line


def test_explain_dev_zero_is_one_line_not_a_memory_error():
    line = usage_line(i9_cli("explain", "/dev/zero"))
    assert "'/dev/zero' is all zero bytes" in line


def test_a_real_kv_pool_that_vllm_printed_as_0_0_gib_never_reads_0_00_gib():
    """vLLM 0.32 printed the 1 MiB pool as `0.0 GiB`: the text, Markdown and the culprits say what it is (the
    setting's exact size, or `under 0.05 GiB`), never the false `0.00 GiB` (issue #9)."""
    text = run_cli(str(LOGS / "real_cpu_kv_too_small.log"))
    md = run_cli(str(LOGS / "real_cpu_kv_too_small.log"), "--format", "md")
    assert text.returncode == 0 and md.returncode == 0, text.stderr + md.stderr
    assert "0.00 GiB" not in text.stdout and "| 0.00 " not in md.stdout
    assert "the KV pool holds 896 tokens (0.00098 GiB)" in text.stdout  # kv_cache_memory_bytes=1048576
    assert "kv_cache_gib: under 0.05 GiB (printed as 0)" in text.stdout
    assert "| KV cache (GiB)   | < 0.05 (printed as 0) |" in md.stdout


def test_a_derived_figure_is_shown_apart_from_the_numbers_vllm_printed(capsys, tmp_path):    # newcomer pass (nD)
    """other_processes_gib is our sum over the OOM message's process list, not a number vLLM printed: text and
    Markdown show it apart, and its 0 is a true 0, not `under 0.05 GiB (printed as 0)`."""
    log = str(LOGS / "gpu_v063_profile_vision_oom.log")
    assert main(["explain", log]) == 0
    text = capsys.readouterr().out
    printed = text.split("numbers printed by vLLM:", 1)[1].split("derived from them:", 1)[0]
    assert "weights_gib" in printed and "other_processes_gib" not in printed
    assert "derived from them:\n  other_processes_gib: 0.00 GiB (sum of the other processes" in text
    out = tmp_path / "r.md"
    assert main(["explain", log, "--format", "md", "--out", str(out)]) == 0
    row = next(line for line in out.read_text().splitlines() if line.startswith("| OOM: other processes"))
    assert "printed as 0" not in row and "0.00 (derived: sum of the other processes" in row


@pytest.mark.parametrize("option, words", [                                                   # newcomer-3 defect 12
    (["--card", "h100-80"], "the log shows a 23.69 GiB device; --card h100-80 is 79.10 GiB"),
    (["--card", "cpu"], "--card cpu on a log of a CUDA start"),
    (["--model", "qwen2.5-vl-7b"], "the log names openbmb/MiniCPM-V-2_6; --model qwen2.5-vl-7b is another model"),
])
def test_options_that_contradict_the_log_are_said_in_one_warning_line(capsys, option, words):
    from diagnostics.cli import main

    log = str(Path(__file__).resolve().parents[1] / "data" / "logs" / "gpu_v063_profile_vision_oom.log")
    assert main(["explain", log, *option]) == 0
    err = capsys.readouterr().err
    assert f"vllm-memcheck explain: warning: {words}" in err and len(err.strip().splitlines()) == 1
    assert main(["explain", log, "--card", "3090"]) == 0 and capsys.readouterr().err == ""


# -- issue 21: --json carries error_line and evidence; --trace says which rule and line decided what ---------------
def test_json_carries_the_root_cause_line_and_the_evidence(capsys):
    from diagnostics.commands.explain import JSON_KEYS as CONTRACT

    assert main(["explain", "--json", str(LOGS / "cpu_util_too_high.log")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(CONTRACT) == set(data)
    assert "is less than desired CPU memory utilization" in data["error_line"]
    assert data["evidence"] and data["evidence"][0] == data["error_line"]
    assert (data["engines"], data["failed_engine"]) == ([], None)


OMNI_LOG = """\
[Stage-0] INFO 03-12 08:21:50 [gpu_model_runner.py:2100] Model loading took 14.2500 GiB and 9.5 seconds
(Worker pid=2291010) [Stage-0] ERROR 03-12 08:22:28 [multiproc_executor.py:800] torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 139.80 GiB of which 1.20 GiB is free.
[Stage-1] INFO 03-12 08:22:28 [diffusion_model_runner.py:133] Model loading took 26.4738 GiB and 13.178609 seconds
"""


def test_trace_names_rule_catalogue_entry_and_line_for_outcome_phase_engine_and_figures(tmp_path, capsys):
    path = tmp_path / "omni.log"
    path.write_text(OMNI_LOG)
    assert main(["explain", "--json", "--trace", str(path)]) == 0
    data = json.loads(capsys.readouterr().out)
    by = {t["item"]: t for t in data["trace"]}
    assert (by["outcome"]["value"], by["outcome"]["line_number"]) == ("oom_unknown", 2)
    assert by["outcome"]["catalogue"].startswith("torch_oom") and by["outcome"]["how"] == "the root-cause line"
    assert by["failed_engine"]["value"] == "Stage-0" and "[Stage-0]" in by["failed_engine"]["line"]
    assert by["figure:weights_gib"]["value"] == 14.25
    assert by["figure:weights_gib"]["catalogue"] == "model_loading_took" and by["figure:weights_gib"]["line_number"] == 1
    assert by["figure:oom_tried_gib"]["catalogue"].startswith("torch_oom")
    assert by["engine"]["value"] is not None and by["engine"]["how"]
    assert main(["explain", "--trace", str(path)]) == 0
    text = capsys.readouterr().out
    assert "engines in this log: 2; explained: Stage-0" in text
    assert "figure:weights_gib = 14.25: read from this line; rule WEIGHTS_NEW (catalogue model_loading_took); line 1:" in text


def test_trace_of_a_clean_start_points_at_the_ready_marker(capsys):
    assert main(["explain", "--json", "--trace", str(LOGS / "cpu_auto_ok.log")]) == 0
    data = json.loads(capsys.readouterr().out)
    outcome = next(t for t in data["trace"] if t["item"] == "outcome")
    assert outcome["value"] == "ok" and "init engine" in outcome["line"] and outcome["catalogue"] == "init_engine"


def test_calibration_reaches_the_markdown_report_and_the_culprits_through_one_plan(tmp_path, capsys):
    """model -> card -> plan is worked out once (explain_record) and carried by the answer: --calibration used to
    reach only the figures beside vLLM's, while the Markdown report and the culprits planned again with the built-in
    coefficients (code review, finding 4)."""
    log = str(LOGS / "gpu_v1_new_breakdown_ok.log")
    assert main(["explain", log, "--json", "--calibration", "shipped"]) == 0
    calibrated = {c["figure"]: c["predicted"] for c in json.loads(capsys.readouterr().out)["prediction"]}
    assert main(["explain", log, "--format", "md", "--calibration", "shipped"]) == 0
    with_cal = capsys.readouterr().out
    assert main(["explain", log, "--format", "md"]) == 0
    built_in = capsys.readouterr().out
    row = next(line for line in with_cal.splitlines() if line.startswith("| activation peak (GiB)"))
    assert f"| {calibrated['activation_peak_gib']:.2f} " in row  # the calibrated plan's figure, as --json has it
    assert row not in built_in  # and not the built-in coefficients' figure


def test_trace_with_the_markdown_report_is_refused_not_ignored(capsys):
    """--trace --format md printed the report without a word about the trace (newcomer pass)."""
    assert main(["explain", str(LOGS / "gpu_v1_new_breakdown_ok.log"), "--trace", "--format", "md"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--trace with --format md" in err and "\n" not in err
