"""diagnostics.suite.gate: the baseline options checked before the first start, and the verdict at the end."""

from __future__ import annotations

import pytest

from diagnostics.errors import UsageError
from diagnostics.suite.baseline import save_baseline
from diagnostics.suite.gate import Gate


def line(rid: str, vllm: str = "0.31.0", peak: float = 1.25) -> dict:
    return {"id": rid, "outcome": "ok", "peak_process_gib": peak, "kv_cache_tokens": 1024, "startup_s": 1.0,
            "machine_info": {"card": "cpu", "gpu_name": "vLLM CPU backend", "driver": None, "vllm": vllm}}


def info() -> dict:
    return {"card": "cpu", "driver": None, "vllm": "0.32.0"}


def test_a_missing_baseline_is_a_usage_error_unless_asked_to_record_it(tmp_path):
    gate = Gate(tmp_path / "bl", compare_name="pinned")
    with pytest.raises(UsageError, match=r"--compare-baseline=pinned: no baseline 'pinned' under .*bl/ .*"
                                         r"--save-baseline-if-missing"):
        gate.check(info)
    asked = Gate(tmp_path / "bl", compare_name="pinned", save_if_missing=True)
    asked.check(info)
    assert asked.baseline is None and (tmp_path / "bl").is_dir()  # checked writable now, for the end
    assert asked.finish([line("a")], []) is False
    assert "recorded this run as it (--save-baseline-if-missing)" in asked.lines[0]


def test_names_and_directories_are_checked_before_any_start(tmp_path):
    with pytest.raises(UsageError, match="bad baseline name 'a b' .--save-baseline."):
        Gate(tmp_path, save_name="a b").check(info)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="--baseline-dir=.*file is a file"):
        Gate(tmp_path / "file", save_name="p").check(info)
    Gate(tmp_path / "file", compare_name=None).check(info)  # nothing saved or compared: nothing to check


def test_finish_fails_on_a_regression_and_on_missing_combinations(tmp_path):
    save_baseline([line("a"), line("b")], "pinned", tmp_path)
    asked = []
    gate = Gate(tmp_path, compare_name="pinned", tolerances={"peak": 0.05, "kv_tokens": 0.05, "startup": None})
    gate.check(lambda: asked.append(1) or info())
    assert asked == [1] and gate.baseline is not None
    assert gate.finish([line("a", "0.32.0")], ["r.jsonl:2: truncated last line skipped"]) is True
    text = "\n".join(gate.lines)
    assert "baseline: vLLM 0.31.0 | candidate: vLLM 0.32.0" in text and "INCOMPLETE: 1 same, 1 missing" in text
    assert "warning: r.jsonl:2: truncated last line skipped" in text
    gate.lines.clear()
    assert gate.finish([line("a", "0.32.0", peak=2.0), line("b", "0.32.0")], []) is True
    assert "REGRESSION: 1 regressed, 1 same" in "\n".join(gate.lines)
    gate.lines.clear()
    assert gate.finish([line("a", "0.32.0"), line("b", "0.32.0")], []) is False


def test_an_empty_or_foreign_card_baseline_fails_before_the_first_start(tmp_path):     # newcomer-3 defect 4
    import json
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"schema_version": 1, "name": "pinned", "results": []}))
    with pytest.raises(UsageError, match=r"--compare-baseline=.*empty.json: the baseline has no result records"):
        Gate(tmp_path, compare_name=str(empty)).check(info)
    save_baseline([line("a")], "pinned", tmp_path)
    with pytest.raises(UsageError, match=r"differ in card \(cpu vs 3090\)"):
        Gate(tmp_path, compare_name="pinned").check(lambda: {**info(), "card": "3090"})


def test_a_candidate_of_another_model_fails_the_session_with_one_line(tmp_path):          # newcomer-3 defect 4
    save_baseline([{**line("a"), "model": "m1"}], "pinned", tmp_path)
    gate = Gate(tmp_path, compare_name="pinned", tolerances={"peak": 0.05, "kv_tokens": 0.05, "startup": None})
    gate.check(info)
    assert gate.finish([{**line("a", "0.32.0"), "model": "m2"}], []) is True
    assert len(gate.lines) == 1 and "the gate cannot compare" in gate.lines[0] and "differ in model" in gate.lines[0]


def test_a_baseline_name_too_long_for_a_file_is_refused_before_the_sweep(tmp_path):       # newcomer-3 #280
    with pytest.raises(UsageError, match=r"bad baseline name 'bbbb.*'\.\.\. \(--save-baseline\); accepted: up to 100"):
        Gate(tmp_path, save_name="b" * 300).check(info)


def test_save_baseline_if_missing_alone_is_refused(tmp_path):                                # newcomer-3 #289
    with pytest.raises(UsageError, match="--save-baseline-if-missing without --compare-baseline"):
        Gate(tmp_path, save_if_missing=True).check(info)
