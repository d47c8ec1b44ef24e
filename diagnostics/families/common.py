"""Shared pieces of the VLM families: the tower's shape, one dummy item, the version window, the knobs as data,
the kit, the default encoder bytes, and parameter counts.

Parameter counts follow how vLLM builds each module (vocab rows padded to a multiple of 64 for
VocabParallelEmbedding / ParallelLMHead, tied heads share the embedding), so `ModelSpec.params` equals the
parameter count of vLLM's model built on the meta device (tests/tools/vlm_vllm_check.py --meta).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from diagnostics.errors import UsageError

VOCAB_PADDING = 64  # vLLM's DEFAULT_VOCAB_PADDING_SIZE


@dataclass(frozen=True)
class VisionSpec:
    """The vision tower's shape (ModelSpec.vision). The last four fields are MiniCPM-V's (0 elsewhere)."""

    hidden: int  # SigLIP hidden (1152)
    layers: int  # 27
    heads: int  # 16
    mlp: int  # 4304
    patch: int  # 14
    image_size: int = 0  # MiniCPM-V: slice edge (448)
    tower_image_size: int = 0  # MiniCPM-V: position table edge (980 -> 70 x 70 positions)
    query_num: int = 0  # MiniCPM-V: resampler queries = LLM embeddings per slice (64)
    max_slice_nums: int = 0  # MiniCPM-V: slices per image besides the overview (9)

    @property
    def patches_per_slice(self) -> int:
        return (self.image_size // self.patch) ** 2


@dataclass(frozen=True)
class Item:
    """The largest dummy item of one modality: LLM tokens (what budgets count) and what the tower sees."""

    modality: str
    tokens: int  # embedding positions in the LLM (vLLM's max tokens per item)
    patches: int  # ViT patch tokens the vision tower processes for this item
    slices: int = 1  # tiles / crops / frames (batched as separate tower inputs)
    largest: int = 0  # patches of the largest slice (vLLM pads a batch to it); 0: patches // slices
    budget_tokens: int = 0  # tokens MultiModalBudget divides by when they differ from this dummy's (0: tokens)

    @property
    def max_slice_patches(self) -> int:
        return self.largest or self.patches // max(self.slices, 1)

    @property
    def per_item(self) -> int:
        """vLLM's max tokens per item of this modality (what the encoder budget divides by)."""
        return self.budget_tokens or self.tokens


@dataclass(frozen=True)
class Window:
    """The vLLM releases that have a model: `since` (first with its class), `until` (first without it, with `last`
    the last with it), `v0_only_until` (first release whose V1 engine runs it; SupportsV0Only before)."""

    since: str
    until: str | None = None
    last: str | None = None
    v0_only_until: str | None = None


@dataclass(frozen=True)
class Knob:
    """A setting that changes the profile run's dummy items, as data (explain's advice, its ladders, `plan --fit`).

    setting: the vLLM setting (mm_processor_kwargs, limit_mm_per_prompt, max_num_seqs, ...); key: the key inside a
    dict-valued setting (max_pixels, max_patches, video, ...; dotted for a nested one: size.longest_edge), None when
    the setting itself is the value;
    unit: what one value counts (pixels, tiles, slices, items, sequences, flag); default: its value when unset;
    suggestion: the value explain names; ladder: candidate values, largest first (steps() keeps those below the
    current value); halve: candidates are instead the powers of two below the current value down to 1;
    modality: the modality whose tokens per item the value changes (None: it changes counts, not tokens);
    requires: (mm_processor_kwargs key, its default) that must be true for the knob to act; advise: explain names
    it first in its rules of thumb; why: one sentence."""

    setting: str
    key: str | None
    unit: str
    default: object
    suggestion: object
    why: str
    ladder: tuple = ()
    halve: bool = False
    modality: str | None = None
    requires: tuple[str, object] | None = None
    advise: bool = True

    def applies(self, settings: dict) -> bool:
        if self.requires is None:
            return True
        return bool((settings.get("mm_processor_kwargs") or {}).get(self.requires[0], self.requires[1]))

    def current(self, settings: dict):
        """The knob's value in a resolved settings dict (its default when unset)."""
        if self.key is None:
            return settings.get(self.setting, self.default)
        value = settings.get(self.setting) or {}
        for part in self.key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return self.default if value is None else value

    def setting_value(self, settings: dict, value):
        """The whole setting's value with this knob at `value` (other keys of a dict setting kept, at every level
        of a dotted key)."""
        if self.key is None:
            return value
        return _set_in(settings.get(self.setting) or {}, self.key.split("."), value)

    def steps(self, current) -> list:
        """Candidate values below `current`, nearest first (`plan --fit` and explain walk these)."""
        if self.halve:
            out, p = [], 1 << (max(int(current) - 1, 1).bit_length() - 1) if current else 0
            while p >= 1:
                if p < int(current):
                    out.append(p)
                p //= 2
            return out
        return [x for x in self.ladder if current is None or x < current]

    def text(self) -> str:
        value = self.setting_value({}, self.suggestion)
        return f"{self.setting}={json.dumps(value) if isinstance(value, dict) else value} ({self.why})"


def _set_in(d: dict, path: list[str], value) -> dict:
    """A copy of `d` with d[path[0]][path[1]]... = value (dicts on the way copied, missing ones made)."""
    inner = d.get(path[0]) if isinstance(d.get(path[0]), dict) else {}
    return {**d, path[0]: value if len(path) == 1 else _set_in(inner, path[1:], value)}


@dataclass(frozen=True)
class SizeKnob:
    """A knob that sizes one dummy item, as `plan --fit` and the suite's search walk it (predict/mm_fit.Knob is this
    at one max_model_len). A family module's size_knobs(shape, version, modalities) returns them.

    name: what --fit takes; setting/key: where the value goes (`mm_processor_kwargs["max_pixels"]`,
    `limit_mm_per_prompt["video"]["num_frames"]`); step: raw units per step (Qwen max_pixels: (patch x merge)^2
    pixels = one LLM token); unit: how a step reads ("28 x 28 px", "slice"); lo: the domain's bottom, in steps;
    per_step_tokens / fixed_tokens: LLM tokens of the item at n steps = fixed + n x per_step (0 per step: the top
    is `cap`); cap / cap_reason: a top in steps whatever max_model_len allows; current: the raw value in effect
    without the knob (None: unset); extra: keys set with it; note: why; guards: False when the knob shapes only
    the dummy item, not what requests may carry; modalities: the dummy items it changes; word: a value's label
    ("slice{}": "{}" takes the plural s; "" for max_pixels, labelled in pixels); frontier: the step counts a
    `plan --fit A,B` frontier walks."""

    name: str
    setting: str
    key: str
    step: int
    unit: str
    lo: int
    per_step_tokens: int
    fixed_tokens: int = 0
    cap: int | None = None
    cap_reason: str = ""
    current: int | None = None
    extra: tuple = ()
    note: str = ""
    guards: bool = True
    modalities: tuple = ("image",)
    word: str = ""
    frontier: tuple = ()

    def top(self, max_model_len: int) -> tuple[int, str]:
        """(the domain's top as a raw value, why it is the top) at this max_model_len (tokens): vLLM rejects a
        prompt longer than max_model_len (vllm 0.32 v1/engine/input_processor.py:590), so an item of more tokens
        cannot be sent whatever memory says; `cap` bounds it below that."""
        tail = ("an item of more tokens cannot be sent: vLLM rejects prompts longer than max_model_len "
                f"({max_model_len})")
        if not self.per_step_tokens:
            return self.cap * self.step, self.cap_reason
        n = max((max_model_len - self.fixed_tokens) // self.per_step_tokens, self.lo)
        if self.cap is not None and n >= self.cap:
            return self.cap * self.step, self.cap_reason
        return n * self.step, tail


def num_frames_knob(cap: int, cap_reason: str, note: str) -> SizeKnob:
    """The dummy video's `limit_mm_per_prompt.video.num_frames` size hint (vLLM 0.12+, config/multimodal.py), one
    frame a step, as every family that honours it has it; cap: the family's most frames per dummy video."""
    return SizeKnob("num_frames", "limit_mm_per_prompt", "video.num_frames", 1, "frame", 1, 0, cap=cap,
                    cap_reason=cap_reason, note=note, guards=False, modalities=("video",), word="frame{}",
                    frontier=(1, 2, 4, 8, 12, 16))


@dataclass(frozen=True)
class Geometry:
    """The pixel size of a family's largest item of one modality (a video: each frame), as the suite's worst-case
    request sends it: width, height, basis ("derived": vLLM's own dummy size; "estimate": a size of that many
    tokens that is not vLLM's pick) and a note saying which when it is an estimate."""

    width: int
    height: int
    basis: str = "derived"
    note: str | None = None


@dataclass(frozen=True)
class Kit:
    """What a kit directory needs besides the stored configs: the local tokenizer's special tokens (None: no kit
    tokenizer, with `no_kit` saying why), its eos, tokenizer_config extras, the transformers processor classes the
    kit re-exports, the one-image prompt in vLLM's example chat format, and whether the CPU backend needs the
    torchvision stub visible to transformers. config_tokens: config.json keys holding token ids vLLM matches in the
    prompt -> the kit token they name (kit/vlm.py points them at the kit tokenizer's ids)."""

    prompt: str
    tokens: tuple[str, ...] | None = None
    eos: str = ""
    extra: dict = field(default_factory=dict)
    image_processor: str | None = None
    video_processor: str | None = None
    torchvision_stub: bool = True
    no_kit: str = ""
    # (image, video): one item's placeholder in the family's chat prompt (None: the family has no such item); the
    # suite's worst-case request repeats them (suite/worst_case.py)
    placeholders: tuple[str | None, str | None] = (None, None)
    audio_placeholder: str | None = None  # one audio item's placeholder (MiniCPM-o); the suite sends no audio yet
    config_tokens: dict = field(default_factory=dict)
    # a configuration module of the kit's own (diagnostics/kit/templates/NAME.py, "NAME.Class") for a model type
    # transformers does not know (remote code on the hub): the kit copies it and names it in config.json's auto_map
    config_class: str | None = None


@dataclass(frozen=True)
class Variant:
    """Everything a family module declares per variant: modalities, version window, kit, stored configs (short
    name -> Hugging Face repository), and the V0 profile-run rules it follows."""

    modalities: tuple[str, ...]
    window: Window
    kit: Kit
    stored: dict = field(default_factory=dict)
    v0_sequence_video: bool = False  # V0 builds the dummy video for each dummy sequence's length (MiniCPM-V)
    encoder_decoder: bool = False  # V0 gives every one of max_num_seqs dummy sequences its items (mllama)
    # vLLM's model class has supports_encoder_tp_data = True (0.32: minicpmv.py:1219, qwen2_vl.py:1306,
    # qwen2_5_vl.py:1324, qwen3_vl.py:1962), so mm_encoder_tp_mode="data" takes effect (config/model.py:822-830)
    encoder_tp_data: bool = False
    # hf_overrides that make vLLM build a stored config directory (no weights) as it builds the real checkpoint,
    # where vLLM decides from the weights (Mistral 3: the checkpoint's own lm_head unties the head)
    stored_hf_overrides: dict = field(default_factory=dict)


def tower_encoder_bytes(model, prof, db: int, eager: bool, tp: int, coef, version=None) -> dict:
    """Peak bytes of a VLM's tower on every dummy item at once (flash / SDPA varlen attention, no L^2 scores):
    coef.vlm_tower_per_patch bytes per ViT patch (pixels, residual, norms, q/k/v, MLP, rotary tables; fitted on two
    Qwen2.5-VL field logs, not sharded by TP) plus the projector's output (LLM embeddings of every item).
    model: ModelSpec; prof: the profile run (vit_tokens_padded, llm_mm_tokens); version: unused (the same rule in
    every release). Returns {"total", "vpm",
    "resampler" (the projector here), "scores" (0), "largest_alloc"} in bytes."""
    vis, n = model.vision, prof.vit_tokens_padded
    a, b = coef.vlm_tower_per_patch
    vpm = n * (a * vis.hidden + b * vis.mlp) * db
    projector = prof.llm_mm_tokens * model.hidden * db
    return {"total": vpm + projector, "vpm": vpm, "resampler": projector, "scores": 0,
            "largest_alloc": max(n * vis.mlp * db, projector)}


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
