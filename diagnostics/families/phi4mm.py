"""Phi-4-multimodal (Phi4MMForCausalLM, microsoft/Phi-4-multimodal-instruct): image + audio, vLLM's phi4mm.py.

Parameters follow vLLM 0.32 `phi4mm.py` / `phi4mm_audio.py`: a Phi-3-style LLM built as vLLM's LlamaModel (fused
qkv, gated MLP, tied head when tie_word_embeddings); the image encoder Phi4MMImageEncoder = SigLIP-so400m at 448 px
(Idefics2VisionTransformer, hard-coded shape, built to layer_idx -2: 26 of 27 layers, no post-norm) + glb_GN /
sub_GN separators + a 2-layer MLP projection; the audio encoder AudioEmbedding = a Conformer (ConformerEncoder:
NeMo conv subsampling by time_reduction, num_blocks blocks of FFN / attention / conv module / FFN, a T5 relative
attention bias, a mean-variance input norm) + two 2-layer MLP projections (speech and vision-speech).
The LoRA adapters (vision-lora r 256, speech-lora r 320 in the checkpoint's subfolders) are not in this count:
vLLM needs `enable_lora=True, max_lora_rank=320` and serves them as LoRA slots, whose memory plan does not model
(see docs/models.md).

Dummy items (one per modality, get_mm_max_tokens_per_item is not defined, so vLLM processes them):
  0.8.0 - 0.8.4 (V0 only, legacy dummy data, phi4mm.py dummy_data_for_phi4mm): dynamic_hd 16 hard-coded in
      VISION_ENCODER_TO_PROCESSING_CONFIG, no knob; the dummy sequence carries the audios or the images, whichever
      has more tokens.
  0.8.5+ (V1, Phi4MMDummyInputsBuilder.get_dummy_mm_data, 0.32 phi4mm.py:838): an image of 448 x (448 x dynamic_hd)
      pixels (get_image_size_with_most_features, phi4mm.py:758-769; dynamic_hd from the image processor, 36 in the
      checkpoint, mm_processor_kwargs {"dynamic_hd": N}) and an audio of _AUDIO_MAX_SOUNDFILE_SIZE = 241,000
      samples at 16 kHz (phi4mm.py:68): (241000 - 400) // 160 + 1 = 1,504 log-mel frames, ceil(1504 / 8) = 188
      tokens (get_audio_num_frames, _compute_audio_embed_size).
Image tokens: phi4mm.py _compute_num_image_tokens (global 16 x 16 + separator + HD crops at 2 x 2 average pooling +
one newline per row). Knobs: mm_processor_kwargs dynamic_hd (crops per image, 0.8.5+), limit_mm_per_prompt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from diagnostics.families.common import (Geometry, Item, Kit, Knob, SizeKnob, Variant, Window, decoder_params,
                                         vit_layer_params)
from diagnostics.versions import Version

# mm_processor_kwargs keys items() reads (0.8.5+); others go to the HF processor unmodelled
MM_KWARGS = ("dynamic_hd", "images_kwargs")
FIT_KNOBS = ("dynamic_hd",)  # the size knob `plan --fit` may name (size_knobs)
ARCHITECTURES = {"Phi4MMForCausalLM": "phi4mm"}
KIT = Kit("<|user|><|image_1|>What is in the image?<|end|><|assistant|>",
          ("<|endoftext|>", "<|user|>", "<|assistant|>", "<|end|>", "<|image_1|>", "<|audio_1|>"), "<|end|>",
          placeholders=("<|image_1|>", None), audio_placeholder="<|audio_1|>",  # phi4mm.py:1065 get_placeholder_str
          config_class="configuration_phi4mm.Phi4MMConfig",
          no_kit="Phi4MMProcessor is remote code on the hub (processing_phi4mm.py): the kit builds the model on the "
                 "meta device (parameters) but vLLM's multimodal budget needs that processor")
# since: 0.8.0's registry has Phi4MMForCausalLM (0.7.3's has not); V0 only (SupportsV0Only) until 0.8.5
VARIANTS = {"phi4mm": Variant(("image", "audio"), Window("0.8.0", v0_only_until="0.8.5"), KIT,
                              stored={"phi-4-multimodal": "microsoft/Phi-4-multimodal-instruct"})}
PROCESSOR_SINCE = Version(0, 8, 5)  # Phi4MMDummyInputsBuilder reads dynamic_hd from the HF processor
LEGACY_DYNAMIC_HD = 16  # 0.8.0 - 0.8.4 VISION_ENCODER_TO_PROCESSING_CONFIG["siglip-so400m-patch14-448"]
VIT_IMAGE, VIT_PATCH, COMPRESSION = 448, 14, 2  # VISION_ENCODER_TO_PROCESSING_CONFIG (every release)
SIGLIP = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27)  # get_navit_vision_model
AUDIO_SAMPLES, AUDIO_RATE, WIN, HOP = 241_000, 16_000, 400, 160  # _AUDIO_MAX_SOUNDFILE_SIZE, get_audio_num_frames


@dataclass(frozen=True)
class Phi4MMShape:
    dynamic_hd: int  # the image processor's (preprocessor_config.json)
    audio_rate: int  # compression_rate: log-mel frames per audio token
    layer_idx: int  # image feature layer (img_processor.layer_idx, default -2)
    lora_widths: int = 0  # per LLM layer: in + out widths of qkv, o, gate_up, down (a LoRA slot's A + B per rank)
    layers: int = 0


def parse(cfg: dict, pre: dict, video_pre: dict, where: str):
    text = {**cfg}
    img = cfg.get("img_processor")
    layer_idx = int(img.get("layer_idx", -2)) if isinstance(img, dict) else -2
    audio = cfg["embd_layer"]["audio_embd_layer"]
    h = int(cfg["hidden_size"])
    heads = int(cfg["num_attention_heads"])
    hd = h // heads
    qkv = (heads + 2 * int(cfg.get("num_key_value_heads") or heads)) * hd
    inter = int(cfg["intermediate_size"])
    widths = (h + qkv) + (heads * hd + h) + (h + 2 * inter) + (inter + h)
    shape = Phi4MMShape(int(pre.get("dynamic_hd", 36)), int(audio.get("compression_rate", 8)), layer_idx, widths,
                        int(cfg["num_hidden_layers"]))
    params = decoder_params(text, qkv_bias=False) + image_params(h, layer_idx) + audio_params(cfg, h)
    vision = {**SIGLIP, "patch_size": VIT_PATCH, "image_size": VIT_IMAGE, "num_attention_heads": 16}
    return text, vision, shape, params


def image_params(h: int, layer_idx: int = -2) -> int:
    """Phi4MMImageEncoder: SigLIP embeddings (conv with bias, 32 x 32 positions), layers up to layer_idx, glb_GN,
    sub_GN, img_projection Linear(1152, h) + GELU + Linear(h, h) (biases)."""
    d, mlp, total = SIGLIP["hidden_size"], SIGLIP["intermediate_size"], SIGLIP["num_hidden_layers"]
    layers = total + layer_idx + 1 if layer_idx < 0 else layer_idx + 1
    embed = d * 3 * VIT_PATCH * VIT_PATCH + d + (VIT_IMAGE // VIT_PATCH) ** 2 * d
    return embed + layers * vit_layer_params(d, mlp) + 2 * d + d * h + h + h * h + h


def audio_params(cfg: dict, h: int) -> int:
    """AudioEmbedding: the Conformer encoder + audio_projection and audio_projection_for_vision (each Linear(a, h) +
    GELU + Linear(h, h), biases)."""
    c = cfg["audio_processor"]["config"]
    a = int(c["attention_dim"])
    return conformer_params(c) + 2 * (a * h + h + h * h + h)


def conformer_params(c: dict) -> int:
    """phi4mm_audio.py ConformerEncoder with vLLM 0.32's classes (phi4mm_utils.py): per block two FeedForward
    (LayerNorm, GLULinear d -> 2 x linear_units with bias_in_glu, Linear back), MultiHeadedAttention (q/k/v/out with
    biases, k/v narrowed by attention_group_size), ConvModule (LayerNorm, ext_pw_conv_1d, GLUPointWiseConv with b1/b2,
    depthwise + pointwise conv, ln1/ln2 where widths differ, BatchNorm with batch_norm) and two LayerNorms; then
    NemoConvSubsampling "dw_striding" (log2(time_reduction) stride-2 stages, `out` Linear over the frequency axis
    left), the T5 relative bias table (2 x max_distance buckets x heads) and the mean-variance input norm.
    ValueError for a variant these classes would not build this way (input_layer, linear GLU in the conv module)."""
    if c.get("input_layer", "nemo_conv") != "nemo_conv" or c.get("linear_glu_in_convm"):
        raise ValueError("audio_processor.config: only input_layer nemo_conv with the point-wise GLU conv is known")
    d, f, n = int(c["attention_dim"]), int(c["linear_units"]), int(c["num_blocks"])
    heads, group = int(c["attention_heads"]), int(c.get("attention_group_size", 1))
    glu_bias = bool(c.get("bias_in_glu", True))
    ext, k_ext = int(c.get("ext_pw_out_channel", 0)), int(c.get("ext_pw_kernel_size", 1))
    dw_out, mult, k = int(c.get("depthwise_seperable_out_channel", 256)), int(c.get("depthwise_multiplier", 1)), int(
        c.get("kernel_size", 3))
    ffn = 2 * d + (d * 2 * f + (2 * f if glu_bias else 0)) + (f * d + d)
    kv = d // group
    mha = (d * d + d) + 2 * (d * kv + kv) + (kv * d + d)
    conv = 2 * d + (d * mult * k + d * mult)  # layer_norm, depthwise conv
    conv += (d * mult * dw_out + dw_out) if dw_out else 0  # pointwise conv
    conv += (dw_out * d + d) if dw_out and dw_out != d else ((d * mult * d + d) if not dw_out and mult != 1 else 0)
    if ext:
        conv += (d * ext * k_ext + ext) + (d * 2 * ext * k_ext + 2 * ext) + (2 * ext if glu_bias else 0)
        conv += (ext * d + d) if ext != d else 0
    else:
        conv += 6  # pw_conv_simplify_w / _b
    conv += 2 * d if c.get("batch_norm") else 0
    block = 2 * ffn + mha + conv + 2 * 2 * d
    nemo = {"conv_channels": 256, "is_causal": False, **(c.get("nemo_conv_settings") or {})}
    ch, stages = int(nemo["conv_channels"]), int(math.log2(int(c.get("time_reduction", 4))))
    pad = 3 if nemo["is_causal"] else 2  # left + right padding of the stride-2, kernel-3 convs
    freq = int(c["input_size"])
    for _ in range(stages):
        freq = (freq + pad - 3) // 2 + 1
    embed = 10 * ch + (stages - 1) * (10 * ch + ch * ch + ch) + ch * freq * d + d
    t5 = c.get("relative_attention_bias_args") or {}
    buckets = int(t5.get("t5_bias_max_distance", 1000)) * (1 if t5.get("t5_bias_symmetric") else 2)
    norm = 2 * int((c.get("encoder_embedding_config") or {}).get("input_size", c["input_size"]))
    return n * block + embed + buckets * (heads // group) + norm


def _image_tokens(width: int, height: int, dynamic_hd: int) -> int:
    """vLLM's Phi4MMProcessingInfo._compute_num_image_tokens (phi4mm.py) for an image of width x height."""
    w_crop, h_crop = math.ceil(width / VIT_IMAGE), math.ceil(height / VIT_IMAGE)
    if w_crop * h_crop > dynamic_hd:
        raise ValueError("only the dummy image's aspect (crops within dynamic_hd) is computed here")
    tw, th = VIT_IMAGE * w_crop, VIT_IMAGE * h_crop
    ratio_w, ratio_h = tw / width, th / height
    if ratio_w < ratio_h:
        pad_w, pad_h = 0, th - int(height * ratio_w)
    else:
        pad_w, pad_h = tw - int(width * ratio_h), 0
    fw, fh = tw // VIT_PATCH, th // VIT_PATCH
    if pad_w >= VIT_PATCH:
        fw -= pad_w // VIT_PATCH
    elif pad_h >= VIT_PATCH:
        fh -= pad_h // VIT_PATCH
    feat_w, feat_h = -(-fw // COMPRESSION), -(-fh // COMPRESSION)
    side = VIT_IMAGE // VIT_PATCH // COMPRESSION
    return side * side + 1 + feat_w * feat_h + feat_h + side


def _dynamic_hd(s: Phi4MMShape, settings: dict, version) -> int:
    if version is not None and version < PROCESSOR_SINCE:
        return LEGACY_DYNAMIC_HD
    kwargs = settings.get("mm_processor_kwargs") or {}
    return int(kwargs.get("dynamic_hd") or (kwargs.get("images_kwargs") or {}).get("dynamic_hd") or s.dynamic_hd)


def geometry(s: Phi4MMShape, settings: dict, modality: str, version=None) -> Geometry:
    """The dummy image: 448 x (448 x dynamic_hd) px, get_image_size_with_most_features (phi4mm.py:758-769)."""
    return Geometry(VIT_IMAGE, VIT_IMAGE * _dynamic_hd(s, settings, version))


def size_knobs(s: Phi4MMShape, v=None, modalities: tuple[str, ...] = ()) -> list[SizeKnob]:
    """dynamic_hd (0.8.5+): the dummy image's 448 px crops; its tokens are 273 + 272 x crops (the global view's
    16 x 16 + 16 newlines + separator, then 16 x 16 + 16 newlines per crop: _compute_num_image_tokens)."""
    if v is not None and v < PROCESSOR_SINCE:
        return []
    side = VIT_IMAGE // VIT_PATCH // COMPRESSION
    return [SizeKnob("dynamic_hd", "mm_processor_kwargs", "dynamic_hd", 1, "crop", 1, side * side + side,
                     side * side + 1 + side, current=s.dynamic_hd, word="crop{} of 448 px",
                     frontier=(1, 2, 4, 8, 16, 36))]


LORA_RANK = 320  # vLLM's Phi-4-multimodal example: max_lora_rank=320 (the speech adapter's rank)


def known_gaps(s: Phi4MMShape, version, settings: dict) -> list[str]:
    """The LoRA slots: vLLM serves the checkpoint's vision and speech adapters as LoRA (enable_lora=True,
    max_lora_rank=320); plan counts no LoRA memory. Estimate: max_loras x layers x rank x (A + B widths) x 2 B."""
    rank = int(settings.get("max_lora_rank") or LORA_RANK)
    slots = int(settings.get("max_loras") or 1)
    gib = slots * s.layers * rank * s.lora_widths * 2 / 2 ** 30
    return [f"Phi-4-multimodal's image and audio adapters run as vLLM LoRA (enable_lora=True, max_lora_rank={rank}): "
            f"plan does not count the LoRA slots, about {gib:.2f} GiB for {slots} slot(s) in 16-bit (estimate: "
            f"{s.layers} layers x rank {rank} x the LLM's projection widths, not checked)"]


def audio_tokens(s: Phi4MMShape) -> tuple[int, int]:
    """(tokens, log-mel frames) of the dummy audio: get_audio_num_frames then _compute_audio_embed_size."""
    frames = (AUDIO_SAMPLES - WIN) // HOP + 1
    return -(-frames // s.audio_rate), frames


def knobs(s: Phi4MMShape) -> list[Knob]:
    """dynamic_hd (448 px crops per image: the dummy image is 448 x 448*dynamic_hd), then images per prompt."""
    return [
        Knob("mm_processor_kwargs", "dynamic_hd", "crops", s.dynamic_hd, 16,
             f"at most 16 crops of 448 px per image: {_image_tokens(VIT_IMAGE, VIT_IMAGE * 16, 16):,} tokens "
             f"instead of {_image_tokens(VIT_IMAGE, VIT_IMAGE * s.dynamic_hd, s.dynamic_hd):,} (vLLM 0.8.5+)",
             halve=True, modality="image"),
        Knob("limit_mm_per_prompt", "image", "items", None, 1, "one image per prompt", ladder=(1,), advise=False),
    ]


def items(s: Phi4MMShape, settings: dict, seq_len: int, counts: dict[str, int], version=None) -> dict[str, Item]:
    out: dict[str, Item] = {}
    if counts.get("image"):
        hd = _dynamic_hd(s, settings, version)
        crops = hd  # the dummy is 1 x hd crops wide x tall, plus the global view
        out["image"] = Item("image", _image_tokens(VIT_IMAGE, VIT_IMAGE * hd, hd),
                            (crops + 1) * (VIT_IMAGE // VIT_PATCH) ** 2, slices=crops + 1)
    if counts.get("audio"):
        tokens, frames = audio_tokens(s)
        out["audio"] = Item("audio", tokens, tokens)  # the Conformer runs on frames / time_reduction positions
    if version is not None and version < PROCESSOR_SINCE and len(out) == 2:
        # 0.8.0-0.8.4 dummy_data_for_phi4mm: the sequence carries the audios when they outnumber the images' tokens,
        # else the images, never both
        audio = counts["audio"] * out["audio"].tokens > counts["image"] * out["image"].tokens
        del out["image" if audio else "audio"]
    return out
