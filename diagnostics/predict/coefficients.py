"""Every estimated coefficient of the start-up arithmetic, in one place.

The exact terms (weights, KV bytes per token, dummy-item counts) follow vLLM's code and have no coefficient. What
is estimated — the CUDA context, non-torch memory, the activation terms' uncertainty, the sampler's bytes per
logit and CUDA-graph memory — is a field of `Coefficients`, so a calibration (issue #13) replaces one object and
the term functions in `predict.terms` read nothing else. Units: GiB for memory figures, bytes for per-element
sizes, plain factors for ranges (low, high) around a value.

Sources (vllm-memory.md §1, the field cases): non-torch 0.11 GiB (4090), 0.30 (L40S, TP 2), 0.34-0.43 (A100, TP 4);
V0 logs warn "CUDA graphs ... 1~3 GiB"; the CUDA context is taken before vLLM's baseline and visible to NVML.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Coefficients:
    """The estimate coefficients (defaults: hand-fitted on the field cases of round 1)."""

    # (value, low, high) in GiB: not counted by vLLM (taken before its baseline), visible to NVML
    cuda_context_gib: tuple[float, float, float] = (0.3, 0.25, 0.5)
    # (value, low, high) in GiB: cuBLAS/cuBLASLt workspaces, NCCL buffers
    non_torch_gib: tuple[float, float, float] = (0.3, 0.1, 0.6)
    nccl_extra_gib: float = 0.15  # per start with tensor_parallel_size > 1
    # fp32 logits + probs + sorted values + int64 indices (top-p/top-k dummy sampling), bytes per logit
    sampler_bytes_per_logit: int = 24
    encoder_range_linear: tuple[float, float] = (0.7, 1.4)  # memory-efficient attention: linear-in-tokens estimate
    encoder_range_eager: tuple[float, float] = (0.9, 1.3)  # eager attention: L^2 scores exact, the rest estimated
    llm_range: tuple[float, float] = (0.7, 1.3)  # language-model pass + sampler
    # CUDA graphs: base + slope x largest captured batch / batch cap, GiB; range factors around it
    cuda_graph_v0: tuple[float, float, int] = (0.2, 0.8, 256)
    cuda_graph_v1: tuple[float, float, int] = (0.2, 0.6, 512)
    cuda_graph_range: tuple[float, float] = (0.5, 2.0)
    # VLM families' vision tower (diagnostics.families): bytes per ViT patch = (a x vision hidden + b x vision MLP)
    # x dtype bytes, not sharded by TP. Fitted on Qwen2.5-VL field logs: vllm#16570 (72B, TP 4, one 65,536-patch
    # dummy image: activation peak 2.51 GiB printed) and vllm#18124 (3B at 24 GB: the 458,752-patch dummy video
    # leaves no KV cache), both ~40 KB per patch.
    vlm_tower_per_patch: tuple[int, int] = (8, 3)


DEFAULT = Coefficients()
