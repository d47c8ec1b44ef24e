"""plan(): every term of vLLM's start-up memory arithmetic for a model, a card and a vLLM version.

Pure arithmetic, fast and side-effect free (the explainer calls it for counterfactuals). The KV formulas follow
vllm-memory.md §1; the dummy items follow §3 (diagnostics.mm_budget); activation sizes are derived from the
shapes of the tensors alive at the peak, and calibrated against what the field cases printed:
* MiniCPM-V#640 (A10, 22.18 GiB, max_model_len 2048, a 0.6.0-0.6.2 era engine): "Tried to allocate 4.00 GiB" with
  18.29 GiB allocated = the float32 softmax of 64 dummy slices x 16 heads x 1024^2 in SigLIP's eager attention
  (64 x 16 x 2^20 x 4 B = 4.00 GiB) on top of 15.09 GiB weights + 2 GiB bf16 scores + ~1 GiB other.
* vllm#7721 (defaults, vLLM 0.5.4): ~70 GB vpm peak on an A800, OOM on a 46 GB L20.
* OpenBMB/MiniCPM-V#392: defaults OOM on a 3090; max_model_len 4096 + max_num_seqs 32 + util 1.0 starts.
Every Term keeps a low/high range; `basis` says whether it is exact, derived or an estimate.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from diagnostics import mm_budget
from diagnostics.cards import Card, get_card
from diagnostics.models import ModelSpec, get_model
from diagnostics.settings import DTYPES, resolve
from diagnostics.units import GiB
from diagnostics.versions import default_version, engine as engine_of, family as family_of, parse_version

# Not counted by vLLM (taken before its baseline) but visible to NVML and missing from torch's free memory.
CUDA_CONTEXT_GIB = (0.3, 0.25, 0.5)  # value, low, high
# cuBLAS/cuBLASLt workspaces, NCCL buffers: field logs print 0.11 (4090), 0.30 (L40S, TP 2), 0.34-0.43 (A100, TP 4)
NON_TORCH_GIB = (0.3, 0.1, 0.6)
NCCL_EXTRA_GIB = 0.15  # per start with tensor_parallel_size > 1
SAMPLER_BYTES_PER_LOGIT = 24  # fp32 logits + probs + sorted values + int64 indices (top-p/top-k dummy sampling)
ENCODER_RANGE_LINEAR = (0.7, 1.4)  # memory-efficient attention eras: linear-in-tokens estimate
ENCODER_RANGE_EAGER = (0.9, 1.3)  # eager attention: the L^2 score tensors are exact, the rest estimated
LLM_RANGE = (0.7, 1.3)


@dataclass
class Term:
    value_gib: float
    low_gib: float
    high_gib: float
    basis: str  # "exact" | "derived: ..." | "estimate: ..."

    @classmethod
    def exact(cls, gib: float, basis: str = "exact") -> Term:
        return cls(gib, gib, gib, basis)

    def to_json(self) -> dict:
        return {"value_gib": round(self.value_gib, 3), "low_gib": round(self.low_gib, 3),
                "high_gib": round(self.high_gib, 3), "basis": self.basis}


@dataclass
class Plan:
    verdict: str
    vllm_version: str
    engine: str
    family: str
    card: Card
    model: ModelSpec
    entrypoint: str
    settings: dict
    components: dict[str, Term]
    profile: dict
    peak_gib: float
    kv_cache_tokens: int | None
    failing_phase: str | None
    notes: list[str] = field(default_factory=list)
    cuda_context_gib: float = CUDA_CONTEXT_GIB[0]

    def to_json(self, culprits=None, fix=None) -> dict:
        """The `plan --json` shape (issue #2 §4)."""
        c = self.components
        return {
            "verdict": self.verdict,
            "vllm_version": self.vllm_version,
            "engine": self.engine,
            "card": {"name": self.card.name, "total_gib": self.card.total_gib},
            "settings": dict(sorted(self.settings.items())),
            "components": {
                "weights_gib": _r(c["weights"].value_gib),
                "non_torch_gib": _r(c["non_torch"].value_gib),
                "encoder_profile_gib": _r(c["encoder_profile"].value_gib),
                "activation_peak_gib": _r(c["activation_peak"].value_gib),
                "kv_cache_gib": _r(c["kv_cache"].value_gib),
                "cuda_graph_gib": _r(c["cuda_graph"].value_gib),
            },
            "profile": {k: self.profile[k] for k in
                        ("encoder_items", "encoder_slices", "vit_tokens", "max_num_batched_tokens")},
            "peak_gib": _r(self.peak_gib),
            "kv_cache_tokens": self.kv_cache_tokens,
            "culprits": list(culprits or []),
            "fix": dict(fix or {}),
        }


def _r(x: float) -> float:
    return round(x, 2)


def _dtype_bytes(model: ModelSpec, settings: dict) -> int:
    return DTYPES.get(settings.get("dtype", "auto")) or model.dtype_bytes


def eager_vision_attention(version, family: str) -> bool:
    """SigLIP eager attention (L^2 scores) in vLLM's na_vit.py: 0.5.4 - 0.6.2. xformers from 0.6.3."""
    return family == "v0-legacy" and parse_version(version) < (0, 6, 3)


def encoder_bytes(model: ModelSpec, prof: mm_budget.MMProfile, db: int, eager: bool, tp: int = 1) -> dict:
    """Peak bytes of the vision pass on all dummy slices at once: max(SigLIP tower, resampler)."""
    vis, H = model.vision, model.hidden
    if prof.empty or prof.skipped:
        return {"total": 0, "vpm": 0, "resampler": 0, "scores": 0, "largest_alloc": 0}
    n = prof.vit_tokens_padded
    b = prof.slices
    p = n // b if b else 0
    pixels = n * 3 * vis.patch * vis.patch * db
    # one layer: residual, LN output, q/k/v, and the MLP's fc1 + activation (vllm-memory.md §3.1)
    linear = n * (4 * vis.hidden + 2 * vis.mlp) * db // tp
    scores = 0
    largest = n * vis.mlp * db // tp
    if eager:  # bf16 scores, fp32 softmax, bf16 cast: heads x P^2 x 8 B per slice, + the (B,1,P,P) mask
        scores = b * (vis.heads // tp) * p * p * (db + 4 + db) + b * p * p * db
        largest = b * (vis.heads // tp) * p * p * 4
    vpm = pixels + linear + scores
    # Resampler2_5: pos-embed, ln_kv(kv_proj(x)), x + pos, MHA k and v -- five (N, H) tensors -- plus the
    # tower output and the explicit (need_weights) attention scores of Q queries over P patches per head
    heads_r = max(H // 128, 1)
    resampler = pixels + n * vis.hidden * db + 5 * n * H * db // tp + 2 * b * (heads_r // tp or 1) * vis.query_num * p * db
    return {"total": max(vpm, resampler), "vpm": vpm, "resampler": resampler, "scores": scores,
            "largest_alloc": max(largest, n * H * db // tp)}


def llm_pass_bytes(model: ModelSpec, tokens: int, db: int, tp: int = 1) -> int:
    """Prefill activations of one decoder layer at its MLP: residual, normed input, gate_up (2I) and act (I)."""
    return tokens * (2 * model.hidden + 3 * model.intermediate // tp) * db


def sampler_bytes(model: ModelSpec, rows: int) -> int:
    return rows * model.vocab_padded * SAMPLER_BYTES_PER_LOGIT


def cuda_graph_gib(settings: dict, eng: str) -> Term:
    """Not measured by vLLM before capture; V0 logs warn "1~3 GiB". Scales with the largest captured batch."""
    if settings.get("enforce_eager"):
        return Term.exact(0.0, "exact: enforce_eager")
    seqs = settings["max_num_seqs"]
    if eng == "V0":
        largest = min(seqs, 256)
        value = 0.2 + 0.8 * largest / 256
    else:
        largest = min(2 * seqs, 512)
        value = 0.2 + 0.6 * largest / 512
    return Term(value, value * 0.5, value * 2.0, f"estimate: graphs up to batch {largest}")


def plan(model="minicpm-v-2_6", card="3090", version=None, entrypoint="llm", overrides=None) -> Plan:
    """Predict every start-up term and the verdict. Pure; raises UsageError for bad input."""
    model = get_model(model)
    card = get_card(card)
    v = parse_version(version or default_version())
    settings = resolve(model, card, v, entrypoint, overrides)
    eng = engine_of(v, settings.get("use_v1"))
    fam = family_of(v, settings.get("use_v1"))
    notes: list[str] = []
    db = _dtype_bytes(model, settings)
    tp = int(settings.get("tensor_parallel_size", 1))
    total = card.total_gib

    # weights (exact from shapes); cpu_offload_gb moves that much off the device; TP shards them
    w_bytes = model.weights_bytes(db) / tp
    offload = float(settings.get("cpu_offload_gb") or 0) * GiB
    weights = Term.exact(max(w_bytes - offload, 0) / GiB,
                         "exact: parameter bytes as vLLM builds the model" + (" (TP shard)" if tp > 1 else ""))

    nt_v, nt_lo, nt_hi = NON_TORCH_GIB
    extra = NCCL_EXTRA_GIB if tp > 1 else 0.0
    non_torch = Term(nt_v + extra, nt_lo + extra, nt_hi + extra,
                     "estimate: cuBLAS/NCCL workspaces (field logs: 0.11-0.43 GiB)")

    # profile run: dummy multimodal items -> vision pass; LLM pass over MBT tokens; sampler rows
    prof = mm_budget.profile(model, settings, v, fam)
    if card.is_cpu and settings.get("enforce_eager"):
        notes.append("CPU backend in eager mode skips profile_run: no encoder profile at start-up")
        prof = dataclasses.replace(prof, skipped=True)
    if prof.skipped and not card.is_cpu:
        notes.append("skip_mm_profiling: the encoder is not profiled; real images may OOM later")
    eager = eager_vision_attention(v, fam)
    enc = encoder_bytes(model, prof, db, eager, tp) if model.vision is not None else {"total": 0, "largest_alloc": 0}
    lo_f, hi_f = ENCODER_RANGE_EAGER if eager else ENCODER_RANGE_LINEAR
    enc_gib = enc["total"] / GiB
    basis = ("derived: eager SigLIP attention scores (slices x heads x 1024^2 x 8 B) + linear activations"
             if eager else "estimate: linear-in-tokens tower/resampler activations")
    encoder = Term(enc_gib, enc_gib * lo_f, enc_gib * hi_f, basis) if enc_gib else Term.exact(0.0, "exact: none")

    mbt = settings["max_num_batched_tokens"]
    if eng == "V0":  # the profile builds max_num_seqs sequences, fewer when dummy images fill MBT
        rows = prof.sequences or settings["max_num_seqs"]
    else:  # V1 _dummy_sampler_run over max_num_seqs rows
        rows = min(settings["max_num_seqs"], mbt)
    llm_b = llm_pass_bytes(model, mbt, db, tp)
    hidden_b = mbt * model.hidden * db
    samp_b = sampler_bytes(model, rows)
    enc_out_b = prof.llm_mm_tokens * model.hidden * db if not prof.skipped else 0
    llm_phase = enc_out_b + max(llm_b, hidden_b + samp_b)
    act_v = max(enc["total"], llm_phase) / GiB
    llm_g = llm_phase / GiB
    act_lo = max(encoder.low_gib, llm_g * LLM_RANGE[0])
    act_hi = max(encoder.high_gib, llm_g * LLM_RANGE[1])
    activation = Term(act_v, act_lo, act_hi, "estimate: max(encoder pass, encoder outputs + LLM pass + sampler)")

    graphs = cuda_graph_gib(settings, eng)
    ctx_v, ctx_lo, ctx_hi = CUDA_CONTEXT_GIB
    peak = ctx_v + weights.value_gib + non_torch.value_gib + activation.value_gib

    # KV budget per family
    util = float(settings["gpu_memory_utilization"])
    budget_total = util * total
    graphs_budgeted = eng == "V1" and v >= (0, 20, 0) and not settings.get("enforce_eager")
    cg_sub = graphs.value_gib if graphs_budgeted else 0.0
    fixed_kv = settings.get("kv_cache_memory_bytes")

    def kv_for(w, nt, act, cg):
        if fixed_kv is not None:
            return fixed_kv / GiB
        return budget_total - (w + nt + act) - cg

    kv_v = kv_for(weights.value_gib, non_torch.value_gib, activation.value_gib, cg_sub)
    kv_lo = kv_for(weights.value_gib, non_torch.high_gib, activation.high_gib, graphs.high_gib if graphs_budgeted else 0)
    kv_hi = kv_for(weights.value_gib, non_torch.low_gib, activation.low_gib, graphs.low_gib if graphs_budgeted else 0)
    kv_basis = ("exact: kv_cache_memory_bytes" if fixed_kv is not None else
                "derived: util x total - (weights + non_torch + activation peak)" + (" - CUDA graphs" if cg_sub else ""))
    block_bytes = settings["block_size"] * model.kv_bytes_per_token(db) / tp
    blocks = int(max(kv_v, 0) * GiB // block_bytes)
    if settings.get("num_gpu_blocks_override"):
        blocks = int(settings["num_gpu_blocks_override"])
        kv_v = kv_lo = kv_hi = blocks * block_bytes / GiB
        kv_basis = "exact: num_gpu_blocks_override"
    kv = Term(max(kv_v, 0.0), max(min(kv_lo, kv_hi), 0.0), max(kv_hi, kv_lo, 0.0), kv_basis)
    kv_tokens = blocks * settings["block_size"]

    components = {"weights": weights, "non_torch": non_torch, "encoder_profile": encoder,
                  "activation_peak": activation, "kv_cache": kv, "cuda_graph": graphs}
    profile = {
        "encoder_items": prof.items, "encoder_slices": prof.slices, "vit_tokens": prof.vit_tokens,
        "max_num_batched_tokens": mbt, "encoder_budget_tokens": prof.encoder_budget_tokens,
        "modality": prof.modality, "sampler_rows": rows, "tokens_per_item": prof.tokens_per_item,
        "encoder_skipped": prof.skipped, "eager_vision_attention": eager,
        "largest_alloc_gib": round(enc.get("largest_alloc", 0) / GiB, 3),
        "encoder_phase_gib": round(enc["total"] / GiB, 3), "llm_phase_gib": round(llm_g, 3),
    }

    verdict, phase = _verdict(card, v, eng, settings, weights, non_torch, activation, kv, kv_v, kv_tokens, graphs,
                              graphs_budgeted, enc["total"] / GiB, llm_g, samp_b / GiB, peak, notes)
    if graphs.value_gib and not graphs_budgeted:
        notes.append("CUDA graphs are not in the KV budget in this version: they must fit in what is left")
    if card.is_cpu:
        notes.append("cpu pseudo-card: total memory is read at run time; memory verdicts need [cards.cpu] total_gib")
    known_kv = fixed_kv is not None or settings.get("num_gpu_blocks_override") or total > 0
    return Plan(verdict, str(v), eng, fam, card, model, entrypoint, settings, components, profile, peak,
                kv_tokens if known_kv else None, phase, notes, ctx_v)


def _verdict(card, v, eng, s, weights, non_torch, activation, kv, kv_v, kv_tokens, graphs, graphs_budgeted,
             enc_gib, llm_gib, samp_gib, peak, notes) -> tuple[str, str | None]:
    total = card.total_gib
    ctx = CUDA_CONTEXT_GIB[0]
    if total <= 0:  # cpu pseudo-card without a known total: only a fixed KV pool can be checked
        if s.get("kv_cache_memory_bytes") is None and not s.get("num_gpu_blocks_override"):
            return "unknown", None
        return ("kv_too_small", "kv_cache") if kv_tokens < s["max_model_len"] else ("ok", None)
    util = float(s["gpu_memory_utilization"])
    free_at_start = total - ctx
    if eng == "V1" and v >= (0, 9, 1) and util * total > free_at_start:
        notes.append(f"V1 asks for util x total = {util * total:.2f} GiB up front but only ~{free_at_start:.2f} GiB "
                     "is free after the CUDA context")
        return "insufficient_free_memory", "startup_check"
    if ctx + weights.value_gib + non_torch.low_gib > total:
        return "oom_weights", "weights"
    if peak > total:
        if enc_gib >= llm_gib:
            return "oom_profile", "vision_encoder"
        return "oom_profile", ("sampler" if samp_gib > llm_gib / 2 else "language_model")
    if s.get("kv_cache_memory_bytes") is None and not s.get("num_gpu_blocks_override") and kv_v <= 0:
        return "no_kv_cache", "kv_cache"
    if kv_tokens <= 0:
        return "no_kv_cache", "kv_cache"
    if kv_tokens < s["max_model_len"]:
        return "kv_too_small", "kv_cache"
    resident = ctx + weights.value_gib + non_torch.value_gib + kv.value_gib
    if resident > total:
        return "oom_kv_alloc", "kv_cache"
    if graphs.value_gib and not graphs_budgeted and resident + graphs.value_gib > total:
        return "oom_cuda_graph", "cuda_graph"
    return "ok", None
