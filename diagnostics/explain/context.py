"""What a log record lets us know besides its own lines: the model, card and vLLM version it came from, a plan
for its settings (when the model and card are known), and the helpers every log-side answer shares."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from diagnostics import cards, models
from diagnostics.errors import UsageError
from diagnostics.explain.ladders import SEARCHED, ladder
from diagnostics.explain.model import Explanation
from diagnostics.explain.search import Planner
from diagnostics.explain.words import breakdown, fix_words
from diagnostics.predict import estimator
from diagnostics.settings import KNOWN_SETTINGS, check_setting, setting_available, vllm_refusal
from diagnostics.versions import KNOWN_VERSIONS, NEWEST, default_engine, parse_version

PRINTED = ("weights_gib", "activation_peak_gib", "kv_cache_gib", "oom_tried_gib", "estimated_max_model_len",
           "kv_cache_tokens", "gpu_blocks", "free_gib", "requested_gib", "budget_gib")


def record_model(record, model):
    """The ModelSpec: `model` (a name or directory) when given, else the stored or built-in model whose hub id, short
    name or local copy the log names (the engine config's model / tokenizer / served_model_name, its evidence and
    error lines: `Qwen/Qwen2.5-VL-7B-Instruct`, `/models/Qwen2.5-VL-7B-Instruct`, `openbmb/MiniCPM-V-2_6`)."""
    if model is not None:
        return models.get_model(model)
    settings = record.settings or {}
    texts = [settings.get(k) for k in ("model", "tokenizer", "served_model_name")]
    texts += list(record.evidence) + [record.error_line]
    for text in texts:
        for token in re.split(r"[\s'\",=\[\]()]+", str(text or "")):
            token = token.rstrip(".:;")
            if not token:
                continue
            if token.lower().replace(".", "_").endswith(("minicpm-v-2_6", "minicpm_v_2_6")):
                return models.get_model("minicpm-v-2_6")
            name = models.stored_name(token, paths="/" in token)
            if name is not None:
                return models.get_model(name)
    return None


def record_card(record, card):
    """The Card: `card` when given; the CPU pseudo-card for a CPU-backend log; else the built-in card whose total
    is nearest the total the log printed; None when the log printed none."""
    if card is not None:
        return cards.get_card(card)
    err = str(record.error_line or "")
    if (record.platform or "") == "cpu" or "on node 0" in err or "CPU backend" in err:
        return cards.get_card(cards.CPU_CARD)
    total = (record.numbers or {}).get("gpu_total_gib") or (record.numbers or {}).get("oom_total_gib")
    if total:
        gpu = [c for c in cards.list_cards() if not c.is_cpu]
        return min(gpu, key=lambda c: abs(c.total_gib - float(total)))
    return None


def record_version(record) -> str:
    """The log's vLLM version as the planner reads it; when missing or out of range the newest known, or for a
    log that shows the V0 engine the newest known whose default engine is V0 (a V1 release would plan a V1
    start the log did not make)."""
    newest = NEWEST_V0 if record.engine == "V0" else NEWEST
    try:
        return str(parse_version(record.vllm_version)) if record.vllm_version else newest
    except UsageError:
        return newest


NEWEST_V0 = max((v for v in KNOWN_VERSIONS if default_engine(v) == "V0"), key=parse_version)


def _log_overrides(record, version: str) -> dict:
    overrides = {}
    for k, v in (record.settings or {}).items():
        if k not in KNOWN_SETTINGS or v is None:
            continue
        try:
            if setting_available(k, version):
                overrides[k] = check_setting(k, v)
        except UsageError:
            continue  # a value the log printed in a form we do not plan with (e.g. an odd dtype): leave default
    if record.engine == "V0" and parse_version(version) >= (0, 7, 0) and "use_v1" not in overrides:
        overrides["use_v1"] = False
    return overrides


def record_plan(record, model_spec, card, version: str, coefficients=None):
    """A plan for the settings the log echoed (None without a model, a GPU card, or a plan the estimator makes);
    `coefficients`: Coefficients or a Calibration (default: the built-in coefficients)."""
    if model_spec is None or card is None or card.is_cpu:
        return None
    overrides = _log_overrides(record, version)
    for attempt in (overrides, {k: v for k, v in overrides.items() if k != "use_v1"}):
        try:
            p = estimator.plan(model_spec, card, version, "llm", overrides=attempt, coefficients=coefficients)
        except (UsageError, ValueError, TypeError, KeyError):
            continue
        # settings vLLM refuses for this model (e.g. another model's max_model_len): no start to predict
        return None if vllm_refusal(p.settings, p.model) else p
    return None


@dataclass
class Ctx:
    """One log record with what we could add to it: numbers `n`, version, engine, model, card and plan."""

    record: object
    n: dict
    version: str
    engine: str
    model: object
    card: object
    plan: object

    @property
    def is_cpu(self) -> bool:
        err = str(self.record.error_line or "")
        return ((self.record.platform or "") == "cpu" or (self.card is not None and self.card.is_cpu)
                or "on node 0" in err or "CPU backend" in err)

    @property
    def settings(self) -> dict:
        return self.record.settings or {}

    def setting(self, key, numbers_key=None):
        """What the log says (numbers first, then echoed settings), else this version's default from the plan."""
        if numbers_key and self.n.get(numbers_key) is not None:
            return self.n[numbers_key]
        v = self.settings.get(key)
        if v is None and self.plan is not None:
            v = self.plan.settings.get(key)
        return v

    def total_gib(self):
        t = self.n.get("gpu_total_gib", self.n.get("oom_total_gib"))
        if t is None and self.card is not None and not self.card.is_cpu:
            t = self.card.total_gib
        return t

    def kv_bytes_per_token(self) -> float:
        return float(self.model.kv_bytes_per_token()) if self.model is not None else 0.0

    def has_kv_bytes_knob(self) -> bool:
        return self.is_cpu or (self.engine == "V1" and parse_version(self.version) >= (0, 10, 2))

    def basis(self) -> str:
        printed = any(k in self.n for k in PRINTED)
        if printed and self.plan is not None:
            return "log+estimate"
        return "log" if printed else ("estimate" if self.plan is not None else "rules")

    def explanation(self, culprits, head: str, fix: dict) -> Explanation:
        """The answer: `head`, vLLM's own figures, the smallest fix."""
        text = " ".join(x for x in (head, breakdown(self.n)) if x)
        if fix:
            text += " Smallest fix: " + fix_words(fix) + "."
        return Explanation(self.record.outcome, self.record.phase or "unknown", culprits, text, fix, self.basis())


def printed_budget(n: dict, total, util) -> float:
    """total x util as vLLM printed it (budget / requested line) when it did, else computed."""
    for key in ("budget_gib", "requested_gib"):
        if n.get(key) is not None:
            return float(n[key])
    return float(total) * float(util or 0.0)


def ceil2(x: float) -> float:
    return math.ceil(round(x * 100, 6)) / 100


def floor2(x: float) -> float:
    return math.floor(round(x * 100, 6)) / 100


def estimated_effects(plan, outcome: str, metric) -> list[tuple]:
    """(setting, value, steps, GiB the estimator says the change frees, plan) for every ladder value, nearest first."""
    if plan is None:
        return []
    planner = Planner(plan)
    out = []
    for setting in SEARCHED:
        if setting in ("gpu_memory_utilization", "kv_cache_memory_bytes"):
            continue  # handled from the log's own figures
        for i, value in enumerate(ladder(setting, plan, outcome), start=1):
            p = planner({setting: value})
            if p is not None:
                out.append((setting, value, i, metric(plan) - metric(p), p))
    return out


def first_enough(effects, need_gib: float, outcome: str | None = None) -> list[tuple]:
    """Per setting, the nearest value whose estimated saving covers `need_gib` (else the biggest saving):
    (setting, value, steps, saved GiB, enough, plan). With `outcome` (the failure being fixed), a value is enough
    only when its re-plan also starts through every later phase: verdict "ok", or still `outcome` (the log, not
    the estimator, sized that phase) -- never a later failure such as kv_too_small."""
    by_setting: dict[str, tuple] = {}
    for setting, value, steps, saved, p in effects:
        cur = by_setting.get(setting)
        enough = saved >= need_gib and (outcome is None or p.verdict in ("ok", outcome))
        if cur is None or (enough and not cur[4]) or (not cur[4] and saved > cur[3] + 1e-6):
            by_setting[setting] = (setting, value, steps, saved, enough, p)
    return [v for v in by_setting.values() if v[3] > 0.01]
