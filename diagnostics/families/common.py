"""Shared pieces of the VLM families: one dummy item, the family's parsed shape, and parameter counts.

Parameter counts follow how vLLM builds each module (vocab rows padded to a multiple of 64 for
VocabParallelEmbedding / ParallelLMHead, tied heads share the embedding), so `ModelSpec.params` equals the
parameter count of vLLM's model built on the meta device (tests/tools/vlm_vllm_check.py --meta).
"""

from __future__ import annotations

from dataclasses import dataclass

from diagnostics.errors import UsageError

VOCAB_PADDING = 64  # vLLM's DEFAULT_VOCAB_PADDING_SIZE


@dataclass(frozen=True)
class Item:
    """The largest dummy item of one modality: LLM tokens (what budgets count) and what the tower sees."""

    modality: str
    tokens: int  # embedding positions in the LLM (vLLM's max tokens per item)
    patches: int  # ViT patch tokens the vision tower processes for this item
    slices: int = 1  # tiles / crops / frames (batched as separate tower inputs)


def padded_vocab(vocab: int, multiple: int = VOCAB_PADDING) -> int:
    return -(-vocab // multiple) * multiple


def need(cfg: dict, key: str, where: str):
    if key not in cfg or cfg[key] is None:
        raise UsageError(f"{where} lacks {key!r}, which this model family needs")
    return cfg[key]


def decoder_params(cfg: dict, *, qkv_bias: bool, qk_norm: bool = False, norms: int = 2, tied: bool | None = None,
                   moe: dict | None = None) -> int:
    """A Llama/Qwen2/Qwen3/Gemma-style decoder: embeddings (+ untied head), attention, MLP or MoE, norms.

    cfg: the text config (hidden_size, num_hidden_layers, num_attention_heads, num_key_value_heads, head_dim,
    intermediate_size, vocab_size); norms: RMSNorms per layer (2, Gemma 3: 4); moe: {"experts", "inter"}
    (vLLM's FusedMoE w13 + w2 per expert and a bias-free router).
    """
    h, layers = int(cfg["hidden_size"]), int(cfg["num_hidden_layers"])
    heads = int(cfg["num_attention_heads"])
    kv = int(cfg.get("num_key_value_heads") or heads)
    hd = int(cfg.get("head_dim") or h // heads)
    q, k = heads * hd, kv * hd
    attn = h * q + 2 * h * k + q * h + ((q + 2 * k) if qkv_bias else 0) + (2 * hd if qk_norm else 0)
    if moe:
        mlp = moe["experts"] * 3 * h * moe["inter"] + h * moe["experts"]
    else:
        mlp = 3 * h * int(cfg["intermediate_size"])
    tied = bool(cfg.get("tie_word_embeddings", False)) if tied is None else tied
    rows = padded_vocab(int(cfg["vocab_size"]))
    return rows * h * (1 if tied else 2) + layers * (attn + mlp + norms * h) + h


def vit_layer_params(d: int, mlp: int, *, gated: bool = False, norm_bias: bool = True, qkv_bias: bool = True,
                     layer_scale: bool = False) -> int:
    """One pre-norm ViT block: q/k/v/out (with biases), two norms, MLP fc1/fc2 (or gate_up + down), biases."""
    attn = 4 * d * d + (3 * d if qkv_bias else 0) + d
    norms = 2 * (2 * d if norm_bias else d)
    ffn = (2 * d * mlp + 2 * mlp if gated else d * mlp + mlp) + mlp * d + d
    return attn + norms + ffn + (2 * d if layer_scale else 0)


def siglip_params(v: dict, layers: int | None = None, post_norm: bool = True) -> int:
    """SigLIP/CLIP-style tower without class token: patch conv (+bias), position table, layers, post-LN."""
    d, patch, size = int(v["hidden_size"]), int(v["patch_size"]), int(v["image_size"])
    n = int(v["num_hidden_layers"]) if layers is None else layers
    embed = d * 3 * patch * patch + d + (size // patch) ** 2 * d
    return embed + n * vit_layer_params(d, int(v["intermediate_size"])) + (2 * d if post_norm else 0)


def feature_layers(total: int, feature_layer: int) -> int:
    """Layers vLLM builds for a tower read at `vision_feature_layer` (negative counts from the end)."""
    return total + feature_layer + 1 if feature_layer < 0 else feature_layer
