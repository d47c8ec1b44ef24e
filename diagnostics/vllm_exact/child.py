"""The vLLM side of `diagnostics.vllm_exact`: run in a subprocess with the installed vLLM, never imported by plan.

For one checkpoint directory (config.json is enough) and one settings dict it asks vLLM's own code, on the CPU,
without weights:

* `EngineArgs(...).create_engine_config(UsageContext.LLM_CLASS)` (vllm/engine/arg_utils.py) resolves the config;
* the model is built on the meta device with `initialize_model` (vllm/model_executor/model_loader/utils.py:74)
  after a 1-rank gloo init whose tensor-parallel group claims `tensor_parallel_size` ranks: vLLM's layers read
  their shard sizes from `get_tensor_model_parallel_world_size()` = `get_tp_group().world_size`
  (vllm/distributed/parallel_state.py:2437-2444), and rank 0's share is what they build. Parameter and buffer
  bytes of that module are rank 0's weights;
* every attention layer's `get_kv_cache_spec(vllm_config)` (as GPUModelRunner.get_kv_cache_spec,
  vllm/v1/worker/gpu_model_runner.py:7146-7181) gives the per-layer KV spec; vLLM's own
  `get_kv_cache_configs` + `get_kv_cache_capacity` (vllm/v1/core/kv_cache_utils.py:2531, 2300) turn a reference
  memory into blocks and tokens, which gives the pool's bytes per token as the scheduler counts tokens;
* the profile run's LLM pass at plan's max_num_batched_tokens on fake tensors (diagnostics/vllm_exact/activation.py:
  transformers' module graph, not vLLM's: an estimate).

usage: python -m diagnostics.vllm_exact.child JOBS_JSON
  JOBS_JSON: a list of {"model": DIR, "settings": {...}}; one process answers all (vLLM's import is paid once)
Prints one JSON list on the last stdout line, an object per job ({"error": "..."} where vLLM cannot build it here).
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import tempfile
from pathlib import Path

# EngineArgs fields the plan settings may carry and that change what vLLM builds or how it sizes the KV cache
ENGINE_KEYS = ("tensor_parallel_size", "dtype", "kv_cache_dtype", "max_model_len", "quantization", "block_size",
               "max_num_batched_tokens", "max_num_seqs", "enable_expert_parallel", "limit_mm_per_prompt",
               "mm_processor_kwargs", "hf_overrides")
NOT_FOR_ENGINE = ("max_num_batched_tokens",)  # plan's GPU value is for the fake-tensor LLM pass; the CPU keeps its own
WORK_DIR = tempfile.TemporaryDirectory(prefix="vllm-exact-")  # gloo's rendezvous files; removed at exit
_INITS = itertools.count()
REFERENCE_BYTES = 64 << 30  # the memory handed to vLLM's KV sizing: tokens per byte is what is read from it


def engine_config(model_dir: str, settings: dict):
    from vllm.engine.arg_utils import EngineArgs
    from vllm.usage.usage_lib import UsageContext

    kwargs = {k: settings[k] for k in ENGINE_KEYS if settings.get(k) is not None and k not in NOT_FOR_ENGINE}
    # plan's block size (the GPU's 16 unless set): the CPU platform keeps a user-given one (vllm/platforms/cpu.py
    # 292-293 sets 128 only when none is given; MLA forces 16), so sliding-window pools are sized on GPU blocks
    return EngineArgs(model=model_dir, trust_remote_code=True, load_format="dummy", skip_tokenizer_init=True,
                      enforce_eager=True, distributed_executor_backend="uni", **kwargs
                      ).create_engine_config(UsageContext.LLM_CLASS)


def build_meta_model(vllm_config, tp: int):
    """vLLM's model on the meta device as rank 0 of `tp` tensor-parallel ranks would build it."""
    import torch
    from vllm.config import set_current_vllm_config
    from vllm.distributed import parallel_state
    from vllm.model_executor.model_loader.utils import initialize_model

    init_file = os.path.join(WORK_DIR.name, f"gloo-init-{next(_INITS)}")
    with set_current_vllm_config(vllm_config):
        # afresh per job: the groups depend on the model (an EP group exists only for MoE models)
        parallel_state.destroy_model_parallel()
        parallel_state.destroy_distributed_environment()
        parallel_state.init_distributed_environment(world_size=1, rank=0, local_rank=0,
                                                    distributed_init_method=f"file://{init_file}", backend="gloo")
        parallel_state.ensure_model_parallel_initialized(1, 1)
        parallel_state.get_tp_group().world_size = tp  # shapes only: nothing is communicated while building
        previous = torch.get_default_dtype()
        torch.set_default_dtype(vllm_config.model_config.dtype)
        try:
            with torch.device("meta"):
                return initialize_model(vllm_config=vllm_config)
        finally:
            torch.set_default_dtype(previous)


def weights(model) -> dict:
    params = list(model.parameters())
    buffers = list(model.buffers())
    return {"model_class": type(model).__name__, "params": sum(p.numel() for p in params),
            "param_bytes": sum(p.numel() * p.element_size() for p in params),
            "buffer_bytes": sum(b.numel() * b.element_size() for b in buffers)}


def align_hybrid_for_gpu(vllm_config) -> dict | None:
    """For a hybrid attention + Mamba/linear-attention model, the block size and padded Mamba page vLLM's GPU
    start-up picks: `Platform._align_hybrid_block_size` (vllm/platforms/interface.py:939-1122, called from
    update_block_size_for_backend :750-794 by the executor, v1/executor/uniproc_executor.py:75) with the CUDA
    FlashAttention backend's kernel block sizes (MultipleOf(16) on sm80-sm90, v1/attention/backends/flash_attn.py
    :355-366) in place of the CPU backend's MultipleOf(32). Sets them on vllm_config.cache_config (the layers'
    specs read them) and returns {"block_size", "mamba_page_size_padded", "mamba_ssm_cache_dtype"}; None for other
    models."""
    if not vllm_config.model_config.is_hybrid:
        return None
    from vllm.platforms.interface import Platform
    from vllm.v1.attention.backends.flash_attn import FlashAttentionBackend

    class _Cuda(Platform):  # only the backend list differs from the base class's rule
        @classmethod
        def _find_non_ssm_backends(cls, vllm_config):
            return [FlashAttentionBackend]

    # the CPU platform stores the SSM state in float32 for its GDN kernels (vllm/platforms/cpu.py:303-321); a GPU keeps
    # the value the model's config left: the checkpoint's mamba_ssm_dtype (Qwen3.5, models/config.py:855-866), else
    # "auto" (the conv state's dtype, layers/mamba/mamba_utils.py:98-110)
    hf = vllm_config.model_config.hf_text_config
    vllm_config.cache_config.mamba_ssm_cache_dtype = (getattr(hf, "mamba_ssm_dtype", None)
                                                      or getattr(hf, "mamba_ssm_cache_dtype", None) or "auto")
    _Cuda._align_hybrid_block_size(vllm_config, FlashAttentionBackend)
    cache = vllm_config.cache_config
    return {"block_size": int(cache.block_size), "mamba_page_size_padded": cache.mamba_page_size_padded,
            "mamba_ssm_cache_dtype": str(cache.mamba_ssm_cache_dtype)}


def kv_specs(vllm_config) -> dict:
    from vllm.model_executor.layers.attention_layer_base import AttentionLayerBase
    from vllm.config import get_layers_from_vllm_config

    specs = {}
    for name, layer in get_layers_from_vllm_config(vllm_config, AttentionLayerBase).items():
        if getattr(layer, "kv_sharing_target_layer_name", None):
            continue
        spec = layer.get_kv_cache_spec(vllm_config)
        if spec is not None:
            specs[name] = spec
    return specs


def spec_summary(specs: dict) -> list[dict]:
    """One row per distinct spec: its type, layer count, page bytes, block size and bytes per token per layer."""
    rows: dict = {}
    for spec in specs.values():
        key = repr(spec)
        if key not in rows:
            row = {"type": type(spec).__name__, "layers": 0, "page_size_bytes": int(spec.page_size_bytes),
                   "block_size": int(spec.block_size)}
            if hasattr(spec, "num_kv_heads"):
                row.update(num_kv_heads=int(spec.num_kv_heads), head_size=int(spec.head_size),
                           dtype=str(spec.dtype))
            if getattr(spec, "sliding_window", None):
                row["sliding_window"] = int(spec.sliding_window)
            if type(spec).__name__.startswith("Mamba"):  # the state itself; the page may be padded to a block's
                row["state_bytes_per_sequence"] = int(spec.real_page_size_bytes)
            else:
                row["bytes_per_token"] = spec.page_size_bytes / spec.block_size
            rows[key] = row
        rows[key]["layers"] += 1
    return list(rows.values())


def pool(vllm_config, specs: dict) -> dict:
    """vLLM's own KV sizing on REFERENCE_BYTES: blocks, tokens and the bytes per token they imply."""
    from vllm.distributed.kv_transfer.kv_connector.utils import get_current_attn_backends
    from vllm.v1.attention.backends.utils import get_supported_kv_cache_layouts, resolve_kv_cache_layout
    from vllm.v1.core.kv_cache_utils import get_kv_cache_capacity, get_kv_cache_configs

    # as EngineCore does before profiling (vllm/v1/engine/core.py:296), with the layouts of this worker's backends
    # (vllm/v1/worker/worker_base.py:107-110)
    layouts = [layout.name for layout in get_supported_kv_cache_layouts(get_current_attn_backends(vllm_config))]
    resolve_kv_cache_layout(vllm_config, [layouts], list(specs.values()))
    cfg = get_kv_cache_configs(vllm_config, [specs], [REFERENCE_BYTES])[0]
    tokens, concurrency = get_kv_cache_capacity(vllm_config, cfg)
    used = max(t.size for t in cfg.kv_cache_tensors)  # groups alias one allocation (kv_cache_utils.py:1630-1640)
    return {"reference_bytes": REFERENCE_BYTES, "num_blocks": int(cfg.num_blocks), "tokens": int(tokens),
            "bytes_used": int(used), "bytes_per_token": used / tokens if tokens else None,
            "max_concurrency": float(concurrency), "max_model_len": vllm_config.model_config.max_model_len}


def ask(model_dir: str, settings: dict) -> dict:
    import vllm

    vllm_config = engine_config(model_dir, settings)
    tp = int(settings.get("tensor_parallel_size") or 1)
    model = build_meta_model(vllm_config, tp)
    try:
        gpu_blocks = align_hybrid_for_gpu(vllm_config)
    except Exception as exc:  # the pool is then the CPU's, read as attention pages only (predict.exact)
        gpu_blocks, why = None, f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"
    else:
        why = None
    specs = kv_specs(vllm_config)
    out = {"vllm_version": vllm.__version__, "tensor_parallel_size": tp,
           "architecture": vllm_config.model_config.architectures[0],
           "dtype": str(vllm_config.model_config.dtype).removeprefix("torch."),
           "weights": weights(model), "kv_layers": spec_summary(specs)}
    out["kv_pool"] = pool(vllm_config, specs) if specs else None
    if gpu_blocks is not None and out["kv_pool"] is not None:
        out["kv_pool"]["gpu_hybrid_alignment"] = gpu_blocks
    elif why and out["kv_pool"] is not None:
        out["kv_pool"]["gpu_hybrid_alignment_error"] = why
    out["llm_pass"] = fake_llm_pass(model_dir, settings, tp)
    return out


def fake_llm_pass(model_dir: str, settings: dict, tp: int) -> dict:
    """The profile run's LLM pass over max_num_batched_tokens on fake tensors (diagnostics/vllm_exact/activation.py);
    {"error": ...} where transformers cannot build the text model."""
    from diagnostics.vllm_exact.activation import llm_pass_peak, unlike_vllm

    tokens = settings.get("max_num_batched_tokens")
    if not tokens:
        return {"error": "no max_num_batched_tokens given"}
    try:
        cfg = json.loads((Path(model_dir) / "config.json").read_text())
        why_not = unlike_vllm(cfg)
        return {"error": f"not measured: {why_not}"} if why_not else llm_pass_peak(cfg, int(tokens), tp)
    except Exception as exc:  # a finding for the parent, not a failure of the weights/KV answer
        return {"error": f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"}




def guarded(model_dir: str, settings: dict) -> dict:
    try:
        return ask(model_dir, settings)
    except Exception as exc:  # one line back to the parent: vLLM could not build this model here
        if os.environ.get("VLLM_EXACT_TRACEBACK"):
            import traceback

            traceback.print_exc()
        return {"error": f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:300]}"}


def main(argv: list[str]) -> int:
    jobs = json.loads(argv[0])
    print(json.dumps([guarded(job["model"], job.get("settings") or {}) for job in jobs]))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    sys.exit(main(sys.argv[1:]))
