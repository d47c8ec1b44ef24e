"""How many dummy multimodal items vLLM's profile run pushes through the vision encoder (vllm-memory.md §3).

v0-legacy (0.5.4 - 0.7.0 V0): every dummy image is a 448 x 448 black image = 1 slice = 1024 patches counted as
  `query_num` (64) tokens; images = min(max_num_seqs, MBT // (64 L)) x L, at least one sequence.
v0-merged (0.7.1 - 0.10.x V0): seqs = max(1, min(max_num_seqs, MBT // sum_m L_m T_m)); each dummy sequence carries
  L_image max images and L_video max videos (frames uncapped before 0.8.3).
V1: encoder budget N = max(MBT, T) with T the largest per-item token count of the active modalities;
  0.10.1+: items = max(1, min(N // T, reqs x max(1, min(limit, max_model_len // T)))),
  0.10.0: min(N // T, max_num_seqs x limit), 0.7 - 0.9.2: min(ceil(N / T), max_num_seqs x limit).
  The item counts match vLLM 0.32's MultiModalBudget on 13 real engine starts (minicpmv26-kit.md §4).

The largest dummy item of each modality is the family's (diagnostics.families: MiniCPM-V's version rules live in
families/minicpmv.py); this module counts how many of them the profile run pushes through the encoder.
0.7.1-0.8.2 V0 drops a dummy sequence's items when its prompt is longer than the sequence (profiling.py:190-207,
audit b4). Ties between modalities go to image before 0.20 and to video from 0.20 (audit b11).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from diagnostics.families.common import Item
from diagnostics.models import ModelSpec
from diagnostics.versions import Version, parse_version


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
    items_by_modality: tuple[tuple[str, int], ...] = ()  # the dummy items of each modality in the encoder batch

    @property
    def empty(self) -> bool:
        return self.items == 0


NO_PROFILE = MMProfile(None, 0, 0, 0, 0, None, 0, 0)


def profile(model: ModelSpec, settings: dict, version, family: str) -> MMProfile:
    """The dummy items of the profile run for a resolved settings dict (family: the vLLM rule family)."""
    if model.vision is None or model.family is None:
        return NO_PROFILE
    limits = {m: n for m, n in (settings.get("limit_mm_per_prompt") or {}).items() if n > 0}
    if not limits:
        return NO_PROFILE
    v = parse_version(version)
    if family in ("v0-legacy", "v0-merged"):
        if model.family.info.v0_sequence_video:
            legacy = family == "v0-legacy"
            return _v0_legacy(model, settings, v, limits) if legacy else _v0_merged(model, settings, v, limits)
        return _v0_family(model, settings, v, limits)
    return _v1(model, settings, v, limits)


def _items(model: ModelSpec, settings: dict, v: Version, counts: dict, seq_len: int) -> dict[str, Item]:
    return model.family.items(settings, seq_len, counts, v)


def _v0_legacy(model, settings, v, limits) -> MMProfile:
    L = limits.get("image", 0)
    if not L:
        return NO_PROFILE
    item = _items(model, settings, v, {"image": L}, settings["max_model_len"])["image"]
    seqs = max(1, min(settings["max_num_seqs"], settings["max_num_batched_tokens"] // (item.tokens * L)))
    n = seqs * L
    return MMProfile("image", n, n * item.slices, n * item.patches, n * item.slices * item.max_slice_patches,
                     None, item.tokens, n * item.tokens, sequences=seqs)


def _v0_merged(model, settings, v, limits) -> MMProfile:
    """V0 merged registry: MBT // (per-sequence maximum) dummy sequences, each with its items; the dummy video is
    built for the sequence's length, not max_model_len. Modalities besides image and video (MiniCPM-o's audio)
    ride along in every sequence with their own per-item tokens."""
    mml, mbt = settings["max_model_len"], settings["max_num_batched_tokens"]
    n_img, n_vid = limits.get("image", 0), limits.get("video", 0)
    others = {m: n for m, n in limits.items() if m not in ("image", "video") and n}
    # per-item maximum as the registry computes it: one item of each active modality at max_model_len
    top = _items(model, settings, v, {"image": 1 if n_img else 0, "video": 1 if n_vid else 0,
                                      **dict.fromkeys(others, 1)}, mml)
    img, vid_max = top.get("image"), top.get("video")
    rest = {m: top[m] for m in others if m in top}
    max_mm = ((n_img * img.tokens if img else 0) + (n_vid * vid_max.tokens if vid_max else 0)
              + sum(others[m] * it.tokens for m, it in rest.items()))
    seqs = max(1, min(settings["max_num_seqs"], mbt // max_mm))
    vid = (_items(model, settings, v, {"image": n_img, "video": n_vid, **others}, mbt // seqs).get("video")
           if n_vid else None)
    rest_tokens = sum(others[m] * it.tokens for m, it in rest.items())
    carrying = _carrying(v, mbt, seqs, (n_img * (img.tokens + 3) if img else 0) + (n_vid * vid.tokens if vid else 0)
                         + rest_tokens)
    per_seq = {"image": (n_img, img), "video": (n_vid, vid), **{m: (others[m], it) for m, it in rest.items()}}
    per_seq = {m: (n, it) for m, (n, it) in per_seq.items() if n and it is not None}
    items = carrying * sum(n for n, _ in per_seq.values())
    slices = carrying * sum(n * it.slices for n, it in per_seq.values())
    patches = carrying * sum(n * it.patches for n, it in per_seq.values())
    largest = max([it.max_slice_patches for _, it in per_seq.values() if it.slices] or [0])
    modality = "+".join(per_seq) if carrying and per_seq else None
    tokens = sum(n * it.tokens for n, it in per_seq.values())
    return MMProfile(modality, items, slices, patches, slices * largest, None, max_mm, carrying * tokens,
                     sequences=seqs, dropped=seqs - carrying,
                     items_by_modality=tuple((m, carrying * n) for m, (n, _) in per_seq.items()))


def _carrying(v: Version, mbt: int, seqs: int, prompt_len: int) -> int:
    """Dummy sequences that keep their multimodal items. 0.7.1-0.8.2 V0 returns a dummy without items when the
    prompt is longer than the sequence (0.7.3 multimodal/profiling.py:190-207); sequence g has
    MBT // seqs + (g < MBT % seqs) tokens (model_runner.py profile_run). From 0.8.3 it only warns."""
    if not (0, 7, 1) <= v < (0, 8, 3):
        return seqs
    base, longer = divmod(mbt, seqs)
    return (seqs - longer if base >= prompt_len else 0) + (longer if base + 1 >= prompt_len else 0)


def family_shapes(model: ModelSpec, settings: dict, v: Version, limits: dict, seq_len: int) -> dict[str, Item]:
    """Largest dummy item per active modality, as MultiModalBudget asks for it (one item of every active modality,
    seq_len = max_model_len)."""
    return _items(model, settings, v, dict.fromkeys(limits, 1), seq_len)


def _v0_family(model, settings, v, limits) -> MMProfile:
    """V0 profile run: max_num_seqs dummy sequences, fewer when their items fill MBT; an encoder-decoder model
    (Llama-3.2-Vision) gives every one of max_num_seqs sequences its image."""
    shapes = family_shapes(model, settings, v, limits, settings["max_model_len"])
    per_seq = sum(limits[m] * shapes[m].tokens for m in shapes)
    seqs = settings["max_num_seqs"]
    if not model.family.info.encoder_decoder:
        seqs = max(1, min(seqs, settings["max_num_batched_tokens"] // max(per_seq, 1)))
    items = seqs * sum(limits[m] for m in shapes)
    slices = seqs * sum(limits[m] * shapes[m].slices for m in shapes)
    patches = seqs * sum(limits[m] * shapes[m].patches for m in shapes)
    largest = max(s.max_slice_patches for s in shapes.values())
    return MMProfile("+".join(shapes), items, slices, patches, slices * largest, None, per_seq, seqs * per_seq,
                     sequences=seqs, items_by_modality=tuple((m, seqs * limits[m]) for m in shapes))


def _v1(model, settings, v, limits) -> MMProfile:
    mml, mbt, seqs = settings["max_model_len"], settings["max_num_batched_tokens"], settings["max_num_seqs"]
    shapes = family_shapes(model, settings, v, limits, mml)
    if not shapes:  # the active modalities are none the encoder budget counts (MiniCPM-o's audio from 0.30)
        return NO_PROFILE
    if v >= (0, 20, 0):  # encoder_budget.py:184 key=(tokens, name): video wins a tie
        modality = max(shapes, key=lambda m: (shapes[m].per_item, m))
    else:  # key=tokens: the first in dict order (image) wins a tie (0.13.0 v1/worker/utils.py:78)
        modality = max(shapes, key=lambda m: (shapes[m].per_item, m == "image"))
    item = shapes[modality]
    T = item.per_item
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
                     tokens_per_modality=tuple(sorted((m, s.per_item) for m, s in shapes.items())),
                     items_by_modality=((modality, items),))
