"""The sentences: one per culprit, saying what the current value costs and what the suggested value gives, with
the plan's numbers (2 decimals) or vLLM's printed figures (as vLLM prints them)."""

from __future__ import annotations

from diagnostics.explain.model import Trial
from diagnostics.explain.terms import budget_gib, need_gib, resident_gib, shrunk_term, term
from diagnostics.predict.mm_fit import units_phrase
from diagnostics.units import GiB, fmt_gib, fmt_tokens


def num(x: float) -> str:
    """A GiB figure as vLLM prints it: at least 2 decimals, up to 4 when the figure has them (15.7985)."""
    s = f"{x:.4f}".rstrip("0")
    whole, _, dec = s.partition(".")
    return f"{whole}.{dec.ljust(2, '0')}"


def printed_gib(x: float) -> str:
    """A GiB figure vLLM printed, with its unit: `15.7985 GiB`; a printed 0 is vLLM's rounding of a figure under
    its print precision, so it reads `under 0.05 GiB (printed as 0)`, never a bare `0.00 GiB`."""
    return "under 0.05 GiB (printed as 0)" if x == 0 else f"{num(x)} GiB"


def est(x: float) -> str:
    """An estimator figure: 2 decimals (its own precision is far lower than vLLM's printed 4); a real, non-zero
    figure never prints as 0.00 (units.fmt_gib)."""
    return fmt_gib(x, unit=False)


def show(value) -> str:
    """A setting value as `--set` takes it: dicts as JSON-ish `{"image": 1}`, floats without trailing zeros."""
    if isinstance(value, dict):
        return "{" + ", ".join(f'"{k}": {v}' for k, v in value.items()) + "}"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def assign(setting, value) -> str:
    return f"{setting}={show(value)}"


def fix_words(fix: dict) -> str:
    """`max_model_len=4096, max_num_seqs=32`."""
    return ", ".join(assign(k, v) for k, v in fix.items())


def card_phrase(card) -> str:
    if card.is_cpu:
        return "the CPU backend's memory"
    return f"a {card.total_gib:.2f} GiB {card.label}"


def profile_phrase(plan) -> str:
    """What the profile run pushes through the vision encoder: `16 dummy images (144 slices, 9,216 ViT tokens)`."""
    pr = plan.profile or {}
    items, vit = pr.get("encoder_items"), pr.get("vit_tokens")
    if pr.get("encoder_skipped") or plan.settings.get("skip_mm_profiling"):
        return "no dummy items (the encoder is not profiled; a large real image can then run out of memory)"
    if not items:
        return ""
    modality = pr.get("modality") or "image"
    noun = f"dummy {modality}s" if int(items) != 1 else f"dummy {modality}"
    parts = [f"{fmt_tokens(items)} {noun}"]
    extra = []
    if pr.get("encoder_slices"):
        extra.append(f"{fmt_tokens(pr['encoder_slices'])} {'slice' if int(pr['encoder_slices']) == 1 else 'slices'}")
    if vit:
        extra.append(f"{fmt_tokens(vit)} ViT tokens")
    if extra:
        parts.append(f"({', '.join(extra)})")
    return " ".join(parts)


def _why_encoder(setting, base, trial: Trial, new: str, tail: str) -> str:
    modality = (base.profile or {}).get("modality") or "image"
    encoder = "audio encoder" if modality == "audio" else "encoders" if "audio" in modality else "vision encoder"
    lead = (f"{assign(setting, base.settings.get(setting))} makes the profile run push {profile_phrase(base)} "
            f"through the {encoder}, about {est(term(base, 'encoder_profile'))} GiB")
    if setting == "max_model_len" and base.engine == "V0":
        lead += f" (it sets max_num_batched_tokens={fmt_tokens(base.settings.get('max_num_batched_tokens') or 0)})"
    res = profile_phrase(trial.plan) or "no encoder profile"
    return f"{lead}; {new} brings it to {res} and the start-up peak to {est(trial.plan.peak_gib)} GiB, {tail}."


def _why_activation(setting, base, trial: Trial, new: str, tail: str) -> str:
    after = trial.plan
    return (f"{assign(setting, base.settings.get(setting))} sizes the profile run's language-model/sampler pass at "
            f"about {est(term(base, 'activation_peak'))} GiB; {new} brings it to {est(term(after, 'activation_peak'))} "
            f"GiB and the start-up peak to {est(after.peak_gib)} GiB, {tail}.")


def _why_cuda_graph(setting, base, trial: Trial, new: str, tail: str) -> str:
    after = trial.plan
    return (f"with {assign(setting, base.settings.get(setting))} CUDA graphs take about "
            f"{est(term(base, 'cuda_graph'))} GiB outside the profiled budget; {new} makes that "
            f"{est(term(after, 'cuda_graph'))} GiB, so the device holds {est(resident_gib(after))} GiB once KV cache "
            f"and graphs exist, {tail}.")


def _why_free_memory(setting, base, trial: Trial, new: str, tail: str, outcome: str) -> str:
    after = trial.plan
    ctx = float(base.cuda_context_gib or 0.0)
    b0, b1 = budget_gib(base) or 0.0, budget_gib(after) or 0.0
    nxt = "" if after.verdict in ("ok", outcome) else f" (then it fails with {after.verdict})"
    return (f"{assign(setting, base.settings.get(setting))} asks for {est(b0)} GiB up front but only about "
            f"{est(base.card.total_gib - ctx)} GiB is free once the CUDA context exists; {new} asks for "
            f"{est(b1)} GiB{nxt}, {tail}.")


def _why_utilization(setting, base, trial: Trial, new: str, tail: str) -> str:
    after, cur = trial.plan, base.settings.get(setting)
    b0, b1 = budget_gib(base), budget_gib(after)
    if trial.value > (cur or 0):
        return (f"{assign(setting, cur)} gives vLLM {est(b0)} GiB of {est(base.card.total_gib)} GiB and "
                f"weights + profile peak + non-torch leave {est(term(base, 'kv_cache'))} GiB for the KV "
                f"cache; {new} gives {est(b1)} GiB, leaving {est(term(after, 'kv_cache'))} GiB "
                f"({fmt_tokens(after.kv_cache_tokens or 0)} tokens), {tail}.")
    return (f"{assign(setting, cur)} lets the KV cache grow to {est(term(base, 'kv_cache'))} GiB, so "
            f"weights + KV + CUDA graphs (~{est(term(base, 'cuda_graph'))} GiB, not in the budget) need "
            f"{est(resident_gib(base))} GiB; {new} caps the KV cache at {est(term(after, 'kv_cache'))} GiB "
            f"and the total at {est(resident_gib(after))} GiB, {tail}.")


def _why_kv(setting, base, trial: Trial, new: str, tail: str) -> str:
    after, cur = trial.plan, base.settings.get(setting)
    if setting == "max_model_len":
        return (f"{assign(setting, cur)} needs {est(need_gib(base))} GiB of KV cache for one request but the "
                f"pool holds {fmt_tokens(base.kv_cache_tokens or 0)} tokens ({est(term(base, 'kv_cache'))} GiB); "
                f"{new} needs {est(need_gib(after))} GiB, {tail}.")
    if setting == "kv_cache_memory_bytes":
        lead = (f"kv_cache_memory_bytes={cur} ({est(cur / GiB)} GiB) holds {fmt_tokens(base.kv_cache_tokens or 0)} "
                f"tokens" if cur else f"kv_cache_memory_bytes (unset) leaves the KV pool to "
                f"gpu_memory_utilization ({est(term(base, 'kv_cache'))} GiB)")
        mml = int(after.settings.get("max_model_len") or 0)
        return (f"{lead}; {assign(setting, trial.value)} ({est(trial.value / GiB)} GiB) fixes it at "
                f"{fmt_tokens(after.kv_cache_tokens or 0)} tokens, enough for max_model_len={fmt_tokens(mml)}, {tail}.")
    return (f"{assign(setting, cur)} leaves {est(term(base, 'kv_cache'))} GiB for the KV cache; {new} leaves "
            f"{est(term(after, 'kv_cache'))} GiB, {tail}.")


def why_sentence(setting: str, base, trial: Trial, outcome: str, fix: dict | None = None) -> str:
    """One sentence a user understands: what the current value costs, what the suggested value gives."""
    name = shrunk_term(setting, base, trial.plan)
    if trial.ok:
        tail = f"which fits {card_phrase(base.card)}"
    elif fix:
        tail = "not enough alone; combined: " + fix_words(fix)
    else:
        tail = "not enough alone"
    new = assign(setting, trial.value) + units_phrase(setting, trial.value, base)
    if name == "encoder_profile" and (base.profile or {}).get("encoder_items"):
        return _why_encoder(setting, base, trial, new, tail)
    if name == "activation_peak":
        return _why_activation(setting, base, trial, new, tail)
    if name == "cuda_graph":
        return _why_cuda_graph(setting, base, trial, new, tail)
    if name == "budget" and outcome == "insufficient_free_memory":
        return _why_free_memory(setting, base, trial, new, tail, outcome)
    if name == "budget" and setting == "gpu_memory_utilization" and budget_gib(base) is not None \
            and budget_gib(trial.plan) is not None:
        return _why_utilization(setting, base, trial, new, tail)
    if name == "kv_cache":
        return _why_kv(setting, base, trial, new, tail)
    after = trial.plan
    return (f"{assign(setting, base.settings.get(setting))} -> {new} moves {name} from {est(term(base, name))} to "
            f"{est(term(after, name))} GiB and the start-up peak to {est(after.peak_gib)} GiB, {tail}.")


def ok_summary(plan) -> str:
    kv = plan.kv_cache_tokens
    return (f"Predicted to start: start-up peak {est(plan.peak_gib)} GiB on {card_phrase(plan.card)}"
            + (f", KV cache {fmt_tokens(kv)} tokens." if kv else "."))


def _weights_head(plan) -> str:
    """oom_weights in one sentence; dtype=float32 is named as the cause where it is one."""
    if plan.settings.get("dtype") in ("float32", "float"):
        half = "float16" if plan.card.capability is not None and plan.card.capability < (8, 0) else "bfloat16"
        return (f"The weights take {est(term(plan, 'weights'))} GiB in float32 and would not fit on "
                f"{card_phrase(plan.card)}; dtype={half} halves them.")
    return (f"The weights ({est(term(plan, 'weights'))} GiB) would not fit on {card_phrase(plan.card)}; none of the "
            "searched settings changes weight memory (cpu_offload_gb, a quantized checkpoint or tensor parallelism "
            "do).")


def plan_summary(plan, outcome: str, phase: str, fix: dict, fixed) -> str:
    """The plan's failure in one sentence, then the smallest fix and what it gives (`fixed`: the plan with `fix`)."""
    head = {
        "oom_profile": f"The profile run would run out of memory ({phase.replace('_', ' ')}): predicted peak "
                       f"{est(plan.peak_gib)} GiB on {card_phrase(plan.card)}.",
        "no_kv_cache": f"Nothing would be left for the KV cache ({est(term(plan, 'kv_cache'))} GiB) after weights "
                       f"and the profile run.",
        "kv_too_small": f"The KV cache would hold {fmt_tokens(plan.kv_cache_tokens or 0)} tokens, fewer than "
                        f"max_model_len={fmt_tokens(plan.settings.get('max_model_len') or 0)}.",
        "oom_cuda_graph": f"CUDA graph capture would run out of memory (about {est(term(plan, 'cuda_graph'))} GiB "
                          f"outside the budget).",
        "insufficient_free_memory": "The requested share of memory would exceed what is free at start-up.",
        "oom_weights": _weights_head(plan),
        "oom_kv_alloc": f"Allocating the KV cache ({est(term(plan, 'kv_cache'))} GiB) would run out of memory.",
    }.get(outcome, f"Predicted outcome {outcome} in phase {phase}.")
    if not fix:
        return head + " No change of the searched settings fits this card."
    tail = f" Smallest fix: {fix_words(fix)}"
    if fixed is not None:
        tail += f" (peak {est(fixed.peak_gib)} GiB" + (f", KV {fmt_tokens(fixed.kv_cache_tokens)} tokens)."
                                                      if fixed.kv_cache_tokens else ").")
    return head + tail


def breakdown(n: dict) -> str:
    """vLLM's own figures, in its words, for every summary that has them."""
    parts = []
    if n.get("gpu_total_gib") is not None and n.get("gpu_memory_utilization") is not None:
        budget = n.get("budget_gib", n.get("requested_gib", round(n["gpu_total_gib"] * n["gpu_memory_utilization"], 2)))
        parts.append(f"budget {num(n['gpu_total_gib'])} GiB x {n['gpu_memory_utilization']:.2f} = {num(budget)} GiB")
    for key, label in (("weights_gib", "weights"), ("non_torch_gib", "non-torch"),
                       ("activation_peak_gib", "activation peak"), ("cuda_graph_gib", "CUDA graphs"),
                       ("kv_cache_gib", "KV cache")):
        if n.get(key) is not None:
            parts.append(f"{label} {printed_gib(n[key])}")
    if n.get("kv_cache_tokens") is not None:
        parts.append(f"KV cache {fmt_tokens(n['kv_cache_tokens'])} tokens")
    if n.get("gpu_blocks") is not None:
        parts.append(f"{fmt_tokens(n['gpu_blocks'])} GPU blocks")
    if n.get("encoder_budget_tokens") is not None:
        items = n.get("encoder_items")
        parts.append(f"encoder budget {fmt_tokens(n['encoder_budget_tokens'])} tokens"
                     + (f" profiled with {fmt_tokens(items)} {n.get('encoder_modality') or 'multimodal'} items"
                        if items is not None else ""))
    return ("vLLM's own figures: " + "; ".join(parts) + ".") if parts else ""
