"""One function per term of vLLM's start-up memory, in vLLM's own categories (vllm-memory.md §1, `mem_utils.py`):
weights, non-torch, the encoder profile, the activation peak (encoder vs language-model pass + sampler),
the KV cache and CUDA graphs. Pure arithmetic; every estimate coefficient comes from `predict.coefficients`.

Activation sizes are derived from the shapes of the tensors alive at the peak and checked against the field cases:
* MiniCPM-V#640 (A10, 22.18 GiB, max_model_len 2048, a 0.6.0-0.6.2 era engine): "Tried to allocate 4.00 GiB" with
  18.29 GiB allocated = the float32 softmax of 64 dummy slices x 16 heads x 1024^2 in SigLIP's eager attention
  (64 x 16 x 2^20 x 4 B = 4.00 GiB) on top of 15.09 GiB weights + 2 GiB bf16 scores + ~1 GiB other.
* vllm#7721 (defaults, vLLM 0.5.4): ~70 GB vpm peak on an A800, OOM on a 46 GB L20.
* OpenBMB/MiniCPM-V#392: defaults OOM on a 3090; max_model_len 4096 + max_num_seqs 32 + util 1.0 starts.
"""

from __future__ import annotations

from dataclasses import dataclass

from diagnostics.models import ModelSpec
from diagnostics.predict.coefficients import DEFAULT, Coefficients
from diagnostics.predict.mm_budget import MMProfile
from diagnostics.settings import DTYPES
from diagnostics.units import GiB


@dataclass
class Term:
    """One memory term in GiB with its range; `basis` is "exact", "derived: ..." or "estimate: ..."."""

    value_gib: float
    low_gib: float
    high_gib: float
    basis: str

    @classmethod
    def exact(cls, gib: float, basis: str = "exact") -> Term:
        return cls(gib, gib, gib, basis)

    def to_json(self) -> dict:
        return {"value_gib": round(self.value_gib, 3), "low_gib": round(self.low_gib, 3),
                "high_gib": round(self.high_gib, 3), "basis": self.basis}


def dtype_bytes(model: ModelSpec, settings: dict) -> int:
    """Bytes per parameter/activation element: the `dtype` setting, else the checkpoint's torch_dtype."""
    return DTYPES.get(settings.get("dtype", "auto")) or model.dtype_bytes


def weights_term(model: ModelSpec, settings: dict, db: int) -> Term:
    """Parameter bytes as vLLM builds the model (exact), sharded by TP, less `cpu_offload_gb`."""
    tp = int(settings.get("tensor_parallel_size", 1))
    w_bytes = model.weights_bytes(db) / tp
    offload = float(settings.get("cpu_offload_gb") or 0) * GiB
    return Term.exact(max(w_bytes - offload, 0) / GiB,
                      "exact: parameter bytes as vLLM builds the model" + (" (TP shard)" if tp > 1 else ""))


def non_torch_term(settings: dict, coef: Coefficients) -> Term:
    """cuBLAS/NCCL workspaces (vLLM's `non_torch_memory`), plus NCCL buffers under tensor parallelism."""
    value, low, high = coef.non_torch_gib
    extra = coef.nccl_extra_gib if int(settings.get("tensor_parallel_size", 1)) > 1 else 0.0
    return Term(value + extra, low + extra, high + extra, "estimate: cuBLAS/NCCL workspaces (field logs: 0.11-0.43 GiB)")


def eager_vision_attention(model: ModelSpec, version, family: str) -> bool:
    """Does the model's vision tower compute L^2 attention scores in this version (its family says: MiniCPM-V's
    na_vit.py SigLIP is eager in 0.5.4 - 0.6.2, xformers from 0.6.3; the other families' towers never)?"""
    return model.family is not None and model.family.eager_attention(version, family)


def encoder_bytes(model: ModelSpec, prof: MMProfile, db: int, eager: bool, tp: int = 1,
                  coef: Coefficients = DEFAULT) -> dict:
    """Peak bytes of the vision pass on all dummy items at once, as the model's family computes it
    (families/minicpmv.py: max(SigLIP tower, resampler); the others: families.common.tower_encoder_bytes).

    Returns {"total", "vpm", "resampler", "scores", "largest_alloc"} in bytes.
    """
    if prof.empty or prof.skipped or model.family is None:
        return {"total": 0, "vpm": 0, "resampler": 0, "scores": 0, "largest_alloc": 0}
    return model.family.encoder_bytes(model, prof, db, eager, tp, coef)


def scaled_encoder_bytes(raw_bytes: int, eager: bool, coef: Coefficients) -> int:
    """The encoder pass's bytes: the shape-derived `encoder_bytes(...)["total"]` times the calibrated factor for
    its attention kind (`encoder_scale_eager` / `encoder_scale_linear`)."""
    return int(raw_bytes * (coef.encoder_scale_eager if eager else coef.encoder_scale_linear))


def encoder_term(enc_total_bytes: int, eager: bool, coef: Coefficients) -> Term:
    """The encoder profile's peak (GiB) with its range: eager attention's scores are exact, the rest estimated."""
    lo_f, hi_f = coef.encoder_range_eager if eager else coef.encoder_range_linear
    gib = enc_total_bytes / GiB
    if not gib:
        return Term.exact(0.0, "exact: none")
    basis = ("derived: eager SigLIP attention scores (slices x heads x 1024^2 x 8 B) + linear activations"
             if eager else "estimate: linear-in-tokens tower/resampler activations")
    return Term(gib, gib * lo_f, gib * hi_f, basis)


def llm_pass_bytes(model: ModelSpec, tokens: int, db: int, tp: int = 1) -> int:
    """Prefill activations of one decoder layer at its MLP: residual, normed input, gate_up (2I) and act (I)."""
    return tokens * (2 * model.hidden + 3 * model.intermediate // tp) * db


def sampler_bytes(model: ModelSpec, rows: int, coef: Coefficients) -> int:
    """The dummy sampler pass: rows x padded vocabulary x bytes per logit."""
    return int(rows * model.vocab_padded * coef.sampler_bytes_per_logit)


def activation_term(encoder: Term, enc_total_bytes: int, llm_phase_bytes: int, coef: Coefficients) -> Term:
    """vLLM's activation peak: max(encoder pass, encoder outputs + LLM pass + sampler), GiB with its range."""
    llm_g = llm_phase_bytes / GiB
    value = max(enc_total_bytes, llm_phase_bytes) / GiB
    low = max(encoder.low_gib, llm_g * coef.llm_range[0])
    high = max(encoder.high_gib, llm_g * coef.llm_range[1])
    return Term(value, low, high, "estimate: max(encoder pass, encoder outputs + LLM pass + sampler)")


def cuda_graph_term(settings: dict, eng: str, coef: Coefficients) -> Term:
    """Not measured by vLLM before capture; V0 logs warn "1~3 GiB". Scales with the largest captured batch."""
    if settings.get("enforce_eager"):
        return Term.exact(0.0, "exact: enforce_eager")
    seqs = settings["max_num_seqs"]
    base, slope, cap = coef.cuda_graph_v0 if eng == "V0" else coef.cuda_graph_v1
    largest = min(seqs if eng == "V0" else 2 * seqs, cap)
    value = base + slope * largest / cap
    lo_f, hi_f = coef.cuda_graph_range
    return Term(value, value * lo_f, value * hi_f, f"estimate: graphs up to batch {largest}")


@dataclass(frozen=True)
class KVCache:
    """The KV cache vLLM allocates: `term` in GiB, its blocks and token capacity (blocks x block_size)."""

    term: Term
    value_gib: float  # unclamped (negative when nothing is left)
    blocks: int
    tokens: int


def kv_cache_term(model: ModelSpec, settings: dict, db: int, budget_gib: float, used: tuple[Term, ...],
                  graphs_sub: Term | None) -> KVCache:
    """KV = util x total - (weights + non-torch + activation peak) [- CUDA graphs where budgeted], or the fixed
    `kv_cache_memory_bytes` / `num_gpu_blocks_override` (vllm-memory.md §1). `used` is (weights, non_torch,
    activation); the range takes each term's opposite bound (weights are exact: low = high = value)."""
    fixed_kv = settings.get("kv_cache_memory_bytes")
    tp = int(settings.get("tensor_parallel_size", 1))

    def kv_for(attr: str, cg_attr: str) -> float:
        if fixed_kv is not None:
            return fixed_kv / GiB
        cg = getattr(graphs_sub, cg_attr) if graphs_sub else 0.0
        return budget_gib - sum(getattr(t, attr) for t in used) - cg

    kv_v = kv_for("value_gib", "value_gib")
    kv_lo = kv_for("high_gib", "high_gib")
    kv_hi = kv_for("low_gib", "low_gib")
    basis = ("exact: kv_cache_memory_bytes" if fixed_kv is not None else
             "derived: util x total - (weights + non_torch + activation peak)" + (" - CUDA graphs" if graphs_sub else ""))
    block_bytes = settings["block_size"] * model.kv_bytes_per_token(db) / tp
    blocks = int(max(kv_v, 0) * GiB // block_bytes)
    if settings.get("num_gpu_blocks_override"):
        blocks = int(settings["num_gpu_blocks_override"])
        kv_v = kv_lo = kv_hi = blocks * block_bytes / GiB
        basis = "exact: num_gpu_blocks_override"
    term = Term(max(kv_v, 0.0), max(min(kv_lo, kv_hi), 0.0), max(kv_hi, kv_lo, 0.0), basis)
    return KVCache(term, kv_v, blocks, blocks * settings["block_size"])
