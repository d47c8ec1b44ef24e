"""The start-up matrix: one real vLLM engine start per combination of the matrix (`pytest -m gpu --card=3090`).

Shipped inside the package, so an installed vllm-memcheck runs it from any directory (the plugin itself is a
`pytest11` entry point):

    pytest --pyargs diagnostics.suite -m gpu --card 3090 --matrix my-matrix.toml

This repository's tests/test_startup_matrix.py imports these two tests (one copy).

The combinations come from --matrix (default: diagnostics/data/minicpm-v-2_6.toml) through the plugin's
pytest_generate_tests; ids read like `mml4096-seqs32-util1.0`. Without a usable GPU every test skips with one
line saying why and what to run instead. `--card=cpu` runs them on vLLM's CPU backend, with the CPU matrix
diagnostics/data/cpu-tiny.toml (eager, float32, kv_cache_memory_bytes, a tiny kit model) unless --matrix says:

    .venv/bin/python -m pytest -m gpu --card=cpu
"""

from __future__ import annotations

import pytest


@pytest.mark.gpu
def test_startup(memcheck, memcheck_combination, benchmark):
    """Start-up is OOM-free (or fails the way it is expected to, as xfail) and both peaks stay within the card's
    thresholds; on failure the message is the diagnosis."""
    measurement = memcheck.start(memcheck_combination, benchmark)
    memcheck.verify(measurement)


@pytest.mark.gpu
def test_search_limit(memcheck_search):
    """`--search max_model_len` (or max_num_seqs): the largest value that starts, seeded by plan --fit, each
    start recorded in results.jsonl; search.json, search.md and cards-snippet.toml land in the run directory.
    Collected only with --search (the matrix test is then deselected)."""
    summary = memcheck_search()
    assert summary["done"] and summary["starts"] <= summary["max_starts"], summary
    assert not summary["contradictions"], f"a start above a failed one came up: {summary['contradictions']}"
