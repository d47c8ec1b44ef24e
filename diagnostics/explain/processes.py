"""From a log: other processes on the device. A PyTorch OOM message lists every process NVML sees; when the others
hold at least the memory that was missing (tried - free), they are the cause, not a vLLM setting."""

from __future__ import annotations

from diagnostics.explain.context import Ctx, floor2
from diagnostics.explain.model import Culprit
from diagnostics.explain.terms import KV_GIB_MARGIN, util_direction
from diagnostics.explain.words import num


def shortfall_gib(ctx: Ctx) -> float | None:
    """What the failed allocation lacked (GiB): tried - free, from the OOM message."""
    tried, free = ctx.n.get("oom_tried_gib"), ctx.n.get("oom_free_gib")
    return None if tried is None or free is None else max(float(tried) - float(free), 0.0)


def other_processes(ctx: Ctx) -> Culprit | None:
    """The culprit "other processes" when they hold the missing memory, else None.

    Its `suggested` is the gpu_memory_utilization that leaves them room on a shared card ((total - others -
    margin) / total), offered where lowering utilization cures this outcome (after the profile run); elsewhere only
    stopping them helps (None)."""
    others, short = ctx.n.get("other_processes_gib"), shortfall_gib(ctx)
    if not others or short is None or float(others) < short:
        return None
    procs = [p for p in ctx.record.gpu_processes if not p["this_process"]]
    listed = ", ".join(f"pid {p['pid']} {num(p['gib'])} GiB" for p in procs[:6])
    total = ctx.total_gib()
    util = ctx.setting("gpu_memory_utilization", "gpu_memory_utilization")
    new_u = None
    if total and util_direction(ctx.record.outcome, ctx.engine) < 0:
        new_u = floor2((float(total) - float(others) - KV_GIB_MARGIN) / float(total))
        if util is not None and new_u >= float(util):
            new_u = None  # the current budget already leaves them room: only stopping them helps
    why = (f"other processes hold {num(others)} GiB on this GPU ({listed}), at least the {num(short)} GiB the "
           f"allocation lacked: stop them" + (f", or on a shared card lower gpu_memory_utilization to {new_u:g} so "
                                              f"vLLM's budget leaves them room" if new_u is not None else "") + ".")
    return Culprit("gpu_memory_utilization", util, new_u, "other_processes", why, True, float(others), 1)


def blame_head(culprit: Culprit) -> str:
    """The sentence that opens the summary when other processes are the cause."""
    return culprit.why[0].upper() + culprit.why[1:]
