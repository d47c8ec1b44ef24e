"""LLaVA-1.5 (CLIP tower, Llama) and LLaVA-OneVision (SigLIP tower, Qwen2, anyres_max_9): shapes, params, items.

Follows vLLM 0.32 `llava.py` (one image at the tower's native size, vision_feature_select_strategy,
init_vision_tower_for_llava: layers up to vision_feature_layer, no post-norm when layers are cut), `llava_next.py`
(anyres grid, unpadded features) and `llava_onevision.py` (a fixed 1153 x 944 dummy image, anyres_max_9 pooling,
video frames of ceil(grid / 2)^2 tokens, at most 16 frames, + 1 newline). Knob: limit_mm_per_prompt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from diagnostics.errors import UsageError
from diagnostics.families.common import (Geometry, Item, Kit, Knob, SizeKnob, Variant, Window, decoder_params,
                                         feature_layers, need, vit_layer_params)

MM_KWARGS = ()  # no mm_processor_kwargs key changes the dummy items plan counts
ARCHITECTURES = {"LlavaForConditionalGeneration": "llava", "LlavaOnevisionForConditionalGeneration": "llava-onevision"}
_TF = "transformers.models."
VARIANTS = {
    "llava": Variant(("image",), Window("0.3.0"), Kit(
        "USER: <image>\nWhat is in the image? ASSISTANT:", ("<unk>", "<s>", "</s>", "<image>", "<pad>"), "</s>",
        image_processor=_TF + "clip.image_processing_pil_clip.CLIPImageProcessorPil", placeholders=("<image>", None)),
        stored={"llava-1.5-7b": "llava-hf/llava-1.5-7b-hf"}),
    "llava-onevision": Variant(("image", "video"), Window("0.6.2"), Kit(
        "<|im_start|>user <image>\nWhat is in the image?<|im_end|><|im_start|>assistant\n",
        ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"), "<|im_end|>",
        image_processor=_TF + "llava_onevision.image_processing_pil_llava_onevision.LlavaOnevisionImageProcessorPil",
        video_processor=_TF + "llava_onevision.video_processing_llava_onevision.LlavaOnevisionVideoProcessor",
        placeholders=("<image>", "<video>")),
        stored={"llava-onevision-7b": "llava-hf/llava-onevision-qwen2-7b-ov-hf"}),
}
ONEVISION_IMAGE = (944, 1153)  # (height, width): llava_onevision.py get_image_size_with_most_features
ONEVISION_MAX_FRAMES = 16  # llava_onevision.py _MAX_FRAMES_PER_VIDEO

LLAMA_DEFAULTS = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                      vocab_size=32000, max_position_embeddings=2048)  # transformers LlamaConfig defaults


@dataclass(frozen=True)
class LlavaShape:
    variant: str
    image_size: int
    patch: int
    strategy: str  # vision_feature_select_strategy
    pinpoints: tuple[tuple[int, int], ...]
    pool_stride: int = 2


def parse(cfg: dict, pre: dict, video_pre: dict, where: str):
    variant = ARCHITECTURES[cfg["architectures"][0]]
    text = dict(LLAMA_DEFAULTS) if variant == "llava" else {}
    text.update(need(cfg, "text_config", where))
    text.setdefault("tie_word_embeddings", cfg.get("tie_word_embeddings", False))
    v = need(cfg, "vision_config", where)
    if v.get("model_type") == "pixtral":  # vLLM's llava.py serves it with PixtralHFProcessingInfo, not these rules
        raise UsageError(f"{where}: a LlavaForConditionalGeneration with a Pixtral vision tower (Pixtral-12B in HF "
                         "format) is not a model family vllm-memcheck knows yet; known: docs/models.md")
    shape = LlavaShape(variant, int(v["image_size"]), int(v["patch_size"]),
                       str(cfg.get("vision_feature_select_strategy", "default")),
                       tuple(tuple(p) for p in cfg.get("image_grid_pinpoints") or ()),
                       int(cfg.get("spatial_pool_stride", 2)))
    qwen = str(text.get("model_type", "")).startswith("qwen2")
    params = decoder_params(text, qkv_bias=qwen) + _vision_params(cfg, v, int(text["hidden_size"]), variant)
    return text, v, shape, params


def _vision_params(cfg: dict, v: dict, text_hidden: int, variant: str) -> int:
    d, patch, size = int(v["hidden_size"]), int(v["patch_size"]), int(v["image_size"])
    total = int(v["num_hidden_layers"])
    layers = feature_layers(total, int(cfg.get("vision_feature_layer", -1)))
    grid = (size // patch) ** 2
    per_layer = vit_layer_params(d, int(v["intermediate_size"]))
    # init_vision_tower_for_llava: OneVision asks for no post-norm; LLaVA keeps it only with every layer built
    post_norm = 2 * d if layers == total and variant == "llava" else 0
    if str(v.get("model_type", "")).startswith("clip"):  # class token, bias-free conv, pre-LN
        tower = d + d * 3 * patch * patch + (grid + 1) * d + 2 * d
    else:  # SigLIP: conv with bias, no class token
        tower = d * 3 * patch * patch + d + grid * d
    projector = d * text_hidden + text_hidden + text_hidden * text_hidden + text_hidden
    newline = text_hidden if variant == "llava-onevision" else 0
    return tower + layers * per_layer + post_norm + projector + newline


def _selected(tokens_with_cls: int, strategy: str) -> int:
    return {"class": 1, "default": tokens_with_cls - 1, "full": tokens_with_cls}[strategy]


def select_best_resolution(height: int, width: int, pinpoints) -> tuple[int, int]:
    """transformers' select_best_resolution: the pinpoint keeping most of the image, then wasting least."""
    best, best_eff, best_waste = None, 0, float("inf")
    for h, w in pinpoints:
        scale = min(w / width, h / height)
        eff = min(int(width * scale) * int(height * scale), width * height)
        waste = w * h - eff
        if eff > best_eff or (eff == best_eff and waste < best_waste):
            best, best_eff, best_waste = (h, w), eff, waste
    return best


def onevision_image_tokens(s: LlavaShape, height: int, width: int) -> int:
    """Base features + unpadded anyres features (pooled above 9 tiles' worth) + one newline per row."""
    grid = s.image_size // s.patch
    base = _selected(grid * grid, s.strategy)
    bh, bw = select_best_resolution(height, width, s.pinpoints)
    cur_h, cur_w = grid * (bh // s.image_size), grid * (bw // s.image_size)
    if width / height > cur_w / cur_h:
        new_h = int(round(height * (cur_w / width), 7))
        cur_h -= 2 * ((cur_h - new_h) // 2)
    else:
        new_w = int(round(width * (cur_h / height), 7))
        cur_w -= 2 * ((cur_w - new_w) // 2)
    unpadded, newline = cur_h * cur_w, cur_h
    ratio = math.sqrt(cur_h * cur_w / (9 * grid * grid))
    if ratio > 1.1:
        unpadded, newline = int(cur_h // ratio) * int(cur_w // ratio), int(cur_h // ratio)
    return unpadded + newline + base


def size_knobs(s: LlavaShape, v=None, modalities: tuple[str, ...] = ()) -> list[SizeKnob]:
    """None: LLaVA's items have a fixed size (the tower's square; OneVision's anyres dummy); counts are the knobs."""
    return []


def geometry(s: LlavaShape, settings: dict, modality: str, v=None) -> Geometry:
    """OneVision's dummy image (ONEVISION_IMAGE); LLaVA-1.5's image and every video frame: the tower's square."""
    if s.variant == "llava-onevision" and modality == "image":
        h, w = ONEVISION_IMAGE
        return Geometry(w, h)
    return Geometry(s.image_size, s.image_size)


def knobs(s: LlavaShape) -> list[Knob]:
    """limit_mm_per_prompt: one image (LLaVA-1.5); video off and one image (OneVision)."""
    if s.variant == "llava":
        return [Knob("limit_mm_per_prompt", "image", "items", 1, 1, "one dummy image per prompt", ladder=(1,))]
    return [Knob("limit_mm_per_prompt", None, "items", {"image": 1, "video": 1}, {"image": 1, "video": 0},
                 "one image and no video per prompt")]


def items(s: LlavaShape, settings: dict, seq_len: int, counts: dict[str, int], version=None) -> dict[str, Item]:
    grid = s.image_size // s.patch
    out: dict[str, Item] = {}
    if counts.get("image"):
        if s.variant == "llava":
            out["image"] = Item("image", _selected(grid * grid + 1, s.strategy), grid * grid + 1)
        else:
            bh, bw = select_best_resolution(*ONEVISION_IMAGE, s.pinpoints)
            tiles = (bh // s.image_size) * (bw // s.image_size) + 1
            tokens = onevision_image_tokens(s, *ONEVISION_IMAGE)
            out["image"] = Item("image", tokens, tiles * grid * grid, slices=tiles)
    if counts.get("video") and s.variant == "llava-onevision":
        per_frame = math.ceil(grid / s.pool_stride) ** 2
        total = max((seq_len - 1) // per_frame, 0)
        frames = max(min(total // max(counts["video"], 1), ONEVISION_MAX_FRAMES), 1)
        out["video"] = Item("video", per_frame * frames + 1, frames * grid * grid, slices=frames)
    return out
