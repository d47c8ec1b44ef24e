"""Which vLLM releases can build a text model: its architecture in vLLM's model registry, its rope_scaling type in
vLLM's get_rope.

The windows are data, diagnostics/data/text_architectures.toml, written by tests/tools/text_arch_windows.py from
each release's own source: the text-generation dict of vllm/model_executor/models/registry.py
(`_TEXT_GENERATION_MODELS`, 0.6.4 on; `_GENERATION_MODELS` / `_MODELS` of models/__init__.py before) and the
`scaling_type == "..."` branches of get_rope (vllm/model_executor/layers/rotary_embedding.py). An architecture
no release registers keeps the estimate-with-a-note path (diagnostics.decoder); the VLM families have their own
windows (diagnostics.families.check_version).
"""

from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path

from diagnostics.models import ModelSpec
from diagnostics.versions import Version, parse_version

DATA = Path(__file__).resolve().parents[1] / "data" / "text_architectures.toml"
REGISTRY_SINCE = Version(0, 6, 4)  # models/registry.py appears; models/__init__.py held _MODELS before
ROPE_SOURCE = "vllm/model_executor/layers/rotary_embedding.py"


@lru_cache(maxsize=1)
def windows() -> dict:
    """{"releases": [...], "architectures": {arch: {"since", "last"?}}, "rope_types": {...}} from DATA."""
    return tomllib.loads(DATA.read_text(encoding="utf-8"))


def _registry_file(v: Version) -> str:
    return "vllm/model_executor/models/" + ("registry.py" if v >= REGISTRY_SINCE else "__init__.py")


def text_refusal(model: ModelSpec, version) -> str | None:
    """One line saying why vLLM `version` cannot build text model `model` (its architecture is not registered
    there, or get_rope there lacks its rope_scaling type), else None. VLM families (model.family) and
    architectures no release registers: None."""
    if model.family is not None:
        return None
    v, data = parse_version(version), windows()
    arch = data["architectures"].get(model.architecture)
    if arch is not None:
        since, last = parse_version(arch["since"]), arch.get("last")
        if v < since:
            return (f"{model.name}: {model.architecture} is in vLLM from {since} ({_registry_file(since)}), not in "
                    f"{v}; accepted: --vllm {since} or later")
        if last is not None and v > parse_version(last):
            return (f"{model.name}: {model.architecture} is not in vLLM {v}: its registry "
                    f"({_registry_file(v)}) has it up to {last}; accepted: --vllm {last} or earlier")
    rope = data["rope_types"].get(model.rope_type)
    # a type get_rope no longer names in the newest release read ("last") was renamed or moved out of the
    # `scaling_type ==` branches the tool reads: only a type still named there is gated
    if rope is not None and "last" not in rope and v < parse_version(rope["since"]):
        since = parse_version(rope["since"])
        return (f"{model.name}: rope_scaling type {model.rope_type!r} is in vLLM's get_rope from {since} "
                f"({ROPE_SOURCE}), not in {v}; accepted: --vllm {since} or later")
    return None
