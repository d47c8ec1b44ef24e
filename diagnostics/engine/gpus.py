"""Several GPUs in one box (xdist): which GPUs a start claims, a lock per GPU, and NVML over a group of devices.

`pytest -n 4 -m gpu` gives each xdist worker its own GPU: worker gwK takes the K-th of `--gpus` (default: every
GPU NVML sees), wrapping around; a combination with tensor_parallel_size=N claims N GPUs, the worker's own and
the next ones of the list. A start takes one flock per claimed GPU (`<engine lock>.gpu<index>`, in index order, so
two claims never deadlock): starts on different GPUs run at once, two on the same GPU wait for each other. The
child sees exactly its GPUs (CUDA_VISIBLE_DEVICES, with CUDA_DEVICE_ORDER=PCI_BUS_ID so CUDA numbers them as
NVML does).

`DeviceGroup` looks like the pynvml module to the launcher and the sampler (one handle, GROUP): memory info is the
sum over the group's devices, compute processes the union; it keeps each device's peak as it is read, so a
tensor-parallel start's record has the peak of each device and the sum.
"""

from __future__ import annotations

import contextlib
import fcntl
import time
from types import SimpleNamespace

from diagnostics.engine.nvml import no_gpu, open_nvml
from diagnostics.errors import UsageError
from diagnostics.units import GiB

GROUP = "device-group"


def parse_gpus(text) -> list[int] | None:
    """`"0,2,3"` -> [0, 2, 3]; None when not given. UsageError for anything but distinct non-negative indices."""
    if text in (None, ""):
        return None
    try:
        gpus = [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        gpus = []
    if not gpus or min(gpus) < 0 or len(set(gpus)) != len(gpus):
        raise UsageError(f"bad --gpus {text!r}; accepted: distinct NVML device indices, e.g. 0,2,3")
    return gpus


def worker_index(worker_id: str | None) -> int:
    """xdist's "gw3" -> 3; 0 outside xdist."""
    if not worker_id or not worker_id.startswith("gw"):
        return 0
    return int(worker_id[2:])


def pick_devices(worker: int, gpus: list[int], count: int = 1) -> tuple[int, ...]:
    """The `count` GPUs worker number `worker` claims: its own (gpus[worker % len]) and the next ones, wrapping.
    count: tensor_parallel_size x pipeline_parallel_size (every rank of the start). UsageError when the list has
    fewer than `count` GPUs."""
    count = int(count or 1)
    if count > len(gpus):
        raise UsageError(f"tensor_parallel_size x pipeline_parallel_size = {count} needs {count} GPUs but --gpus "
                         f"gives {len(gpus)} ({','.join(map(str, gpus))})")
    first = worker % len(gpus)
    return tuple(gpus[(first + k) % len(gpus)] for k in range(count))


def lock_file(index: int, base: str) -> str:
    return f"{base}.gpu{index}"


@contextlib.contextmanager
def gpu_locks(indices, base: str):
    """One exclusive flock per GPU, taken in index order; yields the seconds spent waiting for them."""
    t = time.monotonic()
    with contextlib.ExitStack() as stack:
        for i in sorted(set(indices)):
            f = stack.enter_context(open(lock_file(i, base), "a+"))
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            stack.callback(fcntl.flock, f.fileno(), fcntl.LOCK_UN)
        yield time.monotonic() - t


def child_devices_env(indices) -> dict:
    """What the engine child needs to see exactly these GPUs, numbered as NVML numbers them."""
    return {"CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in indices), "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


class DeviceGroup:
    """pynvml's interface over several devices with one handle (GROUP): summed memory, all processes; per-device
    peaks of `used` as read (`peaks`, bytes, keyed by NVML index; `reset_peaks()` after the baseline)."""

    def __init__(self, nvml, indices):
        self.nvml, self.NVMLError = nvml, nvml.NVMLError
        self.indices = tuple(indices)
        self.handles = {}
        for i in self.indices:
            _, self.handles[i] = open_nvml(i, nvml)
        self.peaks = {i: 0 for i in self.indices}

    def nvmlDeviceGetMemoryInfo(self, handle):
        used = total = 0
        for i, h in self.handles.items():
            info = self.nvml.nvmlDeviceGetMemoryInfo(h)
            used, total = used + int(info.used), total + int(info.total)
            self.peaks[i] = max(self.peaks[i], int(info.used))
        return SimpleNamespace(used=used, total=total, free=total - used)

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return [p for h in self.handles.values() for p in self.nvml.nvmlDeviceGetComputeRunningProcesses(h)]

    def nvmlShutdown(self):
        self.nvml.nvmlShutdown()

    def reset_peaks(self) -> None:
        self.peaks = {i: 0 for i in self.indices}

    def peaks_gib(self) -> dict:
        """{"<index>": GiB} per device, and nothing else (the sum is the record's business)."""
        return {str(i): round(b / GiB, 4) for i, b in self.peaks.items()}


def open_group(indices, nvml=None) -> tuple[DeviceGroup, str]:
    """(DeviceGroup, GROUP) for the launcher; NoGPU when NVML or an index is missing."""
    if nvml is None:
        try:
            import pynvml as nvml
        except ImportError:
            raise no_gpu("the nvidia-ml-py package (module pynvml) is not installed") from None
    return DeviceGroup(nvml, indices), GROUP

