"""Weights per TP rank from the checkpoint's own tensor table (diagnostics.checkpoint), by vLLM's layer rules.

Each stored tensor is read as stored (bytes from its header, `exact`), then placed on the ranks the way vLLM 0.32
builds the layer that loads it:
* vocab-parallel (embed_tokens, lm_head, ...): rows padded to a multiple of 64, split over ranks
  (layers/vocab_parallel_embedding.py:95-97, :289-305); a tied lm_head is not loaded again;
* column-parallel (q/k/v/qkv, gate/up, MLA's q_b/kv_b, ...): output dim split (layers/linear.py:494); K/V heads
  replicated when fewer than the ranks (linear.py:1053-1058);
* row-parallel (o_proj, down_proj, dense, w2, ...): input dim split (linear.py:1681), its bias whole on every rank
  (linear.py:1719-1722);
* MoE experts (`.experts.`): FusedMoE splits each expert's intermediate dim (fused_moe/config.py:1341-1342; with
  expert parallelism whole experts per rank, the same bytes);
* replicated: norms, the router (`mlp.gate`, GateLinear), e_score_correction_bias, Qwen2-MoE's shared_expert_gate,
  MLA's q_a_proj / kv_a_proj_with_mqa (models/deepseek_v2.py:494, :518), scalar scales.
Where vLLM changes sizes on load: 16/32-bit weights are cast to the run's dtype (`dtype`, auto: 16-bit), the vocab
padding above, layers past num_hidden_layers (DeepSeek's MTP layers) and rotary inv_freq buffers are not loaded,
MXFP4 MoE backends round expert widths up (fused_moe/oracle/mxfp4.py:816-850; noted as the high bound).
Labels: `exact` for bytes loaded as stored on one rank, `derived` when split/cast/padded by these rules, `estimate`
(with a range) when tensors match no rule or the architecture has none (diagnostics.decoder.KNOWN_ARCHITECTURES).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from diagnostics.checkpoint import FLOAT_BYTES, LAYER as _LAYER, TensorInfo, TensorTable

VOCAB_PADDING = 64
_AUX = ("qweight", "qzeros", "scales", "g_idx", "weight_scale", "weight_scale_inv", "weight_scale_2", "input_scale",
        "weight_packed", "weight_shape", "weight_zero_point", "scb", "absmax", "quant_map", "nested_absmax",
        "nested_quant_map", "quant_state", "blocks", "weight_global_scale", "input_global_scale", "bias",
        "weight", "weight_g_idx")
VOCAB = ("embed_tokens", "lm_head", "wte", "word_embeddings", "output_layer", "tok_embeddings", "embed_out", "output")
COLUMN = ("q_proj", "k_proj", "v_proj", "qkv_proj", "query_key_value", "c_attn", "wqkv", "gate_proj", "up_proj",
          "gate_up_proj", "w1", "w3", "fc1", "dense_h_to_4h", "q_b_proj", "kv_b_proj", "in_proj", "c_fc", "wq", "wk",
          "wv", "query", "key", "value")
ROW = ("o_proj", "down_proj", "dense", "dense_4h_to_h", "c_proj", "w2", "out_proj", "wo", "fc2")
REPLICATED = ("gate", "router", "shared_expert_gate", "q_a_proj", "kv_a_proj_with_mqa", "fused_qkv_a_proj",
              "e_score_correction_bias", "inv_freq")
_KEEP_DTYPE = ("e_score_correction_bias",)  # fp32 parameters in vLLM whatever the run's dtype


@dataclass
class RankWeights:
    """One rank's weight bytes from a tensor table: value and range in bytes, the basis and what was noted."""

    value: float
    low: float
    high: float
    basis: str
    notes: list[str] = field(default_factory=list)
    stored_bytes: int = 0  # the header total (all ranks, as stored)


def _module_and_leaf(name: str) -> tuple[str, str]:
    """(the module a tensor belongs to, the tensor's own last name): `...down_proj.weight.absmax` and
    `...down_proj.weight.quant_state.bitsandbytes__nf4` (bitsandbytes) both belong to down_proj."""
    parts = [p.lower() for p in name.split(".")]
    leaf = parts[-1]
    for part in reversed(parts[:-1] if leaf in _AUX or leaf.startswith("bitsandbytes") else parts):
        if part not in _AUX and part != "quant_state" and not part.startswith("bitsandbytes"):
            return part, leaf
    return leaf, leaf


def classify(name: str) -> str:
    """"vocab", "column", "row", "row_bias", "expert", "replicated", "norm" or "unknown" for a tensor name."""
    lname = name.lower()
    module, leaf = _module_and_leaf(name)
    if ".experts." in lname and module not in REPLICATED:
        return "expert"
    if module in VOCAB:
        return "vocab"
    if "norm" in module or module.startswith("ln") or module.endswith("_ln") or module in ("q_norm", "k_norm"):
        return "norm"
    if module in REPLICATED:
        return "replicated"
    if module in COLUMN:
        return "column"
    if module in ROW:
        return "row_bias" if leaf == "bias" else "row"
    return "unknown"


def _loaded(t: TensorInfo, layers: int, tied: bool) -> bool:
    m = _LAYER.search(t.name)
    if m and int(m.group(1)) >= layers:
        return False  # MTP / speculative layers past num_hidden_layers: not part of the model vLLM builds
    if t.name.endswith("inv_freq"):
        return False
    return not (tied and classify(t.name) == "vocab" and "lm_head" in t.name.lower())


_HEADS = ("lm_head", "output_layer", "embed_out", "output")  # the VOCAB modules that are an LM head


def on_stage(t: TensorInfo, stage) -> bool:
    """Whether a pipeline stage (predict.pipeline.Stage; None: no PP) loads tensor `t`: a decoder layer's tensors
    on the stage that holds the layer, the input embedding where `stage.embed`, an untied LM head where
    `stage.head`, a final norm (a norm outside the layers) where `stage.final_norm`; anything else on every stage
    (vLLM builds PPMissingLayer for the rest: model_executor/models/utils.py:900-919, 0.32)."""
    if stage is None:
        return True
    m = _LAYER.search(t.name)
    if m:
        return stage.start <= int(m.group(1)) < stage.end
    kind = classify(t.name)
    if kind == "vocab":
        module, _ = _module_and_leaf(t.name)
        return stage.head if module in _HEADS else stage.embed
    if kind == "norm":
        return stage.final_norm
    return True


def _cast(t: TensorInfo, db: int) -> float:
    """Bytes once loaded: 16/32-bit weights in the run's dtype; quantized words, scales and fp32 params as stored."""
    width = FLOAT_BYTES.get(t.dtype)
    module, leaf = _module_and_leaf(t.name)
    if width is None or leaf not in ("weight", "bias") or module in _KEEP_DTYPE or width == db:
        return float(t.nbytes)
    return t.nbytes * db / width


def _share(t: TensorInfo, kind: str, tp: int, model) -> float:
    """The fraction of a tensor one rank holds (1 = replicated)."""
    if kind == "vocab" and t.shape:  # rows padded to 64, then split (even at tp=1 the padding is allocated)
        rows = t.shape[0]
        padded = -(-rows // VOCAB_PADDING) * VOCAB_PADDING
        return padded / tp / rows
    if tp == 1 or kind in ("norm", "replicated", "row_bias") or t.numel <= 1:
        return 1.0
    if kind == "row" and len(t.shape) >= 1 and t.shape[0] == 1:
        return 1.0  # per-channel scales of a row-parallel layer
    module, _ = _module_and_leaf(t.name)
    heads, kv = model.heads, model.kv_heads
    mla = model.decoder is not None and model.decoder.mla is not None
    if not mla and module in ("k_proj", "v_proj", "wk", "wv", "key", "value"):
        return max(1, kv // tp) / kv
    if not mla and module in ("qkv_proj", "query_key_value", "c_attn", "wqkv") and heads and kv:
        return (heads / tp + 2 * max(1, kv // tp)) / (heads + 2 * kv)
    return 1.0 / tp


def rank_weights(table: TensorTable, model, db: int, tp: int = 1, stage=None) -> RankWeights:
    """Bytes one TP rank holds after loading `table` into the model vLLM builds for `model` (a ModelSpec: layers,
    heads, kv_heads, tie_word_embeddings, decoder.known, quantization). db: the run's bytes per 16/32-bit weight.
    stage: a pipeline stage (predict.pipeline.Stage): only the tensors that stage loads (`on_stage`, by each
    tensor's layer index in its name)."""
    tied = bool(model.tie_word_embeddings)
    value = spread = 0.0
    changed, unknown_names = (stage is not None and stage.size > 1) or table.adjusted, []
    for t in table.tensors:
        if not _loaded(t, model.layers, tied):
            changed = True
            continue
        if not on_stage(t, stage):
            continue
        kind = classify(t.name)
        loaded = _cast(t, db)
        share = _share(t, kind, tp, model)
        changed |= loaded != t.nbytes or share != 1.0
        if kind == "unknown" and tp > 1:
            unknown_names.append(t.name)
            spread += loaded * (1 - 1 / tp)  # low: split like the rest, value/high: replicated
        value += loaded * share
    low, high = value - spread, value
    known = model.decoder is None or model.decoder.known
    notes = []
    if not known:
        basis = (f"estimate: {table.source} headers under generic TP rules; vLLM's rules for architecture "
                 f"{model.architecture} are not modelled")
        low, high = low * 0.95, high * 1.05
        notes.append(f"architecture {model.architecture} has no vllm-memcheck rules: weights are the checkpoint's "
                     "stored bytes split by generic rules, KV from the generic config keys; both are estimates")
    elif unknown_names:
        basis = (f"estimate: {table.source} headers; {len(unknown_names)} tensor(s) match no TP rule "
                 f"(e.g. {unknown_names[0]}), counted whole per rank (low: split)")
    elif changed:
        basis = f"derived: {table.source} headers, cast/padded/split per rank by vLLM's layer rules" + (
            f" ({stage.label()})" if stage is not None and stage.size > 1 else "")
    elif model.vision is not None:
        basis = (f"derived: {table.source} headers as stored; a vision-language model's tensors that vLLM does not "
                 "build (e.g. a dropped last tower layer) are not subtracted")
    else:
        basis = f"exact: {table.source} headers ({len(table.tensors)} tensors, loaded as stored)"
    if stage is not None and stage.size > 1 and stage.rule != "vllm" and known:
        missing = sum(_cast(t, db) * _share(t, "vocab", tp, model) for t in table.tensors
                      if classify(t.name) == "vocab" and not on_stage(t, stage) and _loaded(t, model.layers, tied))
        high += missing
        basis = "estimate: " + basis.split(": ", 1)[1] + (
            f"; which stages build the embeddings and lm_head of {model.architecture} is not read from vLLM "
            "(first/last assumed; high: on every stage)")
    q = getattr(model, "quantization", None)
    if q is not None and q.method == "mxfp4":
        pad = _mxfp4_padding(table, model, tp, stage)
        high += pad
        if pad:
            basis = "estimate: " + basis.split(": ", 1)[1] + "; MXFP4 experts padded on load by some MoE backends"
            notes.append(f"MXFP4 MoE backends round expert widths up on load (fused_moe/oracle/mxfp4.py:816-850): "
                         f"up to {pad / 2**30:.2f} GiB more per rank than the headers hold")
    return RankWeights(value, low, high, basis, notes, table.total_bytes())


def _mxfp4_padding(table: TensorTable, model, tp: int, stage=None) -> float:
    """Extra bytes per rank if the MoE backend rounds hidden up to 256 and the rank's intermediate up to 128
    (Marlin, the widest rounding in vLLM 0.32's mxfp4 oracle)."""
    d = model.decoder
    if d is None or d.moe is None:
        return 0.0
    h, i = d.hidden, d.moe.inter // tp
    factor = (-(-h // 256) * 256 / h) * (-(-i // 128) * 128 / i) - 1
    experts = sum(t.nbytes for t in table.tensors if classify(t.name) == "expert" and on_stage(t, stage)) / tp
    return experts * factor
