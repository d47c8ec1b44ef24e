"""A stand-in for the `pynvml` module (nvidia-ml-py) with N devices whose memory tests move by hand.

Only the calls diagnostics/engine makes. `FakeNVML(devices=[("NVIDIA GeForce RTX 3090", 24 GiB), ...])`;
`fake.alloc(index, nbytes, pid=None)` / `fake.release(...)` move a device's used bytes (and a process's
usedGpuMemory when `pid` is given). `hide_processes=True` models a container whose pid namespace NVML does not
share; `procs_error=True` one whose driver refuses the process list.
"""

from __future__ import annotations

import os
import threading
from types import SimpleNamespace


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):
    pass


class NVMLError_FunctionNotFound(NVMLError):
    pass


class FakeNVML:
    """The v1 memory call only (an old driver: engine/nvml.py falls back from v2), no MIG."""

    NVMLError = NVMLError
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_FunctionNotFound = NVMLError_FunctionNotFound
    NVMLError_ArgumentVersionMismatch = type("NVMLError_ArgumentVersionMismatch", (NVMLError,), {})
    NVMLError_InvalidArgument = type("NVMLError_InvalidArgument", (NVMLError,), {})
    NVMLError_NoPermission = type("NVMLError_NoPermission", (NVMLError,), {})
    NVMLError_NotFound = type("NVMLError_NotFound", (NVMLError,), {})
    NVML_DEVICE_MIG_ENABLE = 1
    nvmlMemory_v2 = 2

    def __init__(self, devices, base_used: int = 300 << 20, hide_processes=False, procs_error=False):
        self.names = [name for name, _ in devices]
        self.totals = [total for _, total in devices]
        self.used = [base_used for _ in devices]
        self.procs: list[dict[int, int]] = [{} for _ in devices]
        self.hide_processes, self.procs_error = hide_processes, procs_error
        self.reads = [0 for _ in devices]
        self._lock = threading.Lock()

    # the calls engine/nvml.py and engine/sampler.py make ---------------------------------------------------
    def nvmlInit(self):
        pass

    def nvmlShutdown(self):
        pass

    def nvmlDeviceGetCount(self):
        return len(self.names)

    def nvmlDeviceGetHandleByIndex(self, i):
        if not 0 <= i < len(self.names):
            raise self.NVMLError_InvalidArgument("Invalid Argument")
        return i

    def nvmlDeviceGetHandleByUUID(self, uuid):
        for i in range(len(self.names)):
            if self.nvmlDeviceGetUUID(i) == uuid:
                return i
        raise self.NVMLError_NotFound("Not Found")

    def nvmlDeviceGetUUID(self, h):
        return f"GPU-fake-{h:04d}"

    def nvmlDeviceGetMigMode(self, h):
        raise NVMLError_NotSupported("Not Supported")

    def nvmlDeviceIsMigDeviceHandle(self, h):
        return False

    def nvmlDeviceGetCudaComputeCapability(self, h):
        return (9, 0)

    def nvmlDeviceGetName(self, h):
        return self.names[h]

    def nvmlDeviceGetMemoryInfo(self, h, version=None):
        if version is not None:
            raise NVMLError_FunctionNotFound("Function Not Found")
        with self._lock:
            self.reads[h] += 1
            used = self.used[h]
        return SimpleNamespace(total=self.totals[h], used=used, free=self.totals[h] - used)

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        if self.procs_error:
            raise NVMLError("Not Supported")
        if self.hide_processes:
            return [SimpleNamespace(pid=1, usedGpuMemory=n) for n in self.procs[h].values()]
        return [SimpleNamespace(pid=pid, usedGpuMemory=n) for pid, n in self.procs[h].items()]

    def nvmlSystemGetDriverVersion(self):
        return "550.54"

    def nvmlSystemGetCudaDriverVersion(self):
        return 12040

    # what tests do --------------------------------------------------------------------------------------------
    def alloc(self, h: int, nbytes: int, pid: int | None = None):
        with self._lock:
            self.used[h] += nbytes
            if pid is not None:
                self.procs[h][pid] = self.procs[h].get(pid, 0) + nbytes

    def release(self, h: int, nbytes: int, pid: int | None = None):
        self.alloc(h, -nbytes, pid)


class FakeAllocator:
    """Moves the fake device's used bytes like cudaMalloc/cudaFree would; `scale` mis-reports, `leak` keeps some,
    `lag` makes a release show up only on the next allocation (a device that never drops back)."""

    def __init__(self, nvml: FakeNVML, scale=1.0, leak=0, invisible=False):
        self.nvml, self.scale, self.leak, self.invisible = nvml, scale, leak, invisible
        self.held: dict[int, int] = {}
        nvml.alloc(0, 200 << 20, pid=os.getpid())  # the CUDA context

    def alloc(self, nbytes):
        seen = 0 if self.invisible else int(nbytes * self.scale)
        handle = len(self.held) + 1
        self.held[handle] = seen
        self.nvml.alloc(0, seen, pid=os.getpid())
        return handle

    def free(self, handle):
        seen = self.held.pop(handle)
        self.nvml.release(0, seen - self.leak, pid=os.getpid())
