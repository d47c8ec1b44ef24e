"""The GPUs of one engine start: which devices the child uses (in NVML's numbering), their memory before the
start, and whether they return to it afterwards.

  * CUDA numbers GPUs fastest first unless CUDA_DEVICE_ORDER=PCI_BUS_ID; NVML by PCI bus. The child gets
    PCI_BUS_ID (`pin_cuda_order`), so an index in CUDA_VISIBLE_DEVICES names the same card in both.
  * Every device of a tensor-/pipeline-parallel start is sampled (`start_devices`).
  * Back to baseline (`StartDevices.settle`): within settle_tolerance_gib of this start's baseline, and within
    session_tolerance_gib of the first baseline this process saw on the device, so leaks below the per-start
    tolerance still stop the sweep once they add up. GH200/GB200 are not checked: NVML documents that FB pages of
    NUMA-node GPUs are not released when the process ends.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from diagnostics.engine.nvml import DeviceMemory, no_gpu, nvml_text, open_devices, visible_devices
from diagnostics.errors import UsageError
from diagnostics.units import GiB, to_gib

UNIFIED_MEMORY_GPUS = ("GH200", "GB200")
_SESSION_BASELINE: dict[str, int] = {}  # device UUID -> used bytes before this process's first start on it


class DeviceNotClean(RuntimeError):
    """Memory (GPU) or processes (CPU) of a finished start did not go away: later measurements would be garbage.
    `result` holds the StartResult of the start that left them (written before this is raised), when there is one."""

    result = None


def pin_cuda_order(env: dict) -> None:
    """CUDA numbers GPUs fastest first unless CUDA_DEVICE_ORDER=PCI_BUS_ID; NVML numbers them by PCI bus. Set it,
    so that CUDA_VISIBLE_DEVICES=1 is the card the sampler reads (vLLM warns about the same); refuse another order."""
    order = env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    if order != "PCI_BUS_ID":
        raise UsageError(f"CUDA_DEVICE_ORDER={order}: CUDA would number the GPUs otherwise than NVML, and the "
                         "sampler would read another card than the engine uses; unset it or set PCI_BUS_ID")


def start_devices(settings: dict, env: dict) -> list[int | str]:
    """The devices the child's engine uses, each sampled: the first tensor_parallel_size x pipeline_parallel_size
    entries of its CUDA_VISIBLE_DEVICES (GPUs 0..N-1 without it). UsageError when fewer are visible: vLLM would
    spread the ranks over Ray workers on other nodes, which are not in the measured (and killed) process tree."""
    settings = settings or {}
    ranks = max(1, int(settings.get("tensor_parallel_size") or 1) * int(settings.get("pipeline_parallel_size") or 1))
    if env.get("CUDA_VISIBLE_DEVICES") is None:
        return list(range(ranks))
    visible = visible_devices(env)
    if len(visible) < ranks:
        raise UsageError(f"tensor_parallel_size={settings.get('tensor_parallel_size') or 1} x pipeline_parallel_size="
                         f"{settings.get('pipeline_parallel_size') or 1} needs {ranks} GPUs, CUDA_VISIBLE_DEVICES shows "
                         f"{len(visible)}: a start across nodes (Ray workers) is not measured")
    return visible[:ranks]


@dataclass
class StartDevices:
    """The NVML side of one start: the devices' handles, names and memory before the start (bytes)."""

    nvml: object
    handles: list
    names: list
    uuids: list
    baselines: list

    @classmethod
    def open(cls, devices: list) -> StartDevices:
        nvml, handles = open_devices(devices)
        try:
            names = [nvml_text(nvml.nvmlDeviceGetName(h)) for h in handles]
            uuids = [nvml_text(nvml.nvmlDeviceGetUUID(h)) for h in handles]
            baselines = [DeviceMemory(nvml, h).read().used for h in handles]
        except nvml.NVMLError as exc:
            nvml.nvmlShutdown()
            raise no_gpu(str(exc)) from None
        for uuid, used in zip(uuids, baselines):
            _SESSION_BASELINE.setdefault(uuid, used)
        return cls(nvml, handles, names, uuids, baselines)

    def settle(self, spec, tree) -> list[int]:
        """Wait until every device is back within settle_tolerance_gib of its baseline and session_tolerance_gib of
        the session's first baseline (a leak below the first tolerance per start still adds up); else
        DeviceNotClean naming the other processes NVML lists. GH200/GB200: not checked (unified memory)."""
        deadline = time.monotonic() + spec.settle_timeout_s
        while True:
            try:
                used = [DeviceMemory(self.nvml, h).read().used for h in self.handles]
            except self.nvml.NVMLError as exc:
                raise DeviceNotClean(f"NVML failed after {spec.name}: {exc}; stopping the sweep") from None
            over = [(n, u, b, _SESSION_BASELINE[id_]) for n, id_, u, b in zip(self.names, self.uuids, used, self.baselines)
                    if not any(g in n.upper() for g in UNIFIED_MEMORY_GPUS)
                    and (u > b + spec.settle_tolerance_gib * GiB
                         or u > _SESSION_BASELINE[id_] + spec.session_tolerance_gib * GiB)]
            if not over:
                return used
            if time.monotonic() >= deadline:
                name, u, b, first = over[0]
                raise DeviceNotClean(f"device memory of {name} did not return to baseline after {spec.name} "
                                     f"({to_gib(u):.2f} GiB; before the start {to_gib(b):.2f} GiB, before the first "
                                     f"start {to_gib(first):.2f} GiB){self._others(tree)}; stopping "
                                     "the sweep instead of measuring garbage")
            time.sleep(0.25)

    def _others(self, tree) -> str:
        seen = set(tree.seen) if tree is not None else set()
        try:
            procs = [p for h in self.handles for p in self.nvml.nvmlDeviceGetComputeRunningProcesses(h)]
        except Exception:  # the message is still useful without the list (old drivers: NVMLLibraryMismatchError)
            return ""
        others = [f"pid {p.pid} ({'?' if p.usedGpuMemory is None else f'{to_gib(p.usedGpuMemory):.2f} GiB'})"
                  for p in procs if p.pid not in seen]
        return f"; NVML lists other processes: {', '.join(others)}" if others else ""


