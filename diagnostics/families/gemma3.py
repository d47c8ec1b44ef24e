"""Gemma 3 (4B / 12B / 27B, SigLIP-400M at 896 px, 256 tokens per image): shapes, params, dummy items.

Follows vLLM 0.32 `gemma3_mm.py`: Gemma3ProcessingInfo.get_num_image_tokens = (crops + 1) x image_seq_length,
crops only with do_pan_and_scan (off by default); the dummy image is native x (native x max_num_crops).
Knobs: mm_processor_kwargs do_pan_and_scan / pan_and_scan_max_num_crops (more tokens per image), and
limit_mm_per_prompt {"image": N}. Text defaults are transformers' Gemma3TextConfig (the 4B config omits them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from diagnostics.families.common import (Geometry, Item, Kit, Knob, SizeKnob, Variant, Window, decoder_params, need,
                                         siglip_params)

# mm_processor_kwargs keys items() reads; others go to the HF processor unmodelled
MM_KWARGS = ("do_pan_and_scan", "pan_and_scan_min_crop_size", "pan_and_scan_max_num_crops",
             "pan_and_scan_min_ratio_to_activate")
ARCHITECTURES = {"Gemma3ForConditionalGeneration": "gemma3"}
KIT = Kit("<bos><start_of_turn>user\n<start_of_image>What is in the image?<end_of_turn>\n<start_of_turn>model\n",
          ("<pad>", "<eos>", "<bos>", "<start_of_image>", "<end_of_image>", "<image_soft_token>", "\n", "\n\n",
           "\n\n\n", "\n\n\n\n"), "<eos>",
          {"extra_special_tokens": {"image_token": "<image_soft_token>", "boi_token": "<start_of_image>",
                                    "eoi_token": "<end_of_image>"}},
          image_processor="transformers.models.gemma3.image_processing_pil_gemma3.Gemma3ImageProcessorPil",
          placeholders=("<start_of_image>", None), config_tokens={"image_token_index": "<image_soft_token>"})
VARIANTS = {"gemma3": Variant(("image",), Window("0.8.0"), KIT,
                              stored={"gemma-3-4b": "google/gemma-3-4b-it", "gemma-3-12b": "google/gemma-3-12b-it",
                                      "gemma-3-27b": "google/gemma-3-27b-it"})}
TEXT_DEFAULTS = dict(vocab_size=262208, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
                     num_attention_heads=8, num_key_value_heads=4, head_dim=256, max_position_embeddings=131072,
                     model_type="gemma3_text", sliding_window=4096)
PAN_AND_SCAN = dict(pan_and_scan_min_crop_size=256, pan_and_scan_max_num_crops=4,
                    pan_and_scan_min_ratio_to_activate=1.2)  # Gemma3ProcessorKwargs defaults


@dataclass(frozen=True)
class Gemma3Shape:
    image_size: int
    patch: int
    tokens_per_image: int
    pan_and_scan: bool
    pan: tuple[int, int, float]  # min crop size, max crops, min ratio


def parse(cfg: dict, pre: dict, video_pre: dict, where: str):
    text = {**TEXT_DEFAULTS, **need(cfg, "text_config", where), "tie_word_embeddings": True}
    v = need(cfg, "vision_config", where)
    pan = {k: pre.get(k) if pre.get(k) is not None else d for k, d in PAN_AND_SCAN.items()}
    shape = Gemma3Shape(int(v["image_size"]), int(v["patch_size"]), int(cfg.get("mm_tokens_per_image", 256)),
                        bool(pre.get("do_pan_and_scan")),
                        (int(pan["pan_and_scan_min_crop_size"]), int(pan["pan_and_scan_max_num_crops"]),
                         float(pan["pan_and_scan_min_ratio_to_activate"])))
    d = int(v["hidden_size"])
    projector = d * int(text["hidden_size"]) + d  # mm_input_projection_weight + mm_soft_emb_norm
    params = decoder_params(text, qkv_bias=False, qk_norm=True, norms=4) + siglip_params(v) + projector
    return text, v, shape, params


def _crops(s: Gemma3Shape, width: int, height: int, kwargs: dict) -> int:
    """vLLM's Gemma3ProcessingInfo.get_num_crops (pan-and-scan along the long side)."""
    if not kwargs.get("do_pan_and_scan", s.pan_and_scan):
        return 0
    min_crop = int(kwargs.get("pan_and_scan_min_crop_size", s.pan[0]))
    max_crops = int(kwargs.get("pan_and_scan_max_num_crops", s.pan[1]))
    min_ratio = float(kwargs.get("pan_and_scan_min_ratio_to_activate", s.pan[2]))
    long, short = max(width, height), min(width, height)
    if long / short < min_ratio:
        return 0
    n = min(max(2, min(int(math.floor(long / min_crop)), int(math.floor(long / short + 0.5)))), max_crops)
    if min(int(math.ceil(long / n)), short) < min_crop:
        return 0
    return n


def size_knobs(s: Gemma3Shape, v=None, modalities: tuple[str, ...] = ()) -> list[SizeKnob]:
    """pan_and_scan_max_num_crops: crops per image (+ the full image), each tokens_per_image; it acts only with
    do_pan_and_scan, which the fit sets when the checkpoint's processor has it off."""
    return [SizeKnob("pan_and_scan_max_num_crops", "mm_processor_kwargs", "pan_and_scan_max_num_crops", 1, "crop", 1,
                     s.tokens_per_image, s.tokens_per_image, current=s.pan[1] if s.pan_and_scan else None,
                     extra=() if s.pan_and_scan else (("do_pan_and_scan", True),),
                     note="" if s.pan_and_scan else "pan-and-scan is off in the checkpoint's processor: the fit sets "
                     "do_pan_and_scan=true, without which the crop count changes nothing",
                     word="crop{} (+ the full image)", frontier=(1, 2, 3, 4, 6, 8))]


def geometry(s: Gemma3Shape, settings: dict, modality: str, v=None) -> Geometry:
    """items()' own dummy image: native x (native x max crops) with pan-and-scan, else the native square."""
    kwargs = settings.get("mm_processor_kwargs") or {}
    crops = int(kwargs.get("pan_and_scan_max_num_crops", s.pan[1]))
    if not kwargs.get("do_pan_and_scan", s.pan_and_scan):
        crops = 1
    return Geometry(s.image_size, s.image_size * crops)


def knobs(s: Gemma3Shape) -> list[Knob]:
    """One image per prompt, and pan-and-scan off (its crops multiply the tokens per image)."""
    return [
        Knob("limit_mm_per_prompt", "image", "items", 1, 1,
             "one image per prompt, and do_pan_and_scan off in mm_processor_kwargs", ladder=(1,)),
        Knob("mm_processor_kwargs", "do_pan_and_scan", "flag", s.pan_and_scan, False,
             "no pan-and-scan crops: 256 tokens per image", ladder=(False,), modality="image",
             requires=("do_pan_and_scan", s.pan_and_scan), advise=False),
    ]


def items(s: Gemma3Shape, settings: dict, seq_len: int, counts: dict[str, int], version=None) -> dict[str, Item]:
    if not counts.get("image"):
        return {}
    kwargs = settings.get("mm_processor_kwargs") or {}
    max_crops = int(kwargs.get("pan_and_scan_max_num_crops", s.pan[1]))
    crops = _crops(s, s.image_size, s.image_size * max_crops, kwargs)
    per_view = (s.image_size // s.patch) ** 2
    return {"image": Item("image", (crops + 1) * s.tokens_per_image, (crops + 1) * per_view, slices=crops + 1)}
