"""Llama-3.2-Vision (MllamaForConditionalGeneration): cross-attention encoder-decoder, vLLM 0.6.2 - 0.10.2 only.

vLLM 0.11.0 removed the module: 0.32's registry lists "MllamaForConditionalGeneration": "0.10.2" among removed
architectures, so plan refuses newer versions with that line. Shapes and params follow the HF config (vision:
32 local + 8 gated global layers over tiles of (560/14)^2 + 1 = 1601 patches, tile/aspect-ratio embeddings;
text: cross-attention layers at cross_attention_layers, 8 extra image-token embedding rows). Total parameters
equal the checkpoint's 10,670,220,835 for Llama-3.2-11B-Vision before vLLM pads the embedding rows to 64.
The dummy image is max_num_tiles tiles; the encoder runs once per dummy sequence (max_num_seqs of them in the
V0 profile run), which is why max_num_seqs and enforce_eager are this family's knobs. Not checked against vLLM's
code here: 0.32 has no mllama module.
"""

from __future__ import annotations

from dataclasses import dataclass

from diagnostics.families.common import Geometry, Item, Kit, Knob, SizeKnob, Variant, Window, need, padded_vocab

MM_KWARGS = ()  # no mm_processor_kwargs key changes the dummy items plan counts
ARCHITECTURES = {"MllamaForConditionalGeneration": "mllama"}
# until: the first release without it; last: vLLM 0.32's registry of removed architectures
VARIANTS = {"mllama": Variant(("image",), Window("0.6.2", until="0.11.0", last="0.10.2"), Kit(
    "<|image|><|begin_of_text|>What is in the image?",
    no_kit="vLLM 0.32 has no mllama module, so no kit tokenizer is written for it", placeholders=("<|image|>", None)),
    stored={"llama-3.2-11b-vision": "meta-llama/Llama-3.2-11B-Vision-Instruct"}, encoder_decoder=True)}


@dataclass(frozen=True)
class MllamaShape:
    image_size: int
    patch: int
    max_tiles: int

    @property
    def patches_per_tile(self) -> int:
        return (self.image_size // self.patch) ** 2 + 1


def _vit_layer(d: int, mlp: int, gated: bool) -> int:
    return 4 * d * d + (d * mlp + mlp) + (mlp * d + d) + 4 * d + (2 if gated else 0)


def parse(cfg: dict, pre: dict, video_pre: dict, where: str):
    text, v = need(cfg, "text_config", where), need(cfg, "vision_config", where)
    d, p, size = int(v["hidden_size"]), int(v["patch_size"]), int(v["image_size"])
    tiles, n_ar = int(v.get("max_num_tiles", 4)), len(v.get("supported_aspect_ratios") or [[1, 1]] * 8)
    n = (size // p) ** 2 + 1
    vision = (d * 3 * p * p + d + n * d + 1 + (n_ar + 1) * tiles * n * d + 2 * ((n_ar + 1) * tiles * d + 1)
              + 4 * d + int(v["num_hidden_layers"]) * _vit_layer(d, int(v["intermediate_size"]), False)
              + int(v.get("num_global_layers", 8)) * _vit_layer(d, int(v["intermediate_size"]), True))
    out_dim = int(v.get("vision_output_dim", d * 6))
    h, heads = int(text["hidden_size"]), int(text["num_attention_heads"])
    hd = h // heads
    kv = int(text.get("num_key_value_heads") or heads) * hd
    mlp = 3 * h * int(text["intermediate_size"])
    self_layer = 2 * h * h + 2 * h * kv + mlp + 2 * h
    cross = len(text.get("cross_attention_layers") or ())
    layers = int(text["num_hidden_layers"])
    vocab = int(text["vocab_size"])
    llm = (padded_vocab(vocab + 8) * h + padded_vocab(vocab) * h + (layers - cross) * self_layer
           + cross * (self_layer + 2 * hd + 2) + h)
    shape = MllamaShape(size, p, tiles)
    return text, v, shape, vision + out_dim * h + h + llm


def size_knobs(s: MllamaShape, v=None, modalities: tuple[str, ...] = ()) -> list[SizeKnob]:
    """None: vLLM's dummy image always has max_tiles tiles; max_num_seqs (an engine setting) is the knob."""
    return []


def geometry(s: MllamaShape, settings: dict, modality: str, v=None) -> Geometry:
    """A 2 x 2 tile image for max_tiles >= 4 (tiles x 560 px; vLLM's own dummy is not this size)."""
    side = 2 if s.max_tiles >= 4 else 1
    return Geometry(s.image_size * side, s.image_size * side, "estimate", "a 2 x 2 tile image (max_tiles 4)")


def knobs(s: MllamaShape) -> list[Knob]:
    """max_num_seqs (each dummy sequence carries one image through the tower), and eager mode."""
    return [
        Knob("max_num_seqs", None, "sequences", 256, 16,
             f"each dummy sequence carries one {s.max_tiles}-tile image through the vision encoder", halve=True),
        Knob("enforce_eager", None, "flag", False, True,
             "mllama's cross-attention layers fail CUDA graph capture in vLLM 0.6-0.10 (vllm#8879)"),
    ]


def items(s: MllamaShape, settings: dict, seq_len: int, counts: dict[str, int], version=None) -> dict[str, Item]:
    if not counts.get("image"):
        return {}
    n = s.max_tiles * s.patches_per_tile
    return {"image": Item("image", n, n, slices=s.max_tiles)}
