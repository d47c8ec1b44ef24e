"""Root conftest: loads the vllm-memcheck pytest plugin (options --card, --matrix, ...; see diagnostics/plugin.py)."""

pytest_plugins = ["diagnostics.plugin"]
