"""Qwen2-VL, Qwen2.5-VL and Qwen3-VL (dense and MoE): shapes, parameters and vLLM's largest dummy items.

Follows vLLM 0.32 `model_executor/models/qwen2_vl.py` (Qwen2VLProcessingInfo: get_image_size_with_most_features,
get_max_image_tokens, _get_max_video_frames, get_num_frames_with_most_features with _MAX_FRAMES_PER_VIDEO = 14)
and `qwen3_vl.py` (get_max_video_tokens: a 2-frame video at the video processor's longest_edge / temporal patch),
with transformers' smart_resize. Knobs: mm_processor_kwargs max_pixels / min_pixels / size (flat, or inside
images_kwargs / videos_kwargs), limit_mm_per_prompt {"video": 0}, and (Qwen2-VL / Qwen2.5-VL, vLLM 0.12+) the
video dummy option num_frames, which lowers the profile run's dummy video only (NUM_FRAMES_SINCE).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from diagnostics.families.common import (Geometry, Item, Kit, Knob, SizeKnob, Variant, Window, decoder_params, need,
                                         num_frames_knob)

# mm_processor_kwargs keys items() reads (flat or per modality); others go to the HF processor unmodelled
MM_KWARGS = ("max_pixels", "min_pixels", "size", "images_kwargs", "videos_kwargs")
ARCHITECTURES = {
    "Qwen2VLForConditionalGeneration": "qwen2-vl",
    "Qwen2_5_VLForConditionalGeneration": "qwen2.5-vl",
    "Qwen3VLForConditionalGeneration": "qwen3-vl",
    "Qwen3VLMoeForConditionalGeneration": "qwen3-vl-moe",
}
QWEN_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
               "<|image_pad|>", "<|video_pad|>")
QWEN_IMAGE_PROMPT = ("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>What is in the image?<|im_end|>\n"
                     "<|im_start|>assistant\n")
_TF = "transformers.models."
# the kit re-exports transformers' PIL image processor and its video processor (kit/vlm.py says why)
_QWEN2_IMAGE = _TF + "qwen2_vl.image_processing_pil_qwen2_vl.Qwen2VLImageProcessorPil"
_QWEN2_VIDEO = _TF + "qwen2_vl.video_processing_qwen2_vl.Qwen2VLVideoProcessor"
_QWEN3_VIDEO = _TF + "qwen3_vl.video_processing_qwen3_vl.Qwen3VLVideoProcessor"


def _kit(video: str) -> Kit:
    return Kit(QWEN_IMAGE_PROMPT, QWEN_TOKENS, "<|im_end|>", image_processor=_QWEN2_IMAGE, video_processor=video,
               placeholders=("<|vision_start|><|image_pad|><|vision_end|>",
                             "<|vision_start|><|video_pad|><|vision_end|>"))


VARIANTS = {
    "qwen2-vl": Variant(("image", "video"), Window("0.6.1"), _kit(_QWEN2_VIDEO),
                        stored={"qwen2-vl-2b": "Qwen/Qwen2-VL-2B-Instruct",
                                "qwen2-vl-7b": "Qwen/Qwen2-VL-7B-Instruct"}, encoder_tp_data=True),
    "qwen2.5-vl": Variant(("image", "video"), Window("0.7.2"), _kit(_QWEN2_VIDEO),
                          stored={"qwen2.5-vl-3b": "Qwen/Qwen2.5-VL-3B-Instruct",
                                  "qwen2.5-vl-7b": "Qwen/Qwen2.5-VL-7B-Instruct",
                                  "qwen2.5-vl-72b": "Qwen/Qwen2.5-VL-72B-Instruct"},
                          encoder_tp_data=True),
    "qwen3-vl": Variant(("image", "video"), Window("0.11.0"), _kit(_QWEN3_VIDEO),
                        stored={"qwen3-vl-8b": "Qwen/Qwen3-VL-8B-Instruct"}, encoder_tp_data=True),
    "qwen3-vl-moe": Variant(("image", "video"), Window("0.11.0"), _kit(_QWEN3_VIDEO),
                            stored={"qwen3-vl-30b-a3b": "Qwen/Qwen3-VL-30B-A3B-Instruct"},
                            encoder_tp_data=True),
}
PIXEL_STEPS = (4096, 2048, 1280, 1024, 512, 256)  # tokens per image -> max_pixels = tokens x (patch x merge)^2
MAX_FRAMES_PER_VIDEO = 14  # qwen2_vl.py _MAX_FRAMES_PER_VIDEO
# From 0.12 Qwen2-VL / Qwen2.5-VL's dummy builder hands limit_mm_per_prompt's video options to _get_dummy_videos
# (qwen2_vl.py:1052-1072 in 0.12.0, :1207-1232 in 0.32.0), which lowers the dummy video to min(frames, num_frames)
# (multimodal/profiling.py:190-205 in 0.12.0; multimodal/processing/dummy_inputs.py:116-136 in 0.32.0). 0.11 and
# before take no options. MultiModalBudget still divides by get_mm_max_tokens_per_item, the uncapped video
# (multimodal/encoder_budget.py:20-33, qwen2_vl.py:980-987, 1179-1194 in 0.32.0).
NUM_FRAMES_SINCE = (0, 12, 0)
MAX_ASPECT = 200


@dataclass(frozen=True)
class QwenVLShape:
    variant: str
    patch: int
    merge: int
    temporal: int
    image_size: tuple[int, int]  # processor defaults (shortest_edge, longest_edge) in pixels
    video_size: tuple[int, int]


def _size_of(pre: dict, default=(56 * 56, 28 * 28 * 1280)) -> tuple[int, int]:
    size = pre.get("size") or {}
    lo = pre.get("min_pixels") or size.get("shortest_edge") or default[0]
    hi = pre.get("max_pixels") or size.get("longest_edge") or default[1]
    return int(lo), int(hi)


def parse(cfg: dict, pre: dict, video_pre: dict, where: str):
    """-> (text config, vision config, QwenVLShape, params) for a Qwen-VL config.json (+ processor configs)."""
    variant = ARCHITECTURES[cfg["architectures"][0]]
    text = cfg.get("text_config") if isinstance(cfg.get("text_config"), dict) else cfg
    text = {**text, "tie_word_embeddings": cfg.get("tie_word_embeddings", text.get("tie_word_embeddings", False))}
    vision = need(cfg, "vision_config", where)
    image_size = _size_of(pre)
    video_size = _size_of(video_pre, image_size) if video_pre else image_size
    shape = QwenVLShape(variant, int(vision.get("patch_size", 14)), int(vision.get("spatial_merge_size", 2)),
                        int(vision.get("temporal_patch_size", 2)), image_size, video_size)
    return text, vision, shape, _llm_params(variant, text) + vision_params(variant, vision)


def _llm_params(variant: str, text: dict) -> int:
    if variant == "qwen3-vl-moe":
        moe = {"experts": int(text["num_experts"]), "inter": int(text["moe_intermediate_size"])}
        return decoder_params(text, qkv_bias=False, qk_norm=True, moe=moe)
    if variant == "qwen3-vl":
        return decoder_params(text, qkv_bias=False, qk_norm=True)
    return decoder_params(text, qkv_bias=True)


def vision_params(variant: str, v: dict) -> int:
    """The vision tower and merger(s) as vLLM builds them (patch conv, blocks, patch merger, deepstack mergers)."""
    t, p = int(v.get("temporal_patch_size", 2)), int(v.get("patch_size", 14))
    if variant == "qwen2-vl":
        d, out = int(v["embed_dim"]), int(v["hidden_size"])
        block = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + 2 * d * d * int(v["mlp_ratio"]) + d * int(v["mlp_ratio"]) + d
        merger = 2 * d + _merger_mlp(4 * d, out)
        return d * 3 * t * p * p + int(v["depth"]) * block + merger
    d, mlp, out = int(v["hidden_size"]), int(v["intermediate_size"]), int(v["out_hidden_size"])
    attn = (3 * d * d + 3 * d) + (d * d + d)
    if variant == "qwen2.5-vl":  # RMSNorms, gated MLP with biases, bias-free patch conv
        block = 2 * d + attn + (2 * d * mlp + 2 * mlp) + (mlp * d + d)
        return d * 3 * t * p * p + int(v["depth"]) * block + d + _merger_mlp(4 * d, out)
    block = 4 * d + attn + (d * mlp + mlp) + (mlp * d + d)  # Qwen3-VL: LayerNorms, plain MLP
    embed = d * 3 * t * p * p + d + int(v["num_position_embeddings"]) * d
    deepstack = len(v.get("deepstack_visual_indexes") or ())
    merger = 2 * d + _merger_mlp(4 * d, out)
    return embed + int(v["depth"]) * block + merger + deepstack * (2 * 4 * d + _merger_mlp(4 * d, out))


def _merger_mlp(d_in: int, out: int) -> int:
    return d_in * d_in + d_in + d_in * out + out


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int, frames: int = 0,
                 temporal: int = 1) -> tuple[int, int]:
    """transformers' Qwen2-VL smart_resize (frames=0) or Qwen3-VL's video smart_resize (frames, temporal)."""
    t = frames or 1
    t_bar = round(frames / temporal) * temporal if frames else 1
    h_bar, w_bar = round(height / factor) * factor, round(width / factor) * factor
    if t_bar * h_bar * w_bar > max_pixels:
        beta = math.sqrt(t * height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif t_bar * h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (t * height * width))
        h_bar, w_bar = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def _scoped_size(kwargs: dict, scope: str, default: tuple[int, int]) -> tuple[int, int]:
    """vLLM's _get_vision_size over flat and per-modality mm_processor_kwargs (size aliases completed)."""
    lo, hi = default
    for layer in (kwargs, kwargs.get(scope) or {}):
        size = layer.get("size") or {}
        lo = layer.get("min_pixels") or size.get("shortest_edge") or lo
        hi = layer.get("max_pixels") or size.get("longest_edge") or hi
    return int(lo), int(hi)


def _most_features(unit: int, max_pixels: int) -> tuple[int, int]:
    """(height, width) of the image with the most merged patches (factor pairs up to aspect 200)."""
    hf, wf = 1, max_pixels // (unit * unit)
    for n in range(max_pixels // (unit * unit), 0, -1):
        hf = next(d for d in range(math.isqrt(n), 0, -1) if n % d == 0)
        wf = n // hf
        if wf / hf <= MAX_ASPECT:
            break
    return unit * hf, unit * wf


def _tokens(s: QwenVLShape, hw: tuple[int, int], size: tuple[int, int], frames: int) -> int:
    unit = s.patch * s.merge
    if s.variant.startswith("qwen3") and frames > 1:
        h, w = smart_resize(*hw, unit, size[0], size[1], frames=frames, temporal=s.temporal)
    else:
        h, w = smart_resize(*hw, unit, size[0], size[1])
    grid_t = max((frames + (-frames % s.temporal)) // s.temporal, 1)
    return grid_t * (h // s.patch) * (w // s.patch) // (s.merge ** 2)


def largest_image(s: QwenVLShape, settings: dict) -> tuple[int, int]:
    """(height, width) in pixels of the image with the most features at the settings' max_pixels: the image
    items() counts (vLLM 0.32 qwen2_vl.py Qwen2VLProcessingInfo.get_image_size_with_most_features)."""
    kwargs = settings.get("mm_processor_kwargs") or {}
    return _most_features(s.patch * s.merge, _scoped_size(kwargs, "images_kwargs", s.image_size)[1])


def size_knobs(s: QwenVLShape, v=None, modalities: tuple[str, ...] = ()) -> list[SizeKnob]:
    """max_pixels in (patch x merge)^2 steps (one LLM token per image each; 28 x 28, Qwen3-VL 32 x 32), from the
    processor's min_pixels up: images and videos alike; with video on, Qwen2-VL / 2.5-VL's dummy-options num_frames
    from NUM_FRAMES_SINCE (qwen2_vl.py get_dummy_mm_data; Qwen3-VL's builder is not modelled)."""
    unit = s.patch * s.merge
    out = [SizeKnob("max_pixels", "mm_processor_kwargs", "max_pixels", unit * unit, f"{unit} x {unit} px",
                    -(-s.image_size[0] // unit ** 2), 1, current=s.image_size[1],
                    note="max_pixels in mm_processor_kwargs sizes images and videos alike (videos_kwargs / "
                         "images_kwargs scope it to one)", modalities=("image", "video"),
                    frontier=(256, 512, 1024, 1280, 2048, 4096, 8192, 16384))]
    if "video" in modalities and not s.variant.startswith("qwen3") and v is not None and v >= NUM_FRAMES_SINCE:
        out.append(num_frames_knob(
            MAX_FRAMES_PER_VIDEO, f"vLLM's _MAX_FRAMES_PER_VIDEO ({MAX_FRAMES_PER_VIDEO}, qwen2_vl.py:120)",
            "num_frames is a dummy option: it lowers the profile run's dummy video only (qwen2_vl.py "
            "get_dummy_mm_data); vLLM still accepts real videos of more frames, which the profile run then did not "
            "measure"))
    return out


def geometry(s: QwenVLShape, settings: dict, modality: str, v=None) -> Geometry:
    """The image with the most features at the settings' max_pixels; a video frame is the same size."""
    h, w = largest_image(s, settings)
    return Geometry(w, h)


def knobs(s: QwenVLShape) -> list[Knob]:
    """max_pixels in (patch x merge)^2 units (28 x 28; Qwen3-VL 32 x 32), then video off."""
    unit = (s.patch * s.merge) ** 2
    return [
        Knob("mm_processor_kwargs", "max_pixels", "pixels", s.image_size[1], 1280 * 28 * 28,
             f"1280 x 28 x 28: at most 1,280 tokens per image; this checkpoint allows {s.image_size[1] // unit:,}",
             ladder=tuple(t * unit for t in PIXEL_STEPS), modality="image"),
        Knob("limit_mm_per_prompt", "video", "items", 1, 0, "no dummy video in the profile run", ladder=(0,)),
    ]


def items(s: QwenVLShape, settings: dict, seq_len: int, counts: dict[str, int], version=None) -> dict[str, Item]:
    """Largest dummy image / video (vLLM's get_mm_max_tokens_per_item) for the active modalities in `counts`."""
    kwargs = settings.get("mm_processor_kwargs") or {}
    unit, per_token = s.patch * s.merge, s.merge ** 2
    img_size = _scoped_size(kwargs, "images_kwargs", s.image_size)
    vid_size = _scoped_size(kwargs, "videos_kwargs", s.video_size)
    target = _most_features(unit, img_size[1])
    out: dict[str, Item] = {}
    if counts.get("image"):
        t = _tokens(s, target, img_size, 1)
        out["image"] = Item("image", t, t * per_token)
    if counts.get("video"):
        if s.variant.startswith("qwen3"):
            frames = 2
            t = _tokens(s, _most_features(unit, vid_size[1] // s.temporal), vid_size, frames)
        else:
            total = 1
            while _tokens(s, target, vid_size, total + 1) <= seq_len:
                total += 1
            frames = max(min(total // max(counts["video"], 1), MAX_FRAMES_PER_VIDEO), 1)
            t = _tokens(s, target, vid_size, frames)
            cap = num_frames_option(settings)
            if cap and version is not None and version >= NUM_FRAMES_SINCE and cap < frames:
                tc = _tokens(s, target, vid_size, cap)  # the dummy video the profile run encodes
                out["video"] = Item("video", tc, tc * per_token, slices=cap, budget_tokens=t)
                return out
        out["video"] = Item("video", t, t * per_token, slices=frames)
    return out


def num_frames_option(settings: dict) -> int | None:
    """limit_mm_per_prompt's video num_frames dummy option (settings.resolve puts it in mm_dummy_options), or None."""
    cap = ((settings.get("mm_dummy_options") or {}).get("video") or {}).get("num_frames")
    return int(cap) if cap else None
