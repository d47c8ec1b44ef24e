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
from dataclasses import dataclass, field
from typing import Protocol

from diagnostics.engine.nvml import open_nvml

GPU_INTERVAL_S = 0.01
CPU_INTERVAL_S = 0.05
STORE_EVERY_S = 0.1
PID_REFRESH_S = 0.2


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
