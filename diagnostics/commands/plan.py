"""`plan [--model minicpm-v-2_6|PATH] [--card NAME] [--vllm VERSION] [--entrypoint llm|serve] [--set KEY=VALUE ...]
[--cards FILE] [--json | --format text|json|md] [--out FILE]`: predict every term of vLLM's start-up memory and the
verdict, without a GPU; `--format md` is a redacted Markdown report to paste into an issue.

Defaults: --model minicpm-v-2_6, --card 3090 (the seed's card, so a bare `plan` answers the classic question),
--vllm the installed vLLM (read from package metadata, vllm is not imported) else the newest known.
"""

from __future__ import annotations

import json

from diagnostics.cards import get_card
from diagnostics.explain import explain_plan
from diagnostics.predict.coefficients import load_calibration_arg
from diagnostics.predict.estimator import Plan, plan
from diagnostics.errors import UsageError
from diagnostics.report import SINGLE_FORMATS, emit, output_format, plan_markdown
from diagnostics.settings import parse_set, vllm_refusal
from diagnostics.units import fmt_gib, fmt_tokens

HELP = "predict every term of vLLM's start-up memory for a model, card and vLLM version"


def add_arguments(parser) -> None:
    parser.add_argument("--model", default="minicpm-v-2_6",
                        help="minicpm-v-2_6 (default), a stored VLM (qwen2.5-vl-7b, qwen3-vl-8b, internvl3-8b, "
                             "gemma-3-4b, llava-onevision-7b, llama-3.2-11b-vision, ...; docs/models.md), or a "
                             "checkpoint directory with config.json (+ preprocessor_config.json)")
    parser.add_argument("--card", default="3090", help="card short name (default 3090): t4, a10, l4, 3090, 4090, "
                                                       "a100-80, h100-80, ... or one from --cards")
    parser.add_argument("--vllm", default=None, metavar="VERSION",
                        help="vLLM version to plan for (default: the installed vLLM, else the newest known)")
    parser.add_argument("--entrypoint", default="llm", help="llm (the LLM class) or serve (the API server)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                        help="engine setting; VALUE is JSON when it parses (repeatable)")
    parser.add_argument("--cards", default=None, metavar="FILE", help="TOML file with [cards.NAME] overrides")
    parser.add_argument("--calibration", default=None, metavar="FILE|shipped",
                        help="calibration TOML written by `calibrate --out` (shipped: the fit on the field cases); "
                             "default: the built-in coefficients")
    parser.add_argument("--json", action="store_true", help="print one JSON object (= --format json)")
    parser.add_argument("--format", choices=SINGLE_FORMATS, default=None,
                        help="text (default), json, or md: a redacted Markdown report to paste into an issue")
    parser.add_argument("--out", default=None, metavar="FILE", help="write the answer to FILE instead of stdout")


def build(args) -> Plan:
    """The plan, or UsageError: a cpu card (nothing to predict) or settings vLLM itself would refuse."""
    card = get_card(args.card, extra_cards_file=args.cards)
    if card.is_cpu and output_format(args.json, args.format) != "md":  # the md report says it cannot tell, and why
        raise UsageError("plan --card cpu: the estimator predicts GPU start-ups (device memory, CUDA context and "
                         "graphs); vLLM's CPU backend sizes its KV cache from host memory: measure it with "
                         "`pytest -m gpu --card=cpu` (the CPU matrix and a kit model) instead")
    calibration = load_calibration_arg(args.calibration) if args.calibration else None
    p = plan(args.model, card, args.vllm, args.entrypoint, parse_set(args.sets), calibration)
    refusal = vllm_refusal(p.settings, p.model)
    if refusal:
        raise UsageError(f"vLLM {p.vllm_version} refuses these settings at start-up: {refusal}")
    return p


def run(args) -> int:
    p = build(args)
    explanation = explain_plan(p) if p.verdict != "unknown" else None
    culprits = [c.to_json() for c in explanation.culprits] if explanation else []
    fix = dict(explanation.fix) if explanation else {}
    fmt = output_format(args.json, args.format)
    if fmt == "md":
        text = plan_markdown(p, explanation, fits=None)  # fits: the plans of a --fit search (issue #14)
    elif fmt == "json":
        text = json.dumps(p.to_json(culprits, fix), indent=2, default=str)
    else:
        text = format_plan(p, explanation)
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
    prof = (f"profile run: {pr['encoder_items']} dummy {pr['modality'] or '-'} items, {pr['encoder_slices']} slices, "
            f"{pr['vit_tokens']:,} ViT tokens; LLM pass {pr['max_num_batched_tokens']:,} tokens; "
            f"sampler {pr['sampler_rows']} rows")
    if pr.get("encoder_budget_tokens"):
        prof += f"; encoder budget {pr['encoder_budget_tokens']:,} tokens"
    kv = fmt_tokens(p.kv_cache_tokens)
    lines = [head, knobs, "",
             tabulate(rows, headers=["term", "GiB", "range", "basis"], tablefmt="simple"), "",
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
