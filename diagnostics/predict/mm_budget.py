"""How many dummy multimodal items vLLM's profile run pushes through the vision encoder (vllm-memory.md §3).

v0-legacy (0.5.4 - 0.7.0 V0): every dummy image is a 448 x 448 black image = 1 slice = 1024 patches counted as
  `query_num` (64) tokens; images = min(max_num_seqs, MBT // (64 L)) x L, at least one sequence.
v0-merged (0.7.1 - 0.10.x V0): seqs = max(1, min(max_num_seqs, MBT // sum_m L_m T_m)); each dummy sequence carries
  L_image max images and L_video max videos (frames uncapped before 0.8.3).
V1: encoder budget N = max(MBT, T) with T the largest per-item token count of the active modalities;
  0.10.1+: items = max(1, min(N // T, reqs x max(1, min(limit, max_model_len // T)))),
  0.10.0: min(N // T, max_num_seqs x limit), 0.7 - 0.9.2: min(ceil(N / T), max_num_seqs x limit).
  The item counts match vLLM 0.32's MultiModalBudget on 13 real engine starts (minicpmv26-kit.md §4).

MiniCPM-V token counts (vLLM's MiniCPMVProcessingInfo): the max image is 448 x (448 * max_slice_num) sliced with
the image processor's max_slice_nums (mm_processor_kwargs can change it from 0.8.4; 0.7.x reads hf_config's
max_slice_num, audit b15) -> (cols*rows + 1) * query_num embeddings (0.8.4-0.10.0 and 0.13+). Counted with the
separator tokens instead: 668 in 0.7.1-0.8.2 (the prompt is 671), ~671 in 0.8.3, and 671 / 66 per video frame in
0.10.1-0.12.x, where MultiModalBudget counts the whole placeholder (`get_mm_max_contiguous_tokens`, audit b6).
A video frame is one 448 x 448 slice; frames = max(1, min((max_model_len - T_image * n_images) // 64 // n_videos,
16)) (cap 16 from 0.8.3; 0.7.1-0.8.2 reserve 4 more tokens per image, audit b3); from 0.28 a dummy-options
`num_frames` lowers the dummy video's frames (not the per-item token count the budget divides by).
0.7.1-0.8.2 V0 drops a dummy sequence's items when its prompt is longer than the sequence (profiling.py:190-207,
audit b4). Ties between modalities go to image before 0.20 and to video from 0.20 (audit b11).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from diagnostics import families
from diagnostics.models import ModelSpec
from diagnostics.predict.slicing import slice_image
from diagnostics.versions import Version, parse_version

MAX_FRAMES_PER_VIDEO = 16  # vLLM _MAX_FRAMES_PER_VIDEO, from 0.8.3


@dataclass(frozen=True)
class ItemShape:
    """One dummy item: its LLM tokens (what budgets count), slices and ViT patches (what the encoder does)."""

    modality: str
    tokens: int
    slices: int
    patches: int
    max_slice_patches: int  # vLLM pads every slice of a batch to the longest one


@dataclass(frozen=True)
class MMProfile:
    modality: str | None  # "image" / "video" / "image+video" (V0 merged) / None (no encoder work)
    items: int  # dummy items in the one encoder batch
    slices: int  # 448-px slices (video frames count one each)
    vit_tokens: int  # patch tokens the ViT sees (unpadded)
    vit_tokens_padded: int  # what the batched forward allocates for (padded to the longest slice)
    encoder_budget_tokens: int | None  # V1 only
    tokens_per_item: int  # LLM embedding tokens of one item (T)
    llm_mm_tokens: int  # LLM embedding positions the encoder outputs (items x T)
    skipped: bool = False  # skip_mm_profiling / encoder profile not run
    sequences: int = 0  # V0: dummy sequences of the profile run (each carries its items); 0 for V1
    tokens_per_modality: tuple[tuple[str, int], ...] = ()  # V1: vLLM's max tokens per item of each active modality
    dropped: int = 0  # V0 0.7.1-0.8.2: dummy sequences whose items vLLM dropped (prompt longer than the sequence)

    @property
    def empty(self) -> bool:
        return self.items == 0


NO_PROFILE = MMProfile(None, 0, 0, 0, 0, None, 0, 0)


def _image_max_slice_nums(model: ModelSpec, settings: dict, v: Version) -> int:
    if v < (0, 8, 4):  # 0.7.x passes hf_config's max_slice_num explicitly (minicpmv.py:393, 427-428)
        return model.vision.max_slice_nums
    kwargs = settings.get("mm_processor_kwargs") or {}
    return int(kwargs.get("max_slice_nums", model.vision.max_slice_nums))


def separator_tokens(v: Version) -> bool:
    """Does this version count MiniCPM-V's placeholder with its <image>/<slice> separator tokens?"""
    return (0, 7, 1) <= v < (0, 8, 4) or (0, 10, 1) <= v < (0, 13, 0)


def image_item(model: ModelSpec, settings: dict, version) -> ItemShape:
    """The largest dummy image of this version."""
    vis, v = model.vision, parse_version(version)
    if v <= (0, 7, 0):  # legacy registry: a square 448 image, counted as query_num tokens
        sp = slice_image(vis.image_size, vis.image_size, 1, vis.image_size, vis.patch)
        return ItemShape("image", vis.query_num, sp.n_slices, sp.patches, sp.patches)
    sp = slice_image(vis.image_size, vis.image_size * vis.max_slice_nums, _image_max_slice_nums(model, settings, v),
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
    return ItemShape("image", tokens, sp.n_slices, sp.patches, largest)


def video_frames(model: ModelSpec, settings: dict, version, n_images: int, n_videos: int, seq_len: int) -> int:
    v = parse_version(version)
    image_tokens = image_item(model, settings, v).tokens * n_images
    per_frame = model.vision.query_num
    if v < (0, 8, 3):  # 66 tokens a frame, and 4 tokens reserved per image (minicpmv.py:445-457)
        per_frame += 2
        image_tokens += 4 * n_images
    elif separator_tokens(v):  # frames come from embedding counts; only the per-item total has separators
        image_tokens = _embeddings_image(model, settings, v) * n_images
    frames = (seq_len - image_tokens) // per_frame // max(n_videos, 1)
    if v >= (0, 8, 3):
        frames = min(frames, MAX_FRAMES_PER_VIDEO)
    return max(frames, 1)


def _embeddings_image(model: ModelSpec, settings: dict, v: Version) -> int:
    vis = model.vision
    sp = slice_image(vis.image_size, vis.image_size * vis.max_slice_nums, _image_max_slice_nums(model, settings, v),
                     vis.image_size, vis.patch)
    return sp.embeddings(vis.query_num)


def video_item(model: ModelSpec, settings: dict, version, n_images: int, n_videos: int, seq_len: int,
               frames_cap: int | None = None) -> ItemShape:
    """The largest dummy video; `frames_cap` is a dummy-options num_frames (0.28+: it lowers the dummy's frames)."""
    vis, v = model.vision, parse_version(version)
    frames = video_frames(model, settings, v, n_images, n_videos, seq_len)
    if frames_cap:
        frames = min(frames, frames_cap)
    # frames counted with <image>/</image> in 0.7.1-0.8.2 and 0.10.1-0.12.x (1056 = 16 x 66); 0.8.3 only changed
    # the image's count (audit b3/b6)
    per_frame = vis.query_num + (2 if v < (0, 8, 3) or (0, 10, 1) <= v < (0, 13, 0) else 0)
    frame_patches = (vis.image_size // vis.patch) ** 2
    return ItemShape("video", frames * per_frame, frames, frames * frame_patches, frame_patches)


def profile(model: ModelSpec, settings: dict, version, family: str) -> MMProfile:
    """The dummy items of the profile run for a resolved settings dict."""
    if model.vision is None:
        return NO_PROFILE
    limits = {m: n for m, n in (settings.get("limit_mm_per_prompt") or {}).items() if n > 0}
    if not limits:
        return NO_PROFILE
    v = parse_version(version)
    if model.family is not None:
        if family in ("v0-legacy", "v0-merged"):
            return _v0_family(model, settings, limits)
        return _v1(model, settings, v, limits)
    if family == "v0-legacy":
        return _v0_legacy(model, settings, v, limits)
    if family == "v0-merged":
        return _v0_merged(model, settings, v, limits)
    return _v1(model, settings, v, limits)


def _v0_legacy(model, settings, v, limits) -> MMProfile:
    item = image_item(model, settings, v)
    L = limits.get("image", 0)
    if not L:
        return NO_PROFILE
    seqs = max(1, min(settings["max_num_seqs"], settings["max_num_batched_tokens"] // (item.tokens * L)))
    n = seqs * L
    return MMProfile("image", n, n * item.slices, n * item.patches, n * item.slices * item.max_slice_patches,
                     None, item.tokens, n * item.tokens, sequences=seqs)


def _v0_merged(model, settings, v, limits) -> MMProfile:
    mml, mbt = settings["max_model_len"], settings["max_num_batched_tokens"]
    n_img, n_vid = limits.get("image", 0), limits.get("video", 0)
    img = image_item(model, settings, v)
    # per-item maximum as the registry computes it: one item of each active modality at max_model_len
    vid_max = video_item(model, settings, v, 1 if n_img else 0, 1, mml) if n_vid else None
    max_mm = n_img * img.tokens + (n_vid * vid_max.tokens if vid_max else 0)
    seqs = max(1, min(settings["max_num_seqs"], mbt // max_mm))
    # the dummy video is generated for this sequence's length, not max_model_len
    vid = video_item(model, settings, v, n_img, n_vid, mbt // seqs) if n_vid else None
    carrying = _carrying(v, mbt, seqs, n_img * (img.tokens + 3) + (n_vid * vid.tokens if vid else 0))
    items = carrying * (n_img + n_vid)
    slices = carrying * (n_img * img.slices + (n_vid * vid.slices if vid else 0))
    patches = carrying * (n_img * img.patches + (n_vid * vid.patches if vid else 0))
    largest = max(img.max_slice_patches if n_img else 0, vid.max_slice_patches if vid else 0)
    modality = "+".join(m for m, n in (("image", n_img), ("video", n_vid)) if n) if carrying else None
    tokens = n_img * img.tokens + (n_vid * vid.tokens if vid else 0)
    return MMProfile(modality, items, slices, patches, slices * largest, None, max_mm, carrying * tokens,
                     sequences=seqs, dropped=seqs - carrying)


def _carrying(v: Version, mbt: int, seqs: int, prompt_len: int) -> int:
    """Dummy sequences that keep their multimodal items. 0.7.1-0.8.2 V0 returns a dummy without items when the
    prompt is longer than the sequence (0.7.3 multimodal/profiling.py:190-207); sequence g has
    MBT // seqs + (g < MBT % seqs) tokens (model_runner.py profile_run). From 0.8.3 it only warns."""
    if not (0, 7, 1) <= v < (0, 8, 3):
        return seqs
    base, longer = divmod(mbt, seqs)
    return (seqs - longer if base >= prompt_len else 0) + (longer if base + 1 >= prompt_len else 0)


def _v1_shapes(model, settings, v, limits) -> tuple[dict, ItemShape | None]:
    """Per-item maxima MultiModalBudget divides by (one item of every active modality at max_model_len), and
    the dummy video actually built when a 0.28+ dummy-options num_frames lowers its frames."""
    mml = settings["max_model_len"]
    if model.family is not None:
        return family_shapes(model, settings, limits, mml), None
    shapes = {}
    if "image" in limits:
        shapes["image"] = image_item(model, settings, v)
    video = None
    if "video" in limits:
        shapes["video"] = video_item(model, settings, v, 1 if "image" in limits else 0, 1, mml)
        cap = ((settings.get("mm_dummy_options") or {}).get("video") or {}).get("num_frames")
        if cap and v >= (0, 28, 0):
            video = video_item(model, settings, v, 1 if "image" in limits else 0, 1, mml, frames_cap=cap)
    return shapes, video


def family_shapes(model: ModelSpec, settings: dict, limits: dict, seq_len: int) -> dict[str, ItemShape]:
    """Largest dummy item per active modality of a diagnostics.families VLM, as MultiModalBudget asks for it
    (one item of every active modality, seq_len = max_model_len)."""
    got = families.items(model.family, settings, seq_len, dict.fromkeys(limits, 1))
    return {m: ItemShape(m, it.tokens, it.slices, it.patches, it.patches // max(it.slices, 1))
            for m, it in got.items()}


def _v0_family(model, settings, limits) -> MMProfile:
    """V0 profile run of a family VLM: max_num_seqs dummy sequences, fewer when their items fill MBT; an
    encoder-decoder model (Llama-3.2-Vision) gives every one of max_num_seqs sequences its image."""
    shapes = family_shapes(model, settings, limits, settings["max_model_len"])
    per_seq = sum(limits[m] * shapes[m].tokens for m in shapes)
    seqs = settings["max_num_seqs"]
    if model.family.variant != "mllama":
        seqs = max(1, min(seqs, settings["max_num_batched_tokens"] // max(per_seq, 1)))
    items = seqs * sum(limits[m] for m in shapes)
    slices = seqs * sum(limits[m] * shapes[m].slices for m in shapes)
    patches = seqs * sum(limits[m] * shapes[m].patches for m in shapes)
    largest = max(s.max_slice_patches for s in shapes.values())
    return MMProfile("+".join(shapes), items, slices, patches, slices * largest, None, per_seq, seqs * per_seq,
                     sequences=seqs)


def _v1(model, settings, v, limits) -> MMProfile:
    mml, mbt, seqs = settings["max_model_len"], settings["max_num_batched_tokens"], settings["max_num_seqs"]
    shapes, capped_video = _v1_shapes(model, settings, v, limits)
    if v >= (0, 20, 0):  # encoder_budget.py:184 key=(tokens, name): video wins a tie
        modality = max(shapes, key=lambda m: (shapes[m].tokens, m))
    else:  # key=tokens: the first in dict order (image) wins a tie (0.13.0 v1/worker/utils.py:78)
        modality = max(shapes, key=lambda m: (shapes[m].tokens, m == "image"))
    T = shapes[modality].tokens
    item = capped_video if modality == "video" and capped_video else shapes[modality]
    budget = max(mbt, T)
    limit = limits[modality]
    if v >= (0, 10, 1):
        per_prompt = max(1, min(limit, mml // T))
        reqs = seqs if settings.get("enable_chunked_prefill", True) else min(seqs, mbt // T)
        items = max(1, min(budget // T, reqs * per_prompt))
    elif v >= (0, 10, 0):
        items = min(budget // T, seqs * limit)
    else:
        items = min(math.ceil(budget / T), seqs * limit)
    items = max(items, 1)
    skipped = bool(settings.get("skip_mm_profiling"))
    return MMProfile(modality, items, items * item.slices, items * item.patches,
                     items * item.slices * item.max_slice_patches, budget, T, items * item.tokens, skipped=skipped,
                     tokens_per_modality=tuple(sorted((m, s.tokens) for m, s in shapes.items())))
