"""NVML in one place: opening the device the engine child will use, its strings, and the device lookups the
plugin (`gpu_name`), machine_info (`device_info`) and the `env` command (`list_gpus`) need.

pynvml (the nvidia-ml-py package) is imported only when a function needs it: the pure core and the CPU backend
never do. Every NVML failure becomes one `NoGPU` line saying why and what to run instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from diagnostics.errors import UsageError
from diagnostics.units import GiB


class NoGPU(UsageError):
    """NVML cannot be used here: one line saying why and what to run instead."""


def no_gpu(reason: str) -> NoGPU:
    error = NoGPU(f"no usable GPU: {reason}; run `python -m diagnostics plan ...` instead or use --card=cpu")
    error.reason = reason
    return error


def nvml_text(value) -> str:
    """NVML strings: bytes in old pynvml releases, str in nvidia-ml-py."""
    return value.decode() if isinstance(value, bytes) else str(value)


def load(nvml=None):
    """The pynvml module (nvidia-ml-py), or NoGPU when it is not installed."""
    if nvml is not None:
        return nvml
    try:
        import pynvml
    except ImportError:
        raise no_gpu("the nvidia-ml-py package (module pynvml) is not installed") from None
    return pynvml


def visible_devices(env: dict | None = None) -> list[int | str]:
    """The devices CUDA will give the child, in order: CUDA_VISIBLE_DEVICES entries (indices, GPU-/MIG- UUIDs or
    their prefixes), [0] when unset. NVML numbers devices in PCI bus order, so indices mean the same card only with
    CUDA_DEVICE_ORDER=PCI_BUS_ID, which the launcher sets for the child (launch.child_env). NoGPU when the variable
    is empty (CUDA then sees no GPU); UsageError for an entry CUDA would not take."""
    env = os.environ if env is None else env
    raw = env.get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return [0]
    entries = [e.strip() for e in raw.split(",")]
    if not entries[0]:
        raise no_gpu(f"CUDA_VISIBLE_DEVICES={raw!r} hides every GPU from CUDA")
    out: list[int | str] = []
    for entry in entries:
        if entry.isdigit():
            out.append(int(entry))
        elif entry.startswith(("GPU-", "MIG-")):
            out.append(entry)
        else:
            raise UsageError(f"CUDA_VISIBLE_DEVICES={raw!r}: {entry!r} is neither a device index nor a GPU-/MIG- "
                             "UUID (nvidia-smi -L lists them)")
    return out


def visible_device(env: dict | None = None) -> int | str:
    """The first of visible_devices(env): the device a single-GPU start runs on."""
    return visible_devices(env)[0]


def _by_uuid(nvml, uuid: str):
    """CUDA takes a UUID prefix; NVML only the whole UUID: find the one GPU whose UUID starts with it."""
    if uuid.startswith("MIG-GPU-"):
        raise no_gpu(f"CUDA_VISIBLE_DEVICES={uuid}: the legacy MIG-GPU-<uuid>/<gi>/<ci> form cannot be opened by "
                     "NVML; use the MIG-<uuid> that `nvidia-smi -L` lists")
    try:
        return nvml.nvmlDeviceGetHandleByUUID(uuid)
    except (nvml.NVMLError_NotFound, nvml.NVMLError_InvalidArgument):
        pass
    handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
    found = [h for h in handles if nvml_text(nvml.nvmlDeviceGetUUID(h)).startswith(uuid)]
    if len(found) != 1:
        raise no_gpu(f"CUDA_VISIBLE_DEVICES={uuid}: {'no' if not found else 'more than one'} GPU has this UUID "
                     "(prefix); `nvidia-smi -L` lists them")
    return found[0]


def _refuse_mig_parent(nvml, handle, device) -> None:
    """A GPU in MIG mode is several cards: its memory is the sum over all slices (or refused without root)."""
    try:
        enabled = nvml.nvmlDeviceGetMigMode(handle)[0] == nvml.NVML_DEVICE_MIG_ENABLE
    except (nvml.NVMLError_NotSupported, nvml.NVMLError_FunctionNotFound, nvml.NVMLError_InvalidArgument):
        return  # no MIG on this card or driver, or a MIG slice's handle
    if enabled and not nvml.nvmlDeviceIsMigDeviceHandle(handle):
        raise no_gpu(f"GPU {device} is in MIG mode, so its memory is every slice's: set CUDA_VISIBLE_DEVICES to the "
                     "MIG-<uuid> of the slice to measure (`nvidia-smi -L`)")


def device_handle(nvml, device: int | str):
    """The NVML handle of one visible_devices() entry; NoGPU when NVML has no such device or it is a MIG parent."""
    if isinstance(device, str):
        handle = _by_uuid(nvml, device)
    elif device >= (count := nvml.nvmlDeviceGetCount()):
        raise no_gpu("NVML sees no GPU" if count == 0 else f"NVML sees {count} GPU(s), no index {device}")
    else:
        handle = nvml.nvmlDeviceGetHandleByIndex(device)
    _refuse_mig_parent(nvml, handle, device)
    return handle


def open_devices(devices: list[int | str] | None = None, nvml=None, env: dict | None = None):
    """(pynvml module, [handle per device]) after nvmlInit; `devices` default to visible_devices(env). Every
    NVML failure becomes one NoGPU line (the caller shuts NVML down when it is done)."""
    nvml = load(nvml)
    devices = visible_devices(env) if devices is None else devices
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        raise no_gpu(str(exc)) from None
    try:
        return nvml, [device_handle(nvml, d) for d in devices]
    except (nvml.NVMLError, NoGPU) as exc:
        _shutdown(nvml)
        raise exc if isinstance(exc, NoGPU) else no_gpu(str(exc)) from None


def open_nvml(device: int | str | None = None, nvml=None, env: dict | None = None):
    """(pynvml module, device handle) of one device (default: the first visible one); NVML failures: NoGPU."""
    nvml, handles = open_devices(None if device is None else [device], nvml, env)
    return nvml, handles[0]


@dataclass(frozen=True)
class MemoryInfo:
    """One device's memory in bytes. `used` is the allocated memory (what nvidia-smi shows); `reserved` the
    driver's own (None where NVML v1 hides it in `total`); `kind` "v2" or "v1" (see DeviceMemory)."""

    total: int
    used: int
    reserved: int | None
    kind: str

    @property
    def usable_total(self) -> int:
        """What CUDA/torch call the total (cards.py totals): NVML's total less the driver-reserved memory."""
        return self.total - (self.reserved or 0)


class DeviceMemory:
    """Memory of one device, read as NVIDIA documents it.

    nvmlDeviceGetMemoryInfo v1 counts "Reserved and Allocated" memory as `used` on drivers >= 510.39 (0.3-0.85
    GiB more than allocated, driver- and card-dependent); v2 (`version=nvmlMemory_v2`) gives `used` = allocated
    and `reserved` apart. Older drivers have no v2 (NVMLError_FunctionNotFound); there v1's `used` leaves the
    reserved memory out, so v1 is the same figure. `kind` says which was read ("v2" / "v1")."""

    def __init__(self, nvml, handle):
        self.nvml, self.handle = nvml, handle
        self.kind: str | None = None
        self.last: MemoryInfo | None = None

    def read(self) -> MemoryInfo:
        self.last = self._read()
        self.kind = self.last.kind
        return self.last

    def _read(self) -> MemoryInfo:
        nvml = self.nvml
        if self.kind != "v1":
            try:
                m = nvml.nvmlDeviceGetMemoryInfo(self.handle, version=nvml.nvmlMemory_v2)
                return MemoryInfo(int(m.total), int(m.used), int(m.reserved), "v2")
            except (nvml.NVMLError_FunctionNotFound, nvml.NVMLError_ArgumentVersionMismatch):
                self.kind = "v1"
        m = nvml.nvmlDeviceGetMemoryInfo(self.handle)
        return MemoryInfo(int(m.total), int(m.used), None, "v1")


def _shutdown(nvml) -> None:
    try:
        nvml.nvmlShutdown()
    except nvml.NVMLError:
        pass


def gpu_name(device: int | str | None = None, nvml=None) -> str:
    """NVML's name of the GPU the starts will run on (the first of CUDA_VISIBLE_DEVICES, GPU 0 by default);
    NoGPU when NVML cannot say."""
    nvml, handle = open_nvml(device, nvml)
    try:
        return nvml_text(nvml.nvmlDeviceGetName(handle))
    except nvml.NVMLError as err:
        raise no_gpu(str(err)) from None
    finally:
        _shutdown(nvml)


def device_info(nvml=None) -> dict:
    """GPU name, total GiB, driver and the driver's CUDA version of the visible device; {} when NVML is not usable."""
    try:
        nvml, handle = open_nvml(nvml=nvml)
    except NoGPU:
        return {}
    try:
        name = nvml.nvmlDeviceGetName(handle)
        driver = nvml.nvmlSystemGetDriverVersion()
        memory = DeviceMemory(nvml, handle).read()
        cuda = nvml.nvmlSystemGetCudaDriverVersion()
        major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
    except nvml.NVMLError:
        return {}
    finally:
        _shutdown(nvml)
    return {
        "gpu_name": nvml_text(name),
        "gpu_total_gib": round(memory.usable_total / GiB, 2),  # CUDA's total, the frame of cards.py
        "nvml_total_gib": round(memory.total / GiB, 2),
        "reserved_gib": None if memory.reserved is None else round(memory.reserved / GiB, 2),
        "memory_info": memory.kind,
        "compute_capability": f"{major}.{minor}",
        "driver": nvml_text(driver),
        "cuda_driver": f"{cuda // 1000}.{cuda % 1000 // 10}",
    }


def list_gpus(nvml=None) -> tuple[list[dict], str | None, str | None]:
    """(per-GPU memory in GiB (index, name, total, used, free), driver version, reason when NVML is not usable):
    every GPU NVML sees, for the `env` block; never raises. Used is the allocated memory (v2), total CUDA's."""
    if nvml is None:
        try:
            import pynvml as nvml
        except ImportError:
            return [], None, "pynvml (nvidia-ml-py) is not installed"
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        return [], None, f"NVML did not initialise ({exc})"
    except OSError as exc:  # pragma: no cover - library missing on some platforms raises plain OSError
        return [], None, f"NVML library not loadable ({exc})"
    try:
        driver = nvml_text(nvml.nvmlSystemGetDriverVersion())
        found = []
        for i in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            mem = DeviceMemory(nvml, handle).read()
            free = mem.usable_total - mem.used
            found.append({
                "index": i,
                "name": nvml_text(nvml.nvmlDeviceGetName(handle)),
                "total_gib": round(mem.usable_total / GiB, 2),
                "used_gib": round(mem.used / GiB, 2),
                "free_gib": round(free / GiB, 2),
            })
        return found, driver, None if found else "NVML sees no GPU"
    except nvml.NVMLError as exc:
        return [], None, f"NVML query failed ({exc})"
    finally:
        _shutdown(nvml)
