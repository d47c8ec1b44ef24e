"""Kimi-VL (KimiVLForConditionalGeneration): MoonViT tower, a 2 x 2 patch-merge projector, a DeepSeek-V3-style MoE
LLM (MLA attention, routed + shared experts); images only.

Follows vLLM's `model_executor/models/kimi_vl.py` (0.32.0): the dummy image is a fixed 1024 x 1024
(MaxImageTokenMeta :92-96, KimiVLDummyInputsBuilder.get_dummy_mm_data :218-231, the same from 0.8.5, the first
release with the model, to 0.32) and its tokens are KimiVLProcessingInfo.get_num_image_tokens (:167-203): the image
scaled down to at most `in_token_limit` 14 px patches, padded to whole 2 x 2 merge kernels, one token per kernel.
The processor is the checkpoint's remote code (KimiVLProcessor), which the CPU install cannot load offline, so the
multimodal budget is derived from vLLM's formula over the stored preprocessor config, not checked by a vLLM run.
Knob: limit_mm_per_prompt {"image": N} (the tokens per item are fixed by the dummy image's size).
Before vLLM 0.14 MoonViT's attention over the packed dummy images is quadratic in their total patches on a default
install (PACKED_SDPA_UNTIL, eager_attention, encoder_bytes): the field's 7-64 GB encoder profiles (Kimi-VL #57).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from diagnostics.decoder import decoder_from_config
from diagnostics.families.common import (Geometry, Item, Kit, Knob, SizeKnob, Variant, VisionSpec, Window, need,
                                         tower_encoder_bytes, vit_layer_params)
from diagnostics.versions import Version, parse_version

MM_KWARGS = ()  # no mm_processor_kwargs key changes the dummy items plan counts (the dummy image is a fixed size)
ARCHITECTURES = {"KimiVLForConditionalGeneration": "kimi-vl"}
IMAGE_PLACEHOLDER = "<|media_start|>image<|media_content|><|media_pad|><|media_end|>"  # get_placeholder_str :300
KIT = Kit("<|im_user|>user<|im_middle|>" + IMAGE_PLACEHOLDER + "What is in the image?<|im_end|>"
          "<|im_assistant|>assistant<|im_middle|>",
          placeholders=(IMAGE_PLACEHOLDER, None),
          no_kit="its processor (KimiVLProcessor, KimiVLImageProcessor) is the checkpoint's remote code, which is "
                 "not stored here")
VARIANTS = {"kimi-vl": Variant(("image",), Window("0.8.5"), KIT,
                               stored={"kimi-vl-a3b-instruct": "moonshotai/Kimi-VL-A3B-Instruct"})}
DUMMY_IMAGE = (1024, 1024)  # kimi_vl.py MaxImageTokenMeta (width, height)
# MoonViT's attention before vLLM 0.14 (0.13.0 moonvit.py:120-160, 433-444, 486): flash_attn_varlen_func only where
# the `flash_attn` package is installed (vLLM does not install it), else sdpa_attention over the whole packed
# sequence of every image in the pass, with a dense (1, L, L) boolean mask and 3-D q/k/v, which PyTorch's fused
# SDPA kernels refuse (they need 4-D inputs): the math path's L^2 scores per head. From 0.14 MMEncoderAttention
# (varlen, per image).
PACKED_SDPA_UNTIL = Version(0, 14, 0)
FP32 = 4


@dataclass(frozen=True)
class KimiVLShape:
    patch: int
    kernel: tuple[int, int]
    in_token_limit: int
    image_size: int  # the dummy image's edge (suite/worst_case.py sends an image this size)


def _kernel(value) -> tuple[int, int]:
    return (int(value[0]), int(value[1])) if isinstance(value, (list, tuple)) else (int(value), int(value))


def parse(cfg: dict, pre: dict, video_pre: dict, where: str):
    """-> (text config, VisionSpec, KimiVLShape, params): vLLM's MoonVitPretrainedModel (moonvit.py: conv patch
    embed with bias, a 64 x 64 learnable position table, pre-norm blocks with q/k/v/o and MLP biases, a final
    LayerNorm), KimiVLMultiModalProjector (LayerNorm, two linears over 2 x 2 merged features) and
    DeepseekV2ForCausalLM (diagnostics.decoder, plus the router's e_score_correction_bias where topk_method is
    noaux_tc, deepseek_v2.py)."""
    text = {**need(cfg, "text_config", where)}
    text["tie_word_embeddings"] = cfg.get("tie_word_embeddings", text.get("tie_word_embeddings", False))
    v = need(cfg, "vision_config", where)
    d, mlp, patch = int(v["hidden_size"]), int(v["intermediate_size"]), int(v["patch_size"])
    kernel = _kernel(v.get("merge_kernel_size", (2, 2)))
    tower = (d * 3 * patch * patch + d + int(v["init_pos_emb_height"]) * int(v["init_pos_emb_width"]) * d
             + int(v["num_hidden_layers"]) * vit_layer_params(d, mlp) + 2 * d)
    merged, h = d * kernel[0] * kernel[1], int(text["hidden_size"])
    projector = 2 * d + merged * merged + merged + merged * h + h
    llm = decoder_from_config(text, "DeepseekV3ForCausalLM", where)
    bias = len(llm.moe.moe_layers) * llm.moe.experts if llm.moe and text.get("topk_method") == "noaux_tc" else 0
    shape = KimiVLShape(patch, _kernel(pre.get("merge_kernel_size", kernel)), int(pre.get("in_token_limit", 4096)),
                        DUMMY_IMAGE[0])
    spec = VisionSpec(hidden=d, layers=int(v["num_hidden_layers"]), heads=int(v["num_attention_heads"]), mlp=mlp,
                      patch=patch)
    return text, spec, shape, llm.params_per_rank(1) + bias + tower + projector


def image_tokens(s: KimiVLShape, width: int, height: int) -> int:
    """vLLM's KimiVLProcessingInfo.get_num_image_tokens (kimi_vl.py:167-203, 0.32.0)."""
    if (width // s.patch) * (height // s.patch) > s.in_token_limit:
        scale = math.sqrt(s.in_token_limit / ((width // s.patch) * (height // s.patch)))
        width, height = int(width * scale), int(height * scale)
    kh, kw = s.kernel
    pad_h = (kh * s.patch - height % (kh * s.patch)) % (kh * s.patch)
    pad_w = (kw * s.patch - width % (kw * s.patch)) % (kw * s.patch)
    return ((height + pad_h) // (kh * s.patch)) * ((width + pad_w) // (kw * s.patch))


def size_knobs(s: KimiVLShape, v=None, modalities: tuple[str, ...] = ()) -> list[SizeKnob]:
    """None: the dummy image has a fixed size (MaxImageTokenMeta); the image count is the knob."""
    return []


def geometry(s: KimiVLShape, settings: dict, modality: str, version=None) -> Geometry:
    """vLLM's 1024 x 1024 dummy image (kimi_vl.py MaxImageTokenMeta)."""
    return Geometry(*DUMMY_IMAGE)


def knobs(s: KimiVLShape) -> list[Knob]:
    return [Knob("limit_mm_per_prompt", "image", "items", 1, 1, "one dummy image per prompt", ladder=(1,))]


def items(s: KimiVLShape, settings: dict, seq_len: int, counts: dict[str, int], version=None) -> dict[str, Item]:
    """The 1024 x 1024 dummy image: tokens by vLLM's formula, ViT patches = tokens x kernel area (the padded
    grid the tower sees)."""
    if not counts.get("image"):
        return {}
    t = image_tokens(s, *DUMMY_IMAGE)
    return {"image": Item("image", t, t * s.kernel[0] * s.kernel[1])}


def eager_attention(version, rules: str) -> bool:
    """MoonViT computes L^2 scores over the packed dummy images in vLLM 0.8.5 - 0.13 (PACKED_SDPA_UNTIL says why)."""
    return parse_version(version) < PACKED_SDPA_UNTIL


def encoder_bytes(model, prof, db: int, eager: bool, tp: int, coef, version=None) -> dict:
    """common.tower_encoder_bytes, plus with eager attention the math SDPA path over the packed sequence of all
    L = prof.vit_tokens_padded patches: q @ k^T and its softmax, (heads / tp) x L^2 each in fp32 (torch >= 2.5's
    math SDPA upcasts bf16/fp16 unless allow_fp16_bf16_reduction_math_sdp is set; vLLM 0.8.5 ships torch 2.6), and
    the boolean mask with its additive copy, L^2 x (1 + db). An estimate for vLLM's default install: with the
    flash_attn package present vLLM < 0.14 takes the varlen kernel and these bytes vanish. version: unused (the
    family's eager_attention(version) already decides `eager`)."""
    out = tower_encoder_bytes(model, prof, db, eager, tp, coef)
    if not eager:
        return out
    n, heads = prof.vit_tokens_padded, max(model.vision.heads // tp, 1)
    scores = heads * n * n * 2 * FP32 + n * n * (1 + db)
    return {**out, "total": out["total"] + scores, "vpm": out["vpm"] + scores, "scores": scores,
            "largest_alloc": max(out["largest_alloc"], heads * n * n * FP32)}
