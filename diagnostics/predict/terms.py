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

from diagnostics.decoder import rope_values_in
from diagnostics.models import ModelSpec
from diagnostics.predict.coefficients import DEFAULT, Coefficients
from diagnostics.predict.limits import encoder_tp_data
from diagnostics.predict.mm_budget import MMProfile
from diagnostics.predict.moe import moe_layer_bytes
from diagnostics.predict.shards import rank_weights
from diagnostics.settings import DTYPES
from diagnostics.units import GiB
from diagnostics.versions import parse_version


WEIGHTS_UNKNOWN_RANGE = (0.8, 1.25)  # config arithmetic for an architecture without rules: factor range


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


def _decoder_counts(model: ModelSpec) -> bool:
    """Does the decoder's count give the weights: a text model, unquantized (a VLM's decoder, an MLA LLM's rules
    for Kimi-VL, holds the LLM alone; its family's count has the tower too)?"""
    return model.decoder is not None and model.quantization is None and model.vision is None


def rope_cache_bytes(model: ModelSpec, db: int, version=None, stage=None) -> int:
    """Bytes of vLLM's rotary cos/sin caches on one rank: `model.rope_values` (diagnostics.decoder.rope_cache_values)
    as vLLM `version` builds them (decoder.rope_values_in) x db, the model dtype's bytes (the buffer is cast to it:
    rotary_embedding/base.py:58-63, 0.32). Not sharded: get_rope builds them whole in every attention layer's
    module, once per distinct rope config (`_ROPE_DICT`, rotary_embedding/__init__.py:74-85, 0.32), and the model is
    built on the GPU (`with target_device:` model_loader/loader.py 0.6.4:314-315, base_loader.py 0.32:74), so every TP
    rank holds them and "Model loading took" counts them (a device-memory difference: worker/model_runner.py
    0.6.4:1073-1077); a pipeline stage builds only its own layers (the others are PPMissingLayer: models/utils.py
    0.32:886-916), so a stage with decoder layers holds them and one without none. Known gaps: a Gemma 3 stage with
    layers of one kind only (its other cache is still counted; a stage of 6 layers or more has both), and DeepSeek's
    yarn cache kept float32 where FlashInfer's rope kernel is enabled on CUDA (deepseek_scaling_rope.py:56-62, 0.14+;
    off unless the rotary_embedding custom op is on): counted in db here."""
    if stage is not None and stage.layers <= 0:
        return 0
    return rope_values_in(model.rope_values, model.rope_mrope, version) * db


def _mib(nbytes: int) -> str:
    mib = nbytes / (1 << 20)
    return f"{mib:,.0f}" if mib >= 10 else f"{mib:.2g}"


def weights_term(model: ModelSpec, settings: dict, db: int, notes: list[str] | None = None, stage=None,
                 version=None) -> Term:
    """Weight bytes on one TP rank (GiB), less `cpu_offload_gb`, + vLLM's rotary caches (`rope_cache_bytes` for
    `version`, a Version or None: the newest rule; `_rope_basis`), as "Model loading took" counts them (Llama-3.1-8B,
    0.6.4: 14.9575 GiB of parameters + 32 MiB = the 14.9888 GiB printed).

    From the checkpoint's safetensors headers when a text model has them (predict.shards: `exact` as stored,
    `derived` when cast/padded/split by vLLM's layer rules); else the parameter count of config.json by vLLM's
    layer rules (`derived`; vision-language models always, their family arithmetic being checked against vLLM's
    meta-device build while their checkpoints hold tensors vLLM does not build, e.g. MiniCPM-V's tiny kit +7.8 %);
    for an architecture without rules both are an `estimate` with a range. Appends what it notes.
    stage: one pipeline stage (predict.pipeline.Stage): its layers, embeddings and head only (headers: by each
    tensor's layer index; config: the same layer rules over the stage's layers)."""
    tp = int(settings.get("tensor_parallel_size", 1))
    offload = float(settings.get("cpu_offload_gb") or 0) * GiB
    known = model.decoder is None or model.decoder.known
    if model.checkpoint is not None and model.vision is None:
        rw = rank_weights(model.checkpoint, model, db, tp, stage)
        if notes is not None:
            notes.extend(n for n in rw.notes if n not in notes)
        value, low, high, basis = rw.value, rw.low, rw.high, rw.basis
    elif stage is not None and stage.size > 1 and _decoder_counts(model):
        value = model.decoder.params_per_rank(tp, stage.start, stage.end, int(stage.embed) + int(stage.head),
                                              stage.final_norm) * db
        low, high = value, value
        basis = (f"derived: parameter count from the config by vLLM's layer rules ({stage.label()}"
                 + (", TP shard)" if tp > 1 else ")"))
        if stage.rule != "vllm":
            high = value + model.decoder.vocab_padded // tp * model.hidden * db * (2 - int(stage.embed)
                                                                                  - int(stage.head))
            basis = "estimate" + basis[basis.index(":"):] + "; embeddings/lm_head placement assumed first/last"
    else:
        value = model.decoder.params_per_rank(tp) * db if _decoder_counts(model) else model.weights_bytes(db) / tp
        low = high = value
        basis = "derived: parameter count from the config by vLLM's layer rules" + (" (TP shard)" if tp > 1 else "")
        if stage is not None and stage.size > 1:  # quantized config arithmetic: the stage's share of the layers
            value = value * stage.layers / model.layers
            low, high = value * 0.9, value * 1.1
            basis = (f"estimate: the quantized model's bytes x {stage.layers}/{model.layers} layers "
                     f"({stage.label()}); embeddings not placed")
        if not known:
            low, high = value * WEIGHTS_UNKNOWN_RANGE[0], value * WEIGHTS_UNKNOWN_RANGE[1]
            basis = (f"estimate: no safetensors headers; config.json sized as a Llama-style decoder, architecture "
                     f"{model.architecture} has no rules here")
            if notes is not None:
                notes.append(f"architecture {model.architecture} has no vllm-memcheck rules: weights and KV are "
                             "sized as a Llama-style decoder from the generic config keys (estimates); a checkpoint "
                             "directory with its safetensors files gives the weights from its headers")
    if encoder_tp_data(model, settings):  # vLLM 0.32 config/model.py:822-830; the tower is not sharded
        tower, exact = tower_params(model)
        extra = tower * db * (1 - 1 / tp)
        spread = 0.0 if exact else extra * 0.15
        value, low, high = value + extra, low + extra - spread, high + extra + spread
        basis = (basis if exact else "estimate" + basis[basis.index(":"):]) + \
            " + the vision tower whole on every rank (mm_encoder_tp_mode=data)"
    rope = rope_cache_bytes(model, db, version, stage)  # buffers: cpu_offload_gb moves parameters only
    gib = [(max(x - offload, 0) + rope) / GiB for x in (value, low, high)]
    return Term(gib[0], min(gib), max(gib), _rope_basis(basis, rope, notes))


def _rope_basis(basis: str, rope: int, notes: list[str] | None) -> str:
    """The weights basis with `rope` bytes of rotary caches added ("+ N MiB rotary caches"; an `exact` header figure
    becomes `derived`: the caches are not in the checkpoint); from ROPE_NOTE_BYTES a note says what sizes them."""
    if not rope:
        return basis
    if rope >= ROPE_NOTE_BYTES and notes is not None:
        notes.append(f"the weights include {rope / GiB:.2f} GiB of rotary cos/sin caches per rank (vLLM's get_rope "
                     "buffers, sized by the config's max_position_embeddings and rope scaling: a smaller "
                     "max_model_len does not shrink them)")
    return ("derived" + basis[basis.index(":"):] if basis.startswith("exact") else basis) + \
        f" + {_mib(rope)} MiB rotary caches"


ROPE_NOTE_BYTES = 64 << 20  # rotary caches from this size get a note (Gemma 3 4B: 0.56 GiB)


def tower_params(model: ModelSpec) -> tuple[int, bool]:
    """(vision tower + projector parameters, exact?): the family's own count where its module has one
    (Family.vision_tower_params: MiniCPM-V's SigLIP + resampler as vLLM builds them); else 4 d^2 + 3 d mlp per layer
    (attention and a gated MLP, norms and biases left out: an estimate)."""
    v = model.vision
    exact = model.family.vision_tower_params(model) if model.family is not None else None
    if exact is not None:
        return exact, True
    return v.layers * (4 * v.hidden * v.hidden + 3 * v.hidden * v.mlp), False


def non_torch_term(settings: dict, coef: Coefficients) -> Term:
    """cuBLAS/NCCL workspaces (vLLM's `non_torch_memory`), plus NCCL buffers under tensor or pipeline
    parallelism."""
    value, low, high = coef.non_torch_gib
    world = int(settings.get("tensor_parallel_size", 1)) * int(settings.get("pipeline_parallel_size", 1))
    extra = coef.nccl_extra_gib if world > 1 else 0.0
    return Term(value + extra, low + extra, high + extra, "estimate: cuBLAS/NCCL workspaces (field logs: 0.11-0.43 GiB)")


def eager_vision_attention(model: ModelSpec, version, family: str) -> bool:
    """Does the model's vision tower compute L^2 attention scores in this version (its family says: MiniCPM-V's
    na_vit.py SigLIP is eager in 0.5.4 - 0.6.2, xformers from 0.6.3; Kimi-VL's MoonViT before 0.14; the others
    never)?"""
    return model.family is not None and model.family.eager_attention(version, family)


def encoder_bytes(model: ModelSpec, prof: MMProfile, db: int, eager: bool, tp: int = 1,
                  coef: Coefficients = DEFAULT, version=None) -> dict:
    """Peak bytes of the vision pass on all dummy items at once, as the model's family computes it
    (families/minicpmv.py: max(SigLIP tower, resampler); the others: families.common.tower_encoder_bytes; a family
    whose tower changed across releases reads `version`, e.g. Mistral 3's dense block mask in 0.12 - 0.28).

    Returns {"total", "vpm", "resampler", "scores", "largest_alloc"} in bytes.
    """
    if prof.empty or prof.skipped or model.family is None:
        return {"total": 0, "vpm": 0, "resampler": 0, "scores": 0, "largest_alloc": 0}
    return model.family.encoder_bytes(model, prof, db, eager, tp, coef, version)


def scaled_encoder_bytes(raw_bytes: int, eager: bool, coef: Coefficients) -> int:
    """The encoder pass's bytes: the shape-derived `encoder_bytes(...)["total"]` times the calibrated factor for
    its attention kind (`encoder_scale_eager` / `encoder_scale_linear`)."""
    return int(raw_bytes * (coef.encoder_scale_eager if eager else coef.encoder_scale_linear))


NO_ENCODER_BASIS = "derived: no encoder pass (no multimodal encoder, or no encoder items in the profile run)"
FIXED_KV_BASIS = "derived: kv_cache_memory_bytes (your setting, as vLLM takes it)"


def encoder_term(enc_total_bytes: int, eager: bool, coef: Coefficients, low_bytes: int | None = None) -> Term:
    """The encoder profile's peak (GiB) with its range: eager attention's scores are exact, the rest estimated.
    low_bytes: the family's own lower figure where its attention kind is not known (MiniCPM-o's Whisper pass with
    SDPA instead of eager scores), which widens the range down to it."""
    lo_f, hi_f = coef.encoder_range_eager if eager else coef.encoder_range_linear
    gib = enc_total_bytes / GiB
    if not gib:
        return Term.exact(0.0, NO_ENCODER_BASIS)
    basis = ("derived: eager vision attention scores (L^2 per head: MiniCPM-V's SigLIP slices x heads x 1024^2 x "
             "8 B, Kimi-VL's MoonViT over its packed images) + linear activations"
             if eager else "estimate: linear-in-tokens tower/resampler activations")
    if low_bytes is not None and low_bytes < enc_total_bytes:
        return Term(gib, low_bytes / GiB * lo_f, gib * hi_f,
                    "estimate: encoder activations; the range spans eager attention scores (the figure) and SDPA")
    return Term(gib, gib * lo_f, gib * hi_f, basis)


# Text decoders whose Python forward vLLM runs eagerly in the profile pass with the fused add-norm loop
# `hidden_states, residual = layer(positions, hidden_states, ..., residual)`: the caller's `hidden_states` (the layer's
# input, normed in place by input_layernorm) stays referenced until the layer returns, beside the residual and the MLP's
# own input (llama.py 0.6.4:338-342 with LlamaDecoderLayer.forward :252-268; qwen2.py 0.6.4:318-326; 0.32 the same
# loop). Mistral checkpoints load as LlamaForCausalLM's module (registry 0.6.4 "MistralForCausalLM": llama);
# Qwen3Model is Qwen2Model's loop (qwen3.py 0.8.5).
EAGER_LOOP_HOLDS_INPUT = frozenset({"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"})
# ... of which the MLP keeps `gate_up` referenced while down_proj writes its output (`gate_up, _ = gate_up_proj(x);
# x = act_fn(gate_up); x, _ = down_proj(x)`: Qwen2MLP, qwen2.py 0.6.4:88-92, 0.32 :111-115; Qwen3 reuses it); LlamaMLP
# rebinds `x` and frees gate_up before down_proj (llama.py 0.6.4:92-96, 0.32 :118-122).
MLP_KEEPS_GATE_UP = frozenset({"Qwen2ForCausalLM", "Qwen3ForCausalLM"})


def llm_pass_bytes(model: ModelSpec, tokens: int, db: int, tp: int = 1, eager: bool = False, version=None) -> int:
    """Prefill activations (bytes) of one decoder layer at its MLP peak over `tokens` batched tokens on one TP rank.

    Default: residual, normed input, gate_up (2I) and act (I): tokens x (2H + 3I/tp) x db. eager (V0's profile pass,
    V1 with enforce_eager: vLLM's Python forward runs as written) for the text decoders of EAGER_LOOP_HOLDS_INPUT: the
    layer's input held by the caller is a third hidden-size tensor (3H + 3I/tp), and an MLP that keeps gate_up alive
    peaks at down_proj with its output beside it (4H + 3I/tp). Field check (plan_accuracy.py): Llama-3.1-8B on vLLM
    0.6.4 printed 2.07 / 2.99 GiB at 20,000 / 29,000 tokens, 3H + 3I gives 2.06 / 2.99 (2H + 3I: 1.91 / 2.77). Under
    torch.compile (V1's default) the compiler decides lifetimes: the default stays. A model with MoE layers: the
    larger of that (if it has dense layers) and a MoE layer's fused-MoE scratch buffers (predict.moe.moe_layer_bytes,
    per vLLM `version`)."""
    held = 2
    if eager and model.vision is None and model.architecture in EAGER_LOOP_HOLDS_INPUT:
        held = 4 if model.architecture in MLP_KEEPS_GATE_UP else 3
    dense = tokens * (held * model.hidden + 3 * model.intermediate // tp) * db
    d = model.decoder
    if d is None or d.moe is None or not d.moe.moe_layers:
        return dense
    moe = moe_layer_bytes(d, tokens, db, tp, version).value
    return max(moe, dense) if len(d.moe.moe_layers) < d.layers else moe


def sampler_bytes(model: ModelSpec, rows: int, coef: Coefficients) -> int:
    """The dummy sampler pass: rows x padded vocabulary x bytes per logit."""
    return int(rows * model.vocab_padded * coef.sampler_bytes_per_logit)


def llm_pass_spread(model: ModelSpec, tokens: int, db: int, tp: int = 1, version=None) -> float:
    """How far the LLM pass's high bound reaches past its value (a ratio >= 1): a MoE layer's kernel-dependent
    buffers (predict.moe: MoEPass.high / value) when a MoE layer is the largest, else 1.0."""
    d = model.decoder
    if d is None or d.moe is None or not d.moe.moe_layers:
        return 1.0
    m = moe_layer_bytes(d, tokens, db, tp, version)
    return m.high / m.value if llm_pass_bytes(model, tokens, db, tp, version=version) == m.value else 1.0


def activation_term(encoder: Term, enc_total_bytes: int, llm_phase_bytes: int, coef: Coefficients,
                    spread: float = 1.0) -> Term:
    """vLLM's activation peak: max(encoder pass, encoder outputs + LLM pass + sampler), GiB with its range;
    `spread` widens the LLM side's high bound (llm_pass_spread: a MoE layer's kernel-dependent buffers)."""
    llm_g = llm_phase_bytes / GiB
    value = max(enc_total_bytes, llm_phase_bytes) / GiB
    low = max(encoder.low_gib, llm_g * coef.llm_range[0])
    high = max(encoder.high_gib, llm_g * coef.llm_range[1] * spread)
    return Term(value, low, high, "estimate: max(encoder pass, encoder outputs + LLM pass + sampler)")


def largest_graph_batch(settings: dict, eng: str, version, cap: int) -> int:
    """The largest batch vLLM captures a CUDA graph for (0 with enforce_eager), at most `cap`.

    V0: max_num_seqs padded (batch sizes 1, 2, 4, 8, 16, ... up to it). V1 before 0.10.0 captures [1, 2, 4, 8..512]
    whatever max_num_seqs is, less the sizes above max_num_batched_tokens (vllm/config.py:3588-3596 in 0.8.0;
    0.9.x: scheduler cuda_graph_sizes defaults to [512], vllm/config.py:1972, 4449-4470). From 0.10.0 the default
    is min(2 x max_num_seqs, 512) (vllm/config.py:2451-2456 in 0.10.0; vllm/config/vllm.py:994 in 0.12.0)."""
    if settings.get("enforce_eager"):
        return 0
    seqs = int(settings["max_num_seqs"])
    if eng == "V0":
        return min(seqs, cap)
    if parse_version(version) < (0, 10, 0):
        return min(512, int(settings.get("max_num_batched_tokens") or 512), cap)
    return min(2 * seqs, cap)


def cuda_graph_term(settings: dict, eng: str, coef: Coefficients, version="0.32.0") -> Term:
    """Not measured by vLLM before capture; V0 logs warn "1~3 GiB". Scales with the largest captured batch
    (`largest_graph_batch`: per engine and version)."""
    if settings.get("enforce_eager"):
        return Term.exact(0.0, "exact: enforce_eager")
    base, slope, cap = coef.cuda_graph_v0 if eng == "V0" else coef.cuda_graph_v1
    largest = largest_graph_batch(settings, eng, version, cap)
    value = base + slope * largest / cap
    lo_f, hi_f = coef.cuda_graph_range
    tp = int(settings.get("tensor_parallel_size", 1))
    if tp > 1:
        hi_f *= coef.cuda_graph_tp_high
    return Term(value, value * lo_f, value * hi_f, f"estimate: graphs up to batch {largest}"
                + (f", all-reduce buffers of TP {tp} in the high bound" if tp > 1 else ""))


@dataclass(frozen=True)
class KVCache:
    """The KV cache vLLM allocates: `term` in GiB, its blocks and token capacity (blocks x block_size)."""

    term: Term
    value_gib: float  # unclamped (negative when nothing is left)
    blocks: int
    tokens: int


def kv_block_bytes(model: ModelSpec, settings: dict, db: int, windowed: bool = False, version=None) -> float:
    """Bytes of one KV block on one rank: block_size x `ModelSpec.kv_bytes_per_token` (MLA latent, K/V heads per
    rank, sliding windows when `windowed`, V1's hybrid KV manager)."""
    tp = int(settings.get("tensor_parallel_size", 1))
    # tokens scheduled but not yet freed: one max_num_batched_tokens per concurrent batch, two under the default
    # async scheduling from 0.26 (config/vllm.py 0.26.0:525-533), one before (kv_cache_interface.py 0.20.0:435)
    batches = 2 if version is not None and version >= (0, 26, 0) else 1
    in_flight = batches * int(settings.get("max_num_batched_tokens") or 0) if windowed else 0
    return settings["block_size"] * model.kv_bytes_per_token(db, tp, settings.get("max_model_len"), windowed,
                                                             version, in_flight, int(settings["block_size"]))


def kv_cache_term(model: ModelSpec, settings: dict, db: int, budget_gib: float, used: tuple[Term, ...],
                  graphs_sub: Term | None, block_bytes: float | None = None, from_vllm: bool = False) -> KVCache:
    """KV = util x total - (weights + non-torch + activation peak) [- CUDA graphs where budgeted], or the fixed
    `kv_cache_memory_bytes` / `num_gpu_blocks_override` (vllm-memory.md §1). `used` is (weights, non_torch,
    activation); the range takes each term's opposite bound. block_bytes: one rank's bytes per KV block
    (`kv_block_bytes`, or block_size x the bytes per token vLLM's own code gave, predict.exact: `from_vllm`);
    default: the model's rule for full attention. For an architecture without rules (and no vLLM figure) the term
    is an estimate."""
    fixed_kv = settings.get("kv_cache_memory_bytes")

    def kv_for(attr: str, cg_attr: str) -> float:
        if fixed_kv is not None:
            return fixed_kv / GiB
        cg = getattr(graphs_sub, cg_attr) if graphs_sub else 0.0
        return budget_gib - sum(getattr(t, attr) for t in used) - cg

    kv_v = kv_for("value_gib", "value_gib")
    kv_lo = kv_for("high_gib", "high_gib")
    kv_hi = kv_for("low_gib", "low_gib")
    basis = (FIXED_KV_BASIS if fixed_kv is not None else
             "derived: util x total - (weights + non_torch + activation peak)" + (" - CUDA graphs" if graphs_sub else ""))
    if block_bytes is None:
        block_bytes = kv_block_bytes(model, settings, db)
    blocks = int(max(kv_v, 0) * GiB // block_bytes)
    if settings.get("num_gpu_blocks_override"):
        blocks = int(settings["num_gpu_blocks_override"])
        kv_v = kv_lo = kv_hi = blocks * block_bytes / GiB
        basis = "derived: num_gpu_blocks_override x bytes per block"
    if (model.decoder is not None and not model.decoder.known and fixed_kv is None
            and not from_vllm):
        basis = (f"estimate: {basis.split(': ', 1)[1]}; bytes per token from the generic config keys "
                 f"(architecture {model.architecture} has no rules here)")
    term = Term(max(kv_v, 0.0), max(min(kv_lo, kv_hi), 0.0), max(kv_hi, kv_lo, 0.0), basis)
    return KVCache(term, kv_v, blocks, blocks * settings["block_size"])
