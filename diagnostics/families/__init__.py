"""Vision-language model families besides MiniCPM-V: architecture lookup, shapes, versions, dummy items, knobs.

One module per family (qwen_vl, internvl, gemma3, llava, mllama), each with ARCHITECTURES (HF architecture ->
variant), SINCE (first vLLM release with the model), parse(config, preprocessor, video preprocessor, where) ->
(text config, vision config, family shape, params as vLLM builds them) and items(shape, settings, max_model_len,
counts) -> {modality: Item} (vLLM's get_mm_max_tokens_per_item or its dummy-input path, vLLM 0.32).
Pure: no torch, no vllm.
"""

from __future__ import annotations

from dataclasses import dataclass

from diagnostics.errors import UsageError
from diagnostics.families import gemma3, internvl, llava, mllama, qwen_vl
from diagnostics.families.common import Item
from diagnostics.versions import Version, parse_version, read_version

MODULES = (qwen_vl, internvl, gemma3, llava, mllama)
BY_ARCHITECTURE = {arch: (mod, variant) for mod in MODULES for arch, variant in mod.ARCHITECTURES.items()}
MODALITIES = {
    "qwen2-vl": ("image", "video"), "qwen2.5-vl": ("image", "video"), "qwen3-vl": ("image", "video"),
    "qwen3-vl-moe": ("image", "video"), "internvl": ("image", "video"), "gemma3": ("image",),
    "llava": ("image",), "llava-onevision": ("image", "video"), "mllama": ("image",),
}
# The family's own knob for a profile run that does not fit (explain's advice names it).
KNOBS = {
    "qwen": 'mm_processor_kwargs={"max_pixels": 1003520} (1280 x 28 x 28: 1,280 tokens per image instead of '
            '16,384) or limit_mm_per_prompt={"video": 0}',
    "internvl": 'mm_processor_kwargs={"max_patches": 6} (max_dynamic_patch in the original InternVLChatModel '
                'format) or limit_mm_per_prompt={"video": 0}',
    "gemma3": 'limit_mm_per_prompt={"image": 1} and do_pan_and_scan off (mm_processor_kwargs)',
    "llava": 'limit_mm_per_prompt={"image": 1}',
    "llava-onevision": 'limit_mm_per_prompt={"video": 0} or {"image": 1}',
    "mllama": "max_num_seqs (each dummy sequence carries one 4-tile image through the vision encoder) and "
              "enforce_eager=True",
}


@dataclass(frozen=True)
class Family:
    """What ModelSpec carries for a non-MiniCPM VLM: variant, parsed shape, modalities, versions."""

    variant: str
    module: str  # diagnostics.families.<module>
    shape: object
    modalities: tuple[str, ...]
    since: Version
    until: Version | None  # first vLLM release without the model
    last: str | None = None  # the last release with it, when removed

    @property
    def knob(self) -> str:
        return KNOBS["qwen" if self.variant.startswith("qwen") else self.variant]


def supported_architectures() -> list[str]:
    return sorted(BY_ARCHITECTURE)


def lookup(cfg: dict):
    """(module, variant) for a config.json dict, or None when its architecture is not a VLM family here."""
    for arch in cfg.get("architectures") or []:
        if arch in BY_ARCHITECTURE:
            return BY_ARCHITECTURE[arch]
    return None


def parse(cfg: dict, pre: dict, video_pre: dict, where: str):
    """-> (text config, vision config, Family, params); UsageError when a field the family needs is missing."""
    mod, variant = lookup(cfg)
    try:
        text, vision, shape, params = mod.parse(cfg, pre or {}, video_pre or {}, where)
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"{where}: cannot read a {variant} config ({type(exc).__name__}: {exc})") from None
    until = getattr(mod, "UNTIL", {}).get(variant)
    family = Family(variant, mod.__name__.rsplit(".", 1)[-1], shape, MODALITIES[variant],
                    read_version(mod.SINCE[variant]), read_version(until) if until else None,
                    getattr(mod, "LAST", {}).get(variant))
    return text, vision, family, params


def check_version(family: Family, version, name: str) -> None:
    """UsageError naming the releases that have this model when `version` is outside them."""
    v = parse_version(version)
    if v < family.since:
        raise UsageError(f"{name} ({family.variant}) needs vLLM >= {family.since}; planning for {v}")
    if family.until is not None and v >= family.until:
        raise UsageError(f"{name} ({family.variant}) is not in vLLM {v}: removed in {family.until}; plan for "
                         f"--vllm {family.last} or earlier")


def items(family: Family, settings: dict, seq_len: int, counts: dict[str, int]) -> dict[str, Item]:
    """Largest dummy item per active modality (counts: modality -> items per prompt, as MultiModalBudget asks)."""
    mod = {m.__name__.rsplit(".", 1)[-1]: m for m in MODULES}[family.module]
    return mod.items(family.shape, settings, seq_len, counts)
