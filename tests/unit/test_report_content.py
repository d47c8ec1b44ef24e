"""report/content.py: the redacted report data (log tails, non-default settings, vLLM's defaults, the verdict)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from diagnostics.redact import Redactor
from diagnostics.report import write_reports
from diagnostics.report.content import build_report, non_default_settings, resolved_defaults

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "results"
RESULTS = FIXTURE / "sweep-a10.jsonl"


def test_log_tail_is_the_last_40_lines(tmp_path):
    shutil.copytree(FIXTURE, tmp_path / "run")
    run = tmp_path / "run"
    (run / "logs" / "mml8192-seqs32-util0.9.log").write_text("".join(f"line {i}\n" for i in range(1, 101)))
    report = build_report(run / "sweep-a10.jsonl", Redactor())
    tail = next(c for c in report["combinations"] if c["id"] == "mml8192-seqs32-util0.9")["log_tail"]
    assert tail[0] == "line 61" and tail[-1] == "line 100" and len(tail) == 40
    assert next(c for c in report["combinations"] if c["outcome"] == "ok")["log_tail"] is None


def test_non_default_settings_split_common_and_varied():
    records = [{"settings": {"max_num_seqs": 32, "gpu_memory_utilization": 0.9, "enforce_eager": True}},
               {"settings": {"max_num_seqs": 64, "gpu_memory_utilization": 0.9, "enforce_eager": True}}]
    common, varied = non_default_settings(records, "0.6.3")
    assert common == {"enforce_eager": True}
    assert varied == {"max_num_seqs": [32, 64]}
    common, _ = non_default_settings(records, "0.20.0")  # the default became 0.92
    assert common == {"gpu_memory_utilization": 0.9, "enforce_eager": True}


def test_defaults_come_from_settings_resolve_when_it_knows_the_model():
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


# -- no byte from outside the run directory (newcomer-3 defect 6) -------------------------------------------------
import os

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from diagnostics.errors import UsageError
from diagnostics.report.content import owned_file, read_timeline
from diagnostics.report.html import render_html
from diagnostics.report.jsonreport import render_json
from diagnostics.report.markdown import fit_sweep

SECRET = "OUTSIDE-THE-RUN-7f3a9c"  # the content of a file outside the run directory; no path contains it


def _key_paths(value, prefix=()):
    """Every key path of a record (dict keys, list indices), leaves and containers alike."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield (*prefix, key)
            yield from _key_paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            yield (*prefix, i)
            yield from _key_paths(inner, (*prefix, i))


def _plant(record: dict, path: tuple, value) -> None:
    target = record
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


def _outside(root: Path) -> dict[str, str]:
    """Ways a record can name a file outside `root/run`: absolute, climbing '..', a symlink inside that leads out."""
    secret = root / "outside" / "secret.log"
    secret.parent.mkdir(exist_ok=True)
    secret.write_text("".join(f"{SECRET} line {i}\n" for i in range(30)))
    (root / "outside" / "results.jsonl").write_text("")  # nothing a report could take from here either
    run = root / "run"
    (run / "logs").mkdir(parents=True, exist_ok=True)
    link = run / "logs" / "link.log"
    if not link.is_symlink():
        link.symlink_to(secret)
    return {"absolute": str(secret), "climbing": "../outside/secret.log",
            "deep": "../" * 12 + str(secret).lstrip("/"), "inner-climb": "logs/../../outside/secret.log",
            "symlink": "logs/link.log", "directory": str(secret.parent)}


BASE = [json.loads(line) for line in RESULTS.read_text().splitlines()]
PATHS = sorted({p for r in BASE for p in _key_paths(r)}, key=str)


def _text_leaves(record: dict) -> list[tuple]:
    """Key paths whose value is text: a path can be planted in all of them at once and the record still loads."""
    paths = []
    for path in _key_paths(record):
        target = record
        for key in path:
            target = target[key]
        if isinstance(target, str):
            paths.append(path)
    return paths


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(form=st.sampled_from(["absolute", "climbing", "deep", "inner-climb", "symlink", "directory"]),
       extra=st.sampled_from(PATHS), which=st.integers(0, len(BASE) - 1),
       outcomes=st.lists(st.sampled_from(["ok", "oom_profile", "crash", "unknown"]), min_size=len(BASE),
                         max_size=len(BASE)))
def test_no_report_carries_a_byte_from_outside_the_run_directory(tmp_path, form, extra, which, outcomes):
    """The path goes into every text field of every record (log_file and timeline_file included, failed and ok
    records alike), and into one more field of any type; no report format may carry the file's content."""
    planted = _outside(tmp_path)[form]
    records = json.loads(json.dumps(BASE))
    for i, (record, outcome) in enumerate(zip(records, outcomes)):
        for path in _text_leaves(record):
            _plant(record, path, planted)
        record["id"] = f"{planted}#{i}"  # still a path, one id per record
        record["outcome"], record["passed"] = outcome, outcome == "ok"  # a path as outcome is refused on load
        record["log_file"] = record["timeline_file"] = planted
    run = tmp_path / "run"

    def rendered() -> list[str]:
        (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        report = build_report(run, Redactor())
        md, full = fit_sweep(report, lambda text: text)
        return [md, full or "", render_json(report), render_html(report, base=tmp_path / "html")]

    assert not any(SECRET in text for text in rendered()), form  # every text field: loads, and leaks nothing
    try:
        _plant(records[which], extra, planted)
        texts = rendered()
    except (KeyError, IndexError, TypeError):  # the field is not in this record
        return
    except UsageError:  # a record the loader refuses (a path where a number belongs): nothing is written
        return
    assert not any(SECRET in text for text in texts), (extra, form)


def test_owned_file_reads_only_regular_files_inside_the_run_directory(tmp_path):
    forms = _outside(tmp_path)
    run = tmp_path / "run"
    (run / "logs" / "a.log").write_text("mine\n")
    (run / "timelines").mkdir()
    (run / "timelines" / "a.csv").write_text("t_s,device_used_gib,process_gib,phase\n0.5,1.0,1.0,init\n")
    assert owned_file(run, "logs/a.log") == (run / "logs" / "a.log").resolve()
    for name in [*forms.values(), "", None, 5, "logs", "logs/a.log\0x"]:
        assert owned_file(run, name) is None, name
    assert read_timeline(run, {"timeline_file": "timelines/a.csv"})[0]["t_s"] == 0.5
    os.symlink(tmp_path / "outside" / "secret.log", run / "timelines" / "b.csv")
    assert read_timeline(run, {"timeline_file": "timelines/b.csv"}) == []


def test_one_id_twice_is_refused_whatever_the_order(tmp_path):                              # newcomer-3 #166, #167
    lines = RESULTS.read_text().splitlines()
    for i, text in enumerate((lines + [lines[0]], [lines[0].replace('"ok"', '"oom_profile"', 1)] + lines)):
        run = tmp_path / f"r{i}"
        run.mkdir()
        (run / "results.jsonl").write_text("\n".join(text) + "\n")
        with pytest.raises(UsageError, match="more than one record for mml2048-seqs16-util0.9"):
            build_report(run, Redactor())


def test_records_of_two_models_or_cards_are_not_one_run(tmp_path):                            # newcomer-3 #188
    records = BASE[:2] + [{**r, "model": "Qwen/Qwen2-VL-7B-Instruct"} for r in BASE[2:]]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(UsageError, match="records of 2 models"):
        build_report(tmp_path, Redactor())
