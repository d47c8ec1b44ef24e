"""The language-model pass of vLLM's profile run measured on fake tensors (issue #20 point 5): no GPU, no weights.

transformers' causal-LM class for a config.json is built under `torch._subclasses.fake_tensor.FakeTensorMode`
(tensors with shapes and dtypes, no storage) and run once over the profile run's `max_num_batched_tokens` tokens
(one sequence, inference mode, logits for the last token only) inside
`torch.distributed._tools.mem_tracker.MemTracker`, which records the peak bytes of the tensors alive, split into
parameters, buffers and activations. The activation peak of one decoder layer does not grow with depth in
inference, so two layers are built (seconds on a CPU for a 32 B model).

Tensor parallelism is emulated in the shapes, as vLLM 0.32 shards them (vllm/model_executor/layers/linear.py:
QKVParallelLinear, :998, divides query and KV heads by the TP size, KV heads replicated when fewer than ranks,
:1055; MergedColumnParallelLinear, :673, divides the MLP's intermediate size): heads, KV heads and intermediate
size divided, head_dim and hidden size kept. What it is: an estimate of vLLM's own pass from transformers' module graph (HF runs
gate and up as two GEMMs where vLLM fuses them, and keeps q/k/v apart), labelled as such where plan shows it.

Imports torch and transformers inside the functions only: this is part of the optional path, outside the pure rooms.
"""

from __future__ import annotations

import copy
import time

# VLM configs whose language model is a text model transformers builds on its own (top-level text fields)
TEXT_MODEL_TYPES = {"qwen2_vl": "qwen2", "qwen2_5_vl": "qwen2", "llava": "llama"}


# config keys of layers whose transformers module graph is far from vLLM's fused kernels: HF's MoE blocks route
# through per-expert loops / dense expert tensors where vLLM runs fused_moe, and HF's MLA expands the latent into
# per-head K/V where vLLM keeps it compressed (DeepSeek-V2-Lite at 8,192 tokens: 8.9 GiB on fake tensors)
NOT_LIKE_VLLM = ("num_experts", "num_local_experts", "n_routed_experts", "kv_lora_rank", "linear_num_value_heads")


def unlike_vllm(cfg: dict) -> str | None:
    """Why the fake-tensor pass of transformers' module would not stand for vLLM's here (None: a dense decoder)."""
    text = cfg.get("text_config") if isinstance(cfg.get("text_config"), dict) else cfg
    found = [k for k in NOT_LIKE_VLLM if text.get(k)]
    if found:
        return f"{', '.join(found)}: transformers' MoE/MLA/linear-attention modules are not vLLM's fused kernels"
    if "num_attention_heads" not in text:
        return "the text config leaves its head count to transformers' defaults"
    return None


def tp_config(cfg: dict, tp: int, layers: int = 2) -> dict:
    """The text config rank 0 of `tp` ranks computes with: heads, KV heads (at least 1) and intermediate size
    divided by tp, head_dim made explicit, `layers` decoder layers. ValueError if the heads do not divide."""
    out = copy.deepcopy(cfg.get("text_config") if isinstance(cfg.get("text_config"), dict) else cfg)
    out["model_type"] = TEXT_MODEL_TYPES.get(out.get("model_type"), out.get("model_type"))
    for key in ("vision_config", "rope_scaling", "architectures"):  # mrope is 1-D rope for text-only positions
        out.pop(key, None)
    heads = int(out["num_attention_heads"])
    out.setdefault("head_dim", int(out["hidden_size"]) // heads)
    if heads % tp:
        raise ValueError(f"{heads} attention heads do not divide over tensor_parallel_size={tp}")
    out["num_attention_heads"] = heads // tp
    kv = int(out.get("num_key_value_heads") or heads)
    out["num_key_value_heads"] = max(kv // tp, 1)
    out["intermediate_size"] = -(-int(out["intermediate_size"]) // tp)
    out["num_hidden_layers"] = layers
    out.pop("layer_types", None)  # per-layer lists sized for the full depth
    return out


def llm_pass_peak(cfg: dict, tokens: int, tp: int = 1, dtype: str = "bfloat16") -> dict:
    """Peak bytes of transformers' forward over `tokens` tokens for `cfg` (a config.json dict) on fake tensors.

    Returns {"activation_bytes", "param_bytes", "peak_bytes", "seconds", "model_class"}; activation_bytes is the
    tracker's activation (+ temporary) bytes at the forward's peak. Raises ValueError for a config transformers
    cannot build as a causal LM."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.mem_tracker import MemTracker
    from transformers import AutoConfig, AutoModelForCausalLM

    start = time.perf_counter()
    text = tp_config(cfg, tp)
    config = AutoConfig.for_model(text.pop("model_type", "llama"), **text)
    torch_dtype = getattr(torch, dtype)
    previous = torch.get_default_dtype()
    try:
        with FakeTensorMode():
            torch.set_default_dtype(torch_dtype)
            model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype, attn_implementation="sdpa").eval()
            ids = torch.zeros((1, tokens), dtype=torch.long)
            tracker = MemTracker()
            tracker.track_external(model, ids)
            with tracker, torch.no_grad():
                model(input_ids=ids, logits_to_keep=1, use_cache=False)
            peak = next(iter(tracker.get_tracker_snapshot("peak").values()))
    finally:
        torch.set_default_dtype(previous)
    by_kind = {str(getattr(k, "value", k)): int(v) for k, v in peak.items()}
    return {"activation_bytes": by_kind.get("Activation", 0) + by_kind.get("Temp", 0),
            "param_bytes": by_kind.get("Parameter", 0), "peak_bytes": by_kind.get("Total", 0),
            "seconds": round(time.perf_counter() - start, 2), "model_class": type(model).__name__}
