"""InternVL3.5 / InternVL3 / InternVL2.5 in Hugging Face format (InternVLForConditionalGeneration): shapes, params, items.

vLLM 0.32 serves this architecture with `interns1.py` (InternS1ForConditionalGeneration): InternViT with class
token, layer scale and mean pooling, a LayerNorm + 2-layer projector over pixel-shuffled (1/downsample_ratio)^2
features, `image_seq_length` (256) tokens per 448 px tile. InternS1ProcessingInfo has no
get_mm_max_tokens_per_item, so vLLM processes a dummy image: with the checkpoint's `crop_to_patches` false that
is one tile; with it true, max_patches tiles + a thumbnail. Video: frames = (max_model_len - images' tokens) //
256 per video, 256 tokens per frame (vLLM's get_num_frames_with_most_features; the processor cannot run on the
CPU install, so video is derived, not checked). Knobs: mm_processor_kwargs max_patches / crop_to_patches
(max_dynamic_patch in the original InternVLChatModel format) and limit_mm_per_prompt {"video": 0}.
"""

from __future__ import annotations

from dataclasses import dataclass

from diagnostics.families.common import (Geometry, Item, Kit, Knob, SizeKnob, Variant, Window, decoder_params, need,
                                         vit_layer_params)

# mm_processor_kwargs keys items() reads; others go to the HF processor unmodelled
MM_KWARGS = ("max_patches", "max_dynamic_patch", "crop_to_patches", "images_kwargs")
ARCHITECTURES = {"InternVLForConditionalGeneration": "internvl"}
KIT = Kit("<|im_start|>user\n<image>\nWhat is in the image?<|im_end|>\n<|im_start|>assistant\n",
          ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"), "<|im_end|>",
          {"extra_special_tokens": {"start_image_token": "<img>", "end_image_token": "</img>",
                                    "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"}},
          image_processor="transformers.models.got_ocr2.image_processing_pil_got_ocr2.GotOcr2ImageProcessorPil",
          video_processor="transformers.models.internvl.video_processing_internvl.InternVLVideoProcessor",
          placeholders=("<image>", "<video>"))
VARIANTS = {"internvl": Variant(("image", "video"), Window("0.10.0"), KIT,
                                stored={"internvl3-8b": "OpenGVLab/InternVL3-8B-hf",
                                        "internvl3_5-8b": "OpenGVLab/InternVL3_5-8B-HF"})}


@dataclass(frozen=True)
class InternVLShape:
    image_size: int
    patch: int
    tokens_per_tile: int
    crop_to_patches: bool
    max_patches: int


def _edge(x) -> int:
    return int(x[0] if isinstance(x, (list, tuple)) else x)


def parse(cfg: dict, pre: dict, video_pre: dict, where: str):
    text = {**need(cfg, "text_config", where)}
    text["tie_word_embeddings"] = cfg.get("tie_word_embeddings", text.get("tie_word_embeddings", False))
    v = need(cfg, "vision_config", where)
    d, size, patch = int(v["hidden_size"]), _edge(v["image_size"]), _edge(v["patch_size"])
    shape = InternVLShape(size, patch, int(cfg.get("image_seq_length", 256)), bool(pre.get("crop_to_patches")),
                          int(pre.get("max_patches", 12)))
    grid = (size // patch) ** 2
    layer = vit_layer_params(d, int(v["intermediate_size"]), qkv_bias=bool(v.get("attention_bias", True)),
                             layer_scale=True)
    tower = d + d * 3 * patch * patch + d + (grid + 1) * d + int(v["num_hidden_layers"]) * layer
    if not v.get("use_mean_pooling", True):
        tower += 2 * d
    shuffled = d * int(round(1 / float(cfg.get("downsample_ratio", 0.5)))) ** 2
    h = int(text["hidden_size"])
    projector = 2 * shuffled + shuffled * h + h + h * h + h
    llm = str(text.get("model_type", "qwen2"))  # InternVL3: Qwen2.5 (q/k/v biases); InternVL3.5: Qwen3 (q/k norms)
    return text, v, shape, decoder_params(text, qkv_bias=llm.startswith("qwen2"),
                                          qk_norm=llm.startswith("qwen3")) + tower + projector


def size_knobs(s: InternVLShape, v=None, modalities: tuple[str, ...] = ()) -> list[SizeKnob]:
    """max_patches: tiles per image (+ a thumbnail), each tokens_per_tile; it acts only with crop_to_patches, which
    the fit sets when the checkpoint's processor has it off."""
    return [SizeKnob("max_patches", "mm_processor_kwargs", "max_patches", 1, "tile", 1, s.tokens_per_tile,
                     s.tokens_per_tile, current=s.max_patches if s.crop_to_patches else None,
                     extra=() if s.crop_to_patches else (("crop_to_patches", True),),
                     note="" if s.crop_to_patches else "the checkpoint's processor has crop_to_patches false (one "
                     "tile per image): the fit sets crop_to_patches=true, without which max_patches changes nothing",
                     word="tile{} (+ 1 thumbnail)", frontier=(1, 2, 4, 6, 8, 12))]


def geometry(s: InternVLShape, settings: dict, modality: str, v=None) -> Geometry:
    """An image of max_patches x 1 tiles (vLLM processes its own dummy image; this is not its pick); a video frame
    is one tile."""
    if modality != "image":
        return Geometry(s.image_size, s.image_size)
    kwargs = settings.get("mm_processor_kwargs") or {}
    patches = int(kwargs.get("max_patches", kwargs.get("max_dynamic_patch", s.max_patches)))
    return Geometry(s.image_size * patches, s.image_size, "estimate",
                    "a max_patches x 1 tile grid (not vLLM's own pick)")


def knobs(s: InternVLShape) -> list[Knob]:
    """max_patches (tiles per image, only with crop_to_patches), then video off."""
    return [
        Knob("mm_processor_kwargs", "max_patches", "tiles", s.max_patches, 6,
             "max_dynamic_patch in the original InternVLChatModel format", halve=True, modality="image",
             requires=("crop_to_patches", s.crop_to_patches)),
        Knob("limit_mm_per_prompt", "video", "items", 1, 0, "no dummy video in the profile run", ladder=(0,)),
    ]


def items(s: InternVLShape, settings: dict, seq_len: int, counts: dict[str, int], version=None) -> dict[str, Item]:
    kwargs = {**(settings.get("mm_processor_kwargs") or {})}
    kwargs.update(kwargs.get("images_kwargs") or {})
    crop = bool(kwargs.get("crop_to_patches", s.crop_to_patches))
    max_patches = int(kwargs.get("max_patches", kwargs.get("max_dynamic_patch", s.max_patches)))
    tiles = max_patches + 1 if crop and max_patches > 1 else 1
    per_tile = (s.image_size // s.patch) ** 2 + 1
    out: dict[str, Item] = {}
    image_tokens = tiles * s.tokens_per_tile
    if counts.get("image"):
        out["image"] = Item("image", image_tokens, tiles * per_tile, slices=tiles)
    if counts.get("video"):
        left = seq_len - image_tokens * counts.get("image", 0)
        frames = max(left // s.tokens_per_tile // max(counts["video"], 1), 1)
        out["video"] = Item("video", frames * s.tokens_per_tile, frames * per_tile, slices=frames)
    return out
