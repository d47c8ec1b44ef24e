"""The same log pasted differently reads the same (issue #10, kind 4): a property test over the real fixture logs.

Each disguise is one way a log reaches us: a message wrapped over two lines, GitHub quote bars, a Markdown fence,
container-runtime or docker-compose or journald prefixes, ANSI colours (with or without their escape byte), CRLF, a
process prefix that lost its '('. Any combination of them, on any fixture, must give the record of the plain log.
"""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diagnostics.logs.reader import read_log

LOGS = Path(__file__).resolve().parents[1] / "data" / "logs"
FIXTURES = sorted(p.name for p in LOGS.glob("*.log"))
# The record fields a disguise must not change (evidence keeps raw lines for the reader's own explanation).
COMPARED = ("outcome", "phase", "reached", "vllm_version", "engine", "platform", "settings", "numbers",
            "error_line", "timestamps", "gpu_processes")
HEADER = re.compile(r"^(?:\[rank\d+\]: |\([^)]*pid=[^)]*\) )?"  # the message starts after vLLM's tag and header
                    r"(?:(?:DEBUG|INFO|WARNING|ERROR|CRITICAL) (?:\d\d-\d\d \d\d:\d\d:\d\d|\.\.\.) \[?[\w./\-]+:\d+\] )?")
LEVEL = re.compile(r"\b(DEBUG|INFO|WARNING|ERROR|CRITICAL)\b")
PROCESS = re.compile(r"^\((?=[A-Za-z_][\w.\-]*(?: rank=\d+)? pid=\d+\))")
CODE = re.compile(r"^(?:\[rank\d+\]:|\([^)]*pid=[^)]*\))?(?:\s{2}|\s*File |\s*Traceback)")  # a traceback's lines


def wrap(lines: list[str], picks: list[int]) -> list[str]:
    """Break long log messages in two at a space inside the message, as a narrow terminal or a mail client does."""
    out = []
    for i, line in enumerate(lines):
        body_at = HEADER.match(line).end()
        body = line[body_at:]
        spaces = [j for j, ch in enumerate(body) if ch == " " and j > 0]
        if (len(line) < 100 or not spaces or body[:1].isspace() or CODE.match(body)
                or line.startswith("#")):  # fixture comments are not log lines; frames are not messages
            out.append(line)
            continue
        cut = body_at + spaces[picks[i % len(picks)] % len(spaces)]
        out += [line[:cut], line[cut + 1:]]
    return out


def colour(lines: list[str], lost_escape: bool) -> list[str]:
    esc = "" if lost_escape else "\x1b"
    return [LEVEL.sub(lambda m: f"{esc}[32m{m.group(1)}{esc}[0m", line, count=1) for line in lines]


def drop_paren(lines: list[str]) -> list[str]:
    return [PROCESS.sub("", line) for line in lines]


def prefix(lines: list[str], kind: str) -> list[str]:
    heads = {"cri": "2025-03-01T10:00:00.123456789Z stdout F ", "docker": "2025-03-01T10:00:00.123456789Z ",
             "compose": "vllm-1  | ", "journald": "Mar 01 10:00:00 gpu-host-1 vllm[2231]: ",
             "quote": "> ", "bar": "▎ ", "pipe": "| "}
    return [heads[kind] + line for line in lines]


def fence(lines: list[str]) -> list[str]:
    return ["Here is the log:", "", "```text", *lines, "```", "", "Any idea?"]


@st.composite
def disguised(draw):
    name = draw(st.sampled_from(FIXTURES))
    lines = (LOGS / name).read_text().splitlines()
    if draw(st.booleans()):
        lines = wrap(lines, draw(st.lists(st.integers(0, 10_000), min_size=1, max_size=8)))
    if draw(st.booleans()):
        lines = colour(lines, lost_escape=draw(st.booleans()))
    if draw(st.booleans()):
        lines = drop_paren(lines)
    if draw(st.booleans()):
        lines = prefix(lines, draw(st.sampled_from(["cri", "docker", "compose", "journald"])))
    if draw(st.booleans()):
        lines = prefix(lines, draw(st.sampled_from(["quote", "bar", "pipe"])))
    if draw(st.booleans()):
        lines = fence(lines)
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    return name, newline.join(lines) + newline


def record(text: str) -> dict:
    data = read_log(text).to_json()
    return {k: data[k] for k in COMPARED}


PLAIN = {name: record((LOGS / name).read_text()) for name in FIXTURES}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(disguised())
def test_a_disguised_fixture_reads_as_the_plain_one(case):
    name, text = case
    assert record(text) == PLAIN[name], name


def test_each_disguise_alone_on_every_fixture():
    """The deterministic sweep: every disguise, one at a time, on every fixture (wrapping at the middle space)."""
    disguises = [lambda ls: wrap(ls, [5000]), lambda ls: colour(ls, False), lambda ls: colour(ls, True), drop_paren,
                 fence] + [lambda ls, k=k: prefix(ls, k)
                           for k in ("cri", "docker", "compose", "journald", "quote", "bar", "pipe")]
    for name in FIXTURES:
        lines = (LOGS / name).read_text().splitlines()
        for i, disguise in enumerate(disguises):
            for newline in ("\n", "\r\n"):
                assert record(newline.join(disguise(lines))) == PLAIN[name], (name, i, repr(newline))


def test_the_fixtures_cover_failures_and_clean_starts():
    outcomes = {rec["outcome"] for rec in PLAIN.values()}
    assert {"ok", "no_kv_cache", "kv_too_small", "oom_profile", "insufficient_free_memory"} <= outcomes
