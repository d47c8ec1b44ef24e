"""NVML in one place: opening the device the engine child will use, its strings, and the device lookups the
plugin (`gpu_name`), machine_info (`device_info`) and the `env` command (`list_gpus`) need.

pynvml (the nvidia-ml-py package) is imported only when a function needs it: the pure core and the CPU backend
never do. Every NVML failure becomes one `NoGPU` line saying why and what to run instead.
"""

from __future__ import annotations

import os

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
        total = nvml.nvmlDeviceGetMemoryInfo(handle).total
        cuda = nvml.nvmlSystemGetCudaDriverVersion()
    except nvml.NVMLError:
        return {}
    finally:
        _shutdown(nvml)
    return {
        "gpu_name": nvml_text(name),
        "gpu_total_gib": round(total / GiB, 2),
        "driver": nvml_text(driver),
        "cuda_driver": f"{cuda // 1000}.{cuda % 1000 // 10}",
    }


def list_gpus(nvml=None) -> tuple[list[dict], str | None, str | None]:
    """(per-GPU memory in GiB (index, name, total, used, free), driver version, reason when NVML is not usable):
    every GPU NVML sees, for the `env` block; never raises."""
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
            mem = nvml.nvmlDeviceGetMemoryInfo(handle)
            found.append({
                "index": i,
                "name": nvml_text(nvml.nvmlDeviceGetName(handle)),
                "total_gib": round(mem.total / GiB, 2),
                "used_gib": round(mem.used / GiB, 2),
                "free_gib": round(mem.free / GiB, 2),
            })
        return found, driver, None if found else "NVML sees no GPU"
    except nvml.NVMLError as exc:
        return [], None, f"NVML query failed ({exc})"
    finally:
        _shutdown(nvml)
