"""Before a long sweep, prove that this box's memory measurement can be trusted (`python -m diagnostics selfcheck`).

Five checks, each a `Check(name, status, detail)` with status "ok" | "warn" | "unavailable" | "fail":
1. device: NVML sees the device and its total matches the card profile (`--card`, else the card NVML's name
   matches) within TOTAL_TOLERANCE_GIB.
2. per-process: NVML lists this process with its usedGpuMemory (containers with their own pid namespace often
   hide it: "unavailable", not a failure; the device figure is then the one to trust).
3. known allocation: the sampler (engine/sampler.py, NvmlSource at its 10 ms interval) sees a 1 GiB allocation
   within 1 % as its device peak above the baseline.
4. short allocation: it catches an allocation held PLANTED_HOLD_S (10 ms), in each of PLANTED_TRIALS trials.
5. baseline: once everything is freed, the device is back at its baseline within BASELINE_TOLERANCE_BYTES.

The allocator is injected (`Allocator`: alloc(bytes) -> handle, free(handle)); the command passes torch's (the
caching allocator's cache is emptied on free, so the driver sees the release); the tests pass one that moves a
fake NVML's counters. No vLLM here.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from typing import Protocol

from diagnostics.cards import Card, names_card
from diagnostics.engine.nvml import nvml_text, open_nvml
from diagnostics.engine.sampler import NvmlSource, Sampler
from diagnostics.units import GiB, MiB, fmt_gib

KNOWN_BYTES = GiB
KNOWN_TOLERANCE = 0.01
PLANTED_BYTES = 256 * MiB
PLANTED_HOLD_S = 0.010
PLANTED_TRIALS = 5
BASELINE_TOLERANCE_BYTES = 32 * MiB
TOTAL_TOLERANCE_GIB = 0.5
SETTLE_S = 0.05
STATUSES = ("ok", "warn", "unavailable", "fail")


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # one of STATUSES
    detail: str

    def to_json(self) -> dict:
        return {"name": self.name, "status": self.status, "detail": self.detail}


class Allocator(Protocol):
    def alloc(self, nbytes: int): ...

    def free(self, handle) -> None: ...


def trusted(checks: list[Check]) -> bool:
    """Measurement can be trusted when no check failed ("unavailable" per-process accounting is allowed)."""
    return all(c.status != "fail" for c in checks)


def check_device(nvml, handle, card: Card | None) -> Check:
    """NVML's name and total against the card profile (None: nothing to compare, only reported)."""
    name = nvml_text(nvml.nvmlDeviceGetName(handle))
    total_gib = nvml.nvmlDeviceGetMemoryInfo(handle).total / GiB
    seen = f"NVML: {name}, {fmt_gib(total_gib)} total"
    if card is None:
        return Check("device", "warn", f"{seen}; no card profile matches this name (pass --card or --cards)")
    off = total_gib - card.total_gib
    if card.nvml_names and not names_card(card, name):  # the plugin's rule (cards.names_card): whole names only
        return Check("device", "fail", f"{seen}; --card {card.name} is a {card.label}")
    if abs(off) > TOTAL_TOLERANCE_GIB:
        return Check("device", "fail", f"{seen}; card {card.name} says {fmt_gib(card.total_gib)} "
                                       f"({off:+.2f} GiB, tolerance {TOTAL_TOLERANCE_GIB} GiB): fix the profile "
                                       "in a --cards file")
    return Check("device", "ok", f"{seen}; card {card.name} {fmt_gib(card.total_gib)} ({off:+.2f} GiB)")


def check_per_process(nvml, handle, pid: int | None = None) -> Check:
    """Does NVML list this process (which holds a CUDA context by now) with its memory?"""
    pid = os.getpid() if pid is None else pid
    try:
        procs = nvml.nvmlDeviceGetComputeRunningProcesses(handle)
    except Exception as err:  # NVMLError, and NVMLLibraryMismatchError (driver < 510.39), which is no NVMLError
        return Check("per-process", "unavailable", f"NVML cannot list processes ({type(err).__name__}: {err}); "
                                                   "device figures only")
    mine = [p for p in procs if p.pid == pid]
    if not mine:
        return Check("per-process", "unavailable",
                     f"NVML lists {len(procs)} process(es), not this one (pid {pid}; a container's pid namespace?); "
                     "peak_process_gib will read 0, device figures only")
    used = mine[0].usedGpuMemory
    if used is None:
        return Check("per-process", "unavailable", "NVML lists this process without its memory (usedGpuMemory "
                                                   "unavailable); device figures only")
    return Check("per-process", "ok", f"NVML lists this process with {fmt_gib(used / GiB)}")


def _device_used(nvml, handle) -> int:
    return int(nvml.nvmlDeviceGetMemoryInfo(handle).used)


def baseline_bytes(nvml, handle, reads: int = 5) -> int:
    """The median of a few readings of the device's used bytes."""
    return int(statistics.median(_device_used(nvml, handle) for _ in range(reads)))


def _sampled(nvml, handle, action) -> tuple[int, int]:
    """(baseline bytes, sampler's device peak bytes) around `action()`, sampled at the sampler's own interval."""
    base = baseline_bytes(nvml, handle)
    sampler = Sampler(NvmlSource(os.getpid(), nvml=nvml, handle=handle)).start()
    try:
        time.sleep(SETTLE_S)
        action()
        time.sleep(SETTLE_S)
    finally:
        sampler.stop()
    if sampler.error:
        raise RuntimeError(f"the sampler stopped: {sampler.error}")
    return base, sampler.peak.device_bytes or 0


def check_known(nvml, handle, allocator: Allocator, nbytes: int = KNOWN_BYTES) -> Check:
    """The sampler's peak above baseline for a held allocation of `nbytes`, within KNOWN_TOLERANCE."""
    def hold():
        h = allocator.alloc(nbytes)
        time.sleep(0.3)
        allocator.free(h)

    base, peak = _sampled(nvml, handle, hold)
    seen = peak - base
    err = seen / nbytes - 1
    status = "ok" if abs(err) <= KNOWN_TOLERANCE else "fail"
    return Check("known allocation", status, f"{fmt_gib(nbytes / GiB)} allocated, sampler saw "
                                             f"{fmt_gib(seen / GiB, 3)} above baseline ({err:+.2%}, "
                                             f"tolerance {KNOWN_TOLERANCE:.0%})")


def check_planted(nvml, handle, allocator: Allocator, hold_s: float | None = None,
                  trials: int = PLANTED_TRIALS, nbytes: int = PLANTED_BYTES) -> Check:
    """How many of `trials` allocations held `hold_s` (default PLANTED_HOLD_S, 10 ms) the sampler catches (its
    peak >= 99 % of the allocation above baseline)."""
    hold_s = PLANTED_HOLD_S if hold_s is None else hold_s
    def blip():
        h = allocator.alloc(nbytes)
        time.sleep(hold_s)
        allocator.free(h)

    caught = 0
    for _ in range(trials):
        base, peak = _sampled(nvml, handle, blip)
        caught += peak - base >= nbytes * (1 - KNOWN_TOLERANCE)
    status = "ok" if caught == trials else ("warn" if caught else "fail")
    return Check("short allocation", status, f"caught {caught} of {trials} allocations of "
                                             f"{fmt_gib(nbytes / GiB)} held {hold_s * 1000:g} ms")


def check_baseline(nvml, handle, before: int) -> Check:
    """The device is back at `before` (bytes) within BASELINE_TOLERANCE_BYTES."""
    after = baseline_bytes(nvml, handle)
    diff = after - before
    status = "ok" if abs(diff) <= BASELINE_TOLERANCE_BYTES else "fail"
    return Check("back at baseline", status, f"device used {fmt_gib(after / GiB)} after, {fmt_gib(before / GiB)} "
                                             f"before ({diff / MiB:+.0f} MiB, tolerance "
                                             f"{BASELINE_TOLERANCE_BYTES // MiB} MiB)")


def run_checks(card: Card | None, allocator: Allocator, device=None, nvml=None) -> list[Check]:
    """All five checks on `device` (default: the first of CUDA_VISIBLE_DEVICES). NoGPU (a UsageError) when NVML
    cannot open it. `allocator` must already hold its CUDA context (so the baseline includes it)."""
    nvml, handle = open_nvml(device, nvml)
    try:
        checks = [check_device(nvml, handle, card), check_per_process(nvml, handle)]
        before = baseline_bytes(nvml, handle)
        checks.append(check_known(nvml, handle, allocator))
        checks.append(check_planted(nvml, handle, allocator))
        checks.append(check_baseline(nvml, handle, before))
        return checks
    finally:
        try:
            nvml.nvmlShutdown()
        except nvml.NVMLError:
            pass
