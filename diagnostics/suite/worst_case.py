"""The worst-case request a start must serve: what the engine child sends after the engine came up. Pure Python.

A start that passes can still fail on its first real request (the profile run did not take the request's path:
the sampler profiled without sampling parameters, an image larger than the profiled one, several sequences at
once). So after each start the child sends, when the combination asks for it (matrix `worst_case`):

  * one prompt of `max_model_len - max_tokens` tokens (text filled in after the multimodal items);
  * the most items the settings allow and that fit that prompt, each at its largest: the family's image with the
    most features at its knob's value (MiniCPM-V: 448 x 448*max_slice_nums, vLLM's get_image_size_with_most_features;
    Qwen-VL: the most merged patches under max_pixels; ...), a video with the most frames the length leaves
    (plan's own item arithmetic: each family's items() in diagnostics/families);
  * sampling parameters that take the sampler's slower paths: temperature 1, top_p, top_k, logprobs (vLLM's
    default max_logprobs 20), penalties, a seed;
  * where max_num_seqs > 1: a small concurrent batch (min(max_num_seqs, BATCH_CAP) such prompts in one generate).

`worst_case(model, card, version, settings)` returns the WorstCase the launcher hands the child (`to_json`); the
record keeps what was really sent (the child adds the prompt length vLLM counted). Sizes in tokens and pixels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from diagnostics.errors import UsageError

MAX_TOKENS = 16  # output tokens of each worst-case request
BATCH_CAP = 4  # concurrent worst-case prompts where max_num_seqs allows more than one
MIN_TEXT_TOKENS = 16  # text the prompt keeps besides the items (template and filler)
SAMPLING = {"temperature": 1.0, "top_p": 0.9, "top_k": 50, "logprobs": 20, "presence_penalty": 0.5,
            "frequency_penalty": 0.5, "repetition_penalty": 1.1, "seed": 0}


@dataclass(frozen=True)
class Items:
    """Items of one modality in the worst-case prompt: how many, each one's size and the LLM tokens it takes."""

    modality: str
    count: int
    width: int  # pixels (a video: each frame)
    height: int
    tokens: int  # LLM tokens of one item (plan's count)
    frames: int = 1
    basis: str = "derived"  # "derived": plan's/the family's item geometry; "estimate": see note
    note: str | None = None


@dataclass(frozen=True)
class WorstCase:
    max_model_len: int
    prompt_tokens: int  # what the prompt aims at: max_model_len - max_tokens
    max_tokens: int
    batch: int
    sampling: dict
    items: tuple[Items, ...] = ()
    placeholders: tuple[str | None, str | None] | None = None  # (image, video): the family kit's (Kit.placeholders)
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict:
        data = asdict(self)
        data["items"] = [asdict(i) for i in self.items]
        data["notes"] = list(self.notes)
        return data

    def describe(self) -> str:
        return describe(self.to_json())


def describe(case: dict) -> str:
    """One line from a WorstCase's JSON (as the record keeps it): what is sent, e.g. "4 x 2032-token prompt + 16
    output tokens (max_model_len 2048); 2 images of 448x4032 (640 tokens each); sampling temperature=1.0, ..."."""
    parts = [f"{case['batch']} x {case['prompt_tokens']}-token prompt + {case['max_tokens']} output tokens "
             f"(max_model_len {case['max_model_len']})"]
    for i in case.get("items") or []:
        size = f"{i['width']}x{i['height']}" + (f", {i['frames']} frames" if i["modality"] == "video" else "")
        parts.append(f"{i['count']} {i['modality']}{'s' if i['count'] != 1 else ''} of {size} "
                     f"({i['tokens']} tokens each)")
    sampling = ", ".join(f"{k}={v}" for k, v in (case.get("sampling") or {}).items() if k != "seed")
    return "; ".join(parts) + f"; sampling {sampling}"


def _family_items(model, settings: dict, version, limits: dict, room: int) -> list[Items]:
    """Images first (as many of the largest as the limit and the prompt allow), then one video with the most
    frames the rest of the prompt leaves: the family's own items() (vLLM's dummy-input arithmetic)."""
    out = []
    n_img = 0
    if limits.get("image"):
        item = model.family.items(settings, room, {"image": 1}, version).get("image")
        if item is not None and item.tokens:
            n_img = min(limits["image"], room // item.tokens)
        if n_img:
            g = model.family.geometry(settings, "image", version)
            out.append(Items("image", n_img, g.width, g.height, item.tokens, basis=g.basis, note=g.note))
            room -= n_img * item.tokens
    if limits.get("video") and room > 0:
        video = model.family.items(settings, room, {"image": n_img, "video": 1}, version).get("video")
        if video is not None and 0 < video.tokens <= room:
            g = model.family.geometry(settings, "video", version)
            out.append(Items("video", 1, g.width, g.height, video.tokens, frames=video.slices, basis=g.basis,
                             note=g.note))
    return out


def worst_case(model, card, version, settings: dict, max_tokens: int = MAX_TOKENS) -> WorstCase:
    """The worst-case request for a start with `settings` (vLLM's defaults filled in by diagnostics.settings.resolve
    for `version` and `card`). `model` is a diagnostics.models.ModelSpec, or None for a model plan does not know:
    then a text prompt at max_model_len (the settings' own, required). UsageError when no max_model_len is known."""
    from diagnostics.settings import resolve

    notes = []
    if model is not None:
        try:
            s = resolve(model, card, version, "llm", settings)
        except UsageError as err:
            s = dict(settings)
            notes.append(f"settings not resolved ({err}); vLLM's defaults not filled in")
    else:
        s = dict(settings)
        notes.append("model not known to plan: a text prompt only")
    mml = s.get("max_model_len")
    if not isinstance(mml, int) or mml <= max_tokens:
        raise UsageError(f"no worst-case request without a max_model_len above {max_tokens} (got {mml!r})")
    prompt_tokens = mml - max_tokens
    seqs = int(s.get("max_num_seqs") or 1)
    batch = min(seqs, BATCH_CAP)
    items: list[Items] = []
    family = model.family if model is not None and model.vision is not None else None
    if family is not None:
        limits = {m: int(n) for m, n in (s.get("limit_mm_per_prompt") or {}).items() if isinstance(n, int) and n > 0}
        room = prompt_tokens - MIN_TEXT_TOKENS
        items = _family_items(model, s, version, limits, room)
        if limits and not items:
            notes.append(f"no multimodal item fits a {prompt_tokens}-token prompt: text only")
    return WorstCase(mml, prompt_tokens, max_tokens, batch, dict(SAMPLING), tuple(items),
                     family.kit.placeholders if family is not None and items else None, tuple(notes))
