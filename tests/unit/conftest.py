"""Unit tests start no real engine: the fake starts here (pytester sweeps, fake children) take a lock file of
this session's own, so they never wait behind a real engine start of tests/cpu_backend on another xdist worker
or in another session on the same machine."""

from __future__ import annotations

import os

import pytest

from diagnostics.engine.launch import LOCK_ENV
from diagnostics.vllm_exact import OFF_ENV


@pytest.fixture(autouse=True)
def _own_engine_lock(tmp_path_factory, monkeypatch):
    if not os.environ.get(LOCK_ENV):
        monkeypatch.setenv(LOCK_ENV, str(tmp_path_factory.getbasetemp() / "engine.lock"))


@pytest.fixture(autouse=True)
def _nested_pytest_is_not_an_xdist_worker(monkeypatch):
    """Under `pytest -n 2` a test's own pytest subprocess (pytester sweeps) would inherit this worker's
    PYTEST_XDIST_* variables and think itself a worker (pytest-benchmark then turns itself off, for one)."""
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _pure_plans(monkeypatch):
    """Unit tests plan with the pure rules: asking the installed vLLM's own classes is a ~30 s subprocess per model
    (diagnostics/vllm_exact), checked in tests/cpu_backend/test_vllm_exact_agreement.py and tests/unit/test_vllm_exact.py."""
    monkeypatch.setenv(OFF_ENV, "off")
