"""From a log: start-up check and out-of-memory failures (insufficient_free_memory, oom_profile, the OOMs after
the profile run) and everything else. gpu_memory_utilization is never advised for an OOM inside the profile
run, which runs without any budget (vllm-memory.md §3)."""

from __future__ import annotations

from diagnostics.explain.context import Ctx, estimated_effects, first_enough, floor2, printed_budget
from diagnostics.explain.kv_advice import no_kv_cache
from diagnostics.explain.model import Culprit, Explanation
from diagnostics.explain.processes import blame_head, other_processes
from diagnostics.explain.search import explain_plan
from diagnostics.explain.terms import KV_GIB_MARGIN, failing_term, shrunk_term, util_direction
from diagnostics.explain.words import assign, est, num, profile_phrase, show
from diagnostics.predict.mm_fit import size_knob_fix, units_phrase
from diagnostics.units import GiB, MiB
from diagnostics.versions import parse_version


def insufficient_free_memory(ctx: Ctx) -> Explanation:
    """Less is free than util x total asks for: the utilization that fits what was free, or a fixed KV pool."""
    n = ctx.n
    free, total = n.get("free_gib", n.get("oom_free_gib")), n.get("gpu_total_gib")
    util = ctx.setting("gpu_memory_utilization", "gpu_memory_utilization")
    culprits, fix = [], {}
    where = "node 0" if ctx.is_cpu else "the device"
    if free is not None and total:
        new_u = floor2((float(free) - KV_GIB_MARGIN) / float(total))
        why = (f"gpu_memory_utilization={show(util)} asks for {num(printed_budget(n, total, util))} GiB but only "
               f"{num(free)} of {num(total)} GiB are free on {where} at start-up: set gpu_memory_utilization<="
               f"{new_u:g} or free memory used by other processes.")
        culprits.append(Culprit("gpu_memory_utilization", util, new_u, "budget", why, True,
                                float(total) * (float(util or 0) - new_u), 1))
        fix = {"gpu_memory_utilization": new_u}
    elif util is not None:
        why = (f"gpu_memory_utilization={show(util)} asks for more than is free on {where}: lower it or stop "
               f"other processes.")
        culprits.append(Culprit("gpu_memory_utilization", util, floor2(float(util) - 0.1), "budget", why, False))
    if ctx.has_kv_bytes_knob():
        why = ("kv_cache_memory_bytes sizes the KV cache directly and skips the start-up utilization check"
               + (" (the CPU backend's recommended setting)." if ctx.is_cpu else "."))
        culprits.append(Culprit("kv_cache_memory_bytes", ctx.settings.get("kv_cache_memory_bytes"),
                                64 * MiB if ctx.is_cpu else None, "kv_cache", why, True, 0.0, 1))
    head = f"Less memory is free on {where} than gpu_memory_utilization asks for."
    return ctx.explanation(culprits, head, fix)


def _peak(q) -> float:
    return float(q.peak_gib or 0.0)


def _sized_profile_culprits(ctx: Ctx, term: str, tried, free, short: float) -> list[Culprit]:
    """Changes whose estimated saving covers what the run lacked (vLLM's tried - free), nearest first."""
    out = []
    for setting, value, steps, saved, enough, p in first_enough(estimated_effects(ctx.plan, "oom_profile", _peak),
                                                                 short, "oom_profile"):
        cur = ctx.plan.settings.get(setting)
        encoder = term == "encoder_profile"
        lead = (f"{assign(setting, cur)} makes the profile run push {profile_phrase(ctx.plan)} through the "
                f"vision encoder" if encoder and profile_phrase(ctx.plan) else f"{assign(setting, cur)} sizes the "
                                                                                f"profile run")
        why = (f"{lead}; the run asked for {num(tried)} GiB more with {num(free)} GiB free, and "
               f"{assign(setting, value)}{units_phrase(setting, value, ctx.plan)} "
               + (f"brings it to {profile_phrase(p)}, " if encoder and profile_phrase(p) else "")
               + f"saving about {est(saved)} GiB (estimate), "
               + ("enough." if enough else f"short of the {est(short)} GiB needed."))
        out.append(Culprit(setting, cur, value, shrunk_term(setting, ctx.plan, p), why, enough, saved, steps))
    out.sort(key=lambda c: (not c.fixes_alone, -c.effect_gib, c.steps))
    return out


def _unsized_profile_culprits(ctx: Ctx, term: str) -> list[Culprit]:
    """The estimator thinks it fits, the log says it did not: name what shrinks the peak, size unknown."""
    out = []
    for setting, value, steps, saved, enough, p in first_enough(estimated_effects(ctx.plan, "oom_profile", _peak),
                                                                 float("inf")):
        cur = ctx.plan.settings.get(setting)
        why = (f"{assign(setting, cur)} sizes the profile run"
               + (f" ({profile_phrase(ctx.plan)})" if term == "encoder_profile" and profile_phrase(ctx.plan) else "")
               + f"; {assign(setting, value)} cuts its peak by about {est(saved)} GiB (estimate); the log "
                 f"does not say by how much the run overshot.")
        out.append(Culprit(setting, cur, value, shrunk_term(setting, ctx.plan, p), why, False, saved, steps))
    out.sort(key=lambda c: (-c.effect_gib, c.steps))
    return out


def _profile_culprits(ctx: Ctx, term: str, tried, free) -> tuple[list[Culprit], dict]:
    if ctx.plan is None:
        return [], {}
    if tried is not None and free is not None:
        culprits = _sized_profile_culprits(ctx, term, tried, free, float(tried) - float(free) + KV_GIB_MARGIN)
        if culprits and culprits[0].fixes_alone:
            # skip_mm_profiling last: it fixes the start by no longer guarding requests (issue 23)
            best = min((c for c in culprits if c.fixes_alone),
                       key=lambda c: (c.setting == "skip_mm_profiling", c.steps))
            return culprits, {best.setting: best.suggested}
        return culprits, {}
    if ctx.plan.verdict == "oom_profile":
        sub = explain_plan(ctx.plan)
        culprits = [c for c in sub.culprits if c.setting != "gpu_memory_utilization"]
        return culprits, ({k: v for k, v in sub.fix.items() if k != "gpu_memory_utilization"} if culprits else {})
    return _unsized_profile_culprits(ctx, term), {}


def oom_profile(ctx: Ctx) -> Explanation:
    """The profile run ran out of memory: what shrinks it (sized by the estimator), or rules of thumb."""
    n = ctx.n
    tried, free = n.get("oom_tried_gib"), n.get("oom_free_gib")
    term = failing_term("oom_profile", ctx.record.phase)
    culprits, fix = _profile_culprits(ctx, term, tried, free)
    if not culprits:
        culprits = rule_culprits(ctx, term)
    where = {"vision_encoder": " in the vision encoder", "language_model": " in the language-model pass",
             "sampler": " in the sampler"}.get(ctx.record.phase or "", "")
    head = "The profile run ran out of memory" + where
    if tried is not None and free is not None:
        head += f": it tried to allocate {num(tried)} GiB with {num(free)} GiB free"
        total = n.get("gpu_total_gib", n.get("oom_total_gib"))
        if total is not None:
            head += f" of {num(total)} GiB"
    head += ". gpu_memory_utilization does not help here: the profile run is not limited by it."
    return _with_other_processes(ctx, culprits, head, fix)


def _with_other_processes(ctx: Ctx, culprits: list[Culprit], head: str, fix: dict) -> Explanation:
    """The explanation, led by the other processes when they hold the missing memory (their culprit replaces a
    gpu_memory_utilization one sized from vLLM's own use, and sets the fix)."""
    blamed = other_processes(ctx)
    if blamed is None:
        return ctx.explanation(culprits, head, fix)
    culprits = [blamed] + [c for c in culprits if c.setting != "gpu_memory_utilization"]
    fix = {"gpu_memory_utilization": blamed.suggested} if blamed.suggested is not None else {}
    return ctx.explanation(culprits, blame_head(blamed) + " " + head, fix)


def rule_culprits(ctx: Ctx, term: str) -> list[Culprit]:
    """Rules of thumb (vllm-memory.md §7) when neither figures nor a model let us compute a change."""
    s = ctx.settings
    if term == "encoder_profile":
        if ctx.engine == "V0":
            names = ("max_num_seqs", "max_model_len", "limit_mm_per_prompt")
            why = "in V0 the dummy image count is min(max_num_seqs, max_num_batched_tokens / tokens-per-image)"
        else:
            names = ("max_num_batched_tokens", "limit_mm_per_prompt")
            why = "in V1 the encoder budget equals max_num_batched_tokens, and video items are the largest"
            if parse_version(ctx.version) >= (0, 10, 1):
                names += ("skip_mm_profiling",)
    else:
        names = ("max_num_batched_tokens", "max_num_seqs")
        why = "the language-model pass covers max_num_batched_tokens tokens and the sampler max_num_seqs rows"
    out = family_culprits(ctx, term)
    for name in names:
        cur = s.get(name)
        sugg = {"limit_mm_per_prompt": {"image": 1, "video": 0}, "skip_mm_profiling": True}.get(name)
        if sugg is None and isinstance(cur, int) and cur > 1:
            sugg = cur // 2
        out.append(Culprit(name, cur, sugg, term, f"{name}: {why} (no figures to size the change).", False, 0.0, 1))
    return out


def family_culprits(ctx: Ctx, term: str) -> list[Culprit]:
    """The family's advised knobs first (its data, families.*.knobs: Qwen max_pixels; InternVL max_patches;
    Llama-3.2-Vision max_num_seqs and enforce_eager), when the log's model is a family's with advised knobs; the
    generic rules name limit_mm_per_prompt after them."""
    family = getattr(ctx.model, "family", None)
    if family is None or term != "encoder_profile":
        return []
    advised = [k for k in family.knobs if k.advise]
    out = []
    fitted = size_knob_fix(ctx.plan) if ctx.plan is not None else None
    for i, knob in enumerate(advised):
        if i and knob.setting in ("limit_mm_per_prompt", advised[0].setting):
            continue  # named in the first knob's sentence
        why = (f"{knob.setting}: the {family.variant} knob for the profile run's dummy items: {family.knob}." if not i
               else f"{knob.setting}: {knob.why}.")
        name, suggested = knob.setting, knob.setting_value({}, knob.suggestion)
        if not i and fitted is not None:  # the largest value that plans ok with the log's other settings
            name, suggested = "mm_processor_kwargs", fitted.at.overrides["mm_processor_kwargs"]
            why = (f"{name}: the largest {fitted.knob.name} that plans ok with the log's other settings is "
                   f"{fitted.knob.label(fitted.value)} (plan --fit {fitted.knob.name}; estimate).")
        out.append(Culprit(name, ctx.settings.get(name), suggested, term, why, False, 0.0, 1))
    return out


AFTER_PROFILE_WHERE = {"oom_cuda_graph": "CUDA graph capture", "oom_kv_alloc": "KV cache allocation",
                       "oom_warmup": "the warm-up", "oom_request": "the first request"}


def _lower_util(ctx: Ctx, where: str, tried, free, total) -> list[Culprit]:
    util = ctx.setting("gpu_memory_utilization", "gpu_memory_utilization")
    if util is None or util_direction(ctx.record.outcome, ctx.engine) >= 0 or ctx.settings.get("kv_cache_memory_bytes"):
        return []
    if tried is not None and free is not None and total:
        new_u = floor2(float(util) - (float(tried) - float(free) + KV_GIB_MARGIN) / float(total))
        why = (f"gpu_memory_utilization={util:g} leaves {est(float(total) * (1 - float(util)))} GiB outside vLLM's "
               f"budget but {where} asked for {num(tried)} GiB with {num(free)} GiB free: "
               f"gpu_memory_utilization={new_u:g} leaves enough.")
        ok = True
    else:
        new_u = floor2(float(util) - 0.05)
        why = (f"gpu_memory_utilization={util:g} leaves too little outside vLLM's budget for {where}: lower it, "
               f"e.g. to {new_u:g}.")
        ok = False
    return [Culprit("gpu_memory_utilization", util, new_u, "budget", why, ok,
                    float(total or 0) * (float(util) - new_u), 1)]


def _smaller_kv_pool(ctx: Ctx, where: str, tried, free) -> list[Culprit]:
    kv = ctx.n.get("kv_cache_gib")
    if kv is None or tried is None or free is None:
        return []
    s_bytes = int(max(float(kv) - (float(tried) - float(free)) - KV_GIB_MARGIN, 0.0) * GiB // MiB * MiB)
    if s_bytes <= 0:
        return []
    why = (f"the KV cache took {num(kv)} GiB; kv_cache_memory_bytes={s_bytes} ({est(s_bytes / GiB)} GiB) "
           f"frees what {where} lacked.")
    return [Culprit("kv_cache_memory_bytes", ctx.settings.get("kv_cache_memory_bytes"), s_bytes, "kv_cache", why,
                    True, float(kv) - s_bytes / GiB, 1)]


def after_profile(ctx: Ctx) -> Explanation:
    """OOM in graph capture, KV allocation, V0 warm-up or the first request: lower gpu_memory_utilization (sized
    from the OOM message), enforce_eager for graphs, a smaller fixed KV pool. A negative KV request (CPU
    backend) is a too-small budget instead: answered as no_kv_cache."""
    n, outcome = ctx.n, ctx.record.outcome
    if outcome == "oom_kv_alloc" and n.get("kv_cache_gib") is not None and n["kv_cache_gib"] < 0:
        return no_kv_cache(ctx)  # a negative KV request (CPU backend): the budget is too small, not too big
    tried, free, total = n.get("oom_tried_gib"), n.get("oom_free_gib"), n.get("gpu_total_gib")
    where = AFTER_PROFILE_WHERE[outcome]
    culprits = _lower_util(ctx, where, tried, free, total)
    fix = {"gpu_memory_utilization": culprits[0].suggested} if culprits and culprits[0].fixes_alone else {}
    if outcome == "oom_cuda_graph" and not ctx.settings.get("enforce_eager"):
        cg = n.get("cuda_graph_gib")
        why = ("enforce_eager=True skips CUDA graph capture" + (f" ({num(cg)} GiB)" if cg is not None else "")
               + "; fewer graphs also come from a smaller max_num_seqs.")
        culprits.append(Culprit("enforce_eager", bool(ctx.settings.get("enforce_eager", False)), True, "cuda_graph",
                                why, True, float(cg or 0.0), 1))
        fix = fix or {"enforce_eager": True}
    if ctx.has_kv_bytes_knob() and outcome in ("oom_cuda_graph", "oom_kv_alloc"):
        culprits += _smaller_kv_pool(ctx, where, tried, free)
    head = f"{where[0].upper() + where[1:]} ran out of memory after the profile run"
    if tried is not None and free is not None:
        head += f" (tried {num(tried)} GiB, {num(free)} GiB free)"
    head += "; lowering gpu_memory_utilization leaves more room for it." if any(
        c.setting == "gpu_memory_utilization" for c in culprits) else "."
    return _with_other_processes(ctx, culprits, head, fix)


BLAME_NONE = " The log does not show which phase ran out of memory, so no setting can be blamed from it."


def other(ctx: Ctx) -> Explanation:
    """ok, unknown, and failures that are not about memory: said as they are, no culprits."""
    outcome = ctx.record.outcome
    if outcome == "ok":
        head = "The engine started."
    elif outcome == "unknown":
        head = "This does not read as a vLLM start-up that failed on memory (outcome unknown)."
    else:
        head = f"Outcome {outcome} in phase {ctx.record.phase or 'unknown'}"
        err = ctx.record.error_line
        head += f": {err.strip()}" if err else "."
        if outcome == "oom_unknown":
            head += BLAME_NONE
            return _with_other_processes(ctx, [], head, {})
    return ctx.explanation([], head, {})
