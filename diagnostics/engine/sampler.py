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

import threading
import time
from array import array
from dataclasses import dataclass, field
from typing import Protocol
from collections.abc import Callable

from diagnostics.engine.nvml import DeviceMemory, open_nvml

GPU_INTERVAL_S = 0.01
CPU_INTERVAL_S = 0.05
STORE_EVERY_S = 0.1
PID_REFRESH_S = 0.2
MAX_FAILED_READS = 50  # in a row (0.5 s on a GPU): the device is gone, not a transient NVML error


@dataclass(frozen=True)
class Sample:
    """One reading at t_s (seconds since the sampler's t0), or one CSV row (a window's maxima, see timeline_rows)."""

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


class NvmlSource:
    """GPU: used memory of the child's devices (the busiest one: every rank of a tensor-parallel start is on its
    own card), and the NVML-listed memory of the child's process tree.

    The device figure is DeviceMemory's (v2 `used` = allocated; v1 on old drivers). The process query (with the
    tree walk) runs every PID_REFRESH_S, not every reading: it costs milliseconds on real drivers. It may fail
    on its own (NVMLLibraryMismatchError before driver 510.39, NoPermission): then the device figure goes on and
    the process figure is unknown (`process_known`), as it is when NVML never listed a tree pid although the
    device filled (NVML lists host pids; a container's pids do not match them).
    """

    kind = "nvml"
    interval_s = GPU_INTERVAL_S

    def __init__(self, root_pid: int | None, nvml=None, handle=None, tree: ProcessTree | None = None,
                 handles: list | None = None):
        if handle is None and handles is None:
            nvml, handle = open_nvml(nvml=nvml)
        self.nvml, self.handles = nvml, list(handles) if handles is not None else [handle]
        self.handle = self.handles[0]
        self.memory = [DeviceMemory(nvml, h) for h in self.handles]
        self.tree = tree if tree is not None else (ProcessTree(root_pid) if root_pid is not None else None)
        self.device_peaks = [0] * len(self.handles)
        self.process_error: str | None = None
        self.matched = False  # a tree pid was ever in NVML's process list
        self._first: int | None = None
        self._process_bytes, self._process_at = 0, float("-inf")

    @property
    def memory_info(self) -> str | None:
        """"v2" or "v1": how the device figure was read (DeviceMemory)."""
        return self.memory[0].kind

    def device_used(self) -> int:
        used = [m.read().used for m in self.memory]
        self.device_peaks = [max(p, u) for p, u in zip(self.device_peaks, used)]
        return max(used)

    def process_known(self, device_rise: int) -> bool:
        """Is the summed tree figure a measurement? Not when the query failed, nor when no tree pid was ever
        listed while the device filled by more than 256 MiB (host pids in a container)."""
        return self.process_error is None and (self.matched or device_rise < 256 << 20)

    def _process_query(self) -> int:
        pids = self.tree.pids()
        total = 0
        for h, memory in zip(self.handles, self.memory):
            procs = self.nvml.nvmlDeviceGetComputeRunningProcesses(h)
            card = memory.last.total if memory.last else None
            if card is not None and any((p.usedGpuMemory or 0) > card for p in procs):
                # drivers 535.43-535.86 changed the _v3 struct without a version bump: garbled pids and sizes
                raise ValueError("NVML lists a process using more memory than the card has (garbled process list)")
            self.matched = self.matched or any(p.pid in pids for p in procs)
            total += tree_gpu_bytes(procs, pids)
        return total

    def read(self) -> tuple[int | None, int]:
        used = self.device_used()
        if self._first is None:
            self._first = used
        now = time.monotonic()
        if self.tree is None or self.process_error is not None or now - self._process_at < PID_REFRESH_S:
            return used, self._process_bytes
        self._process_at = now
        try:
            self._process_bytes = self._process_query()
        except self.nvml.NVMLError as exc:  # transient (Timeout, Unknown): keep the last figure
            if isinstance(exc, (self.nvml.NVMLError_NoPermission, self.nvml.NVMLError_NotSupported)):
                self.process_error = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # NVMLLibraryMismatchError (driver < 510.39) is no NVMLError
            self.process_error = f"{type(exc).__name__}: {exc}"
        return used, self._process_bytes

    def close(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except Exception:  # shutting NVML down twice or after a driver error is harmless here
            pass


@dataclass
class Sampler:
    """Reads a MemorySource until stopped; `tick()` is one reading (the thread repeats it on a deadline).

    Every reading is kept (times in seconds since t0, bytes), in arrays: 100 readings/s for 15 minutes is
    under 2 MB. `samples` gives them as Sample rows, so a phase's peak is taken from the readings taken in that
    phase (timeline.phase_peaks); `timeline_rows()` downsamples them for the CSV. A failing read is counted
    and retried; MAX_FAILED_READS in a row end the sampling with `error` set, which fails the measurement.
    """

    source: MemorySource
    store_every_s: float = STORE_EVERY_S
    peak: Peak = field(default_factory=Peak)
    readings: int = 0
    failed_reads: int = 0
    error: str | None = None
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self):
        self.t0 = self.clock()
        self._t, self._device, self._process = array("d"), array("q"), array("q")
        self.max_gap_s = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self, now: float | None = None) -> None:
        device, process = self.source.read()
        t = (self.clock() if now is None else now) - self.t0
        if self._t:
            self.max_gap_s = max(self.max_gap_s, t - self._t[-1])
        self.readings += 1
        self.peak.update(t, device, process)
        self._t.append(t)
        self._device.append(-1 if device is None else device)
        self._process.append(process)

    @property
    def samples(self) -> list[Sample]:
        """Every reading, in time order."""
        return [Sample(t, None if d < 0 else d, p) for t, d, p in zip(self._t, self._device, self._process)]

    def timeline_rows(self) -> list[Sample]:
        """The readings downsampled for the CSV: per store_every_s window, its maxima, stamped with the window's
        first reading (the timeline's maximum is still the exact peak)."""
        rows: list[list] = []
        for s in self.samples:
            w = rows[-1] if rows else None
            if w is None or s.t_s - w[0] >= self.store_every_s:
                rows.append([s.t_s, s.device_bytes, s.process_bytes])
                continue
            if s.device_bytes is not None:
                w[1] = s.device_bytes if w[1] is None else max(w[1], s.device_bytes)
            w[2] = max(w[2], s.process_bytes)
        return [Sample(*w) for w in rows]

    def _wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True when stop() was called."""
        return self._stop.wait(seconds)

    def _run(self) -> None:
        interval, failed_in_a_row = self.source.interval_s, 0
        deadline = self.clock()
        stopped = self._stop.is_set()
        while not stopped:
            try:
                self.tick()
                failed_in_a_row = 0
            except Exception as exc:  # NVML can fail transiently (Timeout, Unknown): count, retry, then give up
                self.failed_reads += 1
                failed_in_a_row += 1
                if failed_in_a_row >= MAX_FAILED_READS:
                    self.error = f"{type(exc).__name__}: {exc}"
                    return
            deadline += interval  # on a deadline: a slow read shortens the next wait instead of adding to it
            now = self.clock()
            deadline = max(deadline, now)  # behind (a stall): go on from now, no burst of catch-up readings
            stopped = self._wait(deadline - now)

    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> Sampler:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive() and self.error is None:
                self.error = f"the sampler did not stop within {timeout_s:g} s (a memory query hung)"
        return self

    def summary(self, wall_s: float | None = None) -> dict:
        """What the result records about the sampling: kind, readings, readings per second over wall_s, the
        longest gap between readings, failed reads, and the error that ended it (None: it ran to the end)."""
        rate = round(self.readings / wall_s, 1) if wall_s else None
        return {"kind": self.source.kind, "interval_s": self.source.interval_s, "readings": self.readings,
                "readings_per_s": rate, "max_gap_s": round(self.max_gap_s, 4), "failed_reads": self.failed_reads,
                "error": self.error}
