"""suite/worst_case.py: the worst-case request after a start, from plan's own item arithmetic."""

from __future__ import annotations

import pytest

from diagnostics.cards import get_card
from diagnostics.errors import UsageError
from diagnostics.models import get_model
from diagnostics.families.minicpmv import image_item, video_item
from diagnostics.versions import parse_version
from diagnostics.suite.worst_case import BATCH_CAP, MIN_TEXT_TOKENS, SAMPLING, describe, worst_case

MINICPM = "openbmb/MiniCPM-V-2_6"


def test_minicpmv_sends_its_largest_image_at_the_knobs_value_and_the_longest_video_that_fits():
    model, card = get_model(MINICPM), get_card("3090")
    settings = {"max_model_len": 4096, "max_num_seqs": 8, "limit_mm_per_prompt": {"image": 2, "video": 1}}
    case = worst_case(model, card, "0.32.0", settings)
    assert (case.max_model_len, case.prompt_tokens, case.batch) == (4096, 4096 - case.max_tokens, BATCH_CAP)
    image, video = case.items
    # vLLM's get_image_size_with_most_features: 448 wide, 448 x max_slice_nums (9) high; plan's token count
    assert (image.modality, image.count, image.width, image.height) == ("image", 2, 448, 448 * 9)
    v = parse_version("0.32.0")
    assert image.tokens == image_item(model.family.shape, settings, v).tokens
    room = case.prompt_tokens - MIN_TEXT_TOKENS - 2 * image.tokens
    expected = video_item(model.family.shape, settings, v, 2, 1, room)
    assert (video.modality, video.frames, video.tokens) == ("video", expected.slices, expected.tokens)
    assert 2 * image.tokens + video.tokens <= case.prompt_tokens
    # the knob moves the image: max_slice_nums=4 -> a 448 x 1792 image
    fewer = worst_case(model, card, "0.32.0", {**settings, "mm_processor_kwargs": {"max_slice_nums": 4}})
    assert (fewer.items[0].width, fewer.items[0].height) == (448, 448 * 4)
    assert fewer.items[0].tokens < image.tokens


def test_items_are_capped_by_what_the_prompt_holds_not_only_by_the_limit():
    model = get_model(MINICPM)
    case = worst_case(model, get_card("3090"), "0.32.0", {"max_model_len": 2048, "max_num_seqs": 1,
                                                          "limit_mm_per_prompt": {"image": 16, "video": 0}})
    (image,) = case.items
    assert image.count == (case.prompt_tokens - MIN_TEXT_TOKENS) // image.tokens < 16
    assert case.batch == 1  # max_num_seqs 1: no concurrent batch


def test_qwen_image_follows_max_pixels():
    model, card = get_model("qwen2.5-vl-7b"), get_card("a100-80")
    case = worst_case(model, card, "0.32.0", {"max_model_len": 8192, "limit_mm_per_prompt": {"image": 1, "video": 0},
                                              "mm_processor_kwargs": {"max_pixels": 1003520}})
    (image,) = case.items
    assert image.width * image.height <= 1003520 and image.tokens == image.width * image.height // (28 * 28)
    assert case.placeholders == ("<|vision_start|><|image_pad|><|vision_end|>", "<|vision_start|><|video_pad|><|vision_end|>")


def test_text_model_and_sampling():
    case = worst_case(None, get_card("cpu"), "0.32.0", {"max_model_len": 512, "max_num_seqs": 2})
    assert (case.items, case.batch, case.prompt_tokens) == ((), 2, 512 - case.max_tokens)
    assert case.sampling == SAMPLING and {"top_p", "top_k", "logprobs"} <= set(case.sampling)
    line = describe(case.to_json())
    assert line.startswith("2 x 496-token prompt + 16 output tokens (max_model_len 512)") and "top_k=50" in line


def test_no_max_model_len_no_worst_case():
    with pytest.raises(UsageError, match="max_model_len"):
        worst_case(None, get_card("cpu"), "0.32.0", {})


def test_glms_worst_case_image_is_vllms_dummy_image_of_the_release():
    """glm4v.geometry: vLLM's dummy image per release (a 16-frame square before 0.17, the processor's area after)."""
    model, card = get_model("glm-4.1v-9b-thinking"), get_card("a100-80")
    limits = {"max_model_len": 65536, "limit_mm_per_prompt": {"image": 1, "video": 0}}
    new = worst_case(model, card, "0.32.0", limits).items[0]
    old = worst_case(model, card, "0.16.0", limits).items[0]
    assert (new.width, new.height, new.tokens) == (4844, 4844, 29929)
    assert (old.width, old.height, old.tokens) == (1708, 1708, 3721)
