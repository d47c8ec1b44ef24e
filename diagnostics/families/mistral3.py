"""Mistral-Small-3.1 / 3.2 in Hugging Face format (Mistral3ForConditionalGeneration): Pixtral tower, Mistral LLM.

Follows vLLM 0.32 `model_executor/models/mistral3.py`: the tower is `pixtral.py`'s PixtralHFVisionModel (bias-free
patch conv, RMSNorms, 2D RoPE, no position table) built up to vision_feature_layer; the projector is an RMSNorm,
a learned spatial_merge_size^2 patch merger and two linears; the LLM is vLLM's Llama/Mistral model.
Mistral3ProcessingInfo has no get_mm_max_tokens_per_item, so vLLM processes one dummy image
(Mistral3DummyInputsBuilder.get_dummy_mm_data, mistral3.py:262) of edge x edge pixels
(get_image_size_with_most_features, mistral3.py:247); its tokens are ceil(edge / (patch x merge))^2 embeddings
(Mistral3HFEncoderInfo.get_patch_grid_size, mistral3.py:183-203; the [IMG_BREAK] / [IMG_END] positions are not
embeddings, PromptUpdateDetails.select_token_id; 0.8.3 alone budgets (ncols + 1) x nrows, BREAKS_UNTIL). The edge,
per vLLM release:
  0.8.3 - 0.28: vision_config.image_size (get_vision_encoder_info(hf_config): 1540 for Mistral-Small-3.1);
                mm_processor_kwargs do not change the dummy image.
  0.29+:        the image processor's size["longest_edge"], overridden by mm_processor_kwargs
                {"size": {"longest_edge": N}} (0.32: the flat key is routed into images_kwargs, mistral3.py:210-227).
Knobs: that longest_edge in pixels (0.29+), and limit_mm_per_prompt {"image": N}.
Encoder bytes: common.tower_encoder_bytes, plus in 0.12 - 0.28 the tower's dense L x L block mask (DENSE_MASK);
0.8.3 - 0.11 ran xformers' block-diagonal attention (a vLLM dependency then), except on compute capability 10.0
cards (B200), where vLLM turned xformers off and built the same dense mask: not modelled (plan has no card rule
here).
Pixtral-12B in HF format (mistral-community/pixtral-12b) is a LlavaForConditionalGeneration with a Pixtral tower,
served by vLLM's llava.py (PixtralHFProcessingInfo), not this module: plan does not claim it (see docs/models.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from diagnostics.families.common import (Geometry, Item, Kit, Knob, SizeKnob, Variant, Window, decoder_params,
                                         feature_layers, need, tower_encoder_bytes)
from diagnostics.versions import Version

# mm_processor_kwargs keys items() reads (0.29+; earlier releases read none); others go to the HF processor unmodelled
MM_KWARGS = ("size", "images_kwargs")
ARCHITECTURES = {"Mistral3ForConditionalGeneration": "mistral3"}
KIT = Kit("<s>[INST]What is in the image?\n[IMG][/INST]",
          ("<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[IMG]", "[IMG_BREAK]", "[IMG_END]"), "</s>",
          image_processor="transformers.models.pixtral.image_processing_pil_pixtral.PixtralImageProcessorPil",
          placeholders=("[IMG]", None), config_tokens={"image_token_index": "[IMG]"})
# since: first release whose registry has Mistral3ForConditionalGeneration (0.8.2's has not; 0.8.3's has)
# stored_hf_overrides: transformers 5's Mistral3Config defaults tie_word_embeddings to true; vLLM 0.32 unties the
# head when the checkpoint ships lm_head.weight (config/model.py:1242-1267), as the real one does
VARIANTS = {"mistral3": Variant(("image",), Window("0.8.3"), KIT,
                                stored={"mistral-small-3.1-24b": "mistralai/Mistral-Small-3.1-24B-Instruct-2503"},
                                stored_hf_overrides={"tie_word_embeddings": False})}
BREAKS_UNTIL = Version(0, 8, 4)  # the first release whose budget counts the image's embeddings only
PROCESSOR_EDGE_SINCE = Version(0, 29, 0)  # get_vision_encoder_info reads the processor's size["longest_edge"]
# PixtralHFVisionModel without xformers (no longer a vLLM dependency from 0.12.0) builds transformers'
# generate_block_attention_mask: one (L, L) mask in the model dtype over every image's patches packed in one sequence
# (0.28 pixtral.py:1433-1442); from 0.29 MMEncoderAttention runs varlen (cu_seqlens), no L x L tensor.
DENSE_MASK = (Version(0, 12, 0), Version(0, 29, 0))
EDGE_STEPS = (1540, 1232, 1036, 896, 784, 672, 560, 448)  # multiples of 28 px (patch x merge): no pixel wasted


@dataclass(frozen=True)
class Mistral3Shape:
    tower_edge: int  # vision_config.image_size: the dummy edge before 0.29
    longest_edge: int  # the image processor's size["longest_edge"]
    patch: int
    merge: int  # spatial_merge_size


def parse(cfg: dict, pre: dict, video_pre: dict, where: str):
    text = {**need(cfg, "text_config", where)}
    text.setdefault("tie_word_embeddings", cfg.get("tie_word_embeddings", False))
    v = need(cfg, "vision_config", where)
    patch, edge = int(v["patch_size"]), int(v["image_size"])
    longest = int(((pre.get("size") or {}).get("longest_edge")) or edge)
    merge = int(cfg.get("spatial_merge_size", 2))
    shape = Mistral3Shape(edge, longest, patch, merge)
    return text, v, shape, decoder_params(text, qkv_bias=False) + vision_params(cfg, v, int(text["hidden_size"]))


def vision_params(cfg: dict, v: dict, text_hidden: int) -> int:
    """PixtralHFVisionModel up to vision_feature_layer (pixtral.py: bias-free conv, ln_pre, per layer attention_norm,
    fused qkv + o_proj without biases, ffn_norm, gated MLP without biases) + Mistral3MultiModalProjector (RMSNorm,
    merging_layer of merge^2 x d -> d, linear_1 d -> h, linear_2 h -> h; biases only with
    multimodal_projector_bias)."""
    d, patch, mlp = int(v["hidden_size"]), int(v["patch_size"]), int(v["intermediate_size"])
    heads = int(v["num_attention_heads"])
    hd = int(v.get("head_dim") or d // heads)
    layers = feature_layers(int(v["num_hidden_layers"]), int(cfg.get("vision_feature_layer", -1)))
    layer = 2 * d + 3 * d * heads * hd + heads * hd * d + 3 * d * mlp
    tower = d * 3 * patch * patch + d + layers * layer
    merge = int(cfg.get("spatial_merge_size", 2))
    bias = bool(cfg.get("multimodal_projector_bias", False))
    projector = d + merge * merge * d * d + d * text_hidden + text_hidden * text_hidden
    return tower + projector + (2 * text_hidden if bias else 0)


def _edge(s: Mistral3Shape, settings: dict, version) -> int:
    """The dummy image's edge in pixels (see the module docstring for the rule per release)."""
    if version is not None and version < PROCESSOR_EDGE_SINCE:
        return s.tower_edge
    kwargs = settings.get("mm_processor_kwargs") or {}
    edge = s.longest_edge
    for layer in (kwargs, kwargs.get("images_kwargs") or {}):  # scoped wins over flat (vLLM 0.32)
        size = layer.get("size")
        if isinstance(size, dict) and size.get("longest_edge"):
            edge = int(size["longest_edge"])
    return edge


def geometry(s: Mistral3Shape, settings: dict, modality: str, version=None) -> Geometry:
    """The largest image: the dummy edge x edge (get_image_size_with_most_features). Its prompt also holds one
    [IMG_BREAK] / [IMG_END] position per row of merged patches, which are not embeddings (get_replacement)."""
    edge = _edge(s, settings, version)
    return Geometry(edge, edge)


def size_knobs(s: Mistral3Shape, v=None, modalities: tuple[str, ...] = ()) -> list[SizeKnob]:
    """None for `plan --fit`: an image's tokens grow as ceil(longest_edge / 28)^2, and a SizeKnob's domain is linear
    in its steps; explain's ladders walk longest_edge (knobs())."""
    return []


def _tokens(edge: int, unit: int) -> int:
    """Embeddings of an edge x edge image: ncols x nrows with ncols = nrows = (edge - 1) // unit + 1."""
    return ((edge - 1) // unit + 1) ** 2


def knobs(s: Mistral3Shape) -> list[Knob]:
    """The image processor's longest_edge in pixels (tokens per image = ceil(edge / 28)^2), then images per prompt."""
    unit = s.patch * s.merge
    return [
        Knob("mm_processor_kwargs", "size.longest_edge", "pixels", s.longest_edge, 1024,
             f"images resized to at most 1024 px a side: {_tokens(1024, unit):,} tokens per image instead of "
             f"{_tokens(s.longest_edge, unit):,} (vLLM 0.29+)",
             ladder=tuple(e for e in EDGE_STEPS if e < s.longest_edge), modality="image"),
        Knob("limit_mm_per_prompt", "image", "items", None, 1, "one image per prompt", ladder=(1,), advise=False),
    ]


def items(s: Mistral3Shape, settings: dict, seq_len: int, counts: dict[str, int], version=None) -> dict[str, Item]:
    if not counts.get("image"):
        return {}
    unit = s.patch * s.merge
    edge = _edge(s, settings, version)
    tokens = _tokens(edge, unit)
    # 0.8.3: get_mm_max_tokens_per_item = PixtralHFEncoderInfo.get_num_image_tokens = (ncols + 1) x nrows, the
    # [IMG_BREAK] / [IMG_END] positions counted (0.8.3 pixtral.py:956-968); 0.8.4+ counts embeddings only
    side = (edge - 1) // unit + 1
    budget = (side + 1) * side if version is not None and version < BREAKS_UNTIL else 0
    return {"image": Item("image", tokens, tokens * s.merge * s.merge, budget_tokens=budget)}


def encoder_bytes(model, prof, db: int, eager: bool, tp: int, coef, version=None) -> dict:
    """common.tower_encoder_bytes, plus in vLLM 0.12 - 0.28 (DENSE_MASK) the dense block mask over all
    prof.vit_tokens_padded patches of the profile batch: L^2 x db bytes (derived; SDPA may pad a copy of it when L is
    not a multiple of 8, not counted). version: None means the newest rule (no mask). Bytes, as the default."""
    out = dict(tower_encoder_bytes(model, prof, db, eager, tp, coef))
    if version is not None and DENSE_MASK[0] <= version < DENSE_MASK[1]:
        mask = prof.vit_tokens_padded ** 2 * db
        out.update(total=out["total"] + mask, scores=mask, largest_alloc=max(out["largest_alloc"], mask))
    return out
