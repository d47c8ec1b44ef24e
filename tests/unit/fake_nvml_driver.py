"""A fake NVIDIA driver under the REAL nvidia-ml-py wrappers: the `pynvml` module itself, its C calls answered here.

Why: hand-written stand-ins for the `pynvml` module miss what the real module does (the v1/v2 memory structs,
the `_v3` process query behind `@throwOnVersionMismatch`, the generated `NVMLError_*` classes and
`NVMLLibraryMismatchError`, which is not an `NVMLError`, bytes/str handling, MIG handles). Here the real
`pynvml.py` runs unchanged; only its library handle is replaced (docs/sources/measurement-review.md, Q2):

    driver = FakeDriver([FakeGpu("NVIDIA H200", total=143771 * MiB, used=5 * GiB, reserved=600 * MiB)])
    pynvml = driver.install(monkeypatch)          # the real module, now talking to `driver`
    pynvml.nvmlInit(); h = pynvml.nvmlDeviceGetHandleByIndex(0)

What the fake driver models (all figures in bytes, as NVML reports them):
  * memory: v2 (`nvmlDeviceGetMemoryInfo_v2`) gives total, reserved, used = allocated, free. v1 on drivers
    >= 510.39.01 gives used = allocated + reserved ("Sum of Reserved and Allocated device memory"); on older
    drivers v1's total and used both exclude the reserved memory, and the `_v2`/`_v3` symbols do not exist
    (so the real wrapper raises NVMLError_FunctionNotFound, or NVMLLibraryMismatchError for the process query).
  * processes: (pid, usedGpuMemory or None = NVML_VALUE_NOT_AVAILABLE) as NVML lists them: host pids.
  * MIG: a parent in MIG mode refuses memory and process queries without root (NVMLError_NoPermission) and
    gives the aggregate as root; slices have their own handle, name (" MIG 3g.20gb"), `MIG-` UUID and memory.
  * errors: `FakeGpu.errors[entry point] = code` fails every call, a list fails the next len(list) calls.
  * latency: `FakeDriver.latency[entry point] = seconds` sleeps in the call (ctypes releases the GIL too).
  * calls: `FakeDriver.calls` counts every C entry point called.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

GiB = 1 << 30
MiB = 1 << 20

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_INSUFFICIENT_SIZE = 7
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25
NVML_ERROR_UNKNOWN = 999
NOT_AVAILABLE = (1 << 64) - 1  # NVML_VALUE_NOT_AVAILABLE_ulonglong: the wrapper turns it into None

NEW_SYMBOLS = ("nvmlDeviceGetMemoryInfo_v2", "nvmlDeviceGetComputeRunningProcesses_v3")
FIRST_NEW_DRIVER = (510, 39, 1)  # first driver with the _v2 memory info and the _v3 process query
NO_HANDLE = ("nvmlDeviceGetHandle", "nvmlDeviceGetCount")  # device entry points whose first argument is no handle
_HANDLE_BASE = 0x1000  # handle address = base + index * 16 (+ 1 + slice for a MIG slice)


@dataclass
class FakeGpu:
    """One physical GPU (or, inside `mig`, one MIG slice). Memory in bytes; `used` is the allocated memory."""

    name: str = "NVIDIA GeForce RTX 3090"
    total: int = 24 * GiB
    used: int = 0
    reserved: int = 0
    uuid: str = ""
    compute_capability: tuple[int, int] = (8, 6)
    processes: list[tuple[int, int | None]] = field(default_factory=list)
    mig_mode: int | None = None  # None: no MIG support; 0: disabled; 1: enabled
    mig: list[FakeGpu] = field(default_factory=list)
    errors: dict = field(default_factory=dict)  # C entry point -> code (always) or [codes] (next calls)
    pci_bus_id: str = ""


def _driver_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


class FakeDriver:
    """The C side of NVML for the real `pynvml` module: a list of FakeGpu and the driver's facts."""

    def __init__(self, gpus: list[FakeGpu] | None = None, driver: str = "550.54.15", cuda: int = 12040,
                 root: bool = False, missing: tuple[str, ...] | None = None, init_error: int | None = None,
                 loadable: bool = True):
        self.gpus = list(gpus) if gpus is not None else [FakeGpu()]
        for i, gpu in enumerate(self.gpus):
            gpu.uuid = gpu.uuid or f"GPU-{i:08x}-1111-2222-3333-444455556666"
            gpu.pci_bus_id = gpu.pci_bus_id or f"00000000:{i + 1:02X}:00.0"
            for j, s in enumerate(gpu.mig):
                s.uuid = s.uuid or f"MIG-{i:08x}-{j:04x}-2222-3333-444455556666"
        self.driver, self.cuda, self.root = driver, cuda, root
        legacy = _driver_tuple(driver) < FIRST_NEW_DRIVER
        self.legacy_memory = legacy
        self.missing = set(NEW_SYMBOLS if legacy and missing is None else (missing or ()))
        self.init_error, self.loadable = init_error, loadable
        self.latency: dict[str, float] = {}
        self.calls: Counter = Counter()
        self.initialised = 0
        self._lock = threading.Lock()
        self.library = FakeLibrary(self)

    # --- handles ---------------------------------------------------------------------------------------
    def handle_address(self, index: int, slice_index: int | None = None) -> int:
        return _HANDLE_BASE + index * 16 + (0 if slice_index is None else 1 + slice_index)

    def gpu_at(self, handle) -> tuple[FakeGpu, FakeGpu | None]:
        """(the device the handle names, its MIG parent or None); KeyError for a handle never handed out."""
        address = ctypes.cast(handle, ctypes.c_void_p).value or 0
        index, rest = divmod(address - _HANDLE_BASE, 16)
        if address < _HANDLE_BASE or index >= len(self.gpus):
            raise KeyError(address)
        gpu = self.gpus[index]
        return (gpu, None) if rest == 0 else (gpu.mig[rest - 1], gpu)

    def install(self, monkeypatch):
        """Point the real `pynvml` at this driver for one test (monkeypatch undoes it); returns the module."""
        import pynvml

        for name in ("nvmlLib", "_LoadNvmlLibrary", "_nvmlGetFunctionPointer_cache", "_nvmlLib_refcount"):
            assert hasattr(pynvml, name), f"nvidia-ml-py {pynvml.__file__} lacks {name}: update tests/unit/fake_nvml_driver.py"

        def load():
            if not self.loadable:  # what the real loader does when CDLL("libnvidia-ml.so.1") fails
                pynvml._nvmlCheckReturn(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

        monkeypatch.setattr(pynvml, "nvmlLib", self.library if self.loadable else None)
        monkeypatch.setattr(pynvml, "_LoadNvmlLibrary", load)
        monkeypatch.setattr(pynvml, "_nvmlGetFunctionPointer_cache", {})
        monkeypatch.setattr(pynvml, "_nvmlLib_refcount", 0)
        return pynvml


    # --- what tests do: move a device's memory as cudaMalloc/cudaFree would --------------------------------
    def alloc(self, index: int, nbytes: int, pid: int | None = None) -> None:
        """Device `index` allocates `nbytes` more (negative: frees); with `pid`, NVML lists that process with it."""
        with self._lock:
            gpu = self.gpus[index]
            gpu.used += nbytes
            if pid is not None:
                held = dict(gpu.processes)
                held[pid] = (held.get(pid) or 0) + nbytes
                gpu.processes = [(p, n) for p, n in held.items() if n]

    def release(self, index: int, nbytes: int, pid: int | None = None) -> None:
        self.alloc(index, -nbytes, pid)


class FakeAllocator:
    """What torch's allocator does to device 0 as NVML sees it (selfcheck's Allocator protocol): a CUDA context at
    creation, then cudaMalloc/cudaFree. `scale` mis-reports an allocation, `leak` keeps some bytes on free,
    `invisible` allocates nothing NVML sees; `pid` is the pid NVML lists (another one: a container's namespace)."""

    def __init__(self, driver: FakeDriver, scale=1.0, leak=0, invisible=False, pid: int | None = None):
        import os

        self.driver, self.scale, self.leak, self.invisible = driver, scale, leak, invisible
        self.pid = os.getpid() if pid is None else pid
        self.held: dict[int, int] = {}
        driver.alloc(0, 200 * MiB, pid=self.pid)  # the CUDA context

    def alloc(self, nbytes: int) -> int:
        seen = 0 if self.invisible else int(nbytes * self.scale)
        handle = len(self.held) + 1
        self.held[handle] = seen
        self.driver.alloc(0, seen, pid=self.pid)
        return handle

    def free(self, handle: int) -> None:
        self.driver.release(0, self.held.pop(handle) - self.leak, pid=self.pid)


def _set_handle(ref, address: int) -> None:
    ctypes.c_void_p.from_buffer(ref._obj).value = address


def _fill(buffer, text: str, size) -> int:
    data = text.encode()
    if len(data) + 1 > int(getattr(size, "value", size)):
        return NVML_ERROR_INSUFFICIENT_SIZE
    buffer.value = data
    return NVML_SUCCESS


class FakeLibrary:
    """What `CDLL("libnvidia-ml.so.1")` would be: attributes named as the C entry points.

    `getattr(lib, name)` returns a plain function (the wrapper may set `.restype` on it) that counts the call,
    sleeps the configured latency, answers UNINITIALIZED before nvmlInit, and applies the device's scripted
    errors. A name in `driver.missing` raises AttributeError, which the real wrapper turns into
    NVMLError_FunctionNotFound, as for a symbol an old driver lacks.
    """

    def __init__(self, driver: FakeDriver):
        self._driver = driver

    def __getattr__(self, name: str):
        driver = self._driver
        impl = getattr(_Entries, name, None)
        if impl is None or name in driver.missing:
            raise AttributeError(name)

        def entry(*args):
            driver.calls[name] += 1
            delay = driver.latency.get(name, 0.0)
            if delay:
                time.sleep(delay)
            if name not in ("nvmlInitWithFlags", "nvmlErrorString") and driver.initialised <= 0:
                return NVML_ERROR_UNINITIALIZED
            if name.startswith("nvmlDevice") and not name.startswith(NO_HANDLE):
                try:
                    gpu, _ = driver.gpu_at(args[0])
                except KeyError:
                    return NVML_ERROR_INVALID_ARGUMENT
                code = _scripted_error(gpu, name)
                if code:
                    return code
            return impl(driver, *args)

        entry.__name__ = name
        return entry


def _scripted_error(gpu: FakeGpu, name: str) -> int:
    planned = gpu.errors.get(name)
    if isinstance(planned, list):
        return planned.pop(0) if planned else NVML_SUCCESS
    return planned or NVML_SUCCESS


def _mig_parent_refuses(driver: FakeDriver, gpu: FakeGpu, parent) -> bool:
    return parent is None and gpu.mig_mode == 1 and not driver.root


class _Entries:
    """The C entry points, as static functions (driver, *C arguments) -> NVML return code."""

    @staticmethod
    def nvmlInitWithFlags(d, flags):
        if d.init_error:
            return d.init_error
        with d._lock:
            d.initialised += 1
        return NVML_SUCCESS

    @staticmethod
    def nvmlShutdown(d):
        with d._lock:
            d.initialised -= 1
        return NVML_SUCCESS

    @staticmethod
    def nvmlErrorString(d, code):
        return b"fake NVML error %d" % int(getattr(code, "value", code))

    @staticmethod
    def nvmlSystemGetDriverVersion(d, buffer, size):
        return _fill(buffer, d.driver, size)

    @staticmethod
    def nvmlSystemGetCudaDriverVersion(d, ref):
        ref._obj.value = d.cuda
        return NVML_SUCCESS

    @staticmethod
    def nvmlDeviceGetCount_v2(d, ref):
        ref._obj.value = len(d.gpus)
        return NVML_SUCCESS

    @staticmethod
    def nvmlDeviceGetHandleByIndex_v2(d, index, ref):
        i = int(getattr(index, "value", index))
        if i >= len(d.gpus):
            return NVML_ERROR_INVALID_ARGUMENT
        _set_handle(ref, d.handle_address(i))
        return NVML_SUCCESS

    @staticmethod
    def nvmlDeviceGetHandleByUUID(d, uuid, ref):
        wanted = (uuid.value if hasattr(uuid, "value") else uuid).decode()
        for i, gpu in enumerate(d.gpus):  # full UUIDs only: NVML takes neither prefixes nor MIG-GPU-…/gi/ci
            if gpu.uuid == wanted:
                _set_handle(ref, d.handle_address(i))
                return NVML_SUCCESS
            for j, s in enumerate(gpu.mig):
                if s.uuid == wanted and gpu.mig_mode == 1:
                    _set_handle(ref, d.handle_address(i, j))
                    return NVML_SUCCESS
        return NVML_ERROR_NOT_FOUND

    @staticmethod
    def nvmlDeviceGetName(d, handle, buffer, size):
        return _fill(buffer, d.gpu_at(handle)[0].name, size)

    @staticmethod
    def nvmlDeviceGetUUID(d, handle, buffer, size):
        return _fill(buffer, d.gpu_at(handle)[0].uuid, size)

    @staticmethod
    def nvmlDeviceGetIndex(d, handle, ref):
        gpu, parent = d.gpu_at(handle)
        ref._obj.value = d.gpus.index(parent or gpu)
        return NVML_SUCCESS

    @staticmethod
    def nvmlDeviceGetPciInfo_v3(d, handle, ref):
        gpu, parent = d.gpu_at(handle)
        ref._obj.busId = (parent or gpu).pci_bus_id.encode()
        return NVML_SUCCESS

    @staticmethod
    def nvmlDeviceGetCudaComputeCapability(d, handle, major, minor):
        gpu, parent = d.gpu_at(handle)
        major._obj.value, minor._obj.value = (parent or gpu).compute_capability
        return NVML_SUCCESS

    @staticmethod
    def nvmlDeviceGetMemoryInfo(d, handle, ref):
        gpu, parent = d.gpu_at(handle)
        if _mig_parent_refuses(d, gpu, parent):
            return NVML_ERROR_NO_PERMISSION
        total, used, reserved = _memory(gpu)
        m = ref._obj
        if d.legacy_memory:  # drivers < 510.39: total and used both leave the reserved memory out
            m.total, m.used = total - reserved, used
        else:
            m.total, m.used = total, used + reserved
        m.free = max(0, m.total - m.used)
        return NVML_SUCCESS

    @staticmethod
    def nvmlDeviceGetMemoryInfo_v2(d, handle, ref):
        import pynvml

        gpu, parent = d.gpu_at(handle)
        m = ref._obj
        if m.version != pynvml.nvmlMemory_v2:
            return NVML_ERROR_ARGUMENT_VERSION_MISMATCH
        if _mig_parent_refuses(d, gpu, parent):
            return NVML_ERROR_NO_PERMISSION
        total, used, reserved = _memory(gpu)
        m.total, m.reserved, m.used = total, reserved, used
        m.free = max(0, total - reserved - used)
        return NVML_SUCCESS

    @staticmethod
    def nvmlDeviceGetComputeRunningProcesses_v3(d, handle, count_ref, array):
        gpu, parent = d.gpu_at(handle)
        if _mig_parent_refuses(d, gpu, parent):
            return NVML_ERROR_NO_PERMISSION
        procs = [p for s in [gpu, *gpu.mig] for p in s.processes] if gpu.mig_mode == 1 else list(gpu.processes)
        if array is None or count_ref._obj.value < len(procs):
            count_ref._obj.value = len(procs)
            return NVML_SUCCESS if not procs else NVML_ERROR_INSUFFICIENT_SIZE
        for i, (pid, used) in enumerate(procs):
            array[i].pid = pid
            array[i].usedGpuMemory = NOT_AVAILABLE if used is None else used
            array[i].gpuInstanceId = array[i].computeInstanceId = 0xFFFFFFFF
        count_ref._obj.value = len(procs)
        return NVML_SUCCESS

    @staticmethod
    def nvmlDeviceGetMigMode(d, handle, current, pending):
        gpu, parent = d.gpu_at(handle)
        if parent is not None or gpu.mig_mode is None:
            return NVML_ERROR_NOT_SUPPORTED
        current._obj.value = pending._obj.value = gpu.mig_mode
        return NVML_SUCCESS

    @staticmethod
    def nvmlDeviceIsMigDeviceHandle(d, handle, ref):
        ref._obj.value = 0 if d.gpu_at(handle)[1] is None else 1
        return NVML_SUCCESS

    @staticmethod
    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(d, handle, ref):
        gpu, parent = d.gpu_at(handle)
        if parent is None:
            return NVML_ERROR_INVALID_ARGUMENT
        _set_handle(ref, d.handle_address(d.gpus.index(parent)))
        return NVML_SUCCESS

    @staticmethod
    def nvmlDeviceGetMaxMigDeviceCount(d, handle, ref):
        gpu, _ = d.gpu_at(handle)
        ref._obj.value = len(gpu.mig)
        return NVML_SUCCESS

    @staticmethod
    def nvmlDeviceGetMigDeviceHandleByIndex(d, handle, index, ref):
        gpu, parent = d.gpu_at(handle)
        j = int(getattr(index, "value", index))
        if parent is not None or gpu.mig_mode != 1 or j >= len(gpu.mig):
            return NVML_ERROR_NOT_FOUND
        _set_handle(ref, d.handle_address(d.gpus.index(gpu), j))
        return NVML_SUCCESS


def _memory(gpu: FakeGpu) -> tuple[int, int, int]:
    """(total, allocated, reserved) of a device; a MIG parent (as root) reports the sum over its slices."""
    if gpu.mig_mode == 1 and gpu.mig:
        return gpu.total, gpu.used + sum(s.used for s in gpu.mig), gpu.reserved
    return gpu.total, gpu.used, gpu.reserved


# The real NVML names of the built-in cards (diagnostics/cards.py), as nvidia-smi / nvmlDeviceGetName print them.
# Sources: NVIDIA's product names as they appear in public nvidia-smi outputs and vLLM/PyTorch issue threads.
REAL_NAMES = {
    "t4": ["Tesla T4"],
    "v100-16": ["Tesla V100-SXM2-16GB", "Tesla V100-PCIE-16GB"],
    "v100-32": ["Tesla V100-SXM2-32GB", "Tesla V100-PCIE-32GB", "Tesla V100S-PCIE-32GB"],
    "a10": ["NVIDIA A10"],
    "a10g": ["NVIDIA A10G"],
    "l4": ["NVIDIA L4"],
    "3090": ["NVIDIA GeForce RTX 3090"],
    "4090": ["NVIDIA GeForce RTX 4090"],
    "5090": ["NVIDIA GeForce RTX 5090"],
    "a6000": ["NVIDIA RTX A6000"],
    "l20": ["NVIDIA L20"],
    "l40": ["NVIDIA L40"],
    "l40s": ["NVIDIA L40S"],
    "a100-40": ["NVIDIA A100-SXM4-40GB", "NVIDIA A100-PCIE-40GB"],
    "a100-80": ["NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB PCIe"],
    "a800-80": ["NVIDIA A800-SXM4-80GB", "NVIDIA A800 80GB PCIe"],
    "h100-80": ["NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe", "NVIDIA H800"],
    "h20": ["NVIDIA H20"],
    "h200": ["NVIDIA H200", "NVIDIA H200 NVL"],
}
# Names of other cards that contain a built-in card's name and must NOT be taken for it.
NOT_THESE = {
    "NVIDIA GeForce RTX 3090 Ti": "3090",
    "NVIDIA GeForce RTX 4090 D": "4090",
    "NVIDIA RTX A6000 Ada Generation": "a6000",
    "NVIDIA RTX 6000 Ada Generation": "a6000",
    "NVIDIA A100-SXM4-40GB MIG 3g.20gb": "a100-40",
    "NVIDIA H100 NVL": "h100-80",
    "NVIDIA GeForce RTX 4090 Laptop GPU": "4090",
    "NVIDIA L40S": "l40",
}
