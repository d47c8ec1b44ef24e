"""The start-up matrix in this repository: `.venv/bin/python -m pytest -m gpu --card=3090` (or `--card=cpu`).

The two tests live in the package (diagnostics/suite/test_startup_matrix.py) so that an installed vllm-memcheck
runs them from any directory as `pytest --pyargs diagnostics.suite ...`; this file collects the same two here.
"""

from diagnostics.suite.test_startup_matrix import test_search_limit, test_startup

__all__ = ["test_search_limit", "test_startup"]
