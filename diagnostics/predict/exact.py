"""Terms computed by the installed vLLM's own code (diagnostics.vllm_exact asks it in a subprocess), as plain
numbers the pure estimator can use: rank 0's parameter and buffer bytes as vLLM builds the model, and the KV
cache's bytes per token per rank from vLLM's per-layer KV specs. Nothing here imports vLLM or torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from diagnostics.units import GiB


@dataclass(frozen=True)
class VllmExact:
    """What vLLM `version` computed for one (config.json, settings): bytes are per tensor-parallel rank (rank 0).

    param_bytes, buffer_bytes: parameters and buffers (rotary cos/sin caches, ...) of vLLM's model built on the
    meta device (B); both are on the GPU after loading, so `weights_bytes` is their sum;
    kv_bytes_per_token: the KV pool's bytes per token as vLLM's scheduler counts tokens (B; None: no paged KV);
    kv_layers: one dict per distinct KV spec (type, layers, bytes_per_token or state_bytes_per_sequence, ...);
    architecture, model_class: what vLLM resolved and built; settings: the engine settings it was asked with;
    llm_pass_bytes, llm_pass_class: the profile run's LLM pass at max_num_batched_tokens measured on fake tensors
    with transformers' `llm_pass_class` (an estimate, not vLLM's code; None where it could not be built).
    """

    version: str
    param_bytes: int
    buffer_bytes: int
    kv_bytes_per_token: float | None
    kv_layers: tuple
    architecture: str
    model_class: str
    llm_pass_bytes: int | None = None
    llm_pass_class: str = ""
    settings: dict = dataclasses.field(default_factory=dict)  # the engine settings vLLM was asked with

    @property
    def weights_bytes(self) -> int:
        return self.param_bytes + self.buffer_bytes

    @property
    def label(self) -> str:
        return f"exact (vLLM {self.version}'s own code)"

    @classmethod
    def from_json(cls, data: dict, settings: dict | None = None) -> VllmExact:
        """From diagnostics.vllm_exact.child's answer to `settings`; KeyError/TypeError for another shape."""
        w = data["weights"]
        layers = tuple(data.get("kv_layers") or ())
        fake = data.get("llm_pass") or {}
        return cls(str(data["vllm_version"]), int(w["param_bytes"]), int(w.get("buffer_bytes", 0)),
                   kv_bytes_per_token(layers, data.get("kv_pool")), layers, str(data["architecture"]),
                   str(w["model_class"]), fake.get("activation_bytes"), str(fake.get("model_class", "")),
                   dict(settings or {}))


def kv_bytes_per_token(layers: tuple, pool: dict | None) -> float | None:
    """Bytes per token per rank of the KV pool: vLLM's own pool sizing (blocks x page / tokens, which counts
    sliding-window layers and Mamba/linear-attention state the way its scheduler does). With state layers the
    block size is chosen per platform to match the state's page: the pool counts only when the child sized it
    with the GPU's choice (`gpu_hybrid_alignment`, diagnostics.vllm_exact.child.align_hybrid_for_gpu); an older
    answer without it gives the attention layers' page bytes / block size, the state apart (a lower bound)."""
    if not layers:
        return None
    state = any("state_bytes_per_sequence" in row for row in layers)
    if (state and not (pool or {}).get("gpu_hybrid_alignment")) or not pool or not pool.get("bytes_per_token"):
        return float(sum(row["bytes_per_token"] * row["layers"] for row in layers if "bytes_per_token" in row))
    return float(pool["bytes_per_token"])


def exact_weights_gib(exact: VllmExact, settings: dict) -> float:
    """Rank 0's weights in GiB less `cpu_offload_gb` (which vLLM keeps in host memory), never below 0."""
    offload = float(settings.get("cpu_offload_gb") or 0) * GiB
    return max(exact.weights_bytes - offload, 0) / GiB


# settings that change what vLLM builds: a plan with another value needs vLLM's answer for it
BUILD_SETTINGS = ("tensor_parallel_size", "dtype", "kv_cache_dtype", "quantization", "hf_overrides",
                  "enable_expert_parallel")


def _setting(settings: dict, key: str):
    value = settings.get(key)
    return None if value == "auto" else value


def carry(exact: VllmExact | None, new: dict) -> VllmExact | None:
    """vLLM's answer (asked with `exact.settings`) reused for a plan at the resolved `new` settings (explain's
    counterfactuals, plan --fit), or None where it no longer holds: a setting that changes the build, or
    max_model_len with sliding-window or Mamba/linear-attention state layers (their pool depends on it). A changed max_num_batched_tokens drops
    the fake-tensor LLM pass (measured at the old one)."""
    if exact is None:
        return None
    old = exact.settings
    if any(_setting(old, k) != _setting(new, k) for k in BUILD_SETTINGS if k != "tensor_parallel_size") or \
            int(old.get("tensor_parallel_size") or 1) != int(new.get("tensor_parallel_size") or 1):
        return None
    if old.get("max_model_len") != new.get("max_model_len") and any(
            "sliding_window" in r or "state_bytes_per_sequence" in r for r in exact.kv_layers):
        return None  # a sliding window's or a state's share of the pool per token depends on max_model_len
    if old.get("max_num_batched_tokens") != new.get("max_num_batched_tokens"):
        return dataclasses.replace(exact, llm_pass_bytes=None)
    return exact
