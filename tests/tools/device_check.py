"""One device check on a real GPU box (~1 min): the NVML facts the measurement layer relies on, as numbers.

Run from the repository root:  python tests/tools/device_check.py [--json OUT.json]
Needs nvidia-ml-py; torch with CUDA is optional (without it the allocation part is skipped).

What it prints, per NVML device (settles the figures the measurement review could only estimate):
  * name, driver, compute capability, the card `--card=auto` picks (review F1: H200 must not be h20), MIG mode;
  * idle memory as v1 (total/used/free) and v2 (total/reserved/used/free): v1 used - v2 used = reserved (F2);
  * ms per call of the memory query and of the process query (F11: the process query is the slow one);
  * on device 0 with torch: torch's total vs NVML's (v2 total - reserved, F2), the CUDA context size (F3), our
    process in NVML's list with its pid (host pid vs our pid: F10), and how fast memory returns after exit (F12);
  * CUDA's device order with and without CUDA_DEVICE_ORDER=PCI_BUS_ID against NVML's (F7).
Paste the output (or the JSON) into docs/gpu-box.md, "Measured on a GPU".
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import pynvml as N

from diagnostics.cards import card_for_gpu_name

MiB = 1 << 20
ALLOC = ("import torch, os; x = torch.empty(1 << 30, dtype=torch.uint8, device='cuda'); f, t = torch.cuda.mem_get_info();"
         "print(os.getpid(), t >> 20, (t - f) >> 20, flush=True); input()")
ORDER = "import torch; print([torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])"


def attempt(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # this script reports what the driver says, whatever it says
        return f"{type(exc).__name__}: {exc}"


def per_call_ms(fn, h, n=200) -> float | str:
    t = time.perf_counter()
    for _ in range(n):
        r = attempt(fn, h)
        if isinstance(r, str):
            return r
    return round((time.perf_counter() - t) / n * 1e3, 3)


def mig_slices(h) -> list:
    """(name, UUID, v2 total MiB, auto card) of each MIG slice of a MIG-enabled GPU (F8: a slice is its own card)."""
    out = []
    for j in range(N.nvmlDeviceGetMaxMigDeviceCount(h)):
        m = attempt(N.nvmlDeviceGetMigDeviceHandleByIndex, h, j)
        if isinstance(m, str):
            continue
        name, v2 = N.nvmlDeviceGetName(m), attempt(N.nvmlDeviceGetMemoryInfo, m, version=N.nvmlMemory_v2)
        card = attempt(card_for_gpu_name, name)
        out.append([name, N.nvmlDeviceGetUUID(m), v2 if isinstance(v2, str) else v2.total // MiB,
                    card if isinstance(card, str) or card is None else card.name])
    return out


def device_facts(i: int) -> dict:
    h = N.nvmlDeviceGetHandleByIndex(i)
    name = N.nvmlDeviceGetName(h)
    card = attempt(card_for_gpu_name, name)
    v1 = attempt(N.nvmlDeviceGetMemoryInfo, h)
    v2 = attempt(N.nvmlDeviceGetMemoryInfo, h, version=N.nvmlMemory_v2)
    return {
        "index": i, "name": name, "uuid": attempt(N.nvmlDeviceGetUUID, h),
        "pci_bus_id": attempt(lambda: N.nvmlDeviceGetPciInfo(h).busId),
        "compute_capability": attempt(N.nvmlDeviceGetCudaComputeCapability, h),
        "auto_card": card if isinstance(card, str) or card is None else [card.name, card.total_gib],
        "mig_mode": attempt(N.nvmlDeviceGetMigMode, h),
        "mig_slices": attempt(mig_slices, h),
        "v1_total_used_free_mib": v1 if isinstance(v1, str) else [v1.total // MiB, v1.used // MiB, v1.free // MiB],
        "v2_total_reserved_used_free_mib": v2 if isinstance(v2, str) else
        [v2.total // MiB, v2.reserved // MiB, v2.used // MiB, v2.free // MiB],
        "memory_query_ms": per_call_ms(N.nvmlDeviceGetMemoryInfo, h),
        "process_query_ms": per_call_ms(N.nvmlDeviceGetComputeRunningProcesses, h),
    }


def allocation_check(h, idle_used: int) -> dict:
    """A 1 GiB torch allocation in a child on device 0: context size, pid seen by NVML, release time."""
    p = subprocess.Popen([sys.executable, "-c", ALLOC], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline().split()
    if len(line) != 3:
        p.kill()
        return {"skipped": "no torch with CUDA here"}
    pid, torch_total, torch_used = (int(x) for x in line)
    used = N.nvmlDeviceGetMemoryInfo(h).used
    procs = [(q.pid, q.usedGpuMemory) for q in N.nvmlDeviceGetComputeRunningProcesses(h)]
    p.communicate("\n")
    t = time.monotonic()
    while N.nvmlDeviceGetMemoryInfo(h).used > idle_used + 64 * MiB and time.monotonic() - t < 30:
        time.sleep(0.01)
    return {"child_pid": pid, "torch_total_mib": torch_total, "torch_used_mib": torch_used,
            "nvml_v1_used_mib": used // MiB, "context_mib": (used - idle_used) // MiB - 1024,
            "nvml_processes": procs, "child_pid_listed": any(q[0] == pid for q in procs),
            "back_within_64mib_s": round(time.monotonic() - t, 2)}


def cuda_orders() -> dict:
    out = {}
    for label, env in (("default", {}), ("PCI_BUS_ID", {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"})):
        import os

        r = subprocess.run([sys.executable, "-c", ORDER], capture_output=True, text=True, env={**os.environ, **env})
        out[label] = r.stdout.strip() or r.stderr.strip()[-200:]
    return out


def main(argv: list[str]) -> int:
    N.nvmlInit()
    facts = {"driver": N.nvmlSystemGetDriverVersion(), "cuda_driver": N.nvmlSystemGetCudaDriverVersion(),
             "nvidia_ml_py": attempt(lambda: __import__("importlib.metadata").metadata.version("nvidia-ml-py")),
             "devices": [device_facts(i) for i in range(N.nvmlDeviceGetCount())]}
    h = N.nvmlDeviceGetHandleByIndex(0)
    facts["allocation_on_device_0"] = attempt(lambda: allocation_check(h, N.nvmlDeviceGetMemoryInfo(h).used))
    facts["cuda_device_order"] = cuda_orders()
    N.nvmlShutdown()
    print(json.dumps(facts, indent=1, default=str))
    if "--json" in argv:
        Path(argv[argv.index("--json") + 1]).write_text(json.dumps(facts, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
