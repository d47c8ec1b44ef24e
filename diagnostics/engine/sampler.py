"""Memory sampling while an engine starts: NVML on a GPU, the process tree's RSS on vLLM's CPU backend.

Both sources sit behind one interface, `MemorySource.read() -> (device_bytes | None, process_bytes)`.
`Sampler` calls it in a thread (every 10 ms on a GPU, 50 ms on CPU), keeps the exact peak of every
reading, and stores a downsampled timeline: one row per storage window holding the window's maxima, so the
timeline's maximum is always the exact peak.

What the numbers mean:
  * GPU device bytes: `nvmlDeviceGetMemoryInfo(handle).used` for the whole card (every process on it).
  * GPU process bytes: `usedGpuMemory` that NVML lists for the pids of the child's process tree (the
    EngineCore/Worker processes of vLLM V1 included). In containers whose pid namespace differs from the
    host's, NVML's pids do not match and this reads 0 — the device figure is the reliable one there.
  * CPU process bytes: summed RSS of the process tree. Shared pages (the torch/vLLM libraries every
    process maps) count once per process, so it overstates what the tree takes from the host.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

from diagnostics.errors import UsageError

GPU_INTERVAL_S = 0.01
CPU_INTERVAL_S = 0.05
STORE_EVERY_S = 0.1
PID_REFRESH_S = 0.2


class NoGPU(UsageError):
    """NVML cannot be used here: one line saying why and what to run instead."""


def no_gpu(reason: str) -> NoGPU:
    error = NoGPU(f"no usable GPU: {reason}; run `python -m diagnostics plan ...` instead or use --card=cpu")
    error.reason = reason
    return error


def nvml_text(value) -> str:
    """NVML strings: bytes in old pynvml releases, str in nvidia-ml-py."""
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class Sample:
    """One stored timeline row: the maxima seen in the storage window that starts at t_s."""

    t_s: float
    device_bytes: int | None
    process_bytes: int


@dataclass
class Peak:
    """Exact maxima over every reading, and when (seconds since the sampler's t0) each happened."""

    device_bytes: int | None = None
    device_t_s: float | None = None
    process_bytes: int = 0
    process_t_s: float | None = None

    def update(self, t_s: float, device_bytes: int | None, process_bytes: int) -> None:
        if device_bytes is not None and (self.device_bytes is None or device_bytes > self.device_bytes):
            self.device_bytes, self.device_t_s = device_bytes, t_s
        if process_bytes > self.process_bytes or self.process_t_s is None:
            self.process_bytes, self.process_t_s = process_bytes, t_s


class MemorySource(Protocol):
    kind: str  # "nvml" | "rss"
    interval_s: float

    def read(self) -> tuple[int | None, int]: ...

    def close(self) -> None: ...


class ProcessTree:
    """The pids of a root process and all its descendants, remembered (with their psutil handles).

    `seen` keeps every process ever found under the root, so the launcher can check that none of them
    outlived the start, even the ones that were re-parented after their parent died.
    """

    def __init__(self, root_pid: int):
        import psutil

        self._psutil = psutil
        self.root_pid = root_pid
        self.seen: dict[int, object] = {}
        try:
            self.seen[root_pid] = psutil.Process(root_pid)
        except psutil.Error:
            pass

    def processes(self) -> list:
        psutil = self._psutil
        try:
            root = psutil.Process(self.root_pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            procs = []
        for p in procs:
            self.seen.setdefault(p.pid, p)
        return procs

    def pids(self) -> set[int]:
        return {p.pid for p in self.processes()}

    def alive_seen(self) -> list[int]:
        """Pids seen at any time that still run (zombies count as gone: they hold no memory)."""
        psutil = self._psutil
        alive = []
        for pid, p in self.seen.items():
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.Error:
                pass
        return alive


class RssSource:
    """CPU backend: summed RSS of the child's process tree; no device figure."""

    kind = "rss"
    interval_s = CPU_INTERVAL_S

    def __init__(self, root_pid: int):
        self.tree = ProcessTree(root_pid)

    def read(self) -> tuple[int | None, int]:
        psutil = self.tree._psutil
        total = 0
        for p in self.tree.processes():
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass  # the process ended between listing and reading: it holds nothing now
        return None, total

    def close(self) -> None:
        pass


def tree_gpu_bytes(nvml_processes, pids: set[int]) -> int:
    """Sum of NVML's `usedGpuMemory` over the listed processes whose pid is in the tree (None counts 0)."""
    return sum(p.usedGpuMemory or 0 for p in nvml_processes if p.pid in pids)


def visible_device(env: dict | None = None) -> int | str:
    """The NVML device the child will use: the first CUDA_VISIBLE_DEVICES entry (an index or a GPU UUID).

    NVML numbers devices in PCI bus order; set CUDA_DEVICE_ORDER=PCI_BUS_ID on multi-GPU boxes so CUDA's
    numbering agrees.
    """
    env = os.environ if env is None else env
    first = env.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip() or "0"
    if first.isdigit():
        return int(first)
    if first.startswith(("GPU-", "MIG-")):
        return first
    raise UsageError(f"CUDA_VISIBLE_DEVICES={env.get('CUDA_VISIBLE_DEVICES')!r}: expected device indices or GPU-/MIG- UUIDs")


def open_nvml(device: int | str | None = None, nvml=None):
    """(pynvml module, device handle); NVML failures become one NoGPU line."""
    if nvml is None:
        try:
            import pynvml as nvml
        except ImportError:
            raise no_gpu("the nvidia-ml-py package (module pynvml) is not installed") from None
    device = visible_device() if device is None else device
    try:
        nvml.nvmlInit()
        if isinstance(device, str):
            handle = nvml.nvmlDeviceGetHandleByUUID(device)
        elif device >= (count := nvml.nvmlDeviceGetCount()):
            raise no_gpu("NVML sees no GPU" if count == 0 else f"NVML sees {count} GPU(s), no index {device}")
        else:
            handle = nvml.nvmlDeviceGetHandleByIndex(device)
    except nvml.NVMLError as exc:
        raise no_gpu(str(exc)) from None
    return nvml, handle


class NvmlSource:
    """GPU: the card's used memory, and the NVML-listed memory of the child's process tree."""

    kind = "nvml"
    interval_s = GPU_INTERVAL_S

    def __init__(self, root_pid: int | None, nvml=None, handle=None, tree: ProcessTree | None = None):
        if handle is None:
            nvml, handle = open_nvml(nvml=nvml)
        self.nvml, self.handle = nvml, handle
        self.tree = tree if tree is not None else (ProcessTree(root_pid) if root_pid is not None else None)
        self._pids: set[int] = set()
        self._pids_at = float("-inf")

    def device_used(self) -> int:
        return int(self.nvml.nvmlDeviceGetMemoryInfo(self.handle).used)

    def read(self) -> tuple[int | None, int]:
        used = self.device_used()
        if self.tree is None:
            return used, 0
        now = time.monotonic()
        if now - self._pids_at >= PID_REFRESH_S:  # walking /proc every 10 ms would cost more than NVML
            self._pids, self._pids_at = self.tree.pids(), now
        try:
            procs = self.nvml.nvmlDeviceGetComputeRunningProcesses(self.handle)
        except self.nvml.NVMLError:
            procs = []
        return used, tree_gpu_bytes(procs, self._pids)

    def close(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except Exception:  # shutting NVML down twice or after a driver error is harmless here
            pass


@dataclass
class Sampler:
    """Reads a MemorySource until stopped; `tick()` is one reading (the thread just repeats it)."""

    source: MemorySource
    store_every_s: float = STORE_EVERY_S
    peak: Peak = field(default_factory=Peak)
    samples: list[Sample] = field(default_factory=list)
    readings: int = 0
    error: str | None = None

    def __post_init__(self):
        self.t0 = time.monotonic()
        self._window: list | None = None  # [t_start, device_max, process_max]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self, now: float | None = None) -> None:
        t = (time.monotonic() if now is None else now) - self.t0
        device, process = self.source.read()
        self.readings += 1
        self.peak.update(t, device, process)
        w = self._window
        if w is not None and t - w[0] < self.store_every_s:
            if device is not None:
                w[1] = device if w[1] is None else max(w[1], device)
            w[2] = max(w[2], process)
            return
        self._flush()
        self._window = [t, device, process]

    def _flush(self) -> None:
        if self._window is not None:
            self.samples.append(Sample(*self._window))
            self._window = None

    def _run(self) -> None:
        interval = self.source.interval_s
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # keep the start going; the result says the sampling broke
                self.error = f"{type(exc).__name__}: {exc}"
                return
            self._stop.wait(interval)

    def start(self) -> "Sampler":
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> "Sampler":
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._flush()
        return self


# --- phases on the timeline ---------------------------------------------------------------------------------
#
# vLLM stamps its log lines "MM-DD HH:MM:SS" (local time, whole seconds). A marker is mapped to the sample
# clock (seconds since spawn) through the wall clock: the stamp's second, minus the spawn time. Both processes
# read the same clock, so the mapped time is at most 1 s before the event and never after it: nothing that
# happened after a marker is attributed to the phase before it. If the log's clock disagrees with ours (another
# TZ in the child's env, a container clock), the first stamp in the log is aligned with the moment the parent
# first saw a stamped line instead (then the error is about +-1 s).

LOG_STAMP = re.compile(r"\b(\d\d-\d\d \d\d:\d\d:\d\d)\b")

# marker (LogRecord.timestamps key) -> phase that begins there; list order breaks ties within one second
MARKER_PHASES = (
    ("weights_start", "weights"),
    ("weights_done", "profile"),
    ("profile_start", "profile"),
    ("profile_done", "kv_cache"),
    ("kv_done", "kv_cache"),
    ("graphs_done", "warmup"),
    ("ready", "ready"),
)
FIRST_PHASE = "init"
BEFORE_KV_PHASES = ("init", "weights", "profile")


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
    """(start second, phase) in time order; within one second the markers keep vLLM's order."""
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


def phase_peaks(samples: list[Sample], boundaries: list[tuple[float, str]], use_device: bool) -> dict[str, int]:
    """Phase -> the largest device (GPU) or process (CPU) bytes among that phase's samples."""
    peaks: dict[str, int] = {}
    for s in samples:
        value = s.device_bytes if use_device else s.process_bytes
        if value is None:
            continue
        phase = phase_at(s.t_s, boundaries)
        peaks[phase] = max(peaks.get(phase, 0), value)
    return peaks


def write_timeline_csv(path, samples: list[Sample], boundaries: list[tuple[float, str]]) -> None:
    """t_s,device_used_gib,process_gib,phase — one row per stored sample (device empty on CPU)."""
    import csv

    from diagnostics.units import to_gib

    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["t_s", "device_used_gib", "process_gib", "phase"])
        for s in samples:
            device = "" if s.device_bytes is None else f"{to_gib(s.device_bytes):.4f}"
            w.writerow([f"{s.t_s:.3f}", device, f"{to_gib(s.process_bytes):.4f}", phase_at(s.t_s, boundaries)])
