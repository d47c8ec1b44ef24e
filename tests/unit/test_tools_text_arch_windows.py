"""tests/tools/text_arch_windows.py: the registry / get_rope reader on small sources in vLLM's layouts, and the
stored data file regenerating identically from the unzipped releases (where /tmp/vllm-src holds them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from diagnostics.predict.architectures import DATA
from diagnostics.versions import KNOWN_VERSIONS
from tests.tools import text_arch_windows as tool

SRC = Path("/tmp/vllm-src")

OLD = '''_MODELS = {
    "LlamaForCausalLM": ("llama", "LlamaForCausalLM"),
    "GoneForCausalLM": ("gone", "GoneForCausalLM"),
    "LlavaForConditionalGeneration": ("llava", "LlavaForConditionalGeneration"),
}
_ROCM_UNSUPPORTED_MODELS = ["GoneForCausalLM"]
'''
NEW = '''_TEXT_GENERATION_MODELS = {
    "LlamaForCausalLM": ("llama", "LlamaForCausalLM"),
    "Qwen3ForCausalLM": ("qwen3", "Qwen3ForCausalLM"),
}
_MULTIMODAL_MODELS = {"LlavaForConditionalGeneration": ("llava", "LlavaForConditionalGeneration")}
_PREVIOUSLY_SUPPORTED_MODELS = {"GoneForCausalLM": "0.4.0"}
_VLLM_MODELS = {**_TEXT_GENERATION_MODELS, **_MULTIMODAL_MODELS}
'''
ROPE_OLD = 'def get_rope():\n    if scaling_type == "linear":\n        pass\n'
ROPE_NEW = ('def get_rope():\n    if scaling_type not in {"su", "llama3"}:\n        pass\n'
            '    elif scaling_type == "linear" or scaling_type == "yarn":\n        pass\n')


def _release(root: Path, version: str, registry: str, name: str, rope: str) -> None:
    models = root / version / "vllm/model_executor/models"
    models.mkdir(parents=True)
    (models / name).write_text(registry)
    (root / version / "vllm/model_executor/layers").mkdir(parents=True)
    (root / version / "vllm/model_executor/layers/rotary_embedding.py").write_text(rope)


def test_windows_from_both_registry_layouts(tmp_path):
    _release(tmp_path, "0.4.0", OLD, "__init__.py", ROPE_OLD)
    _release(tmp_path, "0.8.4", NEW, "registry.py", ROPE_NEW)
    (tmp_path / "0.210.0").mkdir()  # not a known release: not read
    text = tool.build(tmp_path)
    assert 'releases = ["0.4.0", "0.8.4"]' in text
    assert 'Qwen3ForCausalLM = { since = "0.8.4" }' in text
    assert 'GoneForCausalLM = { since = "0.4.0", last = "0.4.0" }' in text  # previously-supported is no registration
    # moved from the text dict to the multimodal one: still registered, not removed
    assert 'LlavaForConditionalGeneration = { since = "0.4.0" }' in text
    assert 'llama3 = { since = "0.8.4" }' in text and 'yarn = { since = "0.8.4" }' in text
    assert 'linear = { since = "0.4.0" }' in text


@pytest.mark.skipif(not all((SRC / v).is_dir() for v in KNOWN_VERSIONS),
                    reason="needs every known release unzipped under /tmp/vllm-src (see the tool's docstring)")
def test_the_data_file_regenerates_identically_from_the_sources():
    assert tool.build(SRC) == DATA.read_text(encoding="utf-8")
