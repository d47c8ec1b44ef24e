"""scripts/release_check.py: facts read from a vLLM source tree with ast, and their diff between two releases.

The trees here are small hand-written files in vLLM's layout (its parser's input, not a stand-in for an API);
the real wheels' facts are committed under tests/data/vllm_releases and checked in test_settings.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "release_check.py"
spec = importlib.util.spec_from_file_location("release_check", SCRIPT)
rc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rc)

ARGS = '''
from vllm.config.cache import CacheConfig
class EngineArgs:
    block_size: int | None = None
    gpu_memory_utilization: float = CacheConfig.gpu_memory_utilization
    max_num_seqs: int | None = None
    {extra}
    @classmethod
    def get_batch_defaults(cls):
        return {mbt}
'''
CACHE = '''
from pydantic import Field
class CacheConfig:
    DEFAULT_BLOCK_SIZE: ClassVar[int] = {block}
    gpu_memory_utilization: float = Field(default={util}, gt=0, le=1)
'''
ENVS = '''
import os
environment_variables = {{
    "VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS": lambda: bool(
        int(os.getenv("VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS", "{graphs}"))
    ),
}}
'''
WORKER = '''
class Worker:
    def determine_available_memory(self):
        logger.info("Available KV cache memory: %s GiB", 1)
        logger.info("{line}")
        raise ValueError(f"No available memory for the cache blocks ({{x}} GiB).")
'''


def _tree(root: Path, *, block=16, util="0.92", graphs="0", extra="", mbt="8192", line="hello") -> Path:
    files = {"vllm/engine/arg_utils.py": ARGS.format(extra=extra, mbt=mbt),
             "vllm/config/cache.py": CACHE.format(block=block, util=util),
             "vllm/envs.py": ENVS.format(graphs=graphs),
             "vllm/v1/worker/gpu_worker.py": WORKER.format(line=line)}
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_facts_follow_config_references_and_keep_file_and_line(tmp_path):
    facts = rc.read_facts("0.1.0", _tree(tmp_path))
    assert facts["engine_args"]["gpu_memory_utilization"] == {"default": "0.92", "at": "vllm/config/cache.py:5"}
    assert facts["constants"]["CacheConfig.DEFAULT_BLOCK_SIZE"]["default"] == "16"
    assert facts["envs"]["VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS"]["default"] == "'0'"
    assert facts["envs"]["VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS"]["at"] == "vllm/envs.py:4"
    assert facts["log_strings"]["Available KV cache memory: %s GiB"] == "vllm/v1/worker/gpu_worker.py:4"
    assert "No available memory for the cache blocks ({x} GiB)." in facts["log_strings"]
    assert "hello" not in facts["log_strings"]  # not about memory
    assert set(facts["functions"]) == {"EngineArgs.get_batch_defaults", "Worker.determine_available_memory"}


def test_the_diff_names_every_changed_default_env_log_line_and_function(tmp_path):
    old = rc.read_facts("0.1.0", _tree(tmp_path / "a"))
    new = rc.read_facts("0.2.0", _tree(tmp_path / "b", block=64, graphs="1", extra="new_arg: bool = False",
                                       mbt="16384", line="KV cache sized from measured memory"))
    d = rc.diff_facts(old, new)
    assert d["constants"]["changed"] == {"CacheConfig.DEFAULT_BLOCK_SIZE": {"from": "16", "to": "64",
                                                                          "at": "vllm/config/cache.py:4"}}
    assert d["envs"]["changed"]["VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS"]["to"] == "'1'"
    assert list(d["engine_args"]["added"]) == ["new_arg"] and not d["engine_args"]["changed"]
    assert list(d["log_strings"]["added"]) == ["KV cache sized from measured memory"]
    assert set(d["functions"]) == {"EngineArgs.get_batch_defaults", "Worker.determine_available_memory"}
    assert "+        return 16384" in d["functions"]["EngineArgs.get_batch_defaults"]["lines"]
    assert rc.diff_facts(old, old)["functions"] == {}


def test_source_rows_parse_the_values_plan_is_checked_against(tmp_path):
    rows = rc.source_rows("0.2.0", rc.read_facts("0.2.0", _tree(tmp_path, block=64, graphs="1")))
    assert rows["default/block_size"]["value"] == 64
    assert rows["env/VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS"]["value"] is True
    assert rows["default/gpu_memory_utilization"]["value"] == 0.92
    assert rows["has/enable_extensible_kv_cache"]["value"] is False


def test_bad_version_is_exit_2(capsys):
    assert rc.main(["latest"]) == 2
    assert "cannot read vLLM version 'latest'" in capsys.readouterr().err


def test_previous_release_is_the_one_before_in_known_versions():
    assert rc.previous_release("0.34.0") == "0.33.0" and rc.previous_release("0.11.0") == "0.10.2"
    with pytest.raises(SystemExit):
        rc.previous_release("0.4.0")
