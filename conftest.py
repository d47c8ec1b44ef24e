"""Root conftest: loads the vllm-memcheck pytest plugin (options --card, --matrix, ...; see diagnostics/suite/plugin.py)."""

pytest_plugins = ["diagnostics.suite.plugin"]
