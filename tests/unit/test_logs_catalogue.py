"""The message catalogue (diagnostics/data/log_messages.toml) and the reader's rules agree both ways, and every
catalogued message, written from its format string, reads right under every prefix style the reader knows."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from diagnostics.logs import patterns as P
from diagnostics.logs.outcome import DECISIVE
from diagnostics.logs.reader import RULES, read_log

CATALOGUE = Path(__file__).resolve().parents[2] / "diagnostics" / "data" / "log_messages.toml"
CAT = tomllib.loads(CATALOGUE.read_text())
ROWS = CAT["message"]
SECTIONS = {"version", "settings", "weights", "profile", "kv_cache", "cuda_graph", "ready", "errors", "worker", "torch"}
MESSAGE_REGEXES = {name for name, value in vars(P).items() if isinstance(value, re.Pattern)} - P.STRUCTURE

# How a line reaches the reader (logs/lines.py): (name, wrap(level, body) -> physical line).
HDR = "{level} 05-26 21:34:12 [gpu_worker.py:621] {body}"
PREFIXES = {
    "bare": lambda lv, b: b,
    "v1 header": lambda lv, b: HDR.format(level=lv, body=b),
    "0.5 header": lambda lv, b: f"{lv} 08-21 07:23:34 llm_engine.py:174] {b}",
    "elided time": lambda lv, b: f"{lv} ... [gpu_worker.py:621] {b}",
    "EngineCore": lambda lv, b: "(EngineCore_DP0 pid=3043) " + HDR.format(level=lv, body=b),
    "tag lost its (": lambda lv, b: "EngineCore_DP0 pid=3043) " + HDR.format(level=lv, body=b),
    "VllmWorker rank": lambda lv, b: "(VllmWorker rank=1 pid=42) " + HDR.format(level=lv, body=b),
    "Ray worker": lambda lv, b: "(RayWorkerWrapper pid=7, ip=10.0.0.2) " + HDR.format(level=lv, body=b),
    "nested Ray DP": lambda lv, b: "(APIServer pid=1) (DPEngineCoreActor pid=2) " + HDR.format(level=lv, body=b),
    "torchrun rank": lambda lv, b: f"[rank0]: {b}",
    "vllm-omni stage": lambda lv, b: "(Worker pid=2291010) [Stage-0] " + HDR.format(level=lv, body=b),
    "CRI": lambda lv, b: "2025-03-01T10:00:00.123456789Z stdout F " + HDR.format(level=lv, body=b),
    "docker --timestamps": lambda lv, b: "2025-03-01T10:00:00.123456789Z " + HDR.format(level=lv, body=b),
    "docker compose": lambda lv, b: "vllm-1  | " + HDR.format(level=lv, body=b),
    "journald": lambda lv, b: "Mar 01 10:00:00 host vllm[2231]: " + HDR.format(level=lv, body=b),
    "Markdown quote": lambda lv, b: "> " + HDR.format(level=lv, body=b),
    "GitHub quote bar": lambda lv, b: "\u258e " + HDR.format(level=lv, body=b),
    "ANSI colours": lambda lv, b: f"\x1b[32m{lv}\x1b[0m 05-26 21:34:12 [gpu_worker.py:621] {b}",
    "ANSI lost escape": lambda lv, b: f"[32m{lv}[0m 05-26 21:34:12 [gpu_worker.py:621] {b}",
    "Buildkite tag": lambda lv, b: "[vllm] (Worker_DP6_EP6 pid=3853) " + HDR.format(level=lv, body=b),
    "Buildkite bk;t": lambda lv, b: "bk;t=1778177757178 " + HDR.format(level=lv, body=b),
    "Buildkite ISO time": lambda lv, b: "[2026-04-13T03:34:55Z] " + HDR.format(level=lv, body=b),
}


def _level(row) -> str:
    return {"raise": "ERROR", "none": "ERROR", "DEBUG": "DEBUG"}.get(row["level"], row["level"])


def _held(rec, key):
    if key == "version":
        return [rec.vllm_version]
    if key == "platform":
        return [rec.platform]
    if key.startswith("setting:"):
        return [rec.settings.get(key[len("setting:"):])]
    return [rec.numbers.get(key)] + list(rec.numbers.get(f"{key}_all") or [])


def _same(a, b) -> bool:
    if isinstance(b, bool) or isinstance(b, str) or a is None:
        return a == b
    return isinstance(a, (int, float)) and abs(float(a) - float(b)) <= max(1e-4, 1e-4 * abs(float(b)))


def test_every_row_is_complete_and_unique():
    ids = [r["id"] for r in ROWS]
    assert len(ids) == len(set(ids))
    for r in ROWS:
        missing = {"id", "section", "source", "level", "format", "meaning", "figures", "rule", "example",
                   "expect"} - set(r)
        assert not missing, (r["id"], missing)
        assert r["section"] in SECTIONS, r["id"]
        assert r["source"] != "vllm" or "anchors" in r, r["id"]


def test_every_row_names_a_rule_of_the_reader():
    """A row whose `rule` is not a message regex of patterns.py: the message has no reader rule."""
    for r in ROWS:
        assert r["rule"] in MESSAGE_REGEXES, f"{r['id']}: rule {r['rule']!r} is not a message regex in patterns.py"


def test_every_rule_has_a_row():
    """A message regex of patterns.py (the reader's RULES, the outcome's DECISIVE table, the OOM figures) that no
    row names: a rule the catalogue does not document."""
    named = {r["rule"] for r in ROWS}
    assert MESSAGE_REGEXES - named == set()
    used = {name for name, value in vars(P).items() for pat, _ in RULES if value is pat}
    used |= {name for name, value in vars(P).items() for pats, _, _ in DECISIVE for pat in pats if value is pat}
    assert used <= named


def test_vllm_rows_say_where_the_source_prints_them():
    """`versions`/`where` are written by tests/tools/log_catalogue.py --write from vLLM's source."""
    for r in ROWS:
        if r["source"] == "vllm" and r.get("anchors"):
            assert r.get("versions") and r.get("where"), f"{r['id']}: run log_catalogue.py --write"
            assert re.match(r"0\.\d+\.\d+ vllm/\S+\.py:\d+", r["where"]), r["id"]
        if r["source"] in ("torch", "torch_npu"):
            assert r.get("where") and r.get("versions"), r["id"]


@pytest.mark.parametrize("row", ROWS, ids=[r["id"] for r in ROWS])
def test_the_rule_matches_its_example(row):
    rule = getattr(P, row["rule"])
    assert any(rule.search(line) for line in row["example"].split("\n")), row["id"]


@pytest.mark.parametrize("style", list(PREFIXES))
@pytest.mark.parametrize("row", ROWS, ids=[r["id"] for r in ROWS])
def test_example_reads_right_under_every_prefix(row, style):
    wrap = PREFIXES[style]
    text = "\n".join(wrap(_level(row), line) for line in row["example"].split("\n"))
    rec = read_log(text)
    for key, want in row["expect"].items():
        assert any(_same(v, want) for v in _held(rec, key)), (row["id"], style, key, want, _held(rec, key))
    if row.get("outcome") and row["section"] != "ready":
        assert rec.outcome == row["outcome"], (row["id"], style, rec.outcome)
        if row.get("phase"):
            assert rec.phase == row["phase"], (row["id"], style, rec.phase)
    if row["section"] == "ready":
        assert rec.outcome == "ok", (row["id"], style, rec.outcome)
