"""Phases on the timeline: vLLM's log stamps mapped onto the sample clock, per-phase peaks, the timeline CSV.

vLLM stamps its log lines "MM-DD HH:MM:SS" (local time, whole seconds). A marker is mapped to the sample
clock (seconds since spawn) through the wall clock: the stamp's second, minus the spawn time. Both processes
read the same clock, so the mapped time is at most 1 s before the event and never after it: nothing that
happened after a marker is attributed to the phase before it. If the log's clock disagrees with ours (another
TZ in the child's env, a container clock), the first stamp in the log is aligned with the moment the parent
first saw a stamped line instead (then the error is about +-1 s).
"""

from __future__ import annotations

import csv
import re
import time

from diagnostics.outcomes import MARKER_PHASES, TIMELINE_PHASES
from diagnostics.units import to_gib

LOG_STAMP = re.compile(r"\b(\d\d-\d\d \d\d:\d\d:\d\d)\b")

FIRST_PHASE = TIMELINE_PHASES[0]  # before vLLM stamps its first marker
UNKNOWN_PHASE = "unknown"  # a log without any marker: no reading can be placed in a phase
KV_MARKERS = ("profile_done", "kv_done", "graphs_done", "ready")  # each comes after the KV cache is sized


def stamp_epoch(stamp: str, near_epoch: float) -> float:
    """Epoch seconds of a local-time "MM-DD HH:MM:SS" stamp, taking the year that puts it nearest near_epoch."""
    year = time.localtime(near_epoch).tm_year
    candidates = []
    for y in (year - 1, year, year + 1):
        try:
            candidates.append(time.mktime(time.strptime(f"{y}-{stamp}", "%Y-%m-%d %H:%M:%S")))
        except ValueError:  # 02-29 in a non-leap year
            continue
    return min(candidates, key=lambda e: abs(e - near_epoch))


def phase_times(timestamps: dict, spawn_wall: float, first_stamp: str | None = None,
                first_seen_t_s: float | None = None, poll_slack_s: float = 0.5) -> dict[str, float]:
    """Marker -> seconds since spawn (see the note above)."""
    correction = 0.0
    if first_stamp is not None and first_seen_t_s is not None:
        first_rel = stamp_epoch(first_stamp, spawn_wall) - spawn_wall
        if not (0.0 <= first_seen_t_s - first_rel <= 1.0 + poll_slack_s):
            correction = first_seen_t_s - first_rel - 0.5
    known = dict(MARKER_PHASES)
    return {name: max(0.0, stamp_epoch(stamp, spawn_wall) - spawn_wall + correction)
            for name, stamp in timestamps.items() if name in known and stamp}


def phase_boundaries(times: dict[str, float]) -> list[tuple[float, str]]:
    """(start second, phase) in time order; within one second the markers keep vLLM's order. Without any
    marker every reading is in the "unknown" phase (not "init": it may hold the KV cache and CUDA graphs)."""
    if not times:
        return [(0.0, UNKNOWN_PHASE)]
    order = {name: i for i, (name, _) in enumerate(MARKER_PHASES)}
    phases = dict(MARKER_PHASES)
    if "graphs_done" in times:  # CUDA graphs were captured: after the KV size line comes the capture
        phases["kv_done"] = "cuda_graph"
    marks = sorted((t, order[name], phases[name]) for name, t in times.items())
    return [(0.0, FIRST_PHASE)] + [(t, phase) for t, _, phase in marks]


def phase_at(t_s: float, boundaries: list[tuple[float, str]]) -> str:
    current = FIRST_PHASE
    for start, phase in boundaries:
        if start <= t_s:
            current = phase
        else:
            break
    return current


def has_kv_marker(times: dict[str, float]) -> bool:
    """Did the log mark a point after which the KV cache exists? Without one, no peak is "before the KV cache":
    the last marked phase runs on over the KV allocation (a new log wording, VLLM_LOGGING_LEVEL=WARNING)."""
    return any(name in times for name in KV_MARKERS)


def phase_peaks(samples: list, boundaries: list[tuple[float, str]], use_device: bool) -> dict[str, int]:
    """Phase -> the largest device (GPU) or process (CPU) bytes among the readings taken in that phase. Pass
    every reading (Sampler.samples), not downsampled rows: a row's maximum may come from after a boundary."""
    peaks: dict[str, int] = {}
    for s in samples:
        value = s.device_bytes if use_device else s.process_bytes
        if value is None:
            continue
        phase = phase_at(s.t_s, boundaries)
        peaks[phase] = max(peaks.get(phase, 0), value)
    return peaks


def write_timeline_csv(path, samples: list, boundaries: list[tuple[float, str]]) -> None:
    """t_s,device_used_gib,process_gib,phase — one row per given sample (Sampler.timeline_rows(); device empty
    on CPU)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["t_s", "device_used_gib", "process_gib", "phase"])
        for s in samples:
            device = "" if s.device_bytes is None else f"{to_gib(s.device_bytes):.4f}"
            w.writerow([f"{s.t_s:.3f}", device, f"{to_gib(s.process_bytes):.4f}", phase_at(s.t_s, boundaries)])
