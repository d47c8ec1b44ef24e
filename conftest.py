"""Root conftest: this repository's own wiring only. Under `pytest -n N` it keeps the real CPU-engine tests on one
xdist worker. The vllm-memcheck plugin itself (options --card, --matrix, ...; diagnostics/suite/plugin.py) is
installed as a `pytest11` entry point (pyproject.toml), so it loads here and in any other directory alike."""

ENGINE_TESTS = "tests/cpu_backend/"  # real vLLM engine starts on the CPU backend


def pytest_xdist_make_scheduler(config, log):
    """`pytest -n 2` (README's test command): every test of tests/cpu_backend is one work unit, run on one worker
    in turn (two vLLM engines at once on a 2-core runner only slow each other down, and the launcher's lock
    serialises them anyway), while every other test is a unit of its own, as in xdist's default `load` (so a
    GPU sweep's combinations still spread over the workers). xdist's `loadgroup` would say the same with marks,
    but it renames node ids through `item._nodeid`, which pytest 9.2 no longer reads."""
    from xdist.scheduler import LoadScopeScheduling

    class EngineTestsTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return ENGINE_TESTS if nodeid.startswith(ENGINE_TESTS) else nodeid

    return EngineTestsTogether(config, log)
