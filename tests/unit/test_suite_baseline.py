"""The upgrade gate core: tolerances, keys, save/load, compare."""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path

import pytest

from diagnostics.suite.baseline import (
    DEFAULT_TOLERANCES,
    baseline_key,
    compare,
    format_table,
    load_baseline,
    load_results_source,
    parse_tolerances,
    save_baseline,
)
from diagnostics.errors import UsageError

RESULTS = Path(__file__).resolve().parents[1] / "data" / "results" / "sweep-a10.jsonl"
INFO_3090 = {"card": "3090", "gpu_name": "NVIDIA GeForce RTX 3090", "driver": "550.54", "vllm": "0.6.3"}


def records() -> list[dict]:
    return [json.loads(line) for line in RESULTS.read_text().splitlines()]


def by_id(rows):
    return {r.id: r for r in rows}


def test_parse_tolerances():
    assert DEFAULT_TOLERANCES == {"peak": 0.05, "kv_tokens": 0.05, "startup": 0.20}
    assert parse_tolerances("peak:5%,kv_tokens:5%,startup:20%") == {"peak": 0.05, "kv_tokens": 0.05, "startup": 0.2}
    assert parse_tolerances("peak:2.5%") == {"peak": 0.025, "kv_tokens": 0.05, "startup": 0.2}
    assert parse_tolerances("startup:off, peak:0.1") == {"peak": 0.1, "kv_tokens": 0.05, "startup": None}
    assert parse_tolerances(None) == DEFAULT_TOLERANCES
    with pytest.raises(UsageError, match=r"bad tolerance 'memory:5%'.*peak, kv_tokens, startup"):
        parse_tolerances("peak:5%,memory:5%")
    with pytest.raises(UsageError, match=r"bad tolerance 'peak:5'.*peak:5%"):
        parse_tolerances("peak:5")
    with pytest.raises(UsageError, match="bad tolerance 'peak:lots'"):
        parse_tolerances("peak:lots")


def test_baseline_key():
    assert baseline_key(INFO_3090) == "3090-drv550.54-vllm0.6.3"
    assert baseline_key({"card": "cpu", "driver": None, "vllm": "0.32.0"}) == "cpu-drvnone-vllm0.32.0"
    assert baseline_key({"gpu_name": "NVIDIA A10/x", "vllm": "0.6.3.post1"}) == "NVIDIA_A10_x-drvnone-vllm0.6.3.post1"


def test_save_then_load_by_name_and_by_file(tmp_path):
    rs = records()
    path = save_baseline(rs, "pinned", tmp_path)
    assert path == tmp_path / "a10-drv550.54.15-vllm0.6.3" / "pinned.json"
    doc = json.loads(path.read_text())
    assert doc["schema_version"] == 1 and doc["name"] == "pinned" and doc["saved_at"].endswith("Z")
    assert doc["machine_info"]["gpu_name"] == "NVIDIA A10" and len(doc["results"]) == 4
    meta, loaded = load_baseline("pinned", tmp_path, rs[0]["machine_info"])
    assert [r["id"] for r in loaded] == [r["id"] for r in rs] and meta["warnings"] == []
    meta, loaded = load_baseline(str(path), tmp_path)
    assert meta["name"] == "pinned" and loaded[2]["outcome"] == "oom_profile"


def test_save_redacts(tmp_path):
    rs = records()
    rs[0]["settings"]["hf_token"] = "hf_AbCdEfGhIjKlMnOpQrStUvWxYz01234567"
    rs[0]["model"] = "/home/alice/models/m"
    text = save_baseline(rs, "pinned", tmp_path).read_text()
    assert "hf_AbCdEf" not in text and "/home/alice" not in text and "~/models/m" in text


def test_load_falls_back_to_another_key_with_a_warning(tmp_path):
    rs = records()
    save_baseline(rs, "pinned", tmp_path)
    with pytest.warns(UserWarning, match="no baseline 'pinned' for 3090-drv550.54-vllm0.6.3"):
        meta, loaded = load_baseline("pinned", tmp_path, INFO_3090)
    assert "a10-drv550.54.15-vllm0.6.3" in meta["warnings"][0] and len(loaded) == 4


def test_load_picks_the_newest_fallback(tmp_path):
    rs = records()
    old = save_baseline(rs, "pinned", tmp_path)
    newer = copy.deepcopy(rs)
    for r in newer:
        r["machine_info"]["vllm"] = "0.7.0"
    new_path = save_baseline(newer, "pinned", tmp_path)
    os.utime(old, (time.time() - 100, time.time() - 100))
    with pytest.warns(UserWarning):
        meta, _ = load_baseline("pinned", tmp_path, INFO_3090)
    assert meta["path"] == str(new_path)


def test_no_baseline_yet_is_none_but_a_missing_file_is_an_error(tmp_path):
    assert load_baseline("pinned", tmp_path, INFO_3090) is None
    with pytest.raises(UsageError, match="baseline file .*missing.json' does not exist"):
        load_baseline(str(tmp_path / "missing.json"), tmp_path)
    with pytest.raises(UsageError, match="bad baseline name"):
        save_baseline(records(), "../escape", tmp_path)


def test_equal_runs_are_the_same():
    c = compare(records(), records())
    assert not c.regressed and {r.status for r in c.rows} == {"same"} and c.warnings == []


@pytest.mark.parametrize(
    "field, factor, status, change",
    [
        ("peak_device_gib", 1.06, "regressed", "peak memory 20.50 -> 21.73 GiB (+6.0%)"),
        ("peak_device_gib", 1.04, "same", None),
        ("peak_device_gib", 0.90, "improved", "peak memory 20.50 -> 18.45 GiB (-10.0%)"),
        ("kv_cache_tokens", 0.94, "regressed", "KV cache tokens 41,920 -> 39,405 (-6.0%)"),
        ("kv_cache_tokens", 1.10, "improved", "KV cache tokens 41,920 -> 46,112 (+10.0%)"),
        ("startup_s", 1.25, "regressed", "start-up 51.00 -> 63.75 s (+25.0%)"),
        ("startup_s", 1.15, "same", None),
    ],
)
def test_metric_tolerances(field, factor, status, change):
    new = records()
    value = new[1][field] * factor
    new[1][field] = int(round(value)) if field == "kv_cache_tokens" else round(value, 4)
    c = compare(records(), new, DEFAULT_TOLERANCES)
    row = by_id(c.rows)["mml4096-seqs32-util0.9"]
    assert row.status == status
    assert c.regressed is (status == "regressed")
    if change:
        assert row.changes == [change]


def test_a_start_that_now_fails_is_a_regression_and_the_reverse_an_improvement():
    new = records()
    new[0].update(outcome="oom_profile", startup_s=None, kv_cache_tokens=None)
    new[3].update(outcome="ok")
    rows = by_id(compare(records(), new).rows)
    assert rows["mml2048-seqs16-util0.9"].status == "regressed"
    assert rows["mml2048-seqs16-util0.9"].changes == ["start failed: ok -> oom_profile"]
    assert rows["mml8192-seqs32-util0.9"].status == "improved"


def test_turning_a_check_off_ignores_it():
    new = records()
    new[1]["startup_s"] = 500.0
    assert compare(records(), new, parse_tolerances("startup:off")).regressed is False
    assert compare(records(), new, parse_tolerances("")).regressed is True


def test_new_missing_and_other_machine():
    old, new = records(), records()[1:]
    new.append({**records()[0], "id": "extra"})
    for r in new:  # another driver on the same card: compared, with a warning naming both
        r["machine_info"] = {**r["machine_info"], "driver": "560.1"}
    c = compare(old, new)
    rows = by_id(c.rows)
    assert rows["extra"].status == "new" and rows["mml2048-seqs16-util0.9"].status == "missing"
    assert c.regressed  # issue #9: a combination the candidate did not run fails the gate
    assert any("NVIDIA A10 (driver 550.54.15)" in w and "NVIDIA A10 (driver 560.1)" in w for w in c.warnings)


def test_format_table_is_side_by_side():
    new = records()
    new[1]["peak_device_gib"] = 22.0
    text = format_table(compare(records(), new))
    lines = text.splitlines()
    assert lines[0] == "baseline: vLLM 0.6.3 | candidate: vLLM 0.6.3"  # issue #9: both versions named
    assert "peak old (GiB)" in lines[1] and "peak new (GiB)" in lines[1]
    regressed = next(line for line in lines if line.startswith("| mml4096-seqs32-util0.9"))
    cells = [c.strip() for c in regressed.strip("|").split("|")]
    assert cells[:6] == ["mml4096-seqs32-util0.9", "REGRESSED", "ok", "ok", "20.50", "22.00"]
    assert lines[-1] == "REGRESSION: 1 regressed, 3 same (tolerances peak:5%,kv_tokens:5%,startup:20%)"


def test_load_results_source_reads_every_kind(tmp_path):
    meta, rs = load_results_source(RESULTS)
    assert len(rs) == 4 and meta["machine_info"]["card"] == "a10"
    path = save_baseline(rs, "pinned", tmp_path)
    meta, rs2 = load_results_source(path)
    assert meta["name"] == "pinned" and len(rs2) == 4
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.jsonl").write_text(RESULTS.read_text())
    assert len(load_results_source(run)[1]) == 4
    (tmp_path / "junk.jsonl").write_text("not json\nstill not json\n")
    with pytest.raises(UsageError, match="junk.jsonl:1: not a result record"):
        load_results_source(tmp_path / "junk.jsonl")
    (tmp_path / "other.jsonl").write_text('{"a": 1}\n')
    with pytest.raises(UsageError, match="no result records"):
        load_results_source(tmp_path / "other.jsonl")


def test_the_gate_compares_each_starts_own_increase_when_both_have_a_baseline():        # review F3
    old, new = records(), records()
    for r in old:
        r["baseline_device_gib"] = 0.5
    for r in new:  # a desktop compositor took 1.5 GiB more before each start; vLLM itself is unchanged
        r["baseline_device_gib"] = 2.0
        if r.get("peak_device_gib") is not None:
            r["peak_device_gib"] = round(r["peak_device_gib"] + 1.5, 4)
    c = compare(old, new, DEFAULT_TOLERANCES)
    assert not c.regressed and {r.status for r in c.rows} == {"same"}
    for r in new:  # without the baselines the same figures are a regression of the absolute peak
        r.pop("baseline_device_gib")
    assert compare(old, new, DEFAULT_TOLERANCES).regressed


# -- cache state and tolerances from measured spread (issue 25) ---------------------------------------------------
from diagnostics.suite.baseline import (
    SPREAD_FLOORS,
    SPREAD_MULTIPLE,
    cache_state_of,
    check_cache_states,
    given_keys,
    row_tolerance,
)
from diagnostics.suite.results import with_repeats


def repeated(record: dict, peaks: list[float], tokens: list[int], state: str = "cold") -> dict:
    """`record` started len(peaks) times: each start's figures, then with_repeats as the plugin writes it."""
    starts = [{**record, "peak_device_gib": p, "baseline_device_gib": None, "kv_cache_tokens": t, "cache_state": state}
              for p, t in zip(peaks, tokens)]
    return with_repeats(starts[-1], starts)


def test_cache_states_are_compared_like_with_like():
    cold = [{**r, "cache_state": "cold"} for r in records()]
    warm = [{**r, "cache_state": "warm"} for r in records()]
    assert (cache_state_of(cold), cache_state_of(records()), cache_state_of(cold[:1] + warm[1:])) == (
        "cold", None, "mixed")
    with pytest.raises(UsageError, match="baseline ran with cold compile caches, the candidate with warm"):
        check_cache_states("cold", "warm", False, "--allow-cache-mismatch")
    assert "not judged" in check_cache_states("cold", "warm", True, "--allow-cache-mismatch")[0]
    assert "does not record its cache state" in check_cache_states(None, "cold", False, "--x")[0]
    assert check_cache_states("warm", "warm", False, "--x") == []


def test_cold_against_warm_of_the_same_version_is_never_a_regression():
    """A cold first boot shrinks the KV pool (issue 25: 4.5 % to 41 % in the field): allowed side by side, the
    row is incomparable, not regressed, and the gate passes."""
    warm = [{**r, "cache_state": "warm"} for r in records()]
    cold = copy.deepcopy(warm)
    for r in cold:
        r["cache_state"] = "cold"
        if r.get("kv_cache_tokens"):
            r["kv_cache_tokens"] = int(r["kv_cache_tokens"] * 0.59)  # 41 % fewer KV tokens on the cold boot
    comparison = compare(warm, cold, parse_tolerances(None), frozenset())
    judged = [r for r in comparison.rows if r.new.get("kv_cache_tokens")]
    assert judged and all(r.status == "incomparable" for r in judged)
    assert not comparison.regressed and "cache warm -> cold: not judged" in judged[0].changes[0]
    # the same 41 % between two warm runs is a regression
    assert compare(warm, [{**r, "cache_state": "warm"} for r in cold], parse_tolerances(None), frozenset()).regressed


def test_default_tolerance_comes_from_the_measured_spread_with_a_floor():
    base = next(r for r in records() if r.get("outcome") == "ok" and r.get("kv_cache_tokens"))
    old = repeated(base, [10.0, 10.4, 10.2], [1000, 1000, 1000])  # peak spread 0.4 / 10.2 = 3.9 %
    new = repeated(base, [10.0, 10.1], [1000, 1000])
    tol, why = row_tolerance("peak", old, new, DEFAULT_TOLERANCES, frozenset())
    assert tol == pytest.approx(SPREAD_MULTIPLE * 0.4 / 10.2, rel=1e-4) and why.startswith("3 x spread: spread 3.92%")
    assert row_tolerance("kv_tokens", old, new, DEFAULT_TOLERANCES, frozenset()) == (
        SPREAD_FLOORS["kv_tokens"], "floor: spread 0.00% over 3 starts")
    # a tolerance the spec names wins; without repeats the default, saying so
    assert row_tolerance("peak", old, new, DEFAULT_TOLERANCES, given_keys("peak:5%")) == (0.05, "given")
    assert row_tolerance("peak", base, base, DEFAULT_TOLERANCES, frozenset())[1].startswith("default: no spread")
    # the medians are compared: 10.2 -> 10.05 GiB is within 11.8 %, 1000 -> 985 KV tokens breaks the 1 % floor
    worse = repeated(base, [10.0, 10.1], [985, 985])
    comparison = compare([old], [worse], DEFAULT_TOLERANCES, frozenset())
    (row,) = comparison.rows
    assert row.status == "regressed" and row.changes == ["KV cache tokens 1,000 -> 985 (-1.5%)"]
    table = format_table(comparison)
    assert "tolerance (why)" in table and "kv_tokens 1% (floor: spread 0.00% over 3 starts)" in table
    # without `given` (callers from before): every tolerance as given, no tolerance column
    assert "tolerance (why)" not in format_table(compare([old], [worse], DEFAULT_TOLERANCES))


def test_a_tolerance_twice_and_a_directory_as_baseline_file_are_named(tmp_path):            # newcomer-3 #224, #288
    with pytest.raises(UsageError, match="tolerance peak given twice in 'peak:5%,peak:20%'"):
        parse_tolerances("peak:5%,peak:20%")
    (tmp_path / "d").mkdir()
    with pytest.raises(UsageError, match="baseline file .*d/' is a directory"):
        load_baseline(str(tmp_path / "d") + "/", tmp_path)


def test_a_baseline_of_a_newer_schema_is_refused(tmp_path):                                   # newcomer-3 #223
    (tmp_path / "b.json").write_text(json.dumps({"schema_version": 99, "name": "p", "results": records()}))
    with pytest.raises(UsageError, match="schema_version 99; this vllm-memcheck reads baselines of schema_version 1"):
        load_results_source(tmp_path / "b.json")


def test_compare_refuses_a_results_file_of_zeros_without_reading_it_whole(tmp_path):          # newcomer-3 #361
    run = tmp_path / "run"
    run.mkdir()
    with open(run / "results.jsonl", "wb") as f:
        f.truncate(2 << 30)
    with pytest.raises(UsageError, match="starts with zero bytes, not JSON lines"):
        load_results_source(run)
