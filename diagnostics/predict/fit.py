"""The largest value of one setting whose plan is `ok`, the others held as given (`plan --fit`), and the frontier
of two settings (`plan --fit max_model_len,max_num_seqs`).

Pure and fast: a search over `predict.estimator.plan()` (~0.15 ms a call), no GPU, no vLLM.

How the search goes, per setting (`DOMAINS`):
* max_model_len, max_num_batched_tokens, max_num_seqs (integers, "more is heavier"): a geometric ladder
  lo, 2 lo, 4 lo, ... up to the domain's top (for max_model_len the model's derived max_model_len, which vLLM
  refuses to exceed without an override), then bisection at the step resolution between the highest ladder
  point that is ok and the ladder point after it. Lengths are multiples of the KV block size (`block_size`,
  16 by default), as vLLM's own `--max-model-len auto` rounds.
* gpu_memory_utilization (0.01 .. 1.00 in steps of 0.01) is not monotone: too little leaves no room for the KV
  cache, too much fails V1's free-memory check at start. Every 0.05 is planned, then the 0.01 steps inside each 0.05
  interval whose ends differ in verdict (20-30 plans): an ok window narrower than 0.05 is found where the verdict
  changes; one between two 0.05 steps with the same failing verdict would be missed.

Verdicts are not always monotone in a setting (the V0 max_num_batched_tokens floor, the encoder budget that
follows max_num_batched_tokens in V1). The answer is therefore always a *local* boundary: `value` plans ok and
`value + step` does not (or `value` is the domain's top). The ladder picks the highest ok region it lands in; a
ladder that goes ok -> not ok -> ok again is reported in `Fit.non_monotone` (the values where it turned), so an
answer that may have a larger ok island above a failing gap says so instead of hiding it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from diagnostics.cards import get_card
from diagnostics.errors import UsageError, one_of
from diagnostics.models import get_model
from diagnostics.predict.estimator import Plan, plan
from diagnostics.predict.exact import carry
from diagnostics.settings import dated_default, dtype_for_card, vllm_refusal
from diagnostics.versions import default_version

UTIL_STEP = 0.01
SEQS_TOP = 4096
MBT_TOP = 262_144
FIT_SETTINGS = ("max_model_len", "max_num_seqs", "max_num_batched_tokens", "gpu_memory_utilization")
# the ladders of the second setting of a frontier (`--fit max_model_len,max_num_seqs`)
FRONTIER_LADDERS: dict[str, tuple] = {
    "max_num_seqs": (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
    "max_model_len": (1024, 2048, 4096, 8192, 16384, 32768),
    "max_num_batched_tokens": (512, 1024, 2048, 4096, 8192, 16384),
    "gpu_memory_utilization": (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.92, 0.95, 1.0),
}


@dataclass
class Fit:
    """The answer for one setting. `value` None: nothing in the domain plans ok (then `above` is the plan at the
    domain's bottom, which says why). `at` is the plan at `value`; `above` the plan at `value + step` (None when
    `value` is the domain's top, `top_reason` then says why the search stops there)."""

    setting: str
    value: int | float | None
    step: int | float
    at: Plan | None
    above: Plan | None
    domain: tuple
    top_reason: str
    plans: int = 0
    non_monotone: list = field(default_factory=list)
    floor: str | None = None  # why the domain starts above one block (max_model_len: one image prompt must fit)
    refused_everywhere: bool = False  # nothing fits and vLLM refuses every value planned: the held settings' fault

    def to_json(self) -> dict:
        """The `plan --fit --json` shape of one fit (GiB, tokens)."""
        return {
            "setting": self.setting, "value": self.value, "step": self.step, "domain": list(self.domain),
            "at": _plan_json(self.at), "above": _plan_json(self.above),
            "above_value": self.above.settings[self.setting] if self.above else None,
            "top_reason": None if self.above else self.top_reason,
            "plans": self.plans, "non_monotone": list(self.non_monotone), "floor": self.floor,
            "refused_everywhere": self.refused_everywhere,
        }


def _plan_json(p: Plan | None) -> dict | None:
    if p is None:
        return None
    doc = p.to_json()
    doc["failing_phase"] = p.failing_phase
    doc["max_concurrency"] = max_concurrency(p)
    return doc


def max_concurrency(p: Plan) -> float | None:
    """KV tokens / max_model_len: how many full-length requests the KV cache holds at once (vLLM prints it as
    "Maximum concurrency for N tokens per request"). None when the KV size is unknown."""
    if not p.kv_cache_tokens or p.kv_cache_tokens <= 0:
        return None if p.kv_cache_tokens is None else 0.0
    return round(p.kv_cache_tokens / int(p.settings["max_model_len"]), 2)


def check_fit(setting: str, overrides) -> None:
    """UsageError unless `setting` is one of FIT_SETTINGS and not also fixed by `overrides`."""
    if setting not in FIT_SETTINGS:
        raise one_of("--fit setting", setting, FIT_SETTINGS)
    if setting in (overrides or {}):
        raise UsageError(f"--fit {setting} and --set {setting}=... together: the fit chooses {setting}; "
                         "drop one of them")


class _Planner:
    """plan() with everything but the searched setting fixed; counts its calls and remembers each answer."""

    def __init__(self, model, card, version, entrypoint, overrides, coefficients, exact=None):
        self.model, self.card = get_model(model), get_card(card)
        self.version, self.entrypoint, self.coefficients = version, entrypoint, coefficients
        self.overrides = dict(overrides or {})
        self.exact = exact  # vLLM's own figures (predict.exact), carried to each value where they hold
        self.cache: dict = {}

    def __call__(self, setting: str, value) -> Plan:
        if value not in self.cache:
            given = {**self.overrides, setting: value}
            p = plan(self.model, self.card, self.version, self.entrypoint, given, self.coefficients)
            exact = carry(self.exact, p.settings)
            if exact is not None:
                p = plan(self.model, self.card, self.version, self.entrypoint, given, self.coefficients, exact)
            self.cache[value] = p
        return self.cache[value]

    def ok(self, setting: str, value) -> bool:
        """Plans ok and vLLM would start it: a value vLLM refuses at start-up (refusal()) is never an answer."""
        p = self(setting, value)
        return p.verdict == "ok" and refusal(p) is None


def refusal(p: Plan) -> str | None:
    """What vLLM raises at start-up for the plan's resolved settings, or None: settings.vllm_refusal
    (max_num_batched_tokens below max_model_len without chunked prefill, below max_num_seqs, max_model_len above
    the derived length, heads not divisible by tensor_parallel_size) and bfloat16 on a card below compute
    capability 8.0 (settings.dtype_for_card). Plain `plan`, `--fit` and the tables all apply this one rule."""
    why = vllm_refusal(p.settings, p.model)
    if why is None and dtype_for_card(p.settings, p.card)[1]:
        why = (f"Bfloat16 is only supported on GPUs with compute capability of at least 8.0 ({p.card.label} is "
               f"{p.card.arch}); use --set dtype=float16 (same bytes per parameter)")
    return why


def image_floor(planner: _Planner, top: int, block: int) -> tuple[int, str | None]:
    """(lowest max_model_len, why) when images are accepted (limit_mm_per_prompt.image > 0): the largest dummy image
    item's tokens + 1, rounded up to the block size. vLLM rejects a prompt longer than max_model_len, and one as long
    when it generates (at least one output token; vllm 0.32 v1/engine/input_processor.py:574-600, hence the + 1), so
    below that no prompt with the largest image the held settings accept can be served, and a fit there (MiniCPM-V-2_6
    on a 4090 answered 16 tokens) would be a text-only answer with an image-sized profile. A floor, not a note: the
    fit's question is what to set for the images the settings accept. (block, None) when no image is accepted."""
    p = planner("max_model_len", top)
    if not (p.settings.get("limit_mm_per_prompt") or {}).get("image"):
        return block, None
    prof = p.profile
    tokens = (prof.get("tokens_per_modality") or {}).get("image") or (
        prof.get("tokens_per_item") if prof.get("modality") == "image" else None)
    if not tokens:
        return block, None
    lo = min(-(-(tokens + 1) // block) * block, top)
    return lo, (f"max_model_len starts at {lo:,}: one largest image item is {tokens:,} tokens, and vLLM rejects a "
                f"prompt longer than max_model_len; for a text-only answer --set limit_mm_per_prompt="
                '\'{"image":0}\', for smaller images fit both (--fit max_model_len,<image size knob>)')


def domain(setting: str, planner: _Planner) -> tuple[int | float, int | float, int | float, str]:
    """(lo, hi, step, why the search stops at hi) for `setting`."""
    if setting == "gpu_memory_utilization":
        return UTIL_STEP, 1.0, UTIL_STEP, "gpu_memory_utilization cannot exceed 1.0"
    block = int(planner.overrides.get("block_size") or dated_default("block_size", planner.version or default_version()))
    if setting == "max_model_len":
        top = planner.model.derived_max_model_len // block * block
        return block, top, block, f"the model's derived max_model_len ({planner.model.derived_max_model_len})"
    if setting == "max_num_batched_tokens":
        return block, MBT_TOP, block, f"the search's top ({MBT_TOP} tokens)"
    return 1, SEQS_TOP, 1, f"the search's top ({SEQS_TOP} sequences)"


def fit(setting: str, model="minicpm-v-2_6", card="3090", version=None, entrypoint="llm", overrides=None,
        coefficients=None, exact=None) -> Fit:
    """The largest value of `setting` (one of FIT_SETTINGS) whose plan is ok with `overrides` held.

    Lengths come out as multiples of the block size, utilization in steps of 0.01. Raises UsageError for an
    unknown setting or bad model/card/version. Pure; about 20-30 plans for an integer setting, 100 for utilization.
    exact: vLLM's own figures for the base settings (predict.exact), used at each value where they still hold.
    """
    check_fit(setting, overrides)
    overrides = dict(overrides or {})
    planner = _Planner(model, card, version, entrypoint, overrides, coefficients, exact)
    lo, hi, step, top_reason = domain(setting, planner)
    floor = None
    if setting == "max_model_len":
        lo, floor = image_floor(planner, int(hi), int(step))
    if setting == "gpu_memory_utilization":
        value, turns = _scan_util(planner, setting)
    else:
        value, turns = _ladder_bisect(planner, setting, int(lo), int(hi), int(step))
    at = planner(setting, value) if value is not None else None
    if value is None:
        above = planner(setting, lo)
    else:
        nxt = round(value + step, 2) if isinstance(step, float) else value + step
        above = planner(setting, nxt) if nxt <= hi + 1e-9 else None
    refused = value is None and all(refusal(p) for p in planner.cache.values())
    return Fit(setting, value, step, at, above, (lo, hi), top_reason, len(planner.cache), turns, floor, refused)


def _scan_util(planner: _Planner, setting: str) -> tuple[float | None, list]:
    """Every 0.05 from 0.05 to 1.00; then every 0.01 step inside each 0.05 interval whose two ends differ in
    verdict (an ok window narrower than 0.05 sits only where the verdict changes, e.g. kv_too_small below and
    insufficient_free_memory above) and above the highest ok 0.05 step."""
    coarse = [round(i * 0.05, 2) for i in range(1, 21)]
    verdicts = [planner(setting, v).verdict for v in coarse]
    oks = [v == "ok" for v in verdicts]
    turns = [coarse[i] for i in range(1, len(coarse)) if oks[i] and not oks[i - 1] and any(oks[:i])]
    best = max((v for v, ok in zip(coarse, oks) if ok), default=None)
    for i in range(len(coarse) - 1):
        if verdicts[i] == verdicts[i + 1] or (best is not None and coarse[i] < best):
            continue
        for k in range(1, 5):
            v = round(coarse[i] + k * UTIL_STEP, 2)
            if planner.ok(setting, v):
                best = v if best is None else max(best, v)
    return best, turns


def _ladder(lo: int, hi: int) -> list[int]:
    out, v = [], lo
    while v < hi:
        out.append(v)
        v *= 2
    return out + [hi]


def _ladder_bisect(planner: _Planner, setting: str, lo: int, hi: int, step: int) -> tuple[int | None, list]:
    """Highest ok ladder point, then bisection to `step` between it and the next (failing) ladder point."""
    ladder = _ladder(lo, hi)
    oks = [planner.ok(setting, v) for v in ladder]
    turns = [ladder[i] for i in range(1, len(ladder)) if oks[i] and not oks[i - 1] and any(oks[:i])]
    if not any(oks):
        return None, turns
    i = max(k for k, ok in enumerate(oks) if ok)
    if i == len(ladder) - 1:
        return hi, turns
    good, bad = ladder[i], ladder[i + 1]  # ok at good, not ok at bad; multiples of step (bad may be hi)
    while bad - good > step:
        mid = (good + bad) // 2 // step * step
        if mid <= good:
            break
        if planner.ok(setting, mid):
            good = mid
        else:
            bad = mid
    return good, turns


def frontier(fitted: str, ladder_setting: str, model="minicpm-v-2_6", card="3090", version=None,
             entrypoint="llm", overrides=None, ladder=None) -> list[tuple]:
    """[(ladder value, Fit of `fitted` with `ladder_setting` held at that value), ...] over FRONTIER_LADDERS
    (or `ladder`). E.g. fitted="max_model_len", ladder_setting="max_num_seqs": the largest max_model_len for each
    max_num_seqs in 1, 2, 4, ... 1024."""
    if ladder_setting not in FIT_SETTINGS:
        raise one_of("--fit setting", ladder_setting, FIT_SETTINGS)
    if fitted == ladder_setting:
        raise UsageError(f"--fit {fitted},{ladder_setting}: name two different settings")
    overrides = dict(overrides or {})
    if ladder_setting in overrides:
        raise UsageError(f"--fit {fitted},{ladder_setting} and --set {ladder_setting}=... together: the frontier "
                         f"walks {ladder_setting} over its ladder; drop the --set")
    values = ladder or FRONTIER_LADDERS[ladder_setting]
    return [(v, fit(fitted, model, card, version, entrypoint, {**overrides, ladder_setting: v}))
            for v in values]
