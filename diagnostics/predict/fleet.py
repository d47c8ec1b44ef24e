"""One settings set across many cards or vLLM versions (`plan --card all`, `--vllm 0.6.3,0.8.4,0.32.0`): which
cards start it, which versions start it on my card. Pure; one plan() (or one fit) per (card, version).
"""

from __future__ import annotations

from dataclasses import dataclass

from diagnostics.cards import CPU_CARD, Card, get_card, list_cards, load_cards_toml
from diagnostics.errors import UsageError
from diagnostics.predict.estimator import Plan, plan
from diagnostics.predict.fit import Fit, check_fit, fit, max_concurrency, refusal
from diagnostics.versions import KNOWN_VERSIONS, default_version, parse_version, parse_whole_version

ALL = "all"


def expand_cards(text: str | None, cards_file=None) -> list[Card]:
    """"3090" -> [3090]; "3090,4090,l40s" -> those; "all" -> every built-in GPU card (not the cpu pseudo-card, whose
    total is known only at run time) plus those of `cards_file`. UsageError names an unknown card."""
    if text is not None and not text.strip():
        raise UsageError("--card '' names no card; accepted: a card name, a comma list, or all")
    text = (text or "3090").strip().lower()
    if text == ALL:
        cards = [c for c in list_cards() if c.name != CPU_CARD]
        if cards_file:
            extra = load_cards_toml(cards_file)
            cards = [extra.get(c.name, c) for c in cards] + [c for n, c in extra.items()
                                                             if n not in {k.name for k in cards}]
        return cards
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UsageError(f"--card {text!r} names no card; accepted: a card name, a comma list, or all")
    _once(names, "--card", text)
    return [get_card(n, extra_cards_file=cards_file) for n in names]


def _once(names: list[str], option: str, text: str) -> None:
    """UsageError for `all` inside a list or a name twice (a table would show the same row twice)."""
    if ALL in (n.lower() for n in names) and len(names) > 1:
        raise UsageError(f"{option} {text!r}: all stands alone; accepted: all, or a comma list of names")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UsageError(f"{option} {text!r} names {', '.join(twice)} twice; accepted: each once")


def expand_versions(text: str | None) -> list[str]:
    """None -> [the installed vLLM, else the newest known]; "all" -> every release we have rules for
    (versions.KNOWN_VERSIONS, oldest first); "0.6.3,0.8.4" -> those (each range-checked: UsageError);
    "0.20.0..0.34.0" -> both ends and every known release between them (a comma list may mix both forms)."""
    if text is None:
        return [default_version()]
    text = text.strip()
    if text.lower() == ALL:
        return list(KNOWN_VERSIONS)
    names = [n.strip() for n in text.split(",")]
    if not any(names):
        raise UsageError(f"--vllm {text!r} names no version; accepted: a version, a comma list, A..B, or all")
    if not all(names):
        raise UsageError(f"--vllm {text!r} has an empty entry; accepted: versions separated by single commas")
    _once(names, "--vllm", text)
    out: list[str] = []
    for name in names:
        for v in (_release_range(name) if ".." in name else [str(parse_whole_version(name))]):
            if v not in out:
                out.append(v)
    return out


def _release_range(text: str) -> list[str]:
    lo_text, _, hi_text = text.partition("..")
    if not lo_text.strip() or not hi_text.strip():
        raise UsageError(f"--vllm {text!r}: a range needs both ends; accepted: OLDER..NEWER, e.g. 0.20.0..0.34.0")
    if ".." in hi_text:
        raise UsageError(f"--vllm {text!r}: a range has two ends; accepted: OLDER..NEWER, e.g. 0.20.0..0.34.0")
    lo, hi = parse_whole_version(lo_text), parse_whole_version(hi_text)
    if lo > hi:
        raise UsageError(f"--vllm {text!r} runs backwards; accepted: OLDER..NEWER, e.g. 0.20.0..0.34.0")
    inner = [k for k in KNOWN_VERSIONS if lo < parse_version(k) < hi]
    return [str(lo)] + inner + ([str(hi)] if hi != lo else [])


@dataclass
class Row:
    """One (card, version) of a fleet table. `plan` is None (and `error` says why) when the settings cannot be
    planned there, e.g. kv_cache_memory_bytes before vLLM 0.10.2. With a fit, `fit` holds it and `plan` is the
    plan at the fitted value."""

    card: Card
    version: str
    plan: Plan | None
    fit: Fit | None = None
    error: str | None = None
    refusal: str | None = None  # what vLLM raises at start-up for these settings there (its words), if anything

    def to_json(self) -> dict:
        p = self.plan
        doc = {"card": self.card.name, "total_gib": self.card.total_gib, "vllm_version": self.version,
               "verdict": p.verdict if p else "n/a", "failing_phase": p.failing_phase if p else None,
               "peak_gib": round(p.peak_gib, 2) if p else None,
               "kv_cache_tokens": p.kv_cache_tokens if p else None,
               "max_concurrency": max_concurrency(p) if p else None, "error": self.error}
        if self.fit is not None:
            above = self.fit.above
            doc.update({"fit": self.fit.setting, "value": self.fit.value,
                        "above_verdict": above.verdict if above else None})
            if hasattr(self.fit, "knob"):  # a multimodal knob (predict.mm_fit.KnobFit): the value in its units
                doc["label"] = self.fit.knob.label(self.fit.value)
        return doc


def fleet(model, cards: list[Card], versions: list[str], entrypoint="llm", overrides=None,
          fit_setting: str | None = None, coefficients=None) -> list[Row]:
    """A Row per (card, version), cards outer. With `fit_setting`, each row is that setting's fit there.
    `coefficients`: a calibration (predict/coefficients.py) or None for the built-in ones. Settings vLLM refuses
    at start-up there (fit.refusal) give a row without a plan, its `error` in vLLM's words, as plain `plan` says."""
    from diagnostics.predict.mm_fit import fit_knob, is_knob_name  # a multimodal knob: --fit max_pixels

    knob = bool(fit_setting) and is_knob_name(fit_setting)
    if fit_setting and not knob:
        check_fit(fit_setting, overrides)
    rows = []
    for card in cards:
        for version in versions:
            try:
                if fit_setting:
                    f = (fit_knob if knob else fit)(fit_setting, model, card, version, entrypoint, overrides,
                                                    coefficients)
                    held = f.refusal if knob else refusal(f.above) if f.refused_everywhere else None
                    why = held if f.at is None and f.above is not None else None  # as plan --fit: refused everywhere
                    rows.append(Row(card, version, None, f, error=f"vLLM {f.above.vllm_version} refuses these "
                                                                  f"settings at start-up: {why}", refusal=why) if why
                                else Row(card, version, f.at if f.at is not None else f.above, f))
                    continue
                p = plan(model, card, version, entrypoint, overrides, coefficients)
                why = refusal(p)
                rows.append(Row(card, version, None, error=f"vLLM {p.vllm_version} refuses these settings at "
                                                           f"start-up: {why}", refusal=why) if why
                            else Row(card, version, p))
            except UsageError as err:
                rows.append(Row(card, version, None, error=str(err)))
    return rows
