"""`plan [--model minicpm-v-2_6|PATH] [--card NAME] [--vllm VERSION] [--entrypoint llm|serve] [--set KEY=VALUE ...]
[--cards FILE] [--json]`: predict every term of vLLM's start-up memory and the verdict, without a GPU.

Defaults: --model minicpm-v-2_6, --card 3090 (the seed's card, so a bare `plan` answers the classic question),
--vllm the installed vLLM (read from package metadata, vllm is not imported) else the newest known.
"""

from __future__ import annotations

import importlib
import json

HELP = "predict every term of vLLM's start-up memory for a model, card and vLLM version"


def add_arguments(parser) -> None:
    parser.add_argument("--model", default="minicpm-v-2_6",
                        help="minicpm-v-2_6 (default), openbmb/MiniCPM-V-2_6, or a directory with config.json")
    parser.add_argument("--card", default="3090", help="card short name (default 3090): t4, a10, l4, 3090, 4090, "
                                                       "a100-80, h100-80, ... or one from --cards")
    parser.add_argument("--vllm", default=None, metavar="VERSION",
                        help="vLLM version to plan for (default: the installed vLLM, else the newest known)")
    parser.add_argument("--entrypoint", default="llm", help="llm (the LLM class) or serve (the API server)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                        help="engine setting; VALUE is JSON when it parses (repeatable)")
    parser.add_argument("--cards", default=None, metavar="FILE", help="TOML file with [cards.NAME] overrides")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _explain(plan):
    """culprits/fix from diagnostics.explainer when it is there (loaded lazily)."""
    try:
        explainer = importlib.import_module("diagnostics.explainer")
    except ImportError:
        return None
    return explainer.explain_plan(plan)


def build(args):
    from diagnostics.cards import get_card
    from diagnostics.estimator import plan
    from diagnostics.settings import parse_set

    card = get_card(args.card, extra_cards_file=args.cards)
    overrides = parse_set(args.sets)
    return plan(args.model, card, args.vllm, args.entrypoint, overrides)


def run(args) -> int:
    p = build(args)
    explanation = _explain(p) if p.verdict != "unknown" else None
    culprits = [{"setting": c.setting, "value": c.value, "suggested": c.suggested, "why": c.why}
                for c in (explanation.culprits if explanation else [])]
    fix = dict(explanation.fix) if explanation else {}
    if args.json:
        print(json.dumps(p.to_json(culprits, fix), indent=2, default=str))
        return 0
    print(format_plan(p, explanation))
    return 0


def format_plan(p, explanation=None) -> str:
    from tabulate import tabulate

    rows = []
    for name, term in p.components.items():
        rng = "" if term.low_gib == term.high_gib else f"{term.low_gib:.2f} - {term.high_gib:.2f}"
        rows.append([name, f"{term.value_gib:.2f}", rng, term.basis])
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
    kv = "-" if p.kv_cache_tokens is None else f"{p.kv_cache_tokens:,}"
    lines = [head, knobs, "",
             tabulate(rows, headers=["term", "GiB", "range", "basis"], tablefmt="simple"), "",
             prof,
             f"predicted start-up peak: {p.peak_gib:.2f} GiB (incl. ~{p.cuda_context_gib:.2f} GiB CUDA context); "
             f"KV cache: {kv} tokens",
             f"verdict: {p.verdict}" + (f" (phase: {p.failing_phase})" if p.failing_phase else "")]
    for note in p.notes:
        lines.append(f"note: {note}")
    if explanation is not None:
        if getattr(explanation, "summary", ""):
            lines.append(explanation.summary)
        for c in explanation.culprits:
            lines.append(f"culprit: {c.setting}={c.value!r} -> {c.suggested!r}: {c.why}")
        if explanation.fix:
            lines.append("fix: " + " ".join(f"--set {k}={json.dumps(v)}" for k, v in explanation.fix.items()))
    return "\n".join(lines)
