"""The limit search with real engine starts (`pytest -m gpu --card=3090 --search max_model_len`).

Seeds suite/search.py's `Search` with `plan --fit`'s prediction (predict/fit.py), starts the engine through the
plugin's Manager for each probe (each start is a results.jsonl record like any other, id
`search-<setting>-<value>`), and writes beside results.jsonl:
  search.json         the search: range, resolution, grid size, seed, every probe, the limit, predicted vs measured
  search.md           the same for a reader (report.md includes it)
  cards-snippet.toml  a ready-to-paste `--cards` profile with the measured total and the thresholds measured at the
                      limit (for the next run on this card)
"""

from __future__ import annotations

import json
from pathlib import Path

from diagnostics.errors import UsageError
from diagnostics.outcomes import MEMORY_FAILURES
from diagnostics.predict.fit import fit
from diagnostics.predict.mm_fit import (ALIASES, KNOB_NAMES, knob_name, without_knob, apply, find_knob, fit_knob,
                                        item_image_size)
from diagnostics.report.markdown import search_section
from diagnostics.suite.matrix import Combination
from diagnostics.suite.search import SEARCHABLE, Search, default_range, parse_range

SEARCH_JSON, SEARCH_MD, SNIPPET = "search.json", "search.md", "cards-snippet.toml"
SHORT = {"max_model_len": "mml", "max_num_seqs": "seqs", "max_pixels": "px", "max_slice_nums": "slices",
         "max_patches": "patches", "pan_and_scan_max_num_crops": "crops", "num_frames": "frames",
         "limit_mm_per_prompt.image": "images", "limit_mm_per_prompt.video": "videos"}


class SearchBroke(Exception):
    """A probe failed for a reason other than memory: its answer says nothing about the limit."""


def _int_option(value, name: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise UsageError(f"bad --{name.replace('_', '-')} {value!r}; accepted: a positive integer") from None
    if n < 1:
        raise UsageError(f"bad --{name.replace('_', '-')} {value!r}; accepted: a positive integer")
    return n


def search_setting(search: str | None) -> str | None:
    """--search as the search runs it: an alias plan --fit takes (max_dynamic_patch, image, video, ...;
    predict/mm_fit.py ALIASES) becomes its canonical knob name; anything else unchanged (check_search_options
    judges it)."""
    return knob_name(search) if search else search


def check_search_options(search: str | None, resolution, range_text) -> None:
    """Before the first start: --search-resolution a positive integer, --search-range LO:HI with LO < HI, and
    neither without --search (which they shape), and --search a setting the search knows. UsageError naming the
    option otherwise."""
    if search and search not in SEARCHABLE:
        raise UsageError(f"unknown --search setting {search!r}; accepted: {', '.join(SEARCHABLE)} (or an alias: "
                         f"{', '.join(a for a in ALIASES if knob_name(a) in SEARCHABLE)})")
    if not search:
        given = [name for name, value in (("--search-range", range_text), ("--search-resolution", resolution))
                 if value not in (None, "")]
        if given:
            raise UsageError(f"{' and '.join(given)} without --search: nothing is searched; accepted: "
                             "--search=max_model_len|max_num_seqs with them, or neither")
        return
    _int_option(resolution, "search_resolution")
    parse_range(range_text)


def predicted_limit(setting: str, model, card, vllm_version, base: dict) -> tuple[int | None, str]:
    """(plan --fit's value for `setting` with `base` held, a note); None when the estimator cannot say."""
    if model is None:
        return None, "no prediction: the estimator does not know this model"
    try:
        f = fit_knob(setting, model, card, vllm_version, "llm", base) if setting in KNOB_NAMES else \
            fit(setting, model, card, vllm_version, "llm", base)
    except UsageError as err:
        return None, f"no prediction: {err}"
    if f.value is None:
        return None, f"no prediction: plan --fit finds no {setting} that plans ok ({f.above.verdict})"
    return int(f.value), f"plan --fit {setting}: {f.value}"


def build_search(setting: str, resolution, range_text, base: dict, model, seed: int | None = None,
                 knob=None) -> Search:
    """The Search for the options: resolution defaults to the block size (max_model_len), the knob's step (a
    multimodal knob: 28 x 28 px for Qwen2.5-VL max_pixels) or 1; the range to block .. max_position_embeddings
    (max_model_len), the knob's domain, or 1 .. 1024."""
    step = _int_option(resolution, "search_resolution") or (
        int(base.get("block_size") or 16) if setting == "max_model_len" else knob.step if knob else 1)
    bounds = parse_range(range_text)
    if bounds is None:
        if setting == "max_model_len" and model is None:
            raise UsageError("--search max_model_len needs --search-range LO:HI for a model the estimator does not "
                             "know")
        bounds = default_range(setting, step, model.derived_max_model_len if model else 0, knob)
    return Search(setting, bounds[0], bounds[1], step, seed=seed)


def search_knob(setting: str, model, vllm_version, defaults: dict):
    """The multimodal knob `setting` names for this model and version (None for an engine setting);
    UsageError for a model the estimator does not know or a knob it lacks."""
    if setting not in KNOB_NAMES:
        return None
    if model is None:
        raise UsageError(f"--search {setting} needs a model the estimator knows (its knob's domain and step come "
                         "from the model's family)")
    from diagnostics.predict.estimator import plan

    try:
        settings = plan(model, "3090", vllm_version, "llm", defaults).settings
    except UsageError:
        settings = None
    return find_knob(setting, model, vllm_version, settings, "--search",
                     tuple(s for s in SEARCHABLE if s not in KNOB_NAMES))


def check_search_model(setting: str | None, model, vllm_version, defaults: dict) -> None:
    """At collection, before any start: `--search KNOB` on a model that lacks the knob (a text model has none) is
    one UsageError line naming the knob and the model's knobs. A model the estimator does not know (None) is
    left to run_search, which says so."""
    if setting in KNOB_NAMES and model is not None:
        search_knob(setting, model, vllm_version, defaults)


def probe(setting: str, knob, value: int, base: dict, model, budget_mib: int | None = None) -> Combination:
    """One search start: the engine settings with `setting` at `value`; a knob's start sends one request with an
    image that fills the knob at that value (predict.mm_fit.item_image_size), so "fits" means such an item
    went through. `budget_mib`: the matrix's planted_budget_mib (cpu card: the request runs under a memory budget
    planted after start-up, engine/child.py plant_budget, so "fits" is real on a backend whose starts never fail
    for the knob)."""
    if knob is None:
        return Combination(id=f"search-{SHORT[setting]}{value}", settings={**base, setting: value},
                           scenario=f"search:{setting}", request=False, planted_budget_mib=budget_mib)
    return Combination(id=f"search-{SHORT[setting]}{value}", settings=apply(knob, value, base),
                       scenario=f"search:{setting}", request=True, image_size=item_image_size(knob, value, model),
                       planted_budget_mib=budget_mib)


def run_search(manager, setting: str, resolution=None, range_text=None) -> dict:
    """Run the search through `manager.start` (one engine start per probe); returns what search.json holds.
    Raises SearchBroke when a start fails for a non-memory reason."""
    model, card = manager.model_spec(), manager.card
    vllm_version = manager.machine_info().get("vllm")
    knob = search_knob(setting, model, vllm_version, manager.matrix.defaults)
    base = {k: v for k, v in manager.matrix.defaults.items() if k != setting}
    if knob is not None:
        base = without_knob(knob, base)
    predicted, note = predicted_limit(setting, model, card, vllm_version, base)
    budget = getattr(manager.matrix, "planted_budget_mib", None)
    if budget:  # plan models the card, not a budget planted after start-up: the prediction is not the limit's
        note += (f"; the starts ran under a planted budget of {budget} MiB after start-up (cpu card, a test of the "
                 "search): plan does not model it")
    search = build_search(setting, resolution, range_text, base, model, predicted, knob)
    records = []
    while (value := search.next_probe()) is not None:
        combination = probe(setting, knob, value, base, model, budget)
        record = manager.start(combination).record
        records.append(record)
        outcome = record["outcome"]
        if outcome != "ok" and outcome not in MEMORY_FAILURES:
            raise SearchBroke(f"{combination.id} failed with {outcome} (not a memory failure): "
                              f"{record['diagnosis']['summary']}")
        search.record(value, outcome == "ok")
    summary = {**search.to_json(), "predicted": predicted, "prediction_note": note, "card": card.name,
               "vllm": vllm_version, "model": manager.model, "settings": base,
               "ids": [r["id"] for r in records], "planted_budget_mib": budget}
    if knob is not None:
        summary.update(predicted_label=knob.label(predicted) if predicted is not None else "no prediction",
                       limit_label=knob.label(search.limit),
                       knob=knob.to_json())
    ids = dict(zip((v for v, _ in search.probes), summary["ids"]))
    at_limit = next((r for r in records if r["id"] == ids.get(search.limit)), None)
    write_outputs(manager.run.ensure(), summary, card, at_limit, manager.machine_info())
    return summary


def snippet(card, summary: dict, at_limit: dict | None, machine: dict) -> str:
    """A `--cards` TOML profile for this card: the measured total, and the peaks measured at the limit as its
    profile threshold and headroom (load_cards_toml reads it back)."""
    total = machine.get("gpu_total_gib") or card.total_gib
    lines = [f"# vllm-memcheck --search {summary['setting']}: measured limit {summary['limit']} "
             f"(predicted {summary['predicted']}), {summary['starts']} starts for a grid of {summary['grid']}",
             f"# vLLM {summary['vllm']}, model {summary['model']}, settings {json.dumps(summary['settings'])}",
             f"[cards.{card.name}]", f"label = {json.dumps(card.label)}"]
    if total:
        lines.append(f"total_gib = {round(float(total), 2)}  # measured on this box")
    profile = (at_limit or {}).get("profile_peak_gib")
    peak = (at_limit or {}).get("peak_device_gib")
    if profile:
        lines.append(f"profile_threshold_gib = {round(profile + 0.01, 2)}  # before-KV peak measured at the limit")
    util = ((at_limit or {}).get("settings") or {}).get("gpu_memory_utilization")
    if peak and util and total:
        lines.append(f"headroom_gib = {round(max(card.headroom_gib, peak - util * total) + 0.01, 2)}"
                     "  # peak above util x total measured at the limit")
    if card.nvml_names:
        lines.append(f"nvml_names = {json.dumps(list(card.nvml_names))}")
    lines.append(f"arch = {json.dumps(card.arch)}")
    return "\n".join(lines) + "\n"


def write_outputs(run_dir: Path, summary: dict, card, at_limit, machine: dict) -> None:
    (run_dir / SEARCH_JSON).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (run_dir / SEARCH_MD).write_text(search_section(summary), encoding="utf-8")
    (run_dir / SNIPPET).write_text(snippet(card, summary, at_limit, machine), encoding="utf-8")


def summary_line(summary: dict, run_dir) -> str:
    """The terminal summary's line for a finished search (search.json's content)."""
    return (f"--search {summary['setting']}: measured limit {summary.get('limit_label', summary['limit'])}, "
            f"predicted {summary.get('predicted_label', summary['predicted'])}; "
            f"{summary['starts']} starts for a grid of {summary['grid']} (bound {summary['max_starts']}); "
            f"--cards snippet: {run_dir / 'cards-snippet.toml'}")
