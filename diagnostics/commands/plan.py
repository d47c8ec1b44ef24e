"""`plan [--model minicpm-v-2_6|PATH] [--card NAME|N1,N2|all] [--vllm VERSION|V1,V2|all] [--entrypoint llm|serve]
[--set KEY=VALUE ...] [--fit SETTING[,LADDER_SETTING]] [--cards FILE] [--json | --format text|json|md] [--out FILE]`: predict every term of vLLM's
start-up memory and the verdict, without a GPU; `--format md` is a redacted Markdown report for an issue.

`--fit max_model_len` answers "what should I set": the largest value that plans ok (predict/fit.py), the terms
there and what fails one step above. `--fit max_model_len,max_num_seqs` prints the frontier over a ladder of
max_num_seqs. `--fit max_pixels` (or another multimodal knob: max_slice_nums, max_patches, num_frames,
limit_mm_per_prompt.image, ...) answers "how big may my images be" in the knob's units (predict/mm_fit.py), and
`--fit max_model_len,max_pixels` prints that frontier. Several cards (`--card all`) print one table, a row each
(predict/fleet.py), with or without a one-setting --fit. One card and several releases (`--vllm 0.20.0..0.34.0`
or `--vllm 0.6.3,0.32.0`) print the start-up memory changelog (predict/changelog.py): release by release, what
moves and the vLLM rule that moved it.

Defaults: --model minicpm-v-2_6, --card 3090 (the seed's card, so a bare `plan` answers the classic question),
--vllm the installed vLLM (read from package metadata, vllm is not imported) else the newest known.
"""

from __future__ import annotations

import dataclasses
import json

from diagnostics import vllm_exact
from diagnostics.errors import UsageError
from diagnostics.explain import explain_plan
from diagnostics.models import get_model
from diagnostics.predict.changelog import changelog, format_markdown as changelog_markdown, format_text as changelog_text
from diagnostics.predict.coefficients import load_calibration_arg
from diagnostics.predict.estimator import Plan, plan
from diagnostics.predict.fit import Fit, fit, frontier, max_concurrency, refusal
from diagnostics.predict.fleet import expand_cards, expand_versions, fleet
from diagnostics.predict.mm_fit import KnobFit, check_fit_name, find_knob, fit_knob, is_knob_name, knob_frontier
from diagnostics.report import SINGLE_FORMATS, check_writable, emit, output_format, plan_markdown
from diagnostics.redact import Redactor
from diagnostics.settings import parse_set
from diagnostics.units import fmt_gib, fmt_tokens

HELP = "predict every term of vLLM's start-up memory for a model, card and vLLM version"


def add_arguments(parser) -> None:
    parser.add_argument("--model", default="minicpm-v-2_6",
                        help="minicpm-v-2_6 (default), a stored VLM (qwen2.5-vl-7b, qwen3-vl-8b, internvl3-8b, "
                             "gemma-3-4b, llava-onevision-7b, llama-3.2-11b-vision, ...; docs/models.md), or a "
                             "checkpoint directory with config.json (+ preprocessor_config.json; its *.safetensors "
                             "headers size the weights), or a Hugging Face id owner/name (config.json and the "
                             "safetensors headers read remotely, no weights downloaded)")
    parser.add_argument("--card", default="3090", help="card short name (default 3090): t4, a10, l4, 3090, 4090, "
                                                       "a100-80, h100-80, ... or one from --cards; a comma list "
                                                       "or all: one table, a row per card")
    parser.add_argument("--vllm", default=None, metavar="VERSION",
                        help="vLLM version to plan for (default: the installed vLLM, else the newest known); "
                             "A..B, a comma list or all: on one card, the start-up changelog release by release")
    parser.add_argument("--fit", default=None, metavar="SETTING[,LADDER]",
                        help="the largest max_model_len / max_num_seqs / max_num_batched_tokens / "
                             "gpu_memory_utilization, or multimodal knob (max_pixels, max_slice_nums, max_patches, "
                             "pan_and_scan_max_num_crops, num_frames, limit_mm_per_prompt.image / .video), that "
                             "plans ok; SETTING,LADDER: the frontier over LADDER's ladder")
    parser.add_argument("--entrypoint", default="llm", help="llm (the LLM class) or serve (the API server)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                        help="engine setting; VALUE is JSON when it parses (repeatable)")
    parser.add_argument("--cards", default=None, metavar="FILE", help="TOML file with [cards.NAME] overrides")
    parser.add_argument("--calibration", default=None, metavar="FILE|shipped",
                        help="calibration TOML written by `calibrate --out` (shipped: the fit on the field cases); "
                             "default: the built-in coefficients")
    parser.add_argument("--no-vllm-exact", action="store_true", dest="no_vllm_exact",
                        help="plan with the pure rules only; by default, when --vllm is the installed vLLM, the "
                             "weights and KV bytes per token come from vLLM's own classes (a CPU subprocess, no "
                             "weights, cached; diagnostics/vllm_exact); VLLM_MEMCHECK_VLLM_EXACT=off in the "
                             "environment does the same")
    parser.add_argument("--json", action="store_true", help="print one JSON object (= --format json)")
    parser.add_argument("--format", choices=SINGLE_FORMATS, default=None,
                        help="text (default), json, or md: a redacted Markdown report to paste into an issue")
    parser.add_argument("--out", default=None, metavar="FILE", help="write the answer to FILE instead of stdout")


def _refuse_cpu(card, args) -> None:
    if card.is_cpu and output_format(args.json, args.format) != "md":  # the md report says it cannot tell, and why
        raise UsageError("plan --card cpu: the estimator predicts GPU start-ups (device memory, CUDA context and "
                         "graphs); vLLM's CPU backend sizes its KV cache from host memory: measure it with "
                         "`pytest -m gpu --card=cpu` (the CPU matrix and a kit model) instead")


def build(args, card=None, version=None, overrides=None) -> Plan:
    """The plan, or UsageError: a cpu card (nothing to predict) or settings vLLM itself would refuse."""
    card = card if card is not None else expand_cards(args.card, args.cards)[0]
    _refuse_cpu(card, args)
    calibration = load_calibration_arg(args.calibration) if args.calibration else None
    overrides = parse_set(args.sets) if overrides is None else overrides
    p = plan(args.model, card, version if version is not None else args.vllm, args.entrypoint, overrides, calibration)
    why = refusal(p)  # predict/fit.py: the one rule plain plan, --fit and the tables apply
    if why:
        raise UsageError(f"vLLM {p.vllm_version} refuses these settings at start-up: {why}")
    exact = ask_vllm(args, p)
    return p if exact is None else plan(p.model, card, p.vllm_version, args.entrypoint, overrides, calibration, exact)


def ask_vllm(args, p: Plan):
    """vLLM's own figures for the pure plan `p`'s model and settings (diagnostics.vllm_exact) when they apply: the
    planned version is the installed vLLM and --no-vllm-exact is not given. None otherwise, or when vLLM could not
    answer (then `p` gets a note saying why)."""
    if getattr(args, "no_vllm_exact", False) or not vllm_exact.applies(p.vllm_version):
        return None
    exact, why_not = vllm_exact.ask(p.model, p.vllm_version, p.settings)
    if exact is None:
        p.notes.append(f"vLLM's own code was not asked: {why_not}; the pure rules answer")
    return exact


def run(args) -> int:
    fits = [f.strip() for f in (args.fit or "").split(",") if f.strip()]
    args.model = get_model(args.model, hub=True)  # once: a hub id's headers are read a single time
    if len(fits) > 2:
        raise UsageError(f"--fit {args.fit!r} names {len(fits)} settings; accepted: SETTING or SETTING,LADDER_SETTING")
    if args.fit is not None and not fits:
        raise UsageError(f"--fit {args.fit!r} names no setting; accepted: SETTING or SETTING,LADDER_SETTING")
    for name in fits:
        check_fit_name(name)
    check_writable(args.out, "--out")
    fmt = output_format(args.json, args.format)
    cards, versions = expand_cards(args.card, args.cards), expand_versions(args.vllm)
    overrides = parse_set(args.sets)
    # every form of plan honours --calibration (a missing or broken file is refused here, before any planning)
    calibration = load_calibration_arg(args.calibration) if args.calibration else None
    if len(cards) == 1 and len(versions) > 1 and not fits:
        return _run_changelog(args, cards[0], versions, overrides, calibration)
    if len(cards) > 1 or len(versions) > 1:
        if len(fits) == 2:
            raise UsageError("a --fit frontier is for one card and one version; give one --card and one --vllm")
        _refuse_md(fmt, "a table of several cards or versions")
        if any(c.is_cpu for c in cards):
            _refuse_cpu(next(c for c in cards if c.is_cpu), args)
        rows = fleet(args.model, cards, versions, args.entrypoint, overrides, fits[0] if fits else None, calibration)
        refusals = {r.refusal for r in rows}
        if len(refusals) == 1 and None not in refusals:  # refused everywhere alike: one line, as plain plan says it
            names = ", ".join(dict.fromkeys(r.version for r in rows))
            raise UsageError(f"vLLM {names} {'refuses' if len(versions) == 1 else 'refuse'} these settings at "
                             f"start-up: {refusals.pop()}")
        errors = {r.error for r in rows if r.plan is None}
        if len(errors) == 1 and None not in errors and all(r.plan is None for r in rows):  # e.g. a knob's modality off
            raise UsageError(errors.pop())
        emit(json.dumps({"rows": [r.to_json() for r in rows]}, indent=2) if fmt == "json" else format_fleet(rows),
             args.out)
        return 0
    _refuse_cpu(cards[0], args)
    if len(fits) == 2:
        _refuse_md(fmt, "a --fit frontier")
        return _run_frontier(args, cards[0], versions[0], overrides, fits, calibration)
    if fits:
        return _run_fit(args, cards[0], versions[0], overrides, fits[0], fmt, calibration)
    p = build(args, cards[0], versions[0], overrides)
    explanation = explain_plan(p) if p.verdict != "unknown" else None
    culprits = [c.to_json() for c in explanation.culprits] if explanation else []
    fix = dict(explanation.fix) if explanation else {}
    if fmt == "md":
        text = plan_markdown(p, explanation, fits=None)  # fits: the plans of a --fit search (issue #14)
    elif fmt == "json":
        text = json.dumps(p.to_json(culprits, fix), indent=2, default=str)
    else:
        text = format_plan(p, explanation)
    emit(text, args.out)
    return 0


def _run_changelog(args, card, versions, overrides, calibration=None) -> int:
    """One card, several releases: the start-up memory changelog (predict/changelog.py), with plain plan's
    refusals: a cpu card is refused outright, a release that lacks or refuses the settings is a row saying why."""
    _refuse_cpu(card, args)
    if calibration is not None:  # refused, not ignored: the changelog plans with the built-in coefficients
        raise UsageError("--calibration with a release changelog (one card, several --vllm): it plans with the "
                         "built-in coefficients; accepted: --calibration with one --vllm, or several --card")
    steps = changelog(args.model, card, versions, args.entrypoint, overrides)
    planned = next((s.plan for s in steps if s.plan is not None), None)
    name = planned.model.name if planned else getattr(args.model, "name", str(args.model))
    title = (f"{name} on {card.name} ({card.total_gib:.2f} GiB), {args.entrypoint}, vLLM {versions[0]} .. "
             f"{versions[-1]}" + (f", --set {json.dumps(overrides, sort_keys=True)}" if overrides else ""))
    fmt = output_format(args.json, args.format)
    if fmt == "json":
        text = json.dumps({"model": name, "card": card.name, "entrypoint": args.entrypoint, "settings": overrides,
                           "releases": [s.to_json() for s in steps]}, indent=2, default=str)
    elif fmt == "md":
        text = Redactor.for_this_machine().text(changelog_markdown(steps, title))
    else:
        text = changelog_text(steps, title)
    emit(text, args.out)
    return 0


def format_plan(p: Plan, explanation=None) -> str:
    """The terminal answer: head line, the knobs, one row per term, the profile run, peak, KV and verdict."""
    from tabulate import tabulate

    rows = []
    for name, term in p.components.items():
        rng = "" if term.low_gib == term.high_gib else (f"{fmt_gib(term.low_gib, unit=False)} - "
                                                          f"{fmt_gib(term.high_gib, unit=False)}")
        rows.append([name, fmt_gib(term.value_gib, unit=False), rng, term.basis])
    head = (f"{p.model.name} on {p.card.name} ({p.card.label}, {p.card.total_gib:.2f} GiB), vLLM {p.vllm_version} "
            f"{p.engine} ({p.family}), entrypoint {p.entrypoint}")
    s = p.settings
    knobs = (f"max_model_len={s['max_model_len']} max_num_seqs={s['max_num_seqs']} "
             f"max_num_batched_tokens={s['max_num_batched_tokens']} "
             f"gpu_memory_utilization={s['gpu_memory_utilization']} "
             f"limit_mm_per_prompt={json.dumps(s.get('limit_mm_per_prompt', {}))} enforce_eager={s['enforce_eager']}")
    pr = p.profile
    items = (f"{pr['encoder_items']} dummy {pr['modality'] or '-'} items, {pr['encoder_slices']} slices, "
             f"{pr['vit_tokens']:,} ViT tokens")
    if pr.get("encoder_skipped"):  # skip_mm_profiling: the items are what the run would push, not what it pushes
        items = f"no dummy item (skip_mm_profiling=true; without it: {items})"
    prof = (f"profile run: {items}; LLM pass {pr['max_num_batched_tokens']:,} tokens; "
            f"sampler {pr['sampler_rows']} rows")
    if pr.get("encoder_budget_tokens"):
        prof += f"; encoder budget {pr['encoder_budget_tokens']:,} tokens"
    kv = fmt_tokens(p.kv_cache_tokens)
    lines = [head, knobs, "",
             tabulate(rows, headers=["term", "GiB", "range", "basis"], tablefmt="simple", disable_numparse=True), "",
             prof,
             f"predicted start-up peak: {fmt_gib(p.peak_gib)} (incl. ~{fmt_gib(p.cuda_context_gib)} CUDA context); "
             f"KV cache: {kv} tokens; coefficients: {p.coefficients.name}",
             f"verdict: {p.verdict}" + (f" (phase: {p.failing_phase})" if p.failing_phase else "")]
    for note in p.notes:
        lines.append(f"note: {note}")
    if explanation is not None:
        if explanation.summary:
            lines.append(explanation.summary)
        for c in explanation.culprits:
            lines.append(f"culprit: {c.setting}={json.dumps(c.value)} -> {json.dumps(c.suggested)}: {c.why}")
        if explanation.fix:
            lines.append("fix: " + " ".join(f"--set {k}={json.dumps(v)}" for k, v in explanation.fix.items()))
    return "\n".join(lines)


def _run_fit(args, card, version, overrides, setting: str, fmt: str, calibration) -> int:
    """`plan --fit SETTING` (an engine setting or a multimodal knob) in the asked format, to stdout or --out."""
    base = plan(args.model, card, version, args.entrypoint, overrides, calibration)
    exact = ask_vllm(args, base)  # the figures plain plan uses, where they hold at each value
    if is_knob_name(setting):
        f = fit_knob(setting, args.model, card, version, args.entrypoint, overrides, calibration, exact)
    else:
        f = fit(setting, args.model, card, version, args.entrypoint, overrides, calibration, exact)
    held = f.refusal if isinstance(f, KnobFit) else refusal(f.above) if f.refused_everywhere else None
    if f.value is None and held:  # as plain plan: the held settings are refused whatever the fitted value
        raise UsageError(f"vLLM {f.above.vllm_version} refuses these settings at start-up at every {f.setting} "
                         f"tried: {held}")
    if fmt == "md":
        shown = f.at if f.at is not None else f.above
        if f.at is None:  # nothing fits: the report is the plan at the domain's bottom, and says so
            shown = dataclasses.replace(shown, notes=[
                f"plan --fit {f.setting}: no value from {_label(f, f.domain[0])} to {_label(f, f.domain[1])} plans "
                f"ok; this report is the plan at the lowest, {_label(f, f.domain[0])}, which does not fit",
                *shown.notes])
        if getattr(f, "floor", None):  # predict/fit.py image_floor: why the search starts above one block
            shown = dataclasses.replace(shown, notes=[f.floor, *shown.notes])
        explanation = explain_plan(shown) if shown.verdict != "unknown" else None
        text = plan_markdown(shown, explanation, fits=[f.above] if f.at is not None and f.above else
                             [] if f.at is None else None)
    else:
        text = json.dumps(f.to_json(), indent=2, default=str) if fmt == "json" else format_fit(f)
    emit(text, args.out)
    return 0


def _refuse_md(fmt: str, what: str) -> None:
    if fmt == "md":
        raise UsageError(f"--format md is the report of one prediction; {what} prints as text or JSON; accepted "
                         "here: --format text|json (or one --card and one --vllm for --format md)")


def _run_frontier(args, card, version, overrides, fits, calibration=None) -> int:
    if calibration is not None:  # refused, not ignored: the frontier plans with the built-in coefficients
        raise UsageError("--calibration with a --fit frontier (SETTING,LADDER): the frontier plans with the built-in "
                         "coefficients; accepted: --fit SETTING --calibration FILE, or the frontier without it")
    walk = knob_frontier if any(map(is_knob_name, fits)) else frontier
    points = walk(fits[0], fits[1], args.model, card, version, args.entrypoint, overrides)
    if args.json or args.format == "json":
        emit(json.dumps({"fitted": fits[0], "ladder_setting": fits[1], "card": card.name, "vllm_version": version,
                         "rows": [{fits[1]: v, **f.to_json()} for v, f in points]}, indent=2, default=str), args.out)
    else:
        emit(format_frontier(fits[0], fits[1], card, version, points), args.out)
    return 0


def _value(v) -> str:
    return "none fits" if v is None else (f"{v:,}" if isinstance(v, int) else f"{v:g}")


def _label(f, v) -> str:
    """A fitted value in the user's units: a knob's (pixels as factor multiples, frames, counts) or a number."""
    return f.knob.label(v) if isinstance(f, KnobFit) else _value(v)


def _above_value(f):
    return f.above_value if isinstance(f, KnobFit) else f.above.settings[f.setting]


def format_fit(f: Fit) -> str:
    """`plan --fit`: the answer line, the plan at the answer (terms), and what fails one step above."""
    lines = []
    floor = [f"note: {f.floor}"] if getattr(f, "floor", None) else []  # predict/fit.py image_floor
    if f.value is None:
        p = f.above
        why = refusal(p) if not isinstance(f, KnobFit) else None  # a KnobFit names its refusal below
        lines.append(f"no {f.setting} from {_label(f, f.domain[0])} to {_label(f, f.domain[1])} plans ok on "
                     f"{p.card.name} with vLLM {p.vllm_version}; at {_label(f, f.domain[0])}: "
                     + (f"vLLM refuses the settings at start-up: {why}" if why else p.verdict)
                     + (f" (phase: {p.failing_phase})" if p.failing_phase and not why else ""))
        lines += [f"note: {n}" for n in p.notes + (f.notes() if isinstance(f, KnobFit) else [])] + floor
        if isinstance(f, KnobFit) and f.refusal:
            lines.append(f"vLLM {p.vllm_version} refuses the held settings at start-up: {f.refusal}")
        return "\n".join(lines)
    unit = f" (a multiple of the block size {f.step})" if f.setting == "max_model_len" else ""
    if isinstance(f, KnobFit):
        unit = f" (--set {f.knob.setting}={json.dumps(f.at.overrides[f.knob.setting])})"
    lines += [f"largest {f.setting} that fits: {_label(f, f.value)}{unit}; {f.plans} plans", "",
              format_plan(f.at), ""]
    if f.above is None:
        lines.append(f"above: none searched; {f.setting} stops at {f.top_reason}")
    else:
        a = f.above
        why = refusal(a)
        if why:
            lines.append(f"just above: {f.setting}={_label(f, _above_value(f))} -> vLLM {a.vllm_version} refuses "
                         f"it at start-up: {why}")
        else:
            lines.append(f"just above: {f.setting}={_label(f, _above_value(f))} -> {a.verdict}"
                         + (f" (phase: {a.failing_phase})" if a.failing_phase else "")
                         + f"; peak {fmt_gib(a.peak_gib)}, KV cache {fmt_tokens(a.kv_cache_tokens)} tokens")
    if f.non_monotone:
        lines.append(f"warning: not monotone in {f.setting}: ok again at "
                     f"{', '.join(_label(f, v) for v in f.non_monotone)} after a failing value; the answer is the "
                     "highest ok region the search found")
    if isinstance(f, KnobFit) and f.failing_below:
        lines.append(f"warning: below the answer, {f.setting} = {', '.join(f.knob.label(v) for v in f.failing_below)} "
                     "does not plan ok (every value was planned)")
    if isinstance(f, KnobFit):
        lines += [f"note: {n}" for n in f.notes()]
    return "\n".join(lines + floor)


def format_frontier(fitted: str, ladder_setting: str, card, version: str, points) -> str:
    """One row per ladder value: the largest `fitted` value, peak, KV tokens, concurrency, what fails above."""
    from tabulate import tabulate

    rows, ladder_label = [], _ladder_labeller(ladder_setting, points)
    for v, f in points:
        p, a = f.at, f.above
        rows.append([ladder_label(v), _label(f, f.value), fmt_gib(p.peak_gib, unit=False) if p else "-",
                     fmt_tokens(p.kv_cache_tokens) if p else "-", _concurrency(p),
                     (a.verdict if a else f"top: {f.top_reason}")])
    head = f"frontier on {card.name} ({card.total_gib:.2f} GiB), vLLM {version}: largest {fitted} per {ladder_setting}"
    return head + "\n" + tabulate(rows, headers=[ladder_setting, f"largest {fitted}", "peak GiB", "KV tokens",
                                                  "max concurrency", "one step above"], tablefmt="simple")


def _ladder_labeller(ladder_setting: str, points):
    """How a frontier's ladder values read: a knob's units when the ladder is a knob, else plain numbers."""
    if not points or not is_knob_name(ladder_setting):
        return _value
    p = points[0][1].at or points[0][1].above
    return find_knob(ladder_setting, p.model, p.vllm_version, p.settings).label


def _concurrency(p) -> str:
    c = max_concurrency(p) if p is not None else None
    return "-" if c is None else f"{c:,.2f}x"


def format_fleet(rows) -> str:
    """One row per (card, version): verdict, peak, KV tokens, max concurrency (or the fitted value)."""
    from tabulate import tabulate

    fitted = next((r.fit.setting for r in rows if r.fit), None)
    table = []
    for r in rows:
        p = r.plan
        cells = [r.card.name, f"{r.card.total_gib:.2f}", r.version]
        if fitted:
            cells.append(_label(r.fit, r.fit.value) if r.fit else "-")
        verdict = (p.verdict + (f" ({p.failing_phase})" if p.failing_phase else "")) if p else f"n/a: {r.error}"
        cells += [verdict, fmt_gib(p.peak_gib, unit=False) if p else "-",
                  fmt_tokens(p.kv_cache_tokens) if p else "-", _concurrency(p)]
        table.append(cells)
    headers = ["card", "total GiB", "vLLM"] + ([f"largest {fitted}"] if fitted else []) + [
        "verdict" if not fitted else "verdict at it", "peak GiB", "KV tokens", "max concurrency"]
    return tabulate(table, headers=headers, tablefmt="simple")
