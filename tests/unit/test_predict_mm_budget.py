"""Dummy-item counts against what real vLLM engines printed (minicpmv26-kit.md §4, §4.1) and vllm-memory.md §3."""

from __future__ import annotations

import pytest

from diagnostics.cards import get_card
from diagnostics.families.minicpmv import image_item as _image_item, video_item as _video_item
from diagnostics.predict.mm_budget import profile
from diagnostics.models import MINICPM_V_2_6 as M
from diagnostics.settings import resolve
from diagnostics.versions import family, parse_version


def image_item(model, settings, version):
    """MiniCPM-V's largest dummy image, from its family module (families/minicpmv.py)."""
    return _image_item(model.family.shape, settings, parse_version(version))


def video_item(model, settings, version, n_images, n_videos, seq_len):
    return _video_item(model.family.shape, settings, parse_version(version), n_images, n_videos, seq_len)

NO_VIDEO = {"image": 1, "video": 0}

# id, max_model_len, MBT, max_num_seqs, limit_mm_per_prompt, extra settings, observed N, observed M, modality
# vLLM 0.32.0 on CPU, tiny MiniCPM-V-2_6 with the real token arithmetic; "Encoder cache will be initialized with a
# budget of N tokens, and profiled with M <modality> items" (None = the CPU LLM-class default)
KIT_RUNS = [
    ("A", 4096, 8192, None, NO_VIDEO, {}, 8192, 12, "image"),
    ("B", 4096, 2048, None, NO_VIDEO, {}, 2048, 3, "image"),
    ("C", 4096, 8192, 4, NO_VIDEO, {}, 8192, 4, "image"),
    ("D", 4096, 8192, 4, {"image": 2, "video": 0}, {}, 8192, 8, "image"),
    ("E", 4096, 8192, None, {"image": 1, "video": 1}, {}, 8192, 8, "video"),
    ("F", 4096, 512, None, NO_VIDEO, {}, 640, 1, "image"),
    ("G", 1024, 8192, None, {"image": 1, "video": 1}, {}, 8192, 12, "image"),
    ("H", 4096, None, None, NO_VIDEO, {}, 4096, 6, "image"),
    ("I", 4096, 8192, None, NO_VIDEO, {"mm_processor_kwargs": {"max_slice_nums": 4}}, 8192, 25, "image"),
    ("J", 4096, 8192, None, None, {"load_format": "dummy"}, 8192, 8, "video"),
    ("K", 4096, 8192, 2, {"image": 8, "video": 0}, {}, 8192, 12, "image"),
    ("L", 4096, 8192, 1, {"image": 8, "video": 0}, {}, 8192, 6, "image"),
    ("M", 2048, 8192, 1, {"image": 8, "video": 0}, {}, 8192, 3, "image"),
]


def _profile(version, card, mml, mbt=None, seqs=None, limits=None, entry="llm", **extra):
    o = {"max_model_len": mml, **extra}
    if mbt is not None:
        o["max_num_batched_tokens"] = mbt
    if seqs is not None:
        o["max_num_seqs"] = seqs
    if limits is not None:
        o["limit_mm_per_prompt"] = limits
    s = resolve(M, get_card(card), version, entry, o)
    return profile(M, s, version, family(version, s["use_v1"]))


@pytest.mark.parametrize("run, mml, mbt, seqs, limits, extra, n, m, modality", KIT_RUNS, ids=[r[0] for r in KIT_RUNS])
def test_v032_engine_runs(run, mml, mbt, seqs, limits, extra, n, m, modality):
    p = _profile("0.32.0", "cpu", mml, mbt, seqs, limits, **extra)
    assert (p.encoder_budget_tokens, p.items, p.modality) == (n, m, modality)


# real-size directory through vLLM 0.32's own MultiModalBudget (kit doc §4.1)
REAL_SIZE = [
    (32768, 8192, 256, None, {}, 8192, 8, "video"),
    (32768, 16384, 256, None, {}, 16384, 16, "video"),
    (32768, 2048, 256, None, {}, 2048, 2, "video"),
    (32768, 8192, 256, {"video": 0}, {}, 8192, 12, "image"),
    (32768, 8192, 256, {"video": 0}, {"mm_processor_kwargs": {"max_slice_nums": 4}}, 8192, 25, "image"),
    (32768, 8192, 4, NO_VIDEO, {}, 8192, 4, "image"),
    (32768, None, 256, None, {}, 4096, 4, "video"),
]


@pytest.mark.parametrize("mml, mbt, seqs, limits, extra, n, m, modality", REAL_SIZE)
def test_v032_real_size_budget(mml, mbt, seqs, limits, extra, n, m, modality):
    p = _profile("0.32.0", "cpu", mml, mbt, seqs, limits, **extra)
    assert (p.encoder_budget_tokens, p.items, p.modality) == (n, m, modality)


def test_real_size_dummy_items():
    img = image_item(M, {}, "0.32.0")
    assert (img.tokens, img.slices, img.patches, img.max_slice_patches) == (640, 10, 10_272, 1056)
    img4 = image_item(M, {"mm_processor_kwargs": {"max_slice_nums": 4}}, "0.32.0")
    assert (img4.tokens, img4.slices, img4.patches) == (320, 5, 5_088)
    vid = video_item(M, {}, "0.32.0", 1, 1, 32768)
    assert (vid.tokens, vid.slices, vid.patches) == (1024, 16, 16_384)
    # frames shrink with a short context: (1024 - 640) // 64 = 6 frames
    assert video_item(M, {}, "0.32.0", 1, 1, 1024).tokens == 384


# vllm-memory.md §3.3 worked defaults, v0.33.0, max_model_len 32768
@pytest.mark.parametrize(
    "card, entry, limits, items, slices, modality",
    [
        ("3090", "serve", None, 2, 32, "video"),
        ("a100-80", "serve", None, 2, 32, "video"),
        ("3090", "llm", None, 8, 128, "video"),
        ("h100-80", "serve", None, 8, 128, "video"),
        ("h100-80", "llm", None, 16, 256, "video"),
        ("h200", "llm", None, 16, 256, "video"),
        ("h100-80", "serve", {"video": 0}, 12, 120, "image"),
    ],
)
def test_v1_worked_defaults(card, entry, limits, items, slices, modality):
    p = _profile("0.33.0", card, 32768, limits=limits, entry=entry)
    assert (p.items, p.slices, p.modality) == (items, slices, modality)
    assert abs(p.vit_tokens - 1024 * slices) <= 32 * items  # ~16 ViT tokens per budget token


@pytest.mark.parametrize(
    "version, mml, seqs, limits, images",
    [
        ("0.6.3", 32768, None, None, 256),  # 262,144 ViT tokens in one forward
        ("0.6.3", 4096, None, None, 80),  # MBT 5120 // 64
        ("0.6.3", 32768, 32, None, 32),
        ("0.6.3", 32768, None, {"image": 4}, 512),  # min(256, 32768 // 256) x 4: raising the limit makes it worse
        ("0.5.5", 4096, None, None, 64),
        ("0.6.1", 2048, None, None, 64),  # MBT floor 4096
    ],
)
def test_v0_legacy_images(version, mml, seqs, limits, images):
    p = _profile(version, "3090", mml, seqs=seqs, limits=limits)
    assert p.items == images and p.slices == images and p.vit_tokens == 1024 * images
    assert p.encoder_budget_tokens is None


def test_v0_merged_counts():
    # 0.8.3+: image 640 + video 16 x 64 per sequence -> min(256, 32768 // 1664) = 19 sequences, 494 slices
    p = _profile("0.9.2", "3090", 32768, use_v1=False)
    assert p.sequences == 19 and p.slices == 19 * (10 + 16) == 494
    # 0.7.1-0.8.2: uncapped frames (66 tokens each) -> one sequence of 10 + 486 slices
    p = _profile("0.8.2", "3090", 32768, use_v1=False)
    assert p.sequences == 1 and p.slices == 496


def test_v1_older_item_rules():
    # 0.7-0.9.2: ceil(N / T) capped by max_num_seqs x limit (limit 1 until 0.8.3)
    p = _profile("0.9.0", "3090", 32768, limits={"video": 0}, entry="llm")
    assert (p.items, p.tokens_per_item) == (13, 640)  # ceil(8192 / 640)
    p = _profile("0.10.0", "3090", 32768, limits={"video": 0})
    assert p.items == 12


def test_no_encoder_work_when_all_modalities_disabled():
    p = _profile("0.32.0", "3090", 4096, limits={"image": 0, "video": 0})
    assert p.items == 0 and p.slices == 0 and p.modality is None


def _family_profile(name, version, card="h100-80", **overrides):
    from diagnostics.models import get_model

    model = get_model(name)
    s = resolve(model, get_card(card), version, "llm", overrides)
    return profile(model, s, version, family(version, s.get("use_v1")))


def test_qwen25vl_profiles_its_largest_video_by_default_and_the_image_without_video():
    p = _family_profile("qwen2.5-vl-7b", "0.32.0")
    assert (p.modality, p.items, p.tokens_per_item, p.encoder_budget_tokens) == ("video", 1, 114688, 114688)
    assert p.vit_tokens == 4 * 114688 and dict(p.tokens_per_modality) == {"image": 16384, "video": 114688}
    q = _family_profile("qwen2.5-vl-7b", "0.32.0", limit_mm_per_prompt={"video": 0})
    assert (q.modality, q.tokens_per_item) == ("image", 16384)


def test_gemma3_items_fill_the_encoder_budget():
    p = _family_profile("gemma-3-4b", "0.32.0", max_num_batched_tokens=8192, max_model_len=32768)
    assert (p.items, p.encoder_budget_tokens) == (32, 8192)  # vLLM 0.32 printed 32 items, budget 8192


def test_mllama_v0_gives_every_dummy_sequence_its_four_tile_image():
    p = _family_profile("llama-3.2-11b-vision", "0.6.3", max_model_len=4096)
    assert (p.sequences, p.items, p.slices) == (256, 256, 1024)  # vllm#10569: pixel_values [256, 1, 1, 4, ...]
    assert _family_profile("llama-3.2-11b-vision", "0.6.3", max_model_len=4096, max_num_seqs=2).items == 2


@pytest.mark.parametrize("version, card, entry, items, tokens", [
    ("0.10.2", "3090", "llm", 7, 1056),  # audit b6: the placeholder with separators, 16 frames x 66
    ("0.11.0", "3090", "serve", 1, 1056),
    ("0.12.0", "h100-80", "llm", 15, 1056),
    ("0.10.0", "3090", "llm", 8, 1024),  # embeddings only before 0.10.1 ...
    ("0.13.0", "3090", "llm", 8, 1024),  # ... and again from 0.13
])
def test_audit_b6_items_counted_with_separators_in_0_10_1_to_0_12(version, card, entry, items, tokens):
    p = _profile(version, card, 32768, entry=entry)
    assert (p.items, p.tokens_per_item, p.modality) == (items, tokens, "video")


def test_audit_b6_image_with_separators_and_fewer_slices():
    # 10 slices in a 1 x 9 grid -> 66 x 10 + 8 row breaks + 3 id tokens = 671; 5 slices (max_slice_nums 4, 1 x 4)
    # -> 66 x 5 + 3 + 3 = 336: both measured with 0.10.2's and 0.11.0's MultiModalBudget (docs/version-conformance.md)
    assert _profile("0.11.0", "3090", 32768, 8192, limits=NO_VIDEO).tokens_per_item == 671
    p = _profile("0.11.0", "3090", 32768, 8192, limits=NO_VIDEO, mm_processor_kwargs={"max_slice_nums": 4})
    assert (p.tokens_per_item, p.items) == (336, 8192 // 336)


def test_audit_b6_v0_0_10_sequences_use_the_separator_counts():
    p = _profile("0.10.2", "3090", 32768, limits={"image": 1, "video": 1}, use_v1=False)
    assert (p.sequences, p.tokens_per_item) == (32768 // (671 + 1056), 671 + 1056)  # 18, not 19


def test_audit_b4_0_7_1_to_0_8_2_v0_drops_images_that_do_not_fit_the_dummy_sequence():
    # MBT 32768, video off: 49 sequences of 668/669 tokens; the image prompt is 671 -> no image in any of them
    for version in ("0.7.3", "0.8.2"):
        p = _profile(version, "3090", 32768, limits={"video": 0}, **({"use_v1": False} if version == "0.8.2" else {}))
        assert (p.sequences, p.dropped, p.items, p.slices, p.modality) == (49, 49, 0, 0, None)
    kept = _profile("0.8.3", "3090", 32768, limits={"video": 0}, use_v1=False)  # only a warning from 0.8.3
    assert kept.dropped == 0 and kept.items == kept.sequences > 0
    fits = _profile("0.7.3", "3090", 4096, limits={"video": 0})  # MBT 5120: 7 sequences of 731 tokens keep theirs
    assert (fits.dropped, fits.items) == (0, 7)


def test_audit_b3_0_7_x_reserves_four_tokens_per_image_for_the_frame_count():
    # frames = (seq_len - (668 + 4)) // 66 (minicpmv.py:445-457): at seq_len 32768, 486 frames
    item = video_item(M, {"mm_processor_kwargs": {}}, "0.7.3", 1, 1, 32768)
    assert item.slices == (32768 - 672) // 66 == 486


def test_audit_b15_0_7_x_ignores_max_slice_nums_kwargs_for_the_token_count():
    s = {"mm_processor_kwargs": {"max_slice_nums": 4}}
    assert image_item(M, s, "0.7.3").tokens == image_item(M, {}, "0.7.3").tokens == 668
    assert image_item(M, s, "0.8.4").tokens == 320  # from 0.8.4 the image processor's max_slice_nums counts


def test_audit_b11_modality_tie_goes_to_image_before_0_20_and_video_from_0_20():
    # a tie needs equal per-item tokens: at max_model_len 1280 a video has (1280 - 640) // 64 = 10 frames = 640
    # tokens, the same as the 10-slice image
    assert _profile("0.13.0", "3090", 1280, 8192).modality == "image"
    assert _profile("0.20.0", "3090", 1280, 8192).modality == "video"
    assert _profile("0.20.0", "3090", 1280, 8192).tokens_per_item == 640


def test_dummy_options_num_frames_lowers_the_dummy_video_from_0_28():
    opts = {"video": {"count": 999, "num_frames": 4}}
    p = _profile("0.28.0", "3090", 32768, 8192, limits=opts)
    assert (p.tokens_per_item, p.items, p.slices) == (1024, 8, 8 * 4)  # T from the maximum, frames from the option
    p = _profile("0.27.0", "3090", 32768, 8192, limits=opts)
    assert p.slices == 8 * 16  # before 0.28 MiniCPM-V ignores the dummy options


def test_v0_merged_carries_a_third_modality_and_v1_counts_items_by_modality():
    """MiniCPM-o on 0.7.3 V0: every dummy sequence carries its image, video and audio (810 tokens with the chunk
    separators); the video's frames come after the image's 668 + 4 and the audio's 810 + 2 tokens (0.7.2
    minicpmo.py:176-193): (8192 - 672 - 812) // 66 = 101 frames. Before, audio was dropped from the sequence."""
    from diagnostics.models import get_model

    o = get_model("minicpm-o-2_6")
    s = resolve(o, get_card("a100-80"), "0.7.3", "llm", {"max_model_len": 8192})
    p = profile(o, s, "0.7.3", "v0-merged")
    assert p.modality == "image+video+audio" and p.tokens_per_item == 668 + 101 * 66 + 810
    assert dict(p.items_by_modality) == {"image": 1, "video": 1, "audio": 1}
    v1 = resolve(o, get_card("a100-80"), "0.29.0", "llm", {"max_model_len": 32768, "max_num_batched_tokens": 8192,
                                                           "limit_mm_per_prompt": {"video": 0}})
    p = profile(o, v1, "0.29.0", family("0.29.0"))
    assert (p.modality, dict(p.items_by_modality), p.slices) == ("audio", {"audio": 8192 // 750}, 0)
    none = resolve(o, get_card("a100-80"), "0.32.0", "llm", {"limit_mm_per_prompt": {"image": 0, "video": 0}})
    assert profile(o, none, "0.32.0", family("0.32.0")).empty  # audio alone: 0.30+ profiles nothing
