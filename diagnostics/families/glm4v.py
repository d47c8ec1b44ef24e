"""GLM-4.1V (Glm4vForConditionalGeneration) and GLM-4.5V (Glm4vMoeForConditionalGeneration): shapes, parameters and
vLLM's largest dummy items, per vLLM release.

Follows vLLM's `model_executor/models/glm4_1v.py` (0.32.0: Glm4vVisionTransformer :606, Glm4vProcessingInfo :966,
Glm4vDummyInputsBuilder :1442) with transformers' glm4v smart_resize (the Qwen2-VL rule with the frame count in the
pixel area; families.qwen_vl.smart_resize computes the same). vLLM asks no formula for the Glm4vProcessor: its
get_mm_max_tokens_per_item returns None for it (0.32.0 glm4_1v.py:994-1004; the method is absent before 0.23), so
the budget counts the embeddings of a dummy item that the HF processor processes (multimodal/encoder_budget.py:20-40):

* image: the dummy is the largest square `get_image_size_with_most_features` gives. Before vLLM 0.17 that square is
  sized as a 16-frame video under 28 x 28 x 2 x 30000 pixels (0.16.0 glm4_1v.py:831-876: 1708 x 1708 for every
  checkpoint); from 0.17 as one image under the processor's `size.longest_edge` or the `max_pixels` /
  `size` in mm_processor_kwargs (0.32.0 :1085-1137, vllm#34040). The HF image processor then resizes it with a
  2-frame area under its own `size.longest_edge` (transformers image_processing_pil_glm4v.py resize).
* video: frames = the count whose video tokens fit max_model_len less the images' tokens (before 0.26: the first
  count past which they stop fitting, under 28 x 28 x 2 x 30000, divided among the videos, 0.16.0 :914-947; from 0.26
  the count with the most tokens that fit under the video processor's longest_edge, 0.32.0 :1161-1193), at least 2
  from 0.13 (Glm4vDummyInputsBuilder._get_dummy_videos, 0.32.0 :1487-1499), each frame the dummy image; the video
  processor needs torchvision, so the video item is derived from the source, not checked against vLLM's own run.
Knobs: mm_processor_kwargs max_pixels (vLLM 0.17+; an area: an image is resized as 2 frames, so 2 x 28 x 28 pixels
per token) and size.longest_edge (every release), limit_mm_per_prompt {"video": 0}.
"""

from __future__ import annotations

from dataclasses import dataclass

from diagnostics.families.common import (Geometry, Item, Kit, Knob, SizeKnob, Variant, VisionSpec, Window,
                                         decoder_params, need)
from diagnostics.families.qwen_vl import smart_resize
from diagnostics.versions import Version, parse_version

# mm_processor_kwargs keys items() reads (max_pixels from vLLM 0.17; size.longest_edge always); others go to the HF
# processor unmodelled
MM_KWARGS = ("max_pixels", "size")
ARCHITECTURES = {
    "Glm4vForConditionalGeneration": "glm4.1v",
    "Glm4vMoeForConditionalGeneration": "glm4.5v",
}
_TF = "transformers.models.glm4v."
IMAGE_PLACEHOLDER = "<|begin_of_image|><|image|><|end_of_image|>"
VIDEO_PLACEHOLDER = "<|begin_of_video|><|video|><|end_of_video|>"
# the GLM-4 chat format around vLLM's placeholders (Glm4vForConditionalGeneration.get_placeholder_str, 0.32.0 :1767)
KIT = Kit(f"[gMASK]<sop><|user|>\n{IMAGE_PLACEHOLDER}What is in the image?<|assistant|>\n",
          ("<|endoftext|>", "[gMASK]", "<sop>", "<|system|>", "<|user|>", "<|assistant|>", "<|begin_of_image|>",
           "<|end_of_image|>", "<|image|>", "<|begin_of_video|>", "<|end_of_video|>", "<|video|>"), "<|endoftext|>",
          image_processor=_TF + "image_processing_pil_glm4v.Glm4vImageProcessorPil",
          video_processor=_TF + "video_processing_glm4v.Glm4vVideoProcessor",
          placeholders=(IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER),
          # vLLM's dummy text decodes these ids from config.json (Glm4vDummyInputsBuilder.get_dummy_text)
          config_tokens={"image_token_id": "<|image|>", "video_token_id": "<|video|>",
                         "image_start_token_id": "<|begin_of_image|>", "image_end_token_id": "<|end_of_image|>",
                         "video_start_token_id": "<|begin_of_video|>", "video_end_token_id": "<|end_of_video|>"})
VARIANTS = {
    # 0.9.2 is the first release whose registry has Glm4vForConditionalGeneration, 0.10.1 the first with the MoE
    "glm4.1v": Variant(("image", "video"), Window("0.9.2"), KIT,
                       stored={"glm-4.1v-9b-thinking": "zai-org/GLM-4.1V-9B-Thinking"}),
    "glm4.5v": Variant(("image", "video"), Window("0.10.1"), KIT, stored={"glm-4.5v": "zai-org/GLM-4.5V"}),
}
OLD_TARGET_PIXELS = 28 * 28 * 2 * 30000  # _get_vision_info's default max_image_pixels (every release)
OLD_TARGET_FRAMES = 16  # _get_vision_info's default num_frames: the image target before 0.17
OLD_ESTIMATE_PIXELS = 28 * 28 * 2 * 6144  # get_num_image_tokens before 0.17 (only the video's frame count uses it)
MAX_FRAMES_PER_VIDEO = 600  # glm4_1v.py _MAX_FRAMES_PER_VIDEO
BIG = 9999999  # get_image_size_with_most_features asks for a 9999999 x 9999999 image
MIN_PIXELS_VLLM = 112 * 112  # smart_resize's default min_pixels (vLLM passes none)
IMAGE_TARGET_SINCE = Version(0, 17, 0)  # num_frames=1 and the processor's max pixels (vllm#34040)
TWO_FRAMES_SINCE = Version(0, 13, 0)  # _get_dummy_videos: max(num_frames, 2)
# the frame count with the most tokens that fit under the video processor's longest_edge, not the first count whose
# tokens under 28 x 28 x 2 x 30000 overflow (0.25.0 glm4_1v.py:1193-1227 still has the latter)
MOST_FRAMES_SINCE = Version(0, 26, 0)
PIXEL_STEPS = (16384, 4096, 2048, 1024, 512, 256)  # tokens per image -> max_pixels = 2 x tokens x 28 x 28


@dataclass(frozen=True)
class Glm4vShape:
    variant: str
    patch: int
    merge: int
    temporal: int
    image_size: tuple[int, int]  # the image processor's (shortest_edge, longest_edge): pixel AREAS
    video_size: tuple[int, int]  # the video processor's


def _area(pre: dict, default: tuple[int, int]) -> tuple[int, int]:
    size = pre.get("size") or {}
    return int(size.get("shortest_edge") or default[0]), int(size.get("longest_edge") or default[1])


def parse(cfg: dict, pre: dict, video_pre: dict, where: str):
    """-> (text config, VisionSpec, Glm4vShape, params) for a GLM-4.1V / 4.5V config.json (+ processor configs).

    Config files of either layout: text fields in `text_config` (transformers >= 4.57) or at the top level. The
    VisionSpec's MLP width is the blocks' (out_hidden_size; the config's intermediate_size is the merger's)."""
    variant = ARCHITECTURES[cfg["architectures"][0]]
    text = cfg.get("text_config") if isinstance(cfg.get("text_config"), dict) else cfg
    text = {**text, "tie_word_embeddings": cfg.get("tie_word_embeddings", text.get("tie_word_embeddings", False))}
    vision = need(cfg, "vision_config", where)
    image_size = _area(pre, (112 * 112, OLD_TARGET_PIXELS))  # Glm4vImageProcessor's defaults
    shape = Glm4vShape(variant, int(vision["patch_size"]), int(vision.get("spatial_merge_size", 2)),
                       int(vision.get("temporal_patch_size", 2)), image_size,
                       _area(video_pre, image_size) if video_pre else image_size)
    spec = VisionSpec(hidden=int(vision["hidden_size"]), layers=int(vision["depth"]), heads=int(vision["num_heads"]),
                      mlp=int(vision["out_hidden_size"]), patch=shape.patch)
    return text, spec, shape, _llm_params(variant, text) + vision_params(vision)


def _llm_params(variant: str, text: dict) -> int:
    """vLLM's Glm4ForCausalLM (glm4.py: q/k/v biases, four RMSNorms per layer) or Glm4MoeForCausalLM (glm4_moe.py:
    the first `first_k_dense_replace` layers dense, then routed experts with a router, its score-correction bias and
    shared experts; the next-token-prediction layers are not built by the main model)."""
    if variant == "glm4.1v":
        return decoder_params(text, qkv_bias=bool(text.get("attention_bias", True)), norms=4)
    h, layers = int(text["hidden_size"]), int(text["num_hidden_layers"])
    dense = min(int(text.get("first_k_dense_replace", 0)), layers)
    experts, inter = int(text["n_routed_experts"]), int(text["moe_intermediate_size"])
    shared = int(text.get("n_shared_experts") or 0)
    base = decoder_params({**text, "num_hidden_layers": 0}, qkv_bias=False)  # embeddings, head, final norm
    heads = int(text["num_attention_heads"])
    kv = int(text.get("num_key_value_heads") or heads)
    hd = int(text.get("head_dim") or h // heads)
    attn = 2 * h * heads * hd + 2 * h * kv * hd + (
        (heads * hd + 2 * kv * hd) if text.get("attention_bias", True) else 0) + (
        2 * hd if text.get("use_qk_norm") else 0)
    moe = experts * 3 * h * inter + h * experts + experts + 3 * h * inter * shared
    return base + layers * (attn + 2 * h) + dense * 3 * h * int(text["intermediate_size"]) + (layers - dense) * moe


def vision_params(v: dict) -> int:
    """vLLM 0.32 glm4_1v.py Glm4vVisionTransformer: conv3d patch embed (+bias), RMSNorm blocks with bias-free q/k/v
    and a gated MLP of width out_hidden_size, post-conv and post RMSNorms, the position table, a 2 x 2 conv
    downsample (+bias) and the patch merger (proj, LayerNorm, gated MLP of width intermediate_size)."""
    d, o, inter = int(v["hidden_size"]), int(v["out_hidden_size"]), int(v["intermediate_size"])
    p, t, m = int(v["patch_size"]), int(v.get("temporal_patch_size", 2)), int(v.get("spatial_merge_size", 2))
    embed = d * int(v.get("in_channels", 3)) * t * p * p + d
    block = 2 * d + 4 * d * d + 3 * d * o
    merger = o * o + 2 * o + 2 * o * inter + inter * o
    positions = (int(v["image_size"]) // p) ** 2 * d
    return embed + int(v["depth"]) * block + merger + positions + 2 * d + d * o * m * m + o


def knobs(s: Glm4vShape) -> list[Knob]:
    """max_pixels (an area; vLLM 0.17+ sizes the dummy image by it), then video off."""
    unit = 2 * (s.patch * s.merge) ** 2  # the HF processor resizes an image as 2 frames: 2 x 28 x 28 per token
    return [
        Knob("mm_processor_kwargs", "max_pixels", "pixels", s.image_size[1], 2048 * unit,
             f"2048 x 2 x 28 x 28: at most 2,048 tokens per image (vLLM 0.17+); this checkpoint allows "
             f"{s.image_size[1] // unit:,}", ladder=tuple(t * unit for t in PIXEL_STEPS), modality="image"),
        Knob("limit_mm_per_prompt", "video", "items", 1, 0, "no dummy video in the profile run", ladder=(0,)),
    ]


def _kwargs(settings: dict) -> dict:
    return settings.get("mm_processor_kwargs") or {}


def _hf_longest(kwargs: dict, default: int) -> int:
    """The HF processor's size.longest_edge with mm_processor_kwargs' `size` merged in."""
    return int((kwargs.get("size") or {}).get("longest_edge") or default)


def _vllm_max(kwargs: dict, default: int) -> int:
    """vLLM 0.17+'s _get_image_max_pixels / _get_video_max_pixels: max_pixels, else the merged size.longest_edge."""
    if kwargs.get("max_pixels") is not None:
        return int(kwargs["max_pixels"])
    return _hf_longest(kwargs, default)


def _resize(s: Glm4vShape, hw: tuple[int, int], frames: int, lo: int, hi: int) -> tuple[int, int]:
    return smart_resize(hw[0], hw[1], s.patch * s.merge, lo, hi, frames=max(frames, s.temporal), temporal=s.temporal)


def _vision_tokens(s: Glm4vShape, hw: tuple[int, int], frames: int, lo: int, hi: int) -> int:
    """vLLM's _get_vision_info tokens (also the HF processors' count: grid_t x grid_h x grid_w / merge^2)."""
    h, w = _resize(s, hw, frames, lo, hi)
    grid_t = max((frames + (-frames % s.temporal)) // s.temporal, 1)
    return grid_t * (h // s.patch) * (w // s.patch) // (s.merge ** 2)


def dummy_image(s: Glm4vShape, settings: dict, version: Version) -> tuple[int, int]:
    """(height, width) of vLLM's dummy image (get_image_size_with_most_features) in this release."""
    version = parse_version(version)
    if version < IMAGE_TARGET_SINCE:
        return _resize(s, (BIG, BIG), OLD_TARGET_FRAMES, MIN_PIXELS_VLLM, OLD_TARGET_PIXELS)
    return _resize(s, (BIG, BIG), 1, MIN_PIXELS_VLLM, _vllm_max(_kwargs(settings), s.image_size[1]))


def geometry(s: Glm4vShape, settings: dict, modality: str, version) -> Geometry:
    """vLLM's dummy image of this release (a video: each frame is that image), which the HF processor keeps."""
    h, w = dummy_image(s, settings, version)
    return Geometry(w, h)


def size_knobs(s: Glm4vShape, v=None, modalities: tuple[str, ...] = ()) -> list[SizeKnob]:
    """max_pixels (vLLM 0.17+, IMAGE_TARGET_SINCE) in steps of 2 x (patch x merge)^2 pixels, one image token each
    (the HF processor resizes an image as 2 frames), from the processor's shortest_edge area up; before 0.17 vLLM's
    dummy image does not follow it (the processor's size.longest_edge does, a nested key --fit does not walk)."""
    if v is None or parse_version(v) < IMAGE_TARGET_SINCE:
        return []
    unit = 2 * (s.patch * s.merge) ** 2
    return [SizeKnob("max_pixels", "mm_processor_kwargs", "max_pixels", unit, f"2 x {s.patch * s.merge} x "
                     f"{s.patch * s.merge} px", -(-s.image_size[0] // unit), 1, current=s.image_size[1],
                     note="an area: vLLM sizes its dummy image by it (glm4_1v.py _get_image_max_pixels) and from "
                          "0.26 the dummy video's frame count too", modalities=("image",),
                     frontier=(256, 512, 1024, 2048, 4096, 8192, 16384))]


def _video_frames(s: Glm4vShape, target, max_tokens: int, videos: int, version: Version, video_max: int) -> int:
    """vLLM's get_num_frames_with_most_features for this release (before the 2-frame floor)."""
    def tokens(n):
        return _vision_tokens(s, target, n, MIN_PIXELS_VLLM, video_max)

    if version >= MOST_FRAMES_SINCE:
        best, most = 1, 0
        for n in range(1, MAX_FRAMES_PER_VIDEO + 1):
            t = tokens(n)
            if 0 < t <= max_tokens and t > most:
                best, most = n, t
        return best
    n = 0
    while n < MAX_FRAMES_PER_VIDEO * max(videos, 1):  # past it the answer is MAX_FRAMES_PER_VIDEO whatever vLLM's
        # loop (which runs until the tokens overflow, frames shrinking to 28 px) would reach
        t = tokens(n + 1)
        if t > max_tokens or t == 0:
            break
        n += 1
    return max(min(n // max(videos, 1), MAX_FRAMES_PER_VIDEO), 1)


def items(s: Glm4vShape, settings: dict, seq_len: int, counts: dict[str, int], version) -> dict[str, Item]:
    """Largest dummy image / video for the active modalities in `counts`, as vLLM `version` builds them.
    Tokens are LLM embeddings; patches are ViT patches (tokens x merge^2)."""
    version = parse_version(version)
    kwargs = _kwargs(settings)
    per_token = s.merge ** 2
    target = dummy_image(s, settings, version)
    image_tokens = _vision_tokens(s, target, 1, s.image_size[0], _hf_longest(kwargs, s.image_size[1]))
    out: dict[str, Item] = {}
    if counts.get("image"):
        out["image"] = Item("image", image_tokens, image_tokens * per_token)
    if counts.get("video"):
        if version < IMAGE_TARGET_SINCE:  # the images' share is vLLM's own 16-frame estimate, not the item's tokens
            estimate = _vision_tokens(s, target, OLD_TARGET_FRAMES, MIN_PIXELS_VLLM, OLD_ESTIMATE_PIXELS)
        else:
            estimate = image_tokens
        video_max = _vllm_max(kwargs, s.video_size[1]) if version >= MOST_FRAMES_SINCE else OLD_TARGET_PIXELS
        frames = _video_frames(s, target, seq_len - estimate * counts.get("image", 0), counts["video"], version,
                               video_max)
        if version >= TWO_FRAMES_SINCE:
            frames = max(frames, 2)
        t = _vision_tokens(s, target, frames, s.video_size[0], _hf_longest(kwargs, s.video_size[1]))
        out["video"] = Item("video", t, t * per_token, slices=frames)
    return out
