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

from diagnostics.errors import UsageError

MODELS_DIR = Path(__file__).resolve().parents[1] / "data" / "models"
CONFIG_FILES = ("config.json", "preprocessor_config.json", "video_preprocessor_config.json")

_QWEN = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
         "<|image_pad|>", "<|video_pad|>"]
# model_type -> (special tokens, eos, tokenizer_config extras: the named tokens transformers' processors read)
FAMILY_TOKENS: dict[str, tuple[list[str], str, dict]] = {
    "qwen2_vl": (_QWEN, "<|im_end|>", {}),
    "qwen2_5_vl": (_QWEN, "<|im_end|>", {}),
    "qwen3_vl": (_QWEN, "<|im_end|>", {}),
    "qwen3_vl_moe": (_QWEN, "<|im_end|>", {}),
    "internvl": (["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"],
                 "<|im_end|>", {"extra_special_tokens": {"start_image_token": "<img>", "end_image_token": "</img>",
                                                         "context_image_token": "<IMG_CONTEXT>",
                                                         "video_token": "<video>"}}),
    "gemma3": (["<pad>", "<eos>", "<bos>", "<start_of_image>", "<end_of_image>", "<image_soft_token>"], "<eos>",
               {"extra_special_tokens": {"image_token": "<image_soft_token>", "boi_token": "<start_of_image>",
                                         "eoi_token": "<end_of_image>"}}),
    "llava": (["<unk>", "<s>", "</s>", "<image>", "<pad>"], "</s>", {}),
    "llava_onevision": (["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"], "<|im_end|>", {}),
}


# transformers builds video processors only with torchvision (no PIL fallback), which the CPU install cannot have;
# the kit names the same transformers class through a one-line remote-code file (auto_map), so it loads; it runs
# nothing from torchvision unless a real video is processed (the CPU-backend test sends images only).
VIDEO_PROCESSORS = {
    "qwen2_vl": "transformers.models.qwen2_vl.video_processing_qwen2_vl.Qwen2VLVideoProcessor",
    "qwen2_5_vl": "transformers.models.qwen2_vl.video_processing_qwen2_vl.Qwen2VLVideoProcessor",
    "qwen3_vl": "transformers.models.qwen3_vl.video_processing_qwen3_vl.Qwen3VLVideoProcessor",
    "qwen3_vl_moe": "transformers.models.qwen3_vl.video_processing_qwen3_vl.Qwen3VLVideoProcessor",
    "internvl": "transformers.models.internvl.video_processing_internvl.InternVLVideoProcessor",
    "llava_onevision": "transformers.models.llava_onevision.video_processing_llava_onevision."
                       "LlavaOnevisionVideoProcessor",
}
VIDEO_MODULE = "video_processing_kit"
IMAGE_MODULE = "image_processing_kit"
# ... and with torchvision "visible" to transformers, the image processor is named explicitly: its PIL variant
IMAGE_PROCESSORS = {
    "qwen2_vl": "transformers.models.qwen2_vl.image_processing_pil_qwen2_vl.Qwen2VLImageProcessorPil",
    "qwen2_5_vl": "transformers.models.qwen2_vl.image_processing_pil_qwen2_vl.Qwen2VLImageProcessorPil",
    "qwen3_vl": "transformers.models.qwen2_vl.image_processing_pil_qwen2_vl.Qwen2VLImageProcessorPil",
    "qwen3_vl_moe": "transformers.models.qwen2_vl.image_processing_pil_qwen2_vl.Qwen2VLImageProcessorPil",
    "internvl": "transformers.models.got_ocr2.image_processing_pil_got_ocr2.GotOcr2ImageProcessorPil",
    "gemma3": "transformers.models.gemma3.image_processing_pil_gemma3.Gemma3ImageProcessorPil",
    "llava": "transformers.models.clip.image_processing_pil_clip.CLIPImageProcessorPil",
    "llava_onevision": "transformers.models.llava_onevision.image_processing_pil_llava_onevision."
                       "LlavaOnevisionImageProcessorPil",
}


def _reexport(out_dir: Path, module_name: str, dotted: str, alias: str) -> str:
    module, cls = dotted.rsplit(".", 1)
    (out_dir / f"{module_name}.py").write_text(
        f'"""The transformers class itself, reached through auto_map (see diagnostics/kit/vlm.py)."""\n\n'
        f"from {module} import {cls} as {alias}\n\n__all__ = [\"{alias}\"]\n")
    return f"{module_name}.{alias}"


def _write_image_processor(out_dir: Path, model_type: str) -> None:
    path = out_dir / "preprocessor_config.json"
    config = json.loads(path.read_text())
    ref = _reexport(out_dir, IMAGE_MODULE, IMAGE_PROCESSORS[model_type], "KitImageProcessor")
    config["auto_map"] = {"AutoImageProcessor": ref}
    path.write_text(json.dumps(config, indent=2) + "\n")


def _write_video_processor(out_dir: Path, model_type: str) -> None:
    """video_processing_kit.py re-exporting the family's transformers class, named in the video config's auto_map."""
    dotted = VIDEO_PROCESSORS.get(model_type)
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


def stored_models() -> list[str]:
    """Names of the stored real-shape configs (directories under diagnostics/data/models)."""
    return sorted(p.name for p in MODELS_DIR.iterdir() if (p / "config.json").is_file())


def build_vlm_kit(name: str, out_dir, force: bool = False) -> Path:
    """Write the kit directory for stored model `name`; raises UsageError for an unknown name or a busy out_dir."""
    src = MODELS_DIR / name
    if not (src / "config.json").is_file():
        raise UsageError(f"no stored model config {name!r}; stored: {', '.join(stored_models())}")
    config = json.loads((src / "config.json").read_text())
    model_type = config.get("model_type")
    if model_type not in FAMILY_TOKENS:
        raise UsageError(f"stored model {name!r} ({model_type}) has no kit tokenizer; kit families: "
                         f"{', '.join(sorted(FAMILY_TOKENS))}")
    out_dir = Path(out_dir)
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise UsageError(f"OUT_DIR {str(out_dir)!r} is not empty; pass --force to overwrite the kit files in it")
    out_dir.mkdir(parents=True, exist_ok=True)
    for fname in CONFIG_FILES[1:]:
        if (src / fname).is_file():
            shutil.copyfile(src / fname, out_dir / fname)
    config["_memcheck_kit"] = {"size": "real", "weights": "none", "source": name}
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    _write_video_processor(out_dir, model_type)
    _write_image_processor(out_dir, model_type)

    from diagnostics.kit.tokenizer import build_tokenizer

    tokens, eos, extra = FAMILY_TOKENS[model_type]
    build_tokenizer(out_dir, tokens, eos=eos, pad=tokens[0], extra_config=extra)
    return out_dir
