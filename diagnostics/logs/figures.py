"""Numbers as vLLM prints them: `65,536`, `15.9524`, PyTorch's `142.04 MiB`, config-line literals, and the figures
inside error texts (free/total GiB, the OOM message's sizes, the KV shortfall), vllm-memory.md §2."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

from diagnostics.logs import patterns as P

GIB_PER_UNIT = {"bytes": 1 / (1 << 30), "B": 1 / (1 << 30), "KiB": 1 / (1 << 20), "MiB": 1 / 1024, "GiB": 1.0,
                "TiB": 1024.0}

# Config-line keys (`max_seq_len=32768, enforce_eager=False, ...`) -> setting names.
CONFIG_KEYS = {"model": "model", "max_seq_len": "max_model_len", "enforce_eager": "enforce_eager", "dtype": "dtype",
               "tensor_parallel_size": "tensor_parallel_size", "pipeline_parallel_size": "pipeline_parallel_size",
               "load_format": "load_format", "kv_cache_dtype": "kv_cache_dtype", "quantization": "quantization",
               "trust_remote_code": "trust_remote_code", "enable_chunked_prefill": "enable_chunked_prefill",
               "enable_prefix_caching": "enable_prefix_caching", "seed": "seed", "device_config": "device",
               "max_num_seqs": "max_num_seqs", "max_num_batched_tokens": "max_num_batched_tokens",
               "gpu_memory_utilization": "gpu_memory_utilization", "block_size": "block_size"}

# Figures of LogRecord.numbers that vLLM did not print but we computed from printed ones (a sum), with how:
# renderers show them apart from the printed numbers, and a 0 among them is a true 0, not a print's rounding.
DERIVED_NUMBERS = {"other_processes_gib": "sum of the other processes in the OOM message's process list"}


def number(text: str) -> float | int:
    """`65,536` -> 65536, `15.9524` -> 15.9524, `-0.23` -> -0.23 (int when printed without a decimal point)."""
    clean = text.replace(",", "").strip()
    return float(clean) if "." in clean else int(clean)


def gib(text: str) -> float:
    """A printed GiB (or ratio) figure as a float: `15.10` -> 15.1, `1` -> 1.0."""
    return float(number(text))


def size_gib(text: str) -> float:
    """PyTorch format_size text (`142.04 MiB`, `0 bytes`) -> GiB."""
    m = re.match(rf"({P.NUM})\s*(\w+)", text.strip())
    return float(m.group(1).replace(",", "")) * GIB_PER_UNIT[m.group(2)]


def literal(text: str):
    """A config-line value: `True`/`False`/`None`, a number, else the text without quotes."""
    value = text.strip().strip("'\"")
    if value in ("True", "False"):
        return value == "True"
    if value == "None":
        return None
    try:
        return number(value)
    except (ValueError, AttributeError):
        return value


def config_settings(config: str) -> dict:
    """The banner's `key=value, ...` config -> {setting name: value} for the keys CONFIG_KEYS knows (first wins)."""
    out: dict = {}
    config = config.rstrip()
    if config.endswith(")") and config.count(")") > config.count("("):
        config = config[:-1]  # 0.5.x closes the config with `)`: `..., enable_prefix_caching=False)`
    for m in P.CONFIG_ITEM.finditer(config):
        name = CONFIG_KEYS.get(m.group("key"))
        if name and name not in out:
            out[name] = literal(m.group("value"))
    return out


def non_default_args(text: str) -> dict:
    """`non-default args: {...}` (a Python dict literal) -> {str key: value}; {} when it does not parse."""
    try:
        args = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return {}
    return {k: v for k, v in args.items() if isinstance(k, str)} if isinstance(args, dict) else {}


def reserved_tokens(text: str) -> dict | int | None:
    """The profiling warning's reserved tokens: `{'image': 2048}` -> dict, `2048` -> int; None for a truncated dict."""
    if not text.startswith("{"):
        return int(text)
    try:
        return {modality: int(tokens) for modality, tokens in ast.literal_eval(text).items()}
    except (ValueError, SyntaxError, AttributeError):
        return None  # a truncated dict in a paste: the total is still exact


@dataclass
class ErrorFigures:
    """Figures read from one error text, in the order they appear: (key, value) numbers and settings."""

    numbers: list = field(default_factory=list)
    settings: list = field(default_factory=list)
    cpu: bool = False
    processes: list = field(default_factory=list)


def error_figures(body: str) -> ErrorFigures:
    """Figures inside error texts; read wherever they appear (a wrapper may repeat them)."""
    out = ErrorFigures(cpu=bool(P.NODE_LESS.search(body) or P.NODE_KV_ALLOC.search(body)))
    num, setting = out.numbers.append, out.settings.append
    if m := (P.FREE_LESS.search(body) or P.NODE_LESS.search(body)):
        num(("free_gib", gib(m.group("free"))))
        num(("gpu_total_gib", gib(m.group("total"))))
        num(("gpu_memory_utilization", gib(m.group("util"))))
        num(("requested_gib", gib(m.group("req"))))
        setting(("gpu_memory_utilization", gib(m.group("util"))))
    if m := P.EXTERNAL_WEIGHTS_EXCEED.search(body):
        num(("external_weights_gib", gib(m.group("ext"))))
        num(("gpu_total_gib", gib(m.group("total"))))
        num(("gpu_memory_utilization", gib(m.group("util"))))
        num(("requested_gib", gib(m.group("req"))))
        setting(("gpu_memory_utilization", gib(m.group("util"))))
    if m := P.NODE_KV_ALLOC.search(body):
        num(("free_gib", gib(m.group("free"))))
        num(("gpu_total_gib", gib(m.group("total"))))
        num(("kv_cache_gib", gib(m.group("kv"))))
        if m.group("req"):
            num(("requested_gib", gib(m.group("req"))))
    if m := P.KV_TOO_SMALL_V1.search(body):
        num(("max_model_len", int(m.group("mml"))))
        setting(("max_model_len", int(m.group("mml"))))
        num(("kv_needed_gib", gib(m.group("need"))))
        num(("kv_cache_gib", gib(m.group("avail"))))
    if m := P.ESTIMATED_MML.search(body):
        num(("estimated_max_model_len", int(m.group("n"))))
    if m := P.KV_TOO_SMALL_V0.search(body):
        num(("max_model_len", int(m.group("mml"))))
        setting(("max_model_len", int(m.group("mml"))))
        num(("kv_cache_tokens", int(m.group("cap"))))
    if (P.OOM.search(body) or P.OOM_GPU.search(body) or P.OOM_GPU_OLD.search(body) or P.OOM_XPU.search(body)
            or P.OOM_ALLOC_WARNING.search(body)):
        out.numbers.extend(oom_figures(body))
        out.processes = oom_processes(body)
    if m := P.MM_ITEM_TOO_LARGE.search(body):
        num(("max_tokens_per_mm_item", int(m.group("n"))))
        setting(("max_num_batched_tokens", int(m.group("m"))))
    return out


def oom_figures(body: str) -> list[tuple[str, float | int]]:
    """A PyTorch OOM message's sizes (GiB): tried, the GPU's total (also as gpu_total_gib) and free, PyTorch's
    allocated/reserved (and the CUDA-graph private pools' share, torch 2.4+), a per-process limit ("allowed"),
    torch_npu's "current active". Texts: c10/cuda/CUDACachingAllocator.cpp (torch 2.0-2.9), c10/xpu/
    XPUCachingAllocator.cpp, torch_npu NPUCachingAllocator.cpp (diagnostics/data/log_messages.toml, section torch)."""
    out = []
    if m := P.OOM_TRIED.search(body):
        out.append(("oom_tried_gib", size_gib(m.group("size"))))
    if m := (P.OOM_GPU.search(body) or P.OOM_GPU_OLD.search(body) or P.OOM_XPU.search(body)):
        total = size_gib(m.group("total"))
        out += [("oom_gpu_index", int(m.group("i"))), ("oom_total_gib", total), ("gpu_total_gib", total)]
        if "free" in m.re.groupindex:
            out.append(("oom_free_gib", size_gib(m.group("free"))))
        if "alloc" in m.re.groupindex:
            out.append(("oom_allocated_by_pytorch_gib", size_gib(m.group("alloc"))))
            if m.group("active"):
                out.append(("oom_active_gib", size_gib(m.group("active"))))
            if m.group("limit"):
                out.append(("oom_allowed_gib", size_gib(m.group("limit"))))
            if m.group("res"):
                out.append(("oom_reserved_by_pytorch_gib", size_gib(m.group("res"))))
    if m := P.OOM_ALLOC_WARNING.search(body):
        total = int(m.group("total")) / (1 << 30)
        # under their own keys: the OutOfMemoryError that may follow carries the figures of the failure itself
        out += [("alloc_failed_tried_gib", int(m.group("tried")) / (1 << 30)),
                ("alloc_failed_free_gib", int(m.group("free")) / (1 << 30)), ("gpu_total_gib", total)]
    if m := P.OOM_ALLOWED.search(body):
        out.append(("oom_allowed_gib", size_gib(m.group("size"))))
    if m := P.OOM_ALLOCATED.search(body):
        out += [("oom_allocated_by_pytorch_gib", size_gib(m.group("alloc"))),
                ("oom_reserved_unallocated_gib", size_gib(m.group("res")))]
        if m.group("pools"):  # torch 2.4+: part of the allocated figure sits in CUDA-graph private pools
            out.append(("oom_private_pools_gib", size_gib(m.group("pools"))))
    return out  # the processes' figures come from oom_processes (logs.scan sums them once the log is read)


def oom_processes(body: str) -> list[dict]:
    """Every process the OOM message lists: {"pid": int | None, "gib": float, "this_process": bool}.

    PyTorch names its own process "this process" when NVML's pid is its own. In a container the pids differ and
    every process is listed as "Process N": then this process is the smallest one holding at least what PyTorch
    says it allocated and reserved (its own count is a floor on its use); without those figures, the largest (so
    the other processes' sum is a lower bound, never an overstatement)."""
    procs = [{"pid": int(m.group("pid")) if m.group("pid") else None, "gib": size_gib(m.group("size")),
              "this_process": bool(m.group("this"))} for m in P.OOM_PROCESS.finditer(body)]
    if not procs or any(p["this_process"] for p in procs):
        return procs
    floor = None
    if m := P.OOM_ALLOCATED.search(body):
        floor = size_gib(m.group("alloc")) + size_gib(m.group("res"))
    fits = [p for p in procs if floor is not None and p["gib"] >= floor - 0.005]
    chosen = min(fits, key=lambda p: p["gib"]) if fits else max(procs, key=lambda p: p["gib"])
    chosen["this_process"] = True
    return procs
