"""MiniCPM-o 2.6 (architecture MiniCPMO): MiniCPM-V 2.6 (Qwen2 LLM, SigLIP tower, Resampler2_5; every image and
video rule is families/minicpmv.py's) plus a Whisper-medium audio encoder (`apm`), its two-layer projection and an
average pooler. The ChatTTS speech decoder (`tts.*` in the checkpoint) vLLM neither builds nor loads
(MiniCPMOBaseModel.hf_to_vllm_mapper maps `tts` to None, vLLM 0.32 minicpmo.py:702), so it is not in the parameters.

vLLM has MiniCPMO from 0.7.1 (registry.py), SupportsV0Only in 0.8.0-0.8.2 like MiniCPM-V. The dummy audio is
30 chunks of 1 s at 16 kHz (get_max_audio_chunks_with_most_features = 30, minicpmo.py:360-361, 0.32); one chunk is
((100 - 1) // 2 + 1 - pool) // pool + 1 = 25 embeddings at audio_pool_step 2 (:354-358), so 750 per audio, placed
as 30 x `<audio>` + 25 `<unk>` + `</audio>` (vllm/transformers_utils/processors/minicpmo.py:119-147).
What the encoder budget counts per audio, by version (read from each release's minicpmo.py / minicpmv.py):
  0.7.1 - 0.8.x: MiniCPMO's get_mm_max_tokens_per_item, 27 a chunk with the separators: 810 (0.7.2 :140-170).
  0.9.0 - 0.10.0 and 0.13 - 0.29: no get_mm_max_tokens_per_item; the dummy audio is processed and its embedding
    positions counted: the `<unk>`s its placeholder selects (PromptUpdateDetails.select_text(..., "<unk>"), 0.13
    minicpmo.py:371-374; select_token_ids in 0.29 :527-534; 0.13 multimodal/profiling.py:281 get_num_embeds), 750.
  0.10.1 - 0.12.x: the whole placeholder (get_mm_max_contiguous_tokens counts item.length, 0.12
    multimodal/profiling.py:283, 354), 810. Both as the image's 640 / 671 there; read, not run.
  0.30+: MiniCPMVProcessingInfo.get_mm_max_tokens_per_item returns image and video only (0.32 minicpmv.py:822-829)
    and MiniCPMO does not extend it, so MultiModalBudget leaves audio out (encoder_budget.py:98-114): no audio in the
    encoder budget and no audio in the profile run (checked with vLLM 0.32, tests/data/vllm-0.32-vlm-figures.json).
Every version takes the dummy audios' tokens from max_model_len before the dummy video's frames: 750 per audio from
0.9.0 (get_num_frames_with_most_features, minicpmo.py:372-390, 0.32), 810 + 2 before (0.7.2 :176-193).
"""

from __future__ import annotations

from dataclasses import dataclass

from diagnostics.errors import UsageError
from diagnostics.families import minicpmv
from diagnostics.families.common import Item, Kit, Knob, Variant, Window
from diagnostics.versions import Version

ARCHITECTURES = {"MiniCPMO": "minicpm-o-2_6"}
BY_VERSION = {"2.6": "minicpm-o-2_6"}  # MiniCPMO.__new__ picks the class by version; none: 2.6 (0.32 :1011-1045)
MM_KWARGS = minicpmv.MM_KWARGS  # the image processor is MiniCPM-V's; no mm_processor_kwargs key sizes the audio
AUDIO_PLACEHOLDER = "(<audio>./</audio>)"  # MiniCPMOProcessingInfo.audio_pattern
AUDIO_CHUNKS = 30  # get_max_audio_chunks_with_most_features
AUDIO_SECONDS = 30  # the dummy audio: 30 chunks of audio_chunk_length 1 s
SAMPLING_RATE = 16000
HOP_LENGTH = 160  # WhisperFeatureExtractor: 100 mel frames a second
AUDIO_SINCE_BUDGET_DROP = Version(0, 30, 0)  # MiniCPMV's get_mm_max_tokens_per_item returns again, without audio

KIT = Kit(prompt=minicpmv.IMAGE_PROMPT, tokens=minicpmv.SPECIAL_TOKENS + ("<audio>", "</audio>"),
          eos=minicpmv.KIT.eos, torchvision_stub=False, placeholders=minicpmv.KIT.placeholders,
          audio_placeholder=AUDIO_PLACEHOLDER,
          no_kit="tests/tools/minicpmo_kit.py writes the real-size directory vLLM's MiniCPMOProcessor loads")
VARIANTS = {
    # supports_encoder_tp_data: MiniCPMO subclasses MiniCPMV2_6 (vLLM 0.32 minicpmo.py:1004, minicpmv.py:1219)
    "minicpm-o-2_6": Variant(("image", "video", "audio"), Window("0.7.1", v0_only_until="0.8.3"), KIT,
                             stored={"minicpm-o-2_6": "openbmb/MiniCPM-o-2_6"}, v0_sequence_video=True,
                             encoder_tp_data=True),
}


@dataclass(frozen=True)
class AudioSpec:
    """Whisper encoder (MiniCPMWhisperEncoder) widths and the pooling after the projection."""

    d_model: int  # 1024
    layers: int  # 24
    heads: int  # 16
    ffn: int  # 4096
    mel_bins: int  # 80
    positions: int  # 1500 (max_source_positions)
    pool_step: int  # audio_pool_step (2)


@dataclass(frozen=True)
class MiniCPMOShape:
    variant: str
    vision_shape: minicpmv.MiniCPMVShape
    audio: AudioSpec

    @property
    def vision(self):
        return self.vision_shape.vision


def variant_of(cfg: dict) -> str:
    version = cfg.get("version", 2.6)
    key = f"{float(version):.1f}" if isinstance(version, (int, float)) and not isinstance(version, bool) else None
    if key not in BY_VERSION:
        raise UsageError(f"MiniCPM-o config version {version} has no rules in vllm-memcheck; accepted: versions "
                         f"{', '.join(BY_VERSION)} (openbmb/MiniCPM-o-2_6)")
    return BY_VERSION[key]


def audio_spec(cfg: dict) -> AudioSpec:
    a = cfg["audio_config"]
    return AudioSpec(d_model=int(a["d_model"]), layers=int(a["encoder_layers"]), heads=int(a["encoder_attention_heads"]),
                     ffn=int(a["encoder_ffn_dim"]), mel_bins=int(a.get("num_mel_bins", 80)),
                     positions=int(a.get("max_source_positions", 1500)),
                     pool_step=int(cfg.get("audio_pool_step", 2)))


def audio_params(a: AudioSpec, llm_hidden: int) -> int:
    """transformers' WhisperEncoder as MiniCPMWhisperEncoder builds it (conv1, conv2, position table, layers with
    q/v/out biases and no k bias, two LayerNorms each, fc1/fc2, final LayerNorm) plus MultiModalProjector
    (encoder_ffn_dim // 4 -> LLM hidden, two linears with biases; minicpmo.py:560-571, 735-747, 0.32)."""
    d, f = a.d_model, a.ffn
    conv = a.mel_bins * d * 3 + d + d * d * 3 + d
    layer = 4 * d * d + 3 * d + 2 * 2 * d + (d * f + f) + (f * d + d)
    proj_in = f // 4
    projector = proj_in * llm_hidden + llm_hidden + llm_hidden * llm_hidden + llm_hidden
    return conv + a.positions * d + a.layers * layer + 2 * d + projector


def parse(cfg: dict, pre: dict, video_pre: dict, where: str):
    """-> (text config, VisionSpec, MiniCPMOShape, params as vLLM builds MiniCPMO: MiniCPM-V 2.6's + the audio side)."""
    variant = variant_of(cfg)
    text, vision, vshape, params = minicpmv.parse(dict(cfg, version=2.6), pre, video_pre, where)
    audio = audio_spec(cfg)
    return text, vision, MiniCPMOShape(variant, vshape, audio), params + audio_params(audio, int(cfg["hidden_size"]))


def modalities(variant: str, v: Version) -> tuple[str, ...]:
    return VARIANTS[variant].modalities


def knobs(s: MiniCPMOShape) -> list[Knob]:
    """MiniCPM-V's (max_slice_nums, video off) and the dummy audio's count."""
    return minicpmv.knobs(s.vision_shape) + [
        Knob("limit_mm_per_prompt", "audio", "items", 1, 0, "no dummy audio in the profile run", ladder=(0,),
             advise=False),
    ]


def audio_tokens(v: Version) -> int | None:
    """vLLM's max tokens per audio in the encoder budget (None: this version leaves audio out of it)."""
    if v >= AUDIO_SINCE_BUDGET_DROP:
        return None
    per_chunk = audio_embeddings_per_chunk(2)
    if v < (0, 9, 0) or (0, 10, 1) <= v < (0, 13, 0):
        return AUDIO_CHUNKS * (per_chunk + 2)  # <audio> + 25 <unk> + </audio> per chunk
    return AUDIO_CHUNKS * per_chunk


def audio_embeddings_per_chunk(pool_step: int) -> int:
    """get_max_audio_tokens_per_chunk: 100 mel frames -> conv stride 2 -> average pool."""
    cnn = (100 - 1) // 2 + 1
    return (cnn - pool_step) // pool_step + 1


def reserved_tokens(s: MiniCPMOShape, v: Version, n_audio: int) -> int:
    """Tokens the dummy audios take from max_model_len before the video's frames are counted."""
    per = AUDIO_CHUNKS * audio_embeddings_per_chunk(s.audio.pool_step)
    if v < (0, 9, 0):
        per = AUDIO_CHUNKS * (audio_embeddings_per_chunk(s.audio.pool_step) + 2) + 2
    return per * n_audio


def audio_item(s: MiniCPMOShape, v: Version) -> Item | None:
    """The dummy audio: 30 s -> 3000 mel frames -> 1500 encoder positions, one item (no vision patches)."""
    tokens = audio_tokens(v)
    if tokens is None:
        return None
    return Item("audio", tokens, 0, 0)


def items(s: MiniCPMOShape, settings: dict, seq_len: int, counts: dict[str, int], v: Version) -> dict[str, Item]:
    """MiniCPM-V's image and video (the video's frames after the dummy audios' tokens) and the audio where this
    version's encoder budget counts it."""
    n_audio = counts.get("audio", 0)
    out = minicpmv.items(s.vision_shape, settings, seq_len, counts, v, reserved=reserved_tokens(s, v, n_audio))
    if n_audio:
        audio = audio_item(s, v)
        if audio is not None:
            out["audio"] = audio
    return out


def eager_attention(v: Version, rules: str) -> bool:
    return minicpmv.eager_attention(v, rules)


def audio_encoder_bytes(a: AudioSpec, n_audio: int, llm_hidden: int, db: int, tp: int) -> dict:
    """Peak bytes of the Whisper pass on `n_audio` dummy audios at once (an estimate: vLLM pads every audio to the
    longest and runs apm on the batch, minicpmo.py:796-870, 0.32). One audio: the mel input (mel_bins x 3000), the
    two conv outputs, then per layer the residual, LayerNorm output, q/k/v and fc1 + activation over 1500 positions,
    the (B, 1, 1500, 1500) chunk mask, and transformers' WhisperAttention scores: eager when the audio config names
    no attention implementation (transformers 5.19 AttentionInterface.get_interface falls back to
    eager_attention_forward, modeling_utils.py:5127-5145), whose QK^T, + mask and softmax (in the input dtype,
    modeling_whisper.py:229-236) are three heads x 1500^2 tensors; SDPA (no scores) where one is named.
    Returns {"total" (eager), "low" (SDPA), "vpm" (the tower), "resampler" (projector + pooled output), "scores",
    "largest_alloc"} in bytes."""
    frames = AUDIO_SECONDS * SAMPLING_RATE // HOP_LENGTH
    n = frames // 2  # conv2 stride 2: 1500 positions
    d, f = a.d_model, a.ffn
    per = (a.mel_bins * frames + d * frames + d * n) * db + n * (5 * d + 2 * f) * db + n * n * db
    scores = a.heads * n * n * 3 * db
    out_tokens = AUDIO_CHUNKS * audio_embeddings_per_chunk(a.pool_step)
    projector = n * (f // 4) * db + n * llm_hidden * db * 2 + out_tokens * llm_hidden * db
    low = n_audio * per
    total = n_audio * (per + scores)
    return {"total": total + n_audio * projector // tp, "low": low + n_audio * projector // tp, "vpm": total,
            "resampler": n_audio * projector // tp, "scores": n_audio * scores,
            "largest_alloc": max(n_audio * a.heads * n * n * db, n_audio * n * f * db)}


def encoder_bytes(model, prof, db: int, eager: bool, tp: int, coef, version=None) -> dict:
    """The profile run's encoder bytes: MiniCPM-V's vision pass, or the Whisper pass when the profiled items are
    audios (vLLM before 0.30 with video off: 750 / 810 tokens an audio beat the 640-token image)."""
    n_audio = dict(prof.items_by_modality).get("audio", 0)
    vision = minicpmv.encoder_bytes(model, prof, db, eager, tp, coef)
    if not n_audio:
        return vision
    audio = audio_encoder_bytes(model.family.shape.audio, n_audio, model.hidden, db, tp)
    return audio if audio["total"] >= vision["total"] else vision


# The item-size knobs (plan --fit, the suite's search), the worst-case request's pixel sizes and the vision tower's
# parameters are MiniCPM-V's.
def size_knobs(s: MiniCPMOShape, v: Version, modalities: tuple[str, ...]):
    return minicpmv.size_knobs(s.vision_shape, v, modalities)


def geometry(s: MiniCPMOShape, settings: dict, modality: str, v: Version):
    """Pixel size of the largest image / video frame (MiniCPM-V's); ValueError for an audio, which has none (the
    suite's worst-case request sends images and videos only)."""
    if modality not in ("image", "video"):
        raise ValueError(f"MiniCPM-o's {modality} has no pixel geometry")
    return minicpmv.geometry(s.vision_shape, settings, modality, v)


def vision_tower_params(v, llm_hidden: int) -> int:
    return minicpmv.vision_tower_params(v, llm_hidden)
