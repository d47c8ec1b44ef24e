"""The largest multimodal knob value that plans ok (`plan --fit max_pixels`, `--fit limit_mm_per_prompt.image`),
and the frontier between an engine setting and a knob (`plan --fit max_model_len,max_pixels`). Pure, no vLLM.

A *knob* is one number a user sets inside `mm_processor_kwargs` or `limit_mm_per_prompt` that changes the dummy
items of vLLM's profile run (predict/mm_budget.py): Qwen-VL `max_pixels` (in steps of the model's
(patch x merge)^2 pixels, 28 x 28 for Qwen2/2.5-VL, 32 x 32 for Qwen3-VL: one step is one LLM token per image),
InternVL `max_patches` (max_dynamic_patch), MiniCPM-V `max_slice_nums`, Gemma 3 `pan_and_scan_max_num_crops`,
the per-prompt counts `limit_mm_per_prompt.image` / `.video`, and the dummy-options `num_frames` of MiniCPM-V
(vLLM 0.28+) and Qwen2-VL / Qwen2.5-VL (0.12+, families/qwen_vl.py NUM_FRAMES_SINCE). `knobs_of()` is the one
accessor: the item-size knobs are each family module's size_knobs (its data: step, domain per max_model_len,
label), the counts are the same for every family (settings.supported_modalities).

A domain of at most SCAN_ALL values (MiniCPM-V's 1..9 slices, frames) is planned whole: the answer is the largest
ok value and every failing value below it is listed (`failing_below`). A larger one gets predict/fit.py's search: a
doubling ladder from the domain's bottom, then bisection at the knob's step, so the answer is a *local* boundary (`value` plans ok, `value + step` does not, or `value` is the domain's top) and a
ladder that turns ok -> not ok -> ok is listed in `non_monotone` (V1's items = encoder budget // tokens per item
makes the profile's encoder work a sawtooth in the item size below max_num_batched_tokens). Each value is planned
through the same path plain `plan` uses, vLLM's start-up refusals (settings.vllm_refusal) included: a value vLLM
would refuse never counts as ok.

The domain's top of a size knob is the largest item one request can carry: vLLM rejects a prompt longer than
max_model_len (vllm 0.32 v1/engine/input_processor.py:590), so an item of more tokens cannot be sent whatever
memory says.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from diagnostics import families as _families
from diagnostics.cards import get_card
from diagnostics.errors import UsageError, one_of
from diagnostics.models import ModelSpec, get_model
from diagnostics.predict.exact import carry
from diagnostics.predict import fit as engine_fit
from diagnostics.predict.estimator import Plan, plan
from diagnostics.settings import resolve, setting_available, supported_modalities, vllm_refusal
from diagnostics.versions import default_version, engine as engine_of, parse_version

SCAN_ALL = 64  # a knob domain of at most this many values is planned whole (every failing value below is listed)
COUNT_TOP = 999  # vLLM V1's default limit_mm_per_prompt (0.8.4+)
ALIASES = {"max_dynamic_patch": "max_patches", "limit_mm_per_prompt.images": "limit_mm_per_prompt.image",
           "limit_mm_per_prompt.videos": "limit_mm_per_prompt.video", "image": "limit_mm_per_prompt.image",
           "video": "limit_mm_per_prompt.video", "max_num_crops": "pan_and_scan_max_num_crops",
           "limit_mm_per_prompt.video.num_frames": "num_frames",
           "limit_mm_per_prompt.audios": "limit_mm_per_prompt.audio", "audio": "limit_mm_per_prompt.audio"}
# every knob some model has (knobs_of): these, what a family module lists in its FIT_KNOBS, and a count per modality
# some family has (limit_mm_per_prompt.audio with Phi-4-multimodal, MiniCPM-o): no edit here to add a family
KNOB_NAMES = tuple(dict.fromkeys(
    ("max_pixels", "max_slice_nums", "max_patches", "pan_and_scan_max_num_crops", "num_frames",
     "limit_mm_per_prompt.image", "limit_mm_per_prompt.video")
    + tuple(n for m in _families.MODULES for n in getattr(m, "FIT_KNOBS", ()))
    + tuple(f"limit_mm_per_prompt.{x}" for m in _families.MODULES for v in m.VARIANTS.values() for x in v.modalities)))
# the values a frontier walks for a count knob (the raw value is units x Knob.step; a size knob's are its family's)
COUNT_FRONTIER = (1, 2, 4, 8, 16, 32)
COUNT_WORDS = {"limit_mm_per_prompt.image": "image{} per prompt", "limit_mm_per_prompt.video": "video{} per prompt",
               "limit_mm_per_prompt.audio": "audio{} per prompt"}


@dataclass(frozen=True)
class Knob:
    """One multimodal knob of one model and version. Values are raw (pixels, slices, counts), multiples of `step`.

    name: what --fit takes; setting/key: where it goes (`mm_processor_kwargs["max_pixels"]`,
    `limit_mm_per_prompt["image"]`, `limit_mm_per_prompt["video"]["num_frames"]`); unit: how a value reads
    ("28 x 28 px", "image"); lo/hi: the domain; current: the value in effect without the knob (None: unset);
    extra: keys set with it (Gemma 3 do_pan_and_scan, InternVL crop_to_patches) and `note` why."""

    name: str
    setting: str
    key: str
    step: int
    unit: str
    lo: int
    hi: int
    top_reason: str
    current: int | None = None
    extra: tuple = ()
    note: str = ""
    guards: bool = True  # False: the knob shapes only the dummy item, not what requests may carry
    modalities: tuple = ("image",)  # the dummy items it changes
    word: str = ""  # a value's label ("slice{}"; the counts' labels are COUNT_WORDS)
    frontier: tuple = ()  # the values a frontier walks, in steps (the counts': COUNT_FRONTIER)

    def label(self, value) -> str:
        """A value in the units users set: `1003520 (1280 x 28 x 28 px: at most 1280 tokens per image)`."""
        if value is None:
            return "none fits"
        if self.name == "max_pixels":  # the step's own unit: "28 x 28 px" (Qwen), "2 x 28 x 28 px" (GLM-4.1V)
            n = value // self.step
            return f"{value:,} ({n} x {self.unit}: at most {n:,} tokens per image)"
        word = self.word or COUNT_WORDS.get(self.name) or self.unit + "{}"
        return f"{value:,} {word.format('' if value == 1 else 's')}"

    def to_json(self) -> dict:
        return {"name": self.name, "setting": self.setting, "key": self.key, "step": self.step, "unit": self.unit,
                "domain": [self.lo, self.hi], "top_reason": self.top_reason, "current": self.current,
                "extra": dict(self.extra), "note": self.note, "guards_requests": self.guards}


def knobs_of(model, version=None, settings: dict | None = None) -> list[Knob]:
    """Every multimodal knob `plan --fit` searches for this model and vLLM version.

    model: a name/path/ModelSpec; settings: resolved settings (Plan.settings) for the domains' tops
    (max_model_len); default: the version's defaults on a 24 GiB card. [] for a text-only model.
    The size knobs come from the family module (Family.size_knobs), the counts from the active modalities."""
    model = get_model(model)
    if model.vision is None:
        return []
    v = parse_version(version or default_version())
    if settings is None:
        settings = resolve(model, get_card("3090"), v)
    mml = int(settings["max_model_len"])
    eng = "V1" if settings.get("use_v1") else engine_of(v)
    modalities = supported_modalities(model, v, eng)
    out = _size_knobs(model, v, modalities, mml) if setting_available("mm_processor_kwargs", v) else []
    default_count = int((settings.get("limit_mm_per_prompt") or {}).get("image", 1))
    for m in modalities:
        current = (settings.get("limit_mm_per_prompt") or {}).get(m, default_count)
        out.append(Knob(f"limit_mm_per_prompt.{m}", "limit_mm_per_prompt", m, 1, m, 1, COUNT_TOP,
                        f"the search's top ({COUNT_TOP}, vLLM V1's default limit)", int(current), modalities=(m,)))
    return out


def _size_knobs(model: ModelSpec, v, modalities, mml: int) -> list[Knob]:
    """The family's item-size knob(s), from its module's size_knobs (families/*.py: MiniCPM-V max_slice_nums /
    num_frames, Qwen max_pixels, InternVL max_patches, Gemma 3 pan_and_scan_max_num_crops), at this max_model_len."""
    out: list[Knob] = []
    for k in model.family.size_knobs(v, tuple(modalities)):
        hi, why = k.top(mml)
        out.append(Knob(k.name, k.setting, k.key, k.step, k.unit, k.lo * k.step, hi, why, k.current, k.extra, k.note,
                        k.guards, k.modalities, k.word, k.frontier))
    return out


def find_knob(name: str, model, version=None, settings: dict | None = None, option: str = "--fit",
              engine_settings: tuple | None = None) -> Knob:
    """The knob called `name` (aliases: max_dynamic_patch, image, video, ...); UsageError naming `option`, the
    accepted knobs of this model and version and the engine settings `option` also takes (default: --fit's)
    otherwise."""
    knobs = knobs_of(model, version, settings)
    wanted = ALIASES.get(name, name)
    for k in knobs:
        if k.name == wanted:
            return k
    m = get_model(model)
    accepted = ", ".join(k.name for k in knobs) or "none (no vision tower)"
    v = parse_version(version or default_version())
    engines = engine_fit.FIT_SETTINGS if engine_settings is None else engine_settings
    raise UsageError(f"{option} {name}: not a multimodal knob of {m.name} in vLLM {v}; "
                     f"accepted: {accepted} (or an engine setting: {', '.join(engines)})")


def is_knob_name(name: str) -> bool:
    """Does --fit NAME mean a multimodal knob (KNOB_NAMES or an alias) rather than an engine setting?"""
    return knob_name(name) in KNOB_NAMES


def knob_name(name: str) -> str:
    """The canonical knob name behind an alias (max_dynamic_patch -> max_patches, image ->
    limit_mm_per_prompt.image); any other name unchanged. plan --fit and pytest --search share it."""
    return ALIASES.get(name, name)


def check_fit_name(name: str) -> None:
    """UsageError unless `name` is an engine setting (predict.fit.FIT_SETTINGS) or a knob some model has."""
    if name not in engine_fit.FIT_SETTINGS and not is_knob_name(name):
        raise one_of("--fit setting", name, engine_fit.FIT_SETTINGS + KNOB_NAMES)


def knob_value(knob: Knob, overrides: dict):
    """The knob's value already in `overrides` (the user's --set), or None."""
    given = overrides.get(knob.setting)
    if not isinstance(given, dict):
        return None
    if knob.setting == "mm_processor_kwargs":
        return given.get(knob.key) if knob.key in given else (given.get("images_kwargs") or {}).get(knob.key)
    modality, _, option = knob.key.partition(".")
    item = given.get(modality)
    if option:
        return item.get(option) if isinstance(item, dict) else None
    return item.get("count") if isinstance(item, dict) else item


def apply(knob: Knob, value: int, overrides: dict) -> dict:
    """`overrides` with the knob set to `value` (merged into the user's own mm_processor_kwargs /
    limit_mm_per_prompt; InternVL's crop_to_patches / Gemma 3's do_pan_and_scan switched on with it)."""
    out = dict(overrides or {})
    inner = dict(out.get(knob.setting) or {})
    if knob.setting == "mm_processor_kwargs":
        inner.update({knob.key: int(value), **dict(knob.extra)})
    else:
        modality, _, option = knob.key.partition(".")
        cur = inner.get(modality)
        if option:  # a dummy option: keep the count (999 when unset: vLLM's default with an object)
            inner[modality] = {**(cur if isinstance(cur, dict) else {} if cur is None else {"count": cur}),
                               option: int(value)}
        elif isinstance(cur, dict):
            inner[modality] = {**cur, "count": int(value)}
        else:
            inner[modality] = int(value)
    out[knob.setting] = inner
    return out


@dataclass
class KnobFit:
    """The answer for one knob: as predict.fit.Fit, values raw (pixels, counts), `label` in the user's units."""

    knob: Knob
    value: int | None
    at: Plan | None
    above: Plan | None
    above_value: int | None
    plans: int = 0
    non_monotone: list = field(default_factory=list)
    refusal: str | None = None  # vLLM's start-up refusal of the held settings (then nothing plans ok)
    failing_below: list = field(default_factory=list)  # values below `value` that do not plan ok (whole scans)
    asked: str = ""  # the name the user asked for (an alias such as max_dynamic_patch); the answer uses it

    @property
    def setting(self) -> str:
        """The knob as the user named it (`max_dynamic_patch` stays `max_dynamic_patch`; Knob.name is the canonical
        `max_patches`)."""
        return self.asked or self.knob.name

    @property
    def step(self) -> int:
        return self.knob.step

    @property
    def domain(self) -> tuple[int, int]:
        return self.knob.lo, self.knob.hi

    @property
    def top_reason(self) -> str:
        return self.knob.top_reason

    def notes(self) -> list[str]:
        """What the answer does not promise (a dummy-only knob, a switched-on companion key, the held
        skip_mm_profiling)."""
        out = [self.knob.note] if self.knob.note else []
        s = (self.at or self.above).settings if (self.at or self.above) else {}
        p = self.at or self.above
        profiled = (p.profile.get("modality") or "") if p else ""
        if p and profiled and not set(profiled.split("+")) & set(self.knob.modalities):
            out.append(f"the profile run's dummy items are {profiled} items "
                       f"({p.profile.get('tokens_per_item', 0):,} tokens each), which {self.knob.name} does not "
                       f"change: fit limit_mm_per_prompt.{profiled.split('+')[0]} or set it to 0 first")
        if s.get("skip_mm_profiling"):
            out.append("skip_mm_profiling=true is held: the profile run pushes no dummy item, so every value of "
                       f"{self.knob.name} plans the same and none is guarded at start-up")
        return out

    def to_json(self) -> dict:
        """The `plan --fit KNOB --json` shape (raw values; `label` in the user's units)."""
        return {"setting": self.setting, "knob": self.knob.to_json(), "value": self.value,
                "label": self.knob.label(self.value), "step": self.knob.step, "domain": [self.knob.lo, self.knob.hi],
                "at": engine_fit._plan_json(self.at), "above": engine_fit._plan_json(self.above),
                "above_value": self.above_value, "top_reason": None if self.above else self.knob.top_reason,
                "plans": self.plans, "non_monotone": list(self.non_monotone), "notes": self.notes(),
                "refusal": self.refusal, "failing_below": list(self.failing_below)}


class _KnobPlanner:
    """plan() with the knob moved and everything else held; vLLM's refusals make a value not ok."""

    def __init__(self, knob: Knob, model: ModelSpec, card, version, entrypoint, overrides, coefficients,
                 exact=None):
        self.knob, self.model, self.card = knob, model, card
        self.version, self.entrypoint, self.coefficients = version, entrypoint, coefficients
        self.overrides = dict(overrides or {})
        self.exact = exact  # vLLM's own figures for the base settings (predict.exact), carried where they hold
        self.cache: dict = {}

    def __call__(self, setting: str, value) -> Plan:
        if value not in self.cache:
            given = apply(self.knob, value, self.overrides)
            p = plan(self.model, self.card, self.version, self.entrypoint, given, self.coefficients)
            exact = carry(self.exact, p.settings)
            if exact is not None:  # the same figures plain plan uses at this value
                p = plan(self.model, self.card, self.version, self.entrypoint, given, self.coefficients, exact)
            self.cache[value] = p
        return self.cache[value]

    def refusal(self, value) -> str | None:
        p = self(self.knob.name, value)
        return vllm_refusal(p.settings, p.model)

    def ok(self, setting: str, value) -> bool:
        return self(setting, value).verdict == "ok" and self.refusal(value) is None


def check_knob_fit(knob: Knob, overrides: dict) -> None:
    """UsageError when --set already fixes the knob the fit chooses."""
    given = knob_value(knob, overrides or {})
    if given is not None:
        raise UsageError(f"--fit {knob.name} and --set {knob.setting}={json.dumps(overrides[knob.setting])} "
                         f"together: the fit chooses {knob.name}; drop it from the --set")


def check_modality_on(knob: Knob, name: str, settings: dict) -> None:
    """UsageError when every modality an item-size knob shapes is off (limit_mm_per_prompt 0): no dummy item of it
    is profiled and vLLM accepts none in a request (vllm 0.32 multimodal/processing/context.py:621 "At most {limit}
    {modality}(s)"), so every value would plan alike and the answer would be a number that changes nothing."""
    if knob.name.startswith("limit_mm_per_prompt."):
        return  # the counts themselves: fitting one is how a modality is switched on
    limits = settings.get("limit_mm_per_prompt") or {}
    if knob.modalities and all(not limits.get(m) for m in knob.modalities):
        off = " and ".join(knob.modalities)
        raise UsageError(f"--fit {name}: {off} {'is' if len(knob.modalities) == 1 else 'are'} off "
                         f"(limit_mm_per_prompt={json.dumps(limits)}), so nothing {name} sizes is profiled or "
                         f"accepted; accepted: a limit_mm_per_prompt above 0 for {' or '.join(knob.modalities)}, or "
                         "another --fit")


def fit_knob(name: str, model="minicpm-v-2_6", card="3090", version=None, entrypoint="llm", overrides=None,
             coefficients=None, exact=None) -> KnobFit:
    """The largest value of knob `name` whose plan is ok with `overrides` held (raw units, a multiple of the
    knob's step), the plan there and one step above. `exact`: vLLM's own figures for the base settings
    (predict.exact; plan --fit asks them when the planned version is the installed one), used at each value where
    they hold, as plain plan uses them. UsageError: unknown knob for this model/version, the knob also in
    `overrides`, or bad model/card/version/settings. Pure; ~20-40 plans (~0.2 ms each)."""
    model, card = get_model(model), get_card(card)
    version = str(parse_version(version or default_version()))
    overrides = dict(overrides or {})
    base = plan(model, card, version, entrypoint, overrides, coefficients)  # bad input fails here, once
    knob = find_knob(name, model, version, base.settings)
    check_knob_fit(knob, overrides)
    check_modality_on(knob, name, base.settings)
    planner = _KnobPlanner(knob, model, card, version, entrypoint, overrides, coefficients, exact)
    refusal = vllm_refusal(base.settings, model)
    failing_below: list = []
    if (knob.hi - knob.lo) // knob.step + 1 <= SCAN_ALL:
        value, turns, failing_below = _scan_all(planner, knob)
    else:
        value, turns = engine_fit._ladder_bisect(planner, knob.name, knob.lo, knob.hi, knob.step)
    at = planner(knob.name, value) if value is not None else None
    above_value = knob.lo if value is None else (value + knob.step if value + knob.step <= knob.hi else None)
    above = planner(knob.name, above_value) if above_value is not None else None
    return KnobFit(knob, value, at, above, above_value, len(planner.cache), turns, refusal, failing_below, name)


def _scan_all(planner: _KnobPlanner, knob: Knob) -> tuple[int | None, list, list]:
    """(largest ok value, values where the verdict turns ok again, failing values below the answer) over every
    value of a small domain (MiniCPM-V's 1..9 slices: V1 profiles encoder budget // tokens-per-item items, so 7
    slices can fail where 8 fits)."""
    values = list(range(knob.lo, knob.hi + 1, knob.step))
    oks = [planner.ok(knob.name, v) for v in values]
    turns = [values[i] for i in range(1, len(values)) if oks[i] and not oks[i - 1] and any(oks[:i])]
    best = max((v for v, ok in zip(values, oks) if ok), default=None)
    below = [v for v, ok in zip(values, oks) if not ok and best is not None and v < best]
    return best, turns, below


def frontier_values(knob: Knob) -> list[int]:
    """The knob values a frontier walks (raw), inside the knob's domain."""
    units = knob.frontier or COUNT_FRONTIER
    return [u * knob.step for u in units if knob.lo <= u * knob.step <= knob.hi] or [knob.lo]


def knob_frontier(fitted: str, ladder_setting: str, model="minicpm-v-2_6", card="3090", version=None,
                  entrypoint="llm", overrides=None) -> list[tuple]:
    """[(ladder value, fit), ...]: one of the two names is a knob, the other an engine setting of
    predict.fit.FIT_SETTINGS. fitted=max_model_len, ladder=max_pixels: the largest max_model_len for each
    max_pixels of its frontier (a predict.fit.Fit each); fitted=max_pixels, ladder=max_model_len: the largest
    max_pixels for each max_model_len of predict.fit.FRONTIER_LADDERS (a KnobFit each). UsageError for two knobs,
    two engine settings (predict.fit.frontier answers those), an unknown name or a conflicting --set."""
    model, overrides = get_model(model), dict(overrides or {})
    version = str(parse_version(version or default_version()))
    knob_names = [n for n in (fitted, ladder_setting) if is_knob_name(n)]
    if len(knob_names) != 1:
        raise UsageError(f"--fit {fitted},{ladder_setting}: a knob frontier pairs one engine setting "
                         f"({', '.join(engine_fit.FIT_SETTINGS)}) with one multimodal knob")
    if ladder_setting in overrides:
        raise UsageError(f"--fit {fitted},{ladder_setting} and --set {ladder_setting}=... together: the frontier "
                         f"walks {ladder_setting} over its ladder; drop the --set")
    if is_knob_name(fitted):
        engine_fit.check_fit(ladder_setting, {})
        return [(v, fit_knob(fitted, model, card, version, entrypoint, {**overrides, ladder_setting: v}))
                for v in engine_fit.FRONTIER_LADDERS[ladder_setting]]
    base = plan(model, card, version, entrypoint, overrides)
    knob = find_knob(ladder_setting, model, version, base.settings)
    check_knob_fit(knob, overrides)
    check_modality_on(knob, ladder_setting, base.settings)  # else every frontier row plans alike
    engine_fit.check_fit(fitted, overrides)
    return [(v, engine_fit.fit(fitted, model, card, version, entrypoint, apply(knob, v, overrides)))
            for v in frontier_values(knob)]


def without_knob(knob: Knob, overrides: dict) -> dict:
    """`overrides` with the knob's own key removed (flat and images_kwargs), so a fit can choose it."""
    out = dict(overrides or {})
    inner = dict(out.get(knob.setting) or {})
    inner.pop(knob.key, None)
    if isinstance(inner.get("images_kwargs"), dict):
        inner["images_kwargs"] = {k: v for k, v in inner["images_kwargs"].items() if k != knob.key}
    out[knob.setting] = inner
    return out


def size_knob_fix(p: Plan) -> KnobFit | None:
    """For explain: the family's item-size knob (one that guards requests: not num_frames) fitted with p's other
    settings held, when the largest value that plans ok is below the value in effect; else None (no such knob, a
    CPU card, nothing fits, or the current value already fits)."""
    if p.card.is_cpu or p.model.vision is None:
        return None
    knobs = [k for k in knobs_of(p.model, p.vllm_version, p.settings)
             if k.guards and k.setting == "mm_processor_kwargs"]
    if not knobs:
        return None
    k = knobs[0]
    try:
        f = fit_knob(k.name, p.model, p.card, p.vllm_version, p.entrypoint, without_knob(k, p.overrides),
                     p.coefficients)
    except UsageError:
        return None
    current = knob_value(k, p.overrides) or k.current
    if f.value is None or (current is not None and f.value >= int(current)):
        return None
    return f


def units_phrase(setting: str, value, p: Plan) -> str:
    """` (1280 x 28 x 28 px: at most 1,280 tokens per image)`-style reading of a knob inside `value` for
    explain's sentences; "" when `value` holds no knob of this model."""
    if setting not in ("mm_processor_kwargs",) or not isinstance(value, dict) or p.model.vision is None:
        return ""
    for k in knobs_of(p.model, p.vllm_version, p.settings):
        if k.setting == setting and isinstance(value.get(k.key), int):
            label = k.label(value[k.key])
            return f" ({label.split(' (', 1)[1]}" if "(" in label else f" ({label})"
    return ""


def item_image_size(knob: Knob, value: int, model) -> tuple[int, int] | None:
    """(width, height) of a real image that fills the knob at `value`: the shape vLLM's own dummy item takes
    (Qwen: the factor-multiple image with the most features under max_pixels, qwen2_vl.py
    get_image_size_with_most_features; MiniCPM-V 448 x 448n, minicpmv.py:771-774; InternVL a 1 x n tile strip;
    Gemma 3 native x native*n, gemma3_mm.py). None for knobs a one-image request cannot fill (counts, frames):
    the search's request then carries the default image."""
    model = get_model(model)
    if knob.setting != "mm_processor_kwargs" or "image" not in knob.modalities:
        return None
    g = model.family.geometry({knob.setting: {**dict(knob.extra), knob.key: int(value)}}, "image", default_version())
    return g.width, g.height
