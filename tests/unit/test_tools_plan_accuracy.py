"""tests/tools/plan_accuracy.py: plan's verdict and KV pool on the recorded real start-up reports (issue 20).

The inputs file names only reports that exist, every scored report gets a verdict and an accepted-outcome list,
printed pools are read from what the thread printed, and docs/accuracy.md carries the tool's --markdown section
as generated (the last test keeps them in step)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import plan_accuracy as pa
from diagnostics.redact import SECRET, redact_text

ROOT = Path(__file__).resolve().parents[2]
BEGIN, END = "<!-- plan_accuracy:begin -->", "<!-- plan_accuracy:end -->"


@pytest.fixture(scope="module")
def scores():
    return pa.run()


def test_every_input_names_a_recorded_report():
    ids = {(f, rid) for f, rid, _ in pa.records()}
    missing = [key for key in pa.load_inputs() if key not in ids]
    assert not missing, missing


def test_every_scored_report_has_a_verdict_and_what_the_evidence_allows(scores):
    scored = [s for s in scores if s.skipped is None]
    assert len(scored) >= 10
    for s in scored:
        assert s.verdict and s.accept, s.id
        assert s.verdict_right == (s.verdict in s.accept)


def test_new_reports_carry_their_thread_and_a_verbatim_log():
    for line in (ROOT / "tests/data/field_cases/plan-reports.jsonl").read_text().splitlines():
        rec = json.loads(line)
        assert rec["url"] and rec["log"] and rec["vllm_version"] and rec["accept"], rec["id"]
        assert SECRET not in redact_text(rec["log"]), rec["id"]  # no tokens or keys in a quoted log


def test_printed_pool_prefers_tokens_and_converts_blocks():
    rec = {"log": "INFO 08-09 13:56:04 gpu_executor.py:102] # GPU blocks: 9930, # CPU blocks: 2048\n"}
    assert pa.printed_kv(rec, 16) == ("tokens", 9930 * 16, "log: # GPU blocks x 16")
    rec = {"numbers": {"kv_cache_gib": 19.28, "kv_cache_tokens": 157936}}
    assert pa.printed_kv(rec, 16)[:2] == ("tokens", 157936)
    assert pa.printed_kv({"numbers": {"kv_cache_gib": 7.5}}, 16)[:2] == ("GiB", 7.5)
    assert pa.printed_kv({"numbers": {}}, 16) is None


def test_v0_llama_activation_matches_the_printed_peaks():
    # vllm#10517 (0.6.4, RTX 3090): peak_torch_memory - weights printed 2.07 / 2.99 GiB at 20,000 / 29,000 tokens
    from diagnostics.predict.estimator import plan
    for mml, printed in ((20000, 17.06 - 14.9888), (29000, 17.98 - 14.9888)):
        p = plan(str(pa.ROOT / "tests/data/calibration/models/llama-3.1-8b-instruct"), "3090", "0.6.4", "serve",
                 {"max_model_len": mml, "gpu_memory_utilization": 0.9})
        assert abs(p.components["activation_peak"].value_gib / printed - 1) < 0.02, (mml, printed)


def test_a_negative_printed_pool_is_left_to_the_verdict(scores):
    s = next(s for s in scores if s.id == "gh-file-no-kv-v0230-qwen25vl7b-a100-80-gmu022")
    assert s.kv_error is None and "verdict only" in s.kv_source and s.verdict_right


def test_card_total_from_the_log_keeps_the_cards_margins():
    base = pa.get_card("3090")
    c = pa.card_of({"card": "3090", "card_total_gib": 23.58})
    assert c.total_gib == 23.58 and c.arch == base.arch
    assert c.total_gib - c.profile_threshold_gib == pytest.approx(base.total_gib - base.profile_threshold_gib)


def test_an_unscored_report_says_what_it_lacks(scores):
    reasons = {s.id: s.skipped for s in scores if s.skipped}
    assert "quantized checkpoint" in reasons["vllm-project/vllm#22173"]
    assert "not an NVIDIA CUDA card" in reasons["vllm-ascend-5020-oom-npu-old-format-current-active"]
    assert "card not named" in reasons["vllm-project/vllm#6623"]
    assert "no config plan reads" in reasons["vllm-project/vllm#7768"]
    assert all(r and "\n" not in r for r in reasons.values())


def test_totals_count_what_the_table_shows(scores):
    t = pa.totals(scores)
    assert t["scored"] + t["skipped"] == len(scores)
    assert t["verdict_judged"] == sum(1 for s in scores if s.verdict_right is not None)
    assert t["kv_within_10pct"] <= t["kv_n"]


def test_docs_accuracy_carries_the_generated_section(scores):
    text = (ROOT / "docs" / "accuracy.md").read_text()
    assert BEGIN in text and END in text
    section = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert section == pa.markdown(scores).strip(), \
        "docs/accuracy.md is out of step: python tests/tools/plan_accuracy.py --write-docs"
