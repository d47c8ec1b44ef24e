"""suite/search.py: the limit search finds the boundary within ceil(log2(N)) + 1 starts, whatever the seed."""

from __future__ import annotations

import math
import re

import pytest

from diagnostics.errors import UsageError
from diagnostics.suite.search import Search, default_range, parse_range


def run(search: Search, limit: int) -> Search:
    """Drive a search against a card whose real limit is `limit` (values <= limit start)."""
    while (v := search.next_probe()) is not None:
        search.record(v, v <= limit)
        assert len(search.probes) <= search.max_starts, search.to_json()
    return search


@pytest.mark.parametrize("seed", [None, 16, 1024, 1920, 2048, 4096])
def test_every_limit_is_found_within_the_bound(seed):
    for limit in list(range(0, 4097, 16)) + [4200]:
        s = run(Search("max_model_len", 16, 4096, 16, seed=seed), limit)
        expected = None if limit < 16 else min(limit, 4096) // 16 * 16
        assert s.limit == expected, (seed, limit, s.to_json())
        assert s.done and len(s.probes) <= s.max_starts == math.ceil(math.log2(256)) + 1 == 9


def test_an_exact_prediction_takes_two_or_three_starts():
    # 136 candidates above a seed of 1920 cannot all be settled by the 7 starts left after a failing neighbour:
    # the second probe moves 9 blocks up (2064), the third is the neighbour
    s = run(Search("max_model_len", 16, 4096, 16, seed=1920), 1920)
    assert s.probes == [(1920, True), (2064, False), (1936, False)] and s.limit == 1920
    s = run(Search("max_model_len", 16, 4096, 16, seed=3840), 3840)
    assert s.probes == [(3840, True), (3856, False)]
    s = run(Search("max_model_len", 16, 4096, 16, seed=1936), 1920)
    assert s.probes == [(1936, False), (1920, True)]
    # plain bisection (no seed) takes the full ceil(log2(256)) = 8 or 9
    assert len(run(Search("max_model_len", 16, 4096, 16), 1920).probes) >= 8


def test_a_wrong_prediction_is_bracketed_and_halved():
    s = run(Search("max_model_len", 128, 4096, 128, seed=1024), 1920)
    assert s.probes[0] == (1024, True) and s.limit == 1920
    assert s.grid == 32 and len(s.probes) <= 6


def test_seed_is_put_on_the_grid_and_clamped():
    assert Search("max_model_len", 16, 4096, 16, seed=1000).seed == 992
    assert Search("max_model_len", 16, 4096, 16, seed=99999).seed == 4096
    assert Search("max_num_seqs", 1, 1024, 1, seed=0).seed == 1


def test_nothing_starts():
    s = run(Search("max_num_seqs", 1, 64, 1, seed=8), 0)
    assert s.limit is None and s.to_json()["limit"] is None


def test_a_start_above_a_failure_is_reported():
    s = Search("max_model_len", 16, 256, 16)
    s.record(128, False)
    s.record(192, True)
    assert s.contradictions == [(128, 192)] and s.limit is None or s.limit < 128


@pytest.mark.parametrize("args, match", [
    (("gpu_memory_utilization", 1, 10, 1), "unknown --search setting"),
    (("max_model_len", 100, 10, 16), "is empty"),
    (("max_model_len", 20, 30, 16), "no multiple"),
])
def test_bad_searches(args, match):
    with pytest.raises(UsageError, match=match):
        Search(*args)


def test_ranges():
    assert parse_range("512:4096") == (512, 4096) and parse_range(None) is None
    with pytest.raises(UsageError, match="accepted: LO:HI"):
        parse_range("4096")
    assert default_range("max_model_len", 16, 4096) == (16, 4096) and default_range("max_num_seqs", 1, 0) == (1, 1024)


@pytest.mark.parametrize("search, resolution, range_text, words", [                         # newcomer-3 #299-#304
    ("max_model_len", None, "abc", "bad --search-range 'abc'"),
    ("max_model_len", None, "4096:512", "accepted: LO:HI with 1 <= LO < HI"),
    ("max_model_len", "0", "256:512", "bad --search-resolution '0'"),
    ("max_model_len", "big", None, "bad --search-resolution 'big'"),
    (None, None, "abc", "--search-range without --search"),
    (None, "-5", None, "--search-resolution without --search"),
])
def test_search_options_are_checked_before_the_first_start(search, resolution, range_text, words):
    from diagnostics.errors import UsageError
    from diagnostics.suite.search_run import check_search_options

    with pytest.raises(UsageError, match=re.escape(words)):
        check_search_options(search, resolution, range_text)


def test_a_knob_search_runs_on_the_knobs_grid_within_the_bound():
    """max_pixels in 28 x 28 steps (issue 23): 4 .. 4096 tokens is a grid of 4093, found in <= 13 starts."""
    from diagnostics.predict.mm_fit import find_knob

    knob = find_knob("max_pixels", "qwen2.5-vl-7b", "0.32.0", {"max_model_len": 4096, "use_v1": True})
    lo, hi = default_range("max_pixels", knob.step, 0, knob)
    assert (lo, hi) == (4 * 784, 4096 * 784)
    for limit_tokens in (4, 5, 1280, 3000, 4096):
        s = run(Search("max_pixels", lo, hi, knob.step, seed=1024 * 784), limit_tokens * 784)
        assert s.limit == limit_tokens * 784 and len(s.probes) <= s.max_starts == 13
