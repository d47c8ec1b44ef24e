"""The start-up test suite: plugin.py (pytest hook wiring, loaded by the root conftest.py), run.py (options, run
directory, model directory), judge.py (pure: expectation, limits, verdict, failure text), matrix.py (TOML matrix
-> combinations), results.py (results.jsonl records), baseline.py (saved baselines and regressions)."""
