"""Real-shape checkpoint directories for the stored VLM configs (diagnostics/data/models/NAME), no weights.

build_vlm_kit(name, out_dir, force=False) -> Path copies the stored config.json / preprocessor_config.json (and
video_preprocessor_config.json where stored), marks config.json as a kit (`_memcheck_kit`), and writes a small local
tokenizer holding the family's special tokens, so that vLLM's config, processor and multimodal-budget code and
`load_format="dummy"` work without the model hub. Token ids differ from the real tokenizer's; memory does not
depend on them (embedding rows come from config.json's vocab_size).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from diagnostics import families
from diagnostics.errors import UsageError
from diagnostics.families import qwen_vl
from diagnostics.families.common import Kit

MODELS_DIR = Path(__file__).resolve().parents[1] / "data" / "models"
TEMPLATES = Path(__file__).resolve().parent / "templates"
CONFIG_FILES = ("config.json", "preprocessor_config.json", "video_preprocessor_config.json", "processor_config.json")

# transformers builds video processors only with torchvision (no PIL fallback), which the CPU install cannot have;
# the kit names the family's transformers class (Kit.video_processor) through a one-line remote-code file
# (auto_map), so it loads; it runs nothing from torchvision unless a real video is processed (the CPU-backend test
# sends images only). With torchvision "visible" to transformers the image processor is named explicitly too: its
# PIL variant (Kit.image_processor).
VIDEO_MODULE = "video_processing_kit"
IMAGE_MODULE = "image_processing_kit"


def family_kit(config: dict) -> Kit | None:
    """The kit data of a config.json's family (None: not a family here)."""
    found = families.lookup(config)
    return found[0].VARIANTS[found[1]].kit if found else None


def _reexport(out_dir: Path, module_name: str, dotted: str, alias: str) -> str:
    module, cls = dotted.rsplit(".", 1)
    (out_dir / f"{module_name}.py").write_text(
        f'"""The transformers class itself, reached through auto_map (see diagnostics/kit/vlm.py)."""\n\n'
        f"from {module} import {cls} as {alias}\n\n__all__ = [\"{alias}\"]\n")
    return f"{module_name}.{alias}"


def _write_image_processor(out_dir: Path, kit: Kit) -> None:
    path = out_dir / "preprocessor_config.json"
    config = json.loads(path.read_text())
    ref = _reexport(out_dir, IMAGE_MODULE, kit.image_processor, "KitImageProcessor")
    config["auto_map"] = {"AutoImageProcessor": ref}
    path.write_text(json.dumps(config, indent=2) + "\n")


def _write_video_processor(out_dir: Path, kit: Kit) -> None:
    """video_processing_kit.py re-exporting the family's transformers class, named in the video config's auto_map."""
    dotted = kit.video_processor
    if dotted is None:
        return
    ref = _reexport(out_dir, VIDEO_MODULE, dotted, "KitVideoProcessor")
    path = out_dir / "video_preprocessor_config.json"
    video = json.loads(path.read_text()) if path.is_file() else {}
    if not video:  # the image processor config carries the video fields in these checkpoints
        video = {k: v for k, v in json.loads((out_dir / "preprocessor_config.json").read_text()).items()
                 if k not in ("image_processor_type", "auto_map")}
    video["auto_map"] = {"AutoVideoProcessor": ref}
    video.pop("video_processor_type", None)
    path.write_text(json.dumps(video, indent=2) + "\n")


# config.json keys that vLLM matches against the prompt's token ids (LLaVA, Gemma 3, Mistral 3 take them from the
# config, not from the tokenizer): the kit points them at its own tokenizer's ids. Ids, not shapes: memory is
# unchanged. A family whose tokens differ says so in its Kit.config_tokens.
TOKEN_ID_KEYS = {
    "image_token_index": "<image>", "video_token_index": "<video>",
    "boi_token_index": "<start_of_image>", "eoi_token_index": "<end_of_image>",
}


def _point_token_ids(config: dict, kit: Kit, ids: dict[str, int]) -> None:
    for key, token in {**TOKEN_ID_KEYS, **kit.config_tokens}.items():
        if key in config:
            config[key] = ids[token]


def stored_models() -> list[str]:
    """Names of the stored real-shape configs (directories under diagnostics/data/models)."""
    return sorted(p.name for p in MODELS_DIR.iterdir() if (p / "config.json").is_file())


def kit_families() -> list[str]:
    """Stored configs build_vlm_kit can write (their family's kit has tokens and an image processor)."""
    out = []
    for n in stored_models():
        kit = family_kit(json.loads((MODELS_DIR / n / "config.json").read_text()))
        if kit is not None and kit.tokens and kit.image_processor:
            out.append(n)
    return out


def image_prompt(variant: str) -> str:
    """The one-image prompt of a family variant, in the chat format of vLLM's
    examples/offline_inference/vision_language.py (the family's Kit.prompt); UsageError for an unknown variant."""
    for mod in families.MODULES:
        if variant in mod.VARIANTS:
            return mod.VARIANTS[variant].kit.prompt
    raise UsageError(f"unknown model family {variant!r}")


def build_vlm_kit(name: str, out_dir, force: bool = False, meta_only: bool = False) -> Path:
    """Write the kit directory for stored model `name`; raises UsageError for an unknown name or a busy out_dir.

    meta_only: a family whose processor the kit cannot provide (remote code) still gets a directory vLLM can build
    its model from on the meta device (config, its Kit.config_class, tokenizer): parameters, not the budget."""
    src = MODELS_DIR / name
    if not (src / "config.json").is_file():
        raise UsageError(f"no stored model config {name!r}; stored: {', '.join(stored_models())}")
    config = json.loads((src / "config.json").read_text())
    model_type = config.get("model_type")
    kit = family_kit(config)
    if kit is None or not kit.tokens or not (kit.image_processor or meta_only):
        why = kit.no_kit if kit is not None and kit.no_kit else "no kit tokenizer"
        raise UsageError(f"stored model {name!r} ({model_type}) has no kit: {why}; kit models: "
                         f"{', '.join(kit_families())}")
    out_dir = Path(out_dir)
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise UsageError(f"OUT_DIR {str(out_dir)!r} is not empty; pass --force to overwrite the kit files in it")
    out_dir.mkdir(parents=True, exist_ok=True)
    for fname in CONFIG_FILES[1:]:
        if (src / fname).is_file():
            shutil.copyfile(src / fname, out_dir / fname)
    if kit.image_processor:
        _write_video_processor(out_dir, kit)
        _write_image_processor(out_dir, kit)
    if kit.config_class:
        module = kit.config_class.split(".")[0]
        shutil.copyfile(TEMPLATES / f"{module}.py", out_dir / f"{module}.py")
        config["auto_map"] = {"AutoConfig": kit.config_class}

    from diagnostics.kit.tokenizer import TokenizerSpec, build_tokenizer

    tokens, eos = kit.tokens, kit.eos
    tok = build_tokenizer(out_dir, TokenizerSpec(tuple(tokens), eos=eos, pad=tokens[0], extra_config=kit.extra))
    _point_token_ids(config, kit, tok.special_ids)
    config["_memcheck_kit"] = {"size": "real", "weights": "none", "source": name}
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return out_dir


# The tiny Qwen2.5-VL for CPU-backend engine starts: the smallest widths vLLM's CPU backend accepts (LLM head_dim
# 32, M-RoPE sections summing to 16), the real token arithmetic (14 px patches, 2 x 2 merge, temporal patch 2)
# but max_pixels 64 x 28 x 28, so the largest dummy image is 64 tokens (256 ViT patches) instead of 16,384.
TINY_QWEN25VL = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                     num_key_value_heads=1, vocab_size=512, max_position_embeddings=4096)
TINY_QWEN25VL_VISION = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                            patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                            fullatt_block_indexes=[1], hidden_act="silu", in_chans=3, tokens_per_second=2)
TINY_MAX_PIXELS = 64 * 28 * 28
QWEN_IMAGE_PROMPT = qwen_vl.QWEN_IMAGE_PROMPT


def build_tiny_qwen25vl(out_dir, seed: int = 0) -> Path:
    """A random-weight Qwen2.5-VL directory (~0.3 MB) that vLLM's CPU backend starts; marked as a tiny kit."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from diagnostics.kit.tokenizer import TokenizerSpec, build_tokenizer

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    kit = qwen_vl.VARIANTS["qwen2.5-vl"].kit
    tokens, eos = kit.tokens, kit.eos
    tok = build_tokenizer(out_dir, TokenizerSpec(tuple(tokens), eos=eos, pad=tokens[0], extra_config=kit.extra,
                                                 vocab_size=TINY_QWEN25VL["vocab_size"]))
    ids = tok.special_ids
    text = dict(TINY_QWEN25VL, rope_scaling={"type": "mrope", "mrope_section": [4, 6, 6]}, rope_theta=1000000.0,
                tie_word_embeddings=False, bos_token_id=ids["<|endoftext|>"], eos_token_id=ids[eos])
    config = Qwen2_5_VLConfig(text_config=text, vision_config=TINY_QWEN25VL_VISION,
                              image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                              vision_start_token_id=ids["<|vision_start|>"],
                              vision_end_token_id=ids["<|vision_end|>"], bos_token_id=ids["<|endoftext|>"],
                              eos_token_id=ids[eos], tie_word_embeddings=False)
    torch.manual_seed(seed)
    Qwen2_5_VLForConditionalGeneration(config).to(torch.float32).save_pretrained(out_dir, safe_serialization=True)
    saved = json.loads((out_dir / "config.json").read_text())
    saved["_memcheck_kit"] = {"size": "tiny", "weights": "random", "source": "qwen2.5-vl"}
    (out_dir / "config.json").write_text(json.dumps(saved, indent=2) + "\n")
    pre = json.loads((MODELS_DIR / "qwen2.5-vl-7b" / "preprocessor_config.json").read_text())
    pre["max_pixels"] = TINY_MAX_PIXELS
    (out_dir / "preprocessor_config.json").write_text(json.dumps(pre, indent=2) + "\n")
    _write_video_processor(out_dir, kit)
    _write_image_processor(out_dir, kit)
    (out_dir / "generation_config.json").write_text(json.dumps({"eos_token_id": ids[eos]}) + "\n")
    return out_dir
