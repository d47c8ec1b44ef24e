"""MiniCPM-V 2.6, 4.0 and 4.5 (architecture MiniCPMV; the variant is config.json's `version`): shapes, params,
the dummy items of every vLLM version, the encoder bytes, knobs and kit.

vLLM picks the model class by config.json's version (model_executor/models/minicpmv.py get_version_by_config and
_SUPPORT_VERSION, 0.32): 2.6 = MiniCPMV2_6 (Qwen2 LLM with qkv bias, SigLIP-400M Idefics2 tower, Resampler2_5),
4.0 = MiniCPMV4_0 (LlamaForCausalLM over the MiniCPM4 LLM: no qkv bias, head_dim from config.json; the same tower
and Resampler2_5; minicpmv.py:2231-2280, 0.32; first in 0.10.1), 4.5 = MiniCPMV4_5 (Qwen3 LLM: no qkv bias, q/k
RMSNorm; the same tower; Resampler4_5 = Resampler2_5 plus a temporal position table held as a buffer, not a
parameter).
A config without a version is 2.0 / 2.5 in vLLM: no rules here, refused. MiniCPMV4_5 first appears in vLLM 0.10.2
(0.10.1's minicpmv.py has MiniCPMV4_0 but no MiniCPMV4_5). vLLM's MiniCPMVProcessingInfo counts both versions' dummy
items the same way, 4.0 too (0.32 minicpmv.py:697-833; 0.10.1 minicpmv.py:356 already lists 4.0 with 2.6), from
each config's image_size, max_slice_num and query_num. 4.5's video packing (Resampler4_5 merging frames that
share a temporal id into one 64-token group, the 3D resampler) happens in none of the releases read (0.10.2,
0.11, 0.13, 0.20, 0.28, 0.32, 0.34): the processor sends a video's frames through the image processor and keeps
only pixel_values, image_sizes and tgt_sizes (0.32 minicpmv.py:937-967, out_keys; the same in 0.10.2 :790), so
Resampler4_5 gets temporal_ids None and every frame, dummy or real, is query_num tokens, as for 2.6 (vLLM 0.32
counted video 1024 = 16 x 64 for 4.5).

v0-legacy (0.5.4 - 0.7.0 V0): every dummy image is a 448 x 448 black image = 1 slice = 1024 patches counted as
  `query_num` (64) tokens; images only.
The max image is 448 x (448 * max_slice_num) sliced with the image processor's max_slice_nums (mm_processor_kwargs
can change it from 0.8.4; 0.7.x reads hf_config's max_slice_num, audit b15) -> (cols*rows + 1) * query_num
embeddings (0.8.4-0.10.0 and 0.13+). Counted with the separator tokens instead: 668 in 0.7.1-0.8.2 (the prompt is
671), ~671 in 0.8.3, and 671 / 66 per video frame in 0.10.1-0.12.x, where MultiModalBudget counts the whole
placeholder (`get_mm_max_contiguous_tokens`, audit b6). A video frame is one 448 x 448 slice; frames =
max(1, min((max_model_len - T_image * n_images) // 64 // n_videos, 16)) (cap 16 from 0.8.3; 0.7.1-0.8.2 reserve 4
more tokens per image, audit b3); from 0.28 a dummy-options `num_frames` lowers the dummy video's frames (not the
per-item token count the budget divides by).
"""

from __future__ import annotations

from dataclasses import dataclass

from diagnostics.errors import UsageError
from diagnostics.families.common import (Geometry, Item, Kit, Knob, SizeKnob, Variant, VisionSpec, Window,
                                         decoder_params, need, num_frames_knob)
from diagnostics.families.minicpmv_slicing import slice_image
from diagnostics.versions import Version

MODEL_TYPES = ("minicpmv",)
# mm_processor_kwargs keys items() reads; others go to the HF processor unmodelled
MM_KWARGS = ("max_slice_nums",)
ARCHITECTURES = {"MiniCPMV": "minicpm-v-2_6"}  # the variant comes from config.json's version (variant_of)
BY_VERSION = {"2.6": "minicpm-v-2_6", "4.0": "minicpm-v-4", "4.5": "minicpm-v-4_5"}
# How vLLM builds each variant's LLM (decoder_params keywords): Qwen2ForCausalLM (qkv bias), LlamaForCausalLM
# (attention_bias false in the config), Qwen3ForCausalLM (q_norm / k_norm, no bias)
LLM_RULES = {"minicpm-v-2_6": dict(qkv_bias=True), "minicpm-v-4": dict(qkv_bias=False),
             "minicpm-v-4_5": dict(qkv_bias=False, qk_norm=True)}
VARIANT_NAMES = tuple(BY_VERSION.values())
MAX_FRAMES_PER_VIDEO = 16  # vLLM _MAX_FRAMES_PER_VIDEO, from 0.8.3
KWARGS_SINCE = (0, 8, 4)  # max_slice_nums read from mm_processor_kwargs (_image_max_slice_nums)
NUM_FRAMES_SINCE = (0, 28, 0)  # the dummy video follows a dummy-options num_frames (items)

SPECIAL_TOKENS = ("<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "</image>", "<slice>",
                  "</slice>", "<image_id>", "</image_id>", "<ref>", "</ref>", "<box>", "</box>", "<quad>", "</quad>",
                  "<point>", "</point>")
# One image request in the MiniCPM-V chat format; (<image>./</image>) is where vLLM puts the slices.
IMAGE_PROMPT = "<|im_start|>user\n(<image>./</image>)\nWhat is in the image?<|im_end|>\n<|im_start|>assistant\n"
KIT = Kit(prompt=IMAGE_PROMPT, tokens=SPECIAL_TOKENS, eos="<|im_end|>", torchvision_stub=False,
          placeholders=("(<image>./</image>)", "(<video>./</video>)"),
          no_kit="diagnostics/kit/minicpmv26.py writes its own checkpoint (remote-code processor, tiny or real)")
VARIANTS = {
    # MiniCPMV in vLLM from 0.5.4; SupportsV0Only in 0.8.0-0.8.2 and no V1 multimodal embeddings in 0.7.x (audit a7/b5)
    "minicpm-v-2_6": Variant(("image", "video"), Window("0.5.4", v0_only_until="0.8.3"), KIT,
                             v0_sequence_video=True, encoder_tp_data=True),
    # MiniCPMV4_0 from 0.10.1 (0.10.0's _SUPPORT_VERSION stops at 2.6)
    "minicpm-v-4": Variant(("image", "video"), Window("0.10.1"), KIT, stored={"minicpm-v-4": "openbmb/MiniCPM-V-4"},
                           v0_sequence_video=True, encoder_tp_data=True),
    "minicpm-v-4_5": Variant(("image", "video"), Window("0.10.2"), KIT,
                             stored={"minicpm-v-4_5": "openbmb/MiniCPM-V-4_5"}, v0_sequence_video=True,
                             encoder_tp_data=True),
}

# openbmb/MiniCPM-V-2_6's config.json, the numbers plan uses for the built-in minicpm-v-2_6 (docs/minicpmv26-kit.md)
BUILT_IN_CONFIG = {
    "architectures": ["MiniCPMV"], "model_type": "minicpmv", "version": 2.6, "hidden_size": 3584,
    "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4, "intermediate_size": 18944,
    "vocab_size": 151666, "max_position_embeddings": 32768, "torch_dtype": "bfloat16", "query_num": 64,
    "image_size": 448, "patch_size": 14, "max_slice_num": 9, "tie_word_embeddings": False,
    "vision_config": {"hidden_size": 1152, "num_hidden_layers": 27, "num_attention_heads": 16,
                      "intermediate_size": 4304, "patch_size": 14, "image_size": 980},
}


@dataclass(frozen=True)
class MiniCPMVShape:
    variant: str
    vision: VisionSpec


def variant_of(cfg: dict) -> str:
    """The variant for config.json's `version` (vLLM's get_version_by_config); UsageError for one without rules."""
    version = cfg.get("version")
    key = f"{float(version):.1f}" if isinstance(version, (int, float)) and not isinstance(version, bool) else None
    if key not in BY_VERSION:
        got = version if version is not None else "none (vLLM reads it as 2.0 / 2.5)"
        raise UsageError(f"MiniCPM-V config version {got} has no rules in vllm-memcheck; accepted: versions "
                         f"{', '.join(BY_VERSION)} ({', '.join(hub_ids())})")
    return BY_VERSION[key]


def hub_ids() -> list[str]:
    """The Hugging Face ids of the versions with rules here (2.6 is built in)."""
    return ["openbmb/MiniCPM-V-2_6"] + [h for v in BY_VERSION.values() for h in VARIANTS[v].stored.values()]


def tower_params(v: VisionSpec, layers: int | None = None) -> int:
    """Idefics2/SigLIP NaViT: patch conv (+bias), position table, layers (4 projections, 2 LNs, MLP), post-LN."""
    d = v.hidden
    embed = d * 3 * v.patch * v.patch + d + (v.tower_image_size // v.patch) ** 2 * d
    per_layer = 4 * (d * d + d) + 2 * 2 * d + (d * v.mlp + v.mlp) + (v.mlp * d + d)
    return embed + (v.layers if layers is None else layers) * per_layer + 2 * d


def vision_tower_params(v: VisionSpec, llm_hidden: int) -> int:
    """The whole vision side as vLLM builds it (the tower with every layer + the resampler; optional interface
    piece, Family.vision_tower_params)."""
    return tower_params(v) + resampler_params(v, llm_hidden)


def resampler_params(v: VisionSpec, llm_hidden: int) -> int:
    """Resampler2_5 / Resampler4_5: query, kv_proj (only when widths differ, no bias), MHA in/out, ln_q/ln_kv/ln_post,
    proj (Resampler4_5's temporal table is a non-persistent buffer)."""
    h = llm_hidden
    kv_proj = h * v.hidden if v.hidden != h else 0
    attn = 3 * h * h + 3 * h + h * h + h
    return v.query_num * h + kv_proj + attn + 3 * 2 * h + h * h


def parse(cfg: dict, pre: dict, video_pre: dict, where: str):
    """-> (text config, VisionSpec, MiniCPMVShape, params as vLLM builds them)."""
    variant = variant_of(cfg)
    vc = cfg.get("vision_config") or {}
    slice_cfg = cfg.get("slice_config") or {}
    vision = VisionSpec(
        hidden=int(vc.get("hidden_size", 1152)), layers=int(vc.get("num_hidden_layers", 27)),
        heads=int(vc.get("num_attention_heads", 16)), mlp=int(vc.get("intermediate_size", 4304)),
        patch=int(vc.get("patch_size", cfg.get("patch_size", 14))), image_size=int(cfg.get("image_size", 448)),
        tower_image_size=int(vc.get("image_size", 980)), query_num=int(cfg.get("query_num", 64)),
        # vLLM reads the top-level max_slice_num (default 9); slice_config.max_slice_nums is the HF name
        max_slice_nums=int(cfg.get("max_slice_num", slice_cfg.get("max_slice_nums", 9))),
    )
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size"):
        need(cfg, key, where)
    llm = decoder_params(cfg, **LLM_RULES[variant])
    drop = 1 if cfg.get("drop_vision_last_layer", False) else 0
    params = llm + tower_params(vision, vision.layers - drop) + resampler_params(vision, int(cfg["hidden_size"]))
    return cfg, vision, MiniCPMVShape(variant, vision), params


def modalities(variant: str, v: Version) -> tuple[str, ...]:
    """The merged processor takes video from 0.7.1; the legacy registry knew images only."""
    return ("image",) if v <= (0, 7, 0) else VARIANTS[variant].modalities


def knobs(s: MiniCPMVShape) -> list[Knob]:
    """max_slice_nums (from 0.8.4 vLLM passes it to the image processor; audit b15) and video off. explain's
    generic rules already name them for MiniCPM-V, so neither is advised separately."""
    return [
        Knob("mm_processor_kwargs", "max_slice_nums", "slices", s.vision.max_slice_nums, 4,
             "fewer 448-px slices per image: (slices + 1) x query_num tokens", halve=True, modality="image",
             advise=False),
        Knob("limit_mm_per_prompt", "video", "items", 1, 0, "no dummy video in the profile run", ladder=(0,),
             advise=False),
    ]


def size_knobs(s: MiniCPMVShape, v: Version, modalities: tuple[str, ...]) -> list[SizeKnob]:
    """max_slice_nums (from 0.8.4: (slices + 1) x query_num tokens per image, at most the checkpoint's
    max_slice_num) and, with video on from 0.28, the dummy-options num_frames (the dummy video's frames only)."""
    vis, out = s.vision, []
    if v >= KWARGS_SINCE:
        out.append(SizeKnob("max_slice_nums", "mm_processor_kwargs", "max_slice_nums", 1, "slice", 1, vis.query_num,
                            vis.query_num, cap=vis.max_slice_nums,
                            cap_reason=f"the checkpoint's max_slice_num ({vis.max_slice_nums}): vLLM's dummy image "
                            f"(448 x {448 * vis.max_slice_nums}) gets no more slices above it, so the profile run "
                            "would not guard larger real images", current=vis.max_slice_nums, word="slice{}",
                            frontier=(1, 2, 3, 4, 6, 9)))
    if "video" in modalities and v >= NUM_FRAMES_SINCE:
        out.append(num_frames_knob(
            MAX_FRAMES_PER_VIDEO, f"vLLM's _MAX_FRAMES_PER_VIDEO ({MAX_FRAMES_PER_VIDEO})",
            "num_frames is a dummy option: it sizes the profile run's dummy video only; vLLM still accepts real "
            "videos with more frames (up to its per-item maximum), which the profile run then did not measure"))
    return out


def geometry(s: MiniCPMVShape, settings: dict, modality: str, v: Version) -> Geometry:
    """A video frame is one image_size square slice; the image is vLLM's get_image_size_with_most_features
    (image_size x image_size * max_slice_nums)."""
    side = s.vision.image_size
    if modality == "video":
        return Geometry(side, side)
    return Geometry(side, side * _image_max_slice_nums(s.vision, settings, v))


def _image_max_slice_nums(vis: VisionSpec, settings: dict, v: Version) -> int:
    if v < KWARGS_SINCE:  # 0.7.x passes hf_config's max_slice_num explicitly (minicpmv.py:393, 427-428)
        return vis.max_slice_nums
    kwargs = settings.get("mm_processor_kwargs") or {}
    return int(kwargs.get("max_slice_nums", vis.max_slice_nums))


def separator_tokens(v: Version) -> bool:
    """Does this version count MiniCPM-V's placeholder with its <image>/<slice> separator tokens?"""
    return (0, 7, 1) <= v < (0, 8, 4) or (0, 10, 1) <= v < (0, 13, 0)


def image_item(s: MiniCPMVShape, settings: dict, v: Version) -> Item:
    """The largest dummy image of this version."""
    vis = s.vision
    if v <= (0, 7, 0):  # legacy registry: a square 448 image, counted as query_num tokens
        sp = slice_image(vis.image_size, vis.image_size, 1, vis.image_size, vis.patch)
        return Item("image", vis.query_num, sp.patches, sp.n_slices, largest=sp.patches)
    sp = slice_image(vis.image_size, vis.image_size * vis.max_slice_nums, _image_max_slice_nums(vis, settings, v),
                     vis.image_size, vis.patch)
    tokens = sp.embeddings(vis.query_num)
    # the placeholder with separators: <image>/<slice> pairs around each slice's query_num tokens and a newline
    # between slice rows (668 for the 1 x 9 grid, 0.7.3 minicpmv.py:408-418); from 0.8.3 also the 3-token
    # <image_id>0</image_id> (671; measured 671 / 336 for 10 / 5 slices with 0.10.2 and 0.11.0)
    rows = sp.grid[1] if sp.grid else 1
    if v < (0, 8, 3):
        tokens = (vis.query_num + 2) * sp.n_slices + rows - 1
    elif separator_tokens(v):
        tokens = (vis.query_num + 2) * sp.n_slices + rows - 1 + 3
    p = vis.patch
    largest = max((sp.overview_size[0] // p) * (sp.overview_size[1] // p),
                  (sp.slice_size[0] // p) * (sp.slice_size[1] // p) if sp.slice_size else 0)
    return Item("image", tokens, sp.patches, sp.n_slices, largest=largest)


def _embeddings_image(vis: VisionSpec, settings: dict, v: Version) -> int:
    sp = slice_image(vis.image_size, vis.image_size * vis.max_slice_nums, _image_max_slice_nums(vis, settings, v),
                     vis.image_size, vis.patch)
    return sp.embeddings(vis.query_num)


def video_frames(s: MiniCPMVShape, settings: dict, v: Version, n_images: int, n_videos: int, seq_len: int,
                 reserved: int = 0) -> int:
    """Frames of the dummy video; `reserved`: tokens other modalities take first (MiniCPM-o's dummy audios)."""
    image_tokens = image_item(s, settings, v).tokens * n_images + reserved
    per_frame = s.vision.query_num
    if v < (0, 8, 3):  # 66 tokens a frame, and 4 tokens reserved per image (minicpmv.py:445-457)
        per_frame += 2
        image_tokens += 4 * n_images
    elif separator_tokens(v):  # frames come from embedding counts; only the per-item total has separators
        image_tokens = _embeddings_image(s.vision, settings, v) * n_images + reserved
    frames = (seq_len - image_tokens) // per_frame // max(n_videos, 1)
    if v >= (0, 8, 3):
        frames = min(frames, MAX_FRAMES_PER_VIDEO)
    return max(frames, 1)


def video_item(s: MiniCPMVShape, settings: dict, v: Version, n_images: int, n_videos: int, seq_len: int,
               frames_cap: int | None = None, reserved: int = 0) -> Item:
    """The largest dummy video; `frames_cap` is a dummy-options num_frames (0.28+: it lowers the dummy's frames);
    `reserved`: tokens other modalities take first (video_frames)."""
    vis = s.vision
    frames = video_frames(s, settings, v, n_images, n_videos, seq_len, reserved)
    if frames_cap:
        frames = min(frames, frames_cap)
    # frames counted with <image>/</image> in 0.7.1-0.8.2 and 0.10.1-0.12.x (1056 = 16 x 66); 0.8.3 only changed
    # the image's count (audit b3/b6)
    per_frame = vis.query_num + (2 if v < (0, 8, 3) or (0, 10, 1) <= v < (0, 13, 0) else 0)
    frame_patches = (vis.image_size // vis.patch) ** 2
    return Item("video", frames * per_frame, frames * frame_patches, frames, largest=frame_patches)


def items(s: MiniCPMVShape, settings: dict, seq_len: int, counts: dict[str, int], v: Version,
          reserved: int = 0) -> dict[str, Item]:
    """The largest dummy image / video for the modalities in `counts` (items per prompt) at seq_len tokens; from
    0.28 a dummy-options num_frames lowers the video's frames, and budget_tokens keeps the uncapped count.
    `reserved`: tokens other modalities' dummy items take before the video's frames are counted (MiniCPM-o)."""
    out: dict[str, Item] = {}
    n_img = counts.get("image", 0)
    if n_img:
        out["image"] = image_item(s, settings, v)
    if counts.get("video"):
        full = video_item(s, settings, v, n_img, counts["video"], seq_len, reserved=reserved)
        cap = ((settings.get("mm_dummy_options") or {}).get("video") or {}).get("num_frames")
        if cap and v >= NUM_FRAMES_SINCE:
            capped = video_item(s, settings, v, n_img, counts["video"], seq_len, frames_cap=cap, reserved=reserved)
            full = Item("video", capped.tokens, capped.patches, capped.slices, capped.largest, full.tokens)
        out["video"] = full
    return out


def eager_attention(v: Version, rules: str) -> bool:
    """SigLIP eager attention (L^2 scores) in vLLM's na_vit.py: 0.5.4 - 0.6.2. xformers from 0.6.3."""
    return rules == "v0-legacy" and v < (0, 6, 3)


def encoder_bytes(model, prof, db: int, eager: bool, tp: int, coef, version=None) -> dict:
    """Peak bytes of the vision pass on all dummy slices at once: max(SigLIP tower, resampler).

    model: ModelSpec; prof: the profile run (slices, vit_tokens_padded). Returns {"total", "vpm", "resampler",
    "scores", "largest_alloc"} in bytes (vllm-memory.md §3.1)."""
    vis, H = model.vision, model.hidden
    n = prof.vit_tokens_padded
    b = prof.slices
    p = n // b if b else 0
    pixels = n * 3 * vis.patch * vis.patch * db
    # one layer: residual, LN output, q/k/v, and the MLP's fc1 + activation (vllm-memory.md §3.1)
    linear = n * (4 * vis.hidden + 2 * vis.mlp) * db // tp
    scores = 0
    largest = n * vis.mlp * db // tp
    if eager:  # bf16 scores, fp32 softmax, bf16 cast: heads x P^2 x 8 B per slice, + the (B,1,P,P) mask
        scores = b * (vis.heads // tp) * p * p * (db + 4 + db) + b * p * p * db
        largest = b * (vis.heads // tp) * p * p * 4
    vpm = pixels + linear + scores
    # Resampler2_5: pos-embed, ln_kv(kv_proj(x)), x + pos, MHA k and v -- five (N, H) tensors -- plus the
    # tower output and the explicit (need_weights) attention scores of Q queries over P patches per head
    heads_r = max(H // 128, 1)
    scores_r = 2 * b * (heads_r // tp or 1) * vis.query_num * p * db
    resampler = pixels + n * vis.hidden * db + 5 * n * H * db // tp + scores_r
    return {"total": max(vpm, resampler), "vpm": vpm, "resampler": resampler, "scores": scores,
            "largest_alloc": max(largest, n * H * db // tp)}

