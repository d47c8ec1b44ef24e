"""From a log: the KV cache failures (kv_too_small, no_kv_cache). vLLM's printed figures set the level; the
estimator only says how much a change of the profile run moves the activation peak."""

from __future__ import annotations

import math

from diagnostics.explain.context import Ctx, ceil2, estimated_effects, first_enough, printed_budget
from diagnostics.explain.model import Culprit, Explanation
from diagnostics.explain.terms import KV_GIB_MARGIN, term
from diagnostics.explain.words import assign, est, num, printed_gib, show
from diagnostics.units import GiB, MiB, fmt_tokens


def _kv_bytes_suggestion(current_bytes, have_tokens, want_tokens) -> int | None:
    if not current_bytes or not have_tokens:
        return None
    need = float(current_bytes) * float(want_tokens) / float(have_tokens)
    return int(math.ceil(need / MiB) * MiB)


def _pool_tokens(ctx: Ctx):
    """How many tokens the KV pool holds, as the log printed it (estimate, tokens, or blocks x block_size)."""
    n = ctx.n
    est_len = n.get("estimated_max_model_len")
    if est_len is None and n.get("kv_cache_tokens") is not None:
        est_len = n["kv_cache_tokens"]
    if est_len is None and n.get("gpu_blocks") is not None:
        est_len = int(n["gpu_blocks"]) * int(ctx.settings.get("block_size") or 16)
    return est_len


def printed_need(ctx: Ctx) -> tuple[float, float] | None:
    """(needed, available) GiB from vLLM's "N GiB KV cache is needed ... available KV cache memory (M GiB)"; their
    ratio is the growth the pool needs (a token ratio is not: hybrid and sliding-window layers differ)."""
    need, avail = ctx.n.get("kv_needed_gib"), ctx.n.get("kv_cache_gib")
    if need is None or avail is None or float(avail) <= 0:
        return None
    return float(need), float(avail)


def _growth_words(ctx: Ctx, mml, est_len) -> tuple[float, str] | None:
    """(factor, "N.NNx (a / b ...)") the KV pool must grow by: vLLM's GiB figures first, else tokens."""
    if (printed := printed_need(ctx)) is not None:
        need, avail = printed
        return need / avail, f"{need / avail:.2f}x ({num(need)} / {num(avail)} GiB, vLLM's figures)"
    if mml and est_len:
        return mml / est_len, f"{mml / est_len:.2f}x ({fmt_tokens(mml)} / {fmt_tokens(est_len)} tokens)"
    return None


def _kv_bytes_culprits(ctx: Ctx, mml, est_len, pool: str) -> list[Culprit]:
    kv_bytes = ctx.settings.get("kv_cache_memory_bytes")
    printed = printed_need(ctx)
    if printed is not None:  # vLLM said what one request needs: the pool that holds it
        s = int(math.ceil((printed[0] + KV_GIB_MARGIN) * GiB / MiB) * MiB)
    else:
        s = _kv_bytes_suggestion(kv_bytes, est_len, mml) if kv_bytes else (
            int(math.ceil(mml * ctx.kv_bytes_per_token() / MiB) * MiB) if ctx.model is not None else None)
    if s:
        growth = _growth_words(ctx, mml, est_len)
        why = (f"with kv_cache_memory_bytes={show(kv_bytes)} {pool}; kv_cache_memory_bytes={s} "
               f"({est(s / GiB)} GiB) holds max_model_len={fmt_tokens(mml)}"
               + (f" (the pool must grow {growth[1]})" if printed is not None and growth else
                  " (scaled from the printed estimate)" if kv_bytes else "") + ".")
        return [Culprit("kv_cache_memory_bytes", kv_bytes, s, "kv_cache", why, True,
                        float((s - (kv_bytes or 0)) / GiB), 1)]
    growth = _growth_words(ctx, mml, est_len)
    if growth is None:
        return []
    why = (f"kv_cache_memory_bytes (or gpu_memory_utilization) sizes the KV pool: it must grow at least "
           f"{growth[1]} to hold one max_model_len={fmt_tokens(mml)} request.")
    # The log did not echo the pool size, so the suggestion is the factor it must grow by.
    return [Culprit("kv_cache_memory_bytes", kv_bytes, f">= {growth[0]:.2f}x the current pool", "kv_cache", why,
                    False, 0.0, 1)]


def _util_for_kv(ctx: Ctx, mml, est_len, others: list[Culprit]) -> list[Culprit]:
    util = ctx.setting("gpu_memory_utilization", "gpu_memory_utilization")
    total = ctx.total_gib()
    if ctx.settings.get("kv_cache_memory_bytes") or util is None:
        return []
    printed = printed_need(ctx)
    if total and mml is not None and (printed is not None or (ctx.model is not None and est_len is not None)):
        extra = (printed[0] - printed[1]) if printed is not None else (mml - est_len) * ctx.kv_bytes_per_token() / GiB
        new_u = ceil2(float(util) + (extra + KV_GIB_MARGIN) / float(total))
        if new_u > 1.0:
            return []
        why = (f"gpu_memory_utilization={util:g} leaves room for {fmt_tokens(est_len)} tokens; one "
               f"max_model_len={fmt_tokens(mml)} request needs {est(extra)} GiB more, which "
               f"gpu_memory_utilization={new_u:g} gives.")
        return [Culprit("gpu_memory_utilization", util, new_u, "budget", why, True, extra, 1)]
    if others[1:]:
        return []
    why = (f"gpu_memory_utilization={util:g} sets how much memory the KV cache gets; raising it (or setting "
           f"kv_cache_memory_bytes where supported) makes room for max_model_len={fmt_tokens(mml or 0)}.")
    return [Culprit("gpu_memory_utilization", util, ceil2(min(1.0, float(util) + 0.05)), "budget", why, False,
                    0.0, 1)]


def kv_too_small(ctx: Ctx) -> Explanation:
    """One max_model_len request does not fit the KV pool: lower max_model_len to what the pool holds, or grow
    the pool (kv_cache_memory_bytes where the version has it, else gpu_memory_utilization)."""
    n = ctx.n
    mml = ctx.setting("max_model_len", "max_model_len")
    est_len = _pool_tokens(ctx)
    culprits, fix = [], {}
    pool = f"the KV pool holds {fmt_tokens(est_len)} tokens" if est_len is not None else "the KV pool is too small"
    if ctx.settings.get("kv_cache_memory_bytes"):  # the pool's exact size, where the log printed 0.0 GiB
        pool += f" ({est(float(ctx.settings['kv_cache_memory_bytes']) / GiB)} GiB)"
    elif n.get("kv_cache_gib") is not None:
        pool += f" ({printed_gib(n['kv_cache_gib'])})"
    if mml is not None:
        sugg = int(est_len) if est_len is not None else None
        why = (f"max_model_len={fmt_tokens(mml)} needs KV space for {fmt_tokens(mml)} tokens in one request but "
               f"{pool}" + (f" (vLLM's estimated maximum model length is {fmt_tokens(est_len)})"
                            if n.get("estimated_max_model_len") is not None else "")
               + (f": set max_model_len<={fmt_tokens(sugg)}" if sugg else ": lower max_model_len")
               + " or give the KV cache more memory.")
        culprits.append(Culprit("max_model_len", mml, sugg, "kv_cache", why, True,
                                float((mml - (est_len or 0)) * ctx.kv_bytes_per_token() / GiB), 1))
        if sugg:
            fix = {"max_model_len": sugg}
    if ctx.has_kv_bytes_knob() and mml is not None:
        culprits += _kv_bytes_culprits(ctx, mml, est_len, pool)
    culprits += _util_for_kv(ctx, mml, est_len, culprits)
    head = (f"The KV cache is smaller than one max_model_len request: {pool} but max_model_len="
            f"{fmt_tokens(mml) if mml is not None else '?'}.")
    if (growth := _growth_words(ctx, mml, est_len)) is not None:
        head += f" The KV pool must grow {growth[1]}."
    return ctx.explanation(culprits, head, fix)


def _non_kv_use(ctx: Ctx):
    """(parts printed, non-KV GiB used, KV GiB, util) for a no_kv_cache log; None where the log lacks it."""
    n = ctx.n
    total, util = n.get("gpu_total_gib"), ctx.setting("gpu_memory_utilization", "gpu_memory_utilization")
    parts = {k: n.get(k) for k in ("weights_gib", "activation_peak_gib", "non_torch_gib")}
    if parts["weights_gib"] is None and n.get("consumed_gib") is not None:  # 0.27+: weights + non-torch in one
        parts = {"consumed_gib": n["consumed_gib"], "activation_peak_gib": n.get("activation_peak_gib")}
    used = sum(v for v in parts.values() if v is not None) if all(v is not None for v in parts.values()) else None
    if used is not None and _graphs_apart(ctx):
        used += n["cuda_graph_gib"]
    kv = n.get("kv_cache_gib")
    if kv is None and used is not None and total and util is not None:
        kv = float(total) * float(util) - used
    if used is None and kv is not None and n.get("requested_gib") is not None:
        used = float(n["requested_gib"]) - float(kv)  # vLLM printed the request and what was left of it
        parts = None
        if util is None and total:
            util = round(float(n["requested_gib"]) / float(total), 2)
    return parts, used, kv, util


def _what_is_used(ctx: Ctx, parts) -> str:
    if parts and "consumed_gib" in parts:
        what = (f"consumed (weights + non-torch) {num(parts['consumed_gib'])} + activation "
                f"{num(parts['activation_peak_gib'])}")
    elif parts:
        what = (f"weights {num(parts['weights_gib'])} + activation {num(parts['activation_peak_gib'])} + "
                f"non-torch {num(parts['non_torch_gib'])}")
    else:
        what = "non-KV memory"
    if _graphs_apart(ctx) and parts:
        what += f" + CUDA graphs {num(ctx.n['cuda_graph_gib'])}"
    elif parts and "activation_peak_without_cuda_graph_gib" in ctx.n:
        what += " (the activation figure holds the CUDA-graph estimate, 0.27+)"
    return what


def _graphs_apart(ctx: Ctx) -> bool:
    """V1's CUDA-graph memory comes on top of the printed activation peak, except from 0.27, whose printed peak
    activation already holds the graph estimate (logs.reader stores activation_peak_without_cuda_graph_gib then)."""
    return (ctx.n.get("cuda_graph_gib") is not None and ctx.engine == "V1"
            and "activation_peak_without_cuda_graph_gib" not in ctx.n)


def _raise_util(ctx: Ctx, parts, used, util, need: float, mml) -> tuple[list[Culprit], dict]:
    """The utilization that leaves room for one max_model_len request, sized from vLLM's printed figures."""
    total, kv_bytes = ctx.n.get("gpu_total_gib"), ctx.settings.get("kv_cache_memory_bytes")
    if used is not None and total and util is not None:
        margin = need + KV_GIB_MARGIN
        new_u = ceil2((used + margin) / float(total))
        ok = new_u <= 1.0
        why = (f"{_what_is_used(ctx, parts)} = {num(used)} GiB exceeds total x util = {num(total)} x {util:.2f} = "
               f"{num(printed_budget(ctx.n, total, util))} GiB: raise gpu_memory_utilization to >= "
               f"({num(used)} + {est(margin)}) / {num(total)} = {new_u:g}"
               + (f" ({est(need)} GiB is one max_model_len={fmt_tokens(mml)} request)" if need else "")
               + ("" if ok else ", more than the card has: shrink the profile run instead") + ".")
        if kv_bytes:
            return [], {}
        return ([Culprit("gpu_memory_utilization", util, min(new_u, 1.0), "budget", why, ok,
                         float(total) * (min(new_u, 1.0) - float(util)), 1)],
                {"gpu_memory_utilization": new_u} if ok else {})
    if kv_bytes:
        return [], {}
    cur = f"gpu_memory_utilization={util:g}" if util is not None else "gpu_memory_utilization"
    why = (f"{cur} leaves nothing for the KV cache after weights and the profile run; raise it (vLLM's own "
           f"advice)" + (" or set kv_cache_memory_bytes" if ctx.has_kv_bytes_knob() else "")
           + ", or shrink the profile run (the log prints no figures to size the change).")
    return [Culprit("gpu_memory_utilization", util, ceil2(min(1.0, float(util) + 0.1)) if util is not None else None,
                    "budget", why, False, 0.0, 1)], {}


def _shrink_profile(ctx: Ctx, act, kv, need: float) -> list[Culprit]:
    """Changes that shrink the profile run's activation peak enough to leave room for the KV cache (estimate)."""
    short = need + KV_GIB_MARGIN - kv
    out = []
    for setting, value, steps, saved, enough, p in first_enough(
            estimated_effects(ctx.plan, "no_kv_cache", lambda q: term(q, "activation_peak")
                              + term(q, "encoder_profile")), short):
        cur = ctx.plan.settings.get(setting)
        why = (f"the profile run's activation peak is {num(act)} GiB (vLLM's figure) with {assign(setting, cur)}; "
               f"{assign(setting, value)} shrinks it by about {est(saved)} GiB (estimate), "
               + ("enough to leave room for the KV cache." if enough else f"short of the {est(short)} GiB needed."))
        out.append(Culprit(setting, cur, value, "activation_peak", why, enough, saved, steps))
    return out


def no_kv_cache(ctx: Ctx) -> Explanation:
    """Nothing left for the KV cache: raise gpu_memory_utilization to cover what vLLM printed as used plus one
    request, grow a too-small kv_cache_memory_bytes, or shrink the profile run."""
    parts, used, kv, util = _non_kv_use(ctx)
    mml = ctx.setting("max_model_len", "max_model_len")
    need = (mml * ctx.kv_bytes_per_token() / GiB) if (mml and ctx.model is not None) else 0.0
    culprits, fix = _raise_util(ctx, parts, used, util, need, mml)
    kv_bytes = ctx.settings.get("kv_cache_memory_bytes")
    if kv_bytes and ctx.has_kv_bytes_knob():
        want = max(need, float(kv_bytes) / GiB * 2)
        s = int(math.ceil(want * GiB / MiB) * MiB)
        why = (f"kv_cache_memory_bytes={kv_bytes} is smaller than one KV block; kv_cache_memory_bytes={s} "
               f"({est(s / GiB)} GiB)" + (f" holds max_model_len={fmt_tokens(mml)}" if need else "") + ".")
        culprits.append(Culprit("kv_cache_memory_bytes", kv_bytes, s, "kv_cache", why, True, want, 1))
        fix = fix or {"kv_cache_memory_bytes": s}
    act = (parts or {}).get("activation_peak_gib")
    if act is not None and kv is not None:
        culprits += _shrink_profile(ctx, act, kv, need)
    culprits.sort(key=lambda c: (not c.fixes_alone, -c.effect_gib))
    head = "No memory was left for the KV cache" + (f" ({num(kv)} GiB)" if kv is not None else "") + "."
    if ctx.is_cpu:
        head += " On the CPU backend gpu_memory_utilization is the share of NUMA node 0's memory."
    return ctx.explanation(culprits, head, fix)
