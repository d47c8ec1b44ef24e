"""A text decoder's shape from config.json, as vLLM builds it: dense or MoE MLPs, GQA or MLA attention, and which
layers hold paged KV (full attention), a window of it (sliding attention) or a fixed state (Mamba/linear attention).

Parameter counts follow vLLM 0.32's layers: vocab rows padded to 64 (layers/vocab_parallel_embedding.py:95-97,
:289-305, split over TP ranks), column/row-parallel linears split over TP (layers/linear.py:494, :1681), K/V heads
replicated when fewer than TP ranks (linear.py:1053-1058), RowParallelLinear's bias not split (linear.py:1719),
FusedMoE splitting each expert's intermediate dim over TP (layers/fused_moe/config.py:1341-1342; with expert
parallelism whole experts per rank, the same bytes), the router (`GateLinear`) and MLA's down-projections
replicated (models/deepseek_v2.py:494, :518; qwen3_moe.py:170). Which layers are MoE: deepseek_v2.py:1293-1296
(first_k_dense_replace, moe_layer_freq), qwen3_moe.py:385-391 (mlp_only_layers, decoder_sparse_step).
KV per token and layer: 2 x max(1, kv_heads // tp) x head_dim (config/model.py:1650-1670); MLA one latent
"head" of kv_lora_rank + qk_rope_head_dim on every rank (layers/attention/mla_attention.py:479, :576).

`known` says whether these rules are vLLM's for the architecture (KNOWN_ARCHITECTURES); an unknown one is sized
with the same generic rules, and every term built on them is an estimate (predict.terms).
"""

from __future__ import annotations

from dataclasses import dataclass

from diagnostics.errors import UsageError

VOCAB_PADDING = 64

# Architectures whose vLLM model class these rules follow (checked layer by layer against vLLM's model files).
KNOWN_ARCHITECTURES = frozenset({
    "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "Qwen2MoeForCausalLM",
    "Qwen3MoeForCausalLM", "MixtralForCausalLM", "DeepseekV2ForCausalLM", "DeepseekV3ForCausalLM",
    "QWenLMHeadModel", "ChatGLMModel", "ChatGLMForConditionalGeneration", "InternLM2ForCausalLM",
    "Phi3ForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM"})
KNOWN_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3", "qwen2_moe", "qwen3_moe", "mixtral",
                               "deepseek_v2", "deepseek_v3", "qwen", "chatglm", "internlm2", "phi3", "gemma2",
                               "gemma3_text"})
FULL, SLIDING, LINEAR = "full", "sliding", "linear"
_LAYER_TYPE_WORDS = {"full_attention": FULL, "attention": FULL, "global": FULL, "sliding_attention": SLIDING,
                     "sliding_window": SLIDING, "local": SLIDING, "linear_attention": LINEAR, "mamba": LINEAR,
                     "mamba2": LINEAR, "conv": LINEAR}


@dataclass(frozen=True)
class MoE:
    experts: int
    inter: int  # each routed expert's intermediate size
    shared_inter: int  # the shared experts' total intermediate size (0: none)
    moe_layers: tuple[int, ...]  # indices of the layers with a MoE MLP
    shared_gate: bool = False  # Qwen2-MoE's shared_expert_gate (hidden -> 1, replicated)
    top_k: int = 0  # num_experts_per_tok (0: the config does not say)


@dataclass(frozen=True)
class MLA:
    kv_lora_rank: int
    qk_rope_head_dim: int
    qk_nope_head_dim: int
    v_head_dim: int
    q_lora_rank: int  # 0: a plain column-parallel q_proj


@dataclass(frozen=True)
class GatedDeltaNet:
    """A Qwen3-Next / Qwen3.5 linear-attention (gated delta net) layer's per-request state, as vLLM 0.32 holds it:
    a conv state of conv_dim x (kernel - 1) values and a temporal state of v_heads x head_v x head_k, both split
    over TP ranks (MambaStateShapeCalculator.gated_delta_net_state_shape, layers/mamba/mamba_utils.py:280-301;
    models/qwen3_next.py:893-912). ssm_dtype_bytes: the checkpoint's mamba_ssm_dtype (Qwen3.5,
    models/config.py:855-866); 0: "auto", the conv state's dtype (mamba_utils.py:98-110)."""

    k_heads: int
    v_heads: int
    head_k: int
    head_v: int
    conv_kernel: int
    ssm_dtype_bytes: int = 0

    def state_bytes(self, dtype_bytes: int, tp: int = 1) -> int:
        """Bytes of one layer's state for one request on one rank (B); ValueError where TP does not divide it."""
        conv_dim = self.head_k * self.k_heads * 2 + self.head_v * self.v_heads
        if conv_dim % tp or self.v_heads % tp:
            raise ValueError(f"{tp} ranks do not divide the linear-attention state ({self.v_heads} value heads)")
        conv = conv_dim // tp * (self.conv_kernel - 1) * dtype_bytes
        return conv + self.v_heads // tp * self.head_v * self.head_k * (self.ssm_dtype_bytes or dtype_bytes)


@dataclass(frozen=True)
class Decoder:
    """The text decoder of a config: widths, per-layer kinds, MoE / MLA parts. Counts are parameters."""

    architecture: str
    known: bool
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool
    qkv_bias: bool
    qk_norm: bool = False
    norms_per_layer: int = 2
    moe: MoE | None = None
    mla: MLA | None = None
    layer_kinds: tuple[str, ...] = ()  # FULL / SLIDING / LINEAR per layer (empty: all FULL)
    sliding_window: int = 0
    linear_state: GatedDeltaNet | None = None  # the LINEAR layers' state where vLLM's rule for it is known

    @property
    def vocab_padded(self) -> int:
        return -(-self.vocab // VOCAB_PADDING) * VOCAB_PADDING

    def kinds(self) -> tuple[str, ...]:
        return self.layer_kinds or (FULL,) * self.layers

    def _attention(self, tp: int) -> tuple[int, int]:
        """(split parameters per rank, replicated parameters) of one attention layer."""
        h = self.hidden
        if self.mla is not None:
            m = self.mla
            qk = m.qk_nope_head_dim + m.qk_rope_head_dim
            rep = h * (m.kv_lora_rank + m.qk_rope_head_dim) + m.kv_lora_rank
            split = self.heads * m.kv_lora_rank * (m.qk_nope_head_dim + m.v_head_dim) + self.heads * m.v_head_dim * h
            if m.q_lora_rank:
                rep += h * m.q_lora_rank + m.q_lora_rank
                split += m.q_lora_rank * self.heads * qk
            else:
                split += h * self.heads * qk
            return split // tp, rep
        q = self.heads * self.head_dim
        kv_rank = max(1, self.kv_heads // tp) if tp > 1 else self.kv_heads
        k = kv_rank * self.head_dim
        split = h * q // tp + 2 * h * k + q // tp * h
        if self.qkv_bias:
            split += q // tp + 2 * k
        return split, (2 * self.head_dim if self.qk_norm else 0)

    def _mlp(self, layer: int, tp: int) -> tuple[int, int]:
        """(split parameters per rank, replicated parameters) of one layer's MLP or MoE block."""
        h, moe = self.hidden, self.moe
        if moe is None or layer not in moe.moe_layers:
            return 3 * h * (self.intermediate // tp), 0
        split = moe.experts * 3 * h * (moe.inter // tp) + 3 * h * (moe.shared_inter // tp)
        return split, h * moe.experts + (h if moe.shared_gate else 0)

    def params_per_rank(self, tp: int = 1, start: int = 0, end: int | None = None, vocab_tables: int | None = None,
                        final_norm: bool = True) -> int:
        """Parameters one TP rank holds (tp=1: the whole model as vLLM builds it, padded vocab rows).

        A pipeline stage (predict.pipeline.Stage) holds decoder layers [start, end), `vocab_tables` vocab-parallel
        tables (embedding and/or an untied lm_head; default: the whole model's, 1 tied or 2) and the final norm
        when `final_norm`."""
        tables = (1 if self.tied else 2) if vocab_tables is None else vocab_tables
        emb = self.vocab_padded // tp * self.hidden * tables
        total = emb + (self.hidden if final_norm else 0)
        for i in range(start, self.layers if end is None else end):
            # a Mamba/linear-attention layer's mixer is sized as an attention layer of the same widths: an estimate
            # (no architecture with such layers is in KNOWN_ARCHITECTURES)
            a_split, a_rep = self._attention(tp)
            m_split, m_rep = self._mlp(i, tp)
            total += a_split + a_rep + m_split + m_rep + self.norms_per_layer * self.hidden
        return total

    def linear_params(self) -> int:
        """Weights of the decoder layers' linear layers that a quantization method stores packed (attention
        projections, MLPs and experts; not the router, norms or embeddings), tp=1."""
        total = 0
        for i in range(self.layers):
            a_split, a_rep = self._attention(1)
            m_split, _ = self._mlp(i, 1)
            bias = (self.heads + 2 * self.kv_heads) * self.head_dim if self.qkv_bias and self.mla is None else 0
            total += a_split - bias + (a_rep if self.mla else 0) + m_split
        return total

    def expert_params(self) -> int:
        """Weights of the routed experts (every MoE layer), tp=1."""
        moe = self.moe
        return 0 if moe is None else len(moe.moe_layers) * moe.experts * 3 * self.hidden * moe.inter

    def kv_bytes_per_token_layer(self, dtype_bytes: int, tp: int = 1, version=None, quant_method: str = "") -> int:
        """Bytes one attention layer's paged KV holds per token on one rank (version: vLLM's, a tuple-comparable
        Version; None = the newest rules)."""
        if self.mla is not None:
            latent = mla_latent_cache(version, quant_method)
            if latent:
                return (self.mla.kv_lora_rank + self.mla.qk_rope_head_dim) * dtype_bytes
            # before MLA: K and V per local head of ModelConfig.get_head_size(): 256 up to 0.6.x ("pad head_size
            # 192 to 256", config.py 0.6.6:719-726), qk_nope + qk_rope in 0.7.0 (config.py 0.7.0:733-743)
            width = 256 if version is not None and version < (0, 7, 0) else \
                self.mla.qk_nope_head_dim + self.mla.qk_rope_head_dim
            return 2 * max(1, self.heads // tp) * width * dtype_bytes
        return 2 * max(1, self.kv_heads // tp) * self.head_dim * dtype_bytes

    def attention_layers(self) -> dict[str, int]:
        """{kind: number of layers} for FULL, SLIDING and LINEAR."""
        kinds = self.kinds()
        return {k: kinds.count(k) for k in (FULL, SLIDING, LINEAR)}


# V1's hybrid KV cache manager (kv_cache_utils.py 0.32.0:1362-1490 `_get_kv_cache_groups_uniform_page_size`): layers of
# one KV spec are split into groups of `group_size` layers (the last padded), every group draws same-size blocks from
# one pool, and a block holds one page of each of group_size layers. group_size is the fewest layers of any kind
# (0.9.2:826); from 0.12.0 the most when that is under 1.25 x the fewest (0.12.0:1017), 1.5 x from 0.18.0
# (0.18.0:1043; 0.32.0:1467-1478).
HYBRID_KV_SINCE = (0, 9, 2)  # V1's hybrid KV manager keeps only a sliding window's blocks (v1/core/kv_cache_utils.py)
GROUP_MAX_FACTORS = (((0, 18, 0), 1.5), ((0, 12, 0), 1.25))


def kv_group_size(counts: list[int], version=None) -> int:
    """Layers per KV cache group for layer kinds of `counts` layers each (vLLM's rule by version; None: newest).
    Counts of 0 are ignored; ValueError when none is positive."""
    counts = [c for c in counts if c > 0]
    if not counts:
        raise ValueError("no layers to group")
    least, most = min(counts), max(counts)
    for since, factor in GROUP_MAX_FACTORS:
        if version is None or version >= since:
            return most if most < least * factor else least
    return least


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def hybrid_pool_bytes_per_token(counts: dict[str, int], per_layer: int, block_size: int, max_model_len: int,
                                window: int, in_flight: int, version=None) -> float:
    """Bytes per token of V1's hybrid KV pool for full-attention and sliding-window layers, as its capacity counts
    them: the bytes one max_model_len request holds / max_model_len (vLLM reports concurrency x max_model_len tokens,
    kv_cache_utils.py 0.32.0:1195-1228, :2300-2308).

    counts: {FULL: n, SLIDING: n} layers; per_layer: one layer's KV bytes per token on this rank (B); block_size:
    tokens per block; window: sliding_window (tokens); in_flight: tokens scheduled but not yet freed
    (VllmConfig.max_in_flight_tokens). One block = group_size pages (kv_cache_utils.py 0.32.0:1520-1551); a request
    takes cdiv(max_model_len, block_size) blocks in each full-attention group (kv_cache_interface.py 0.32.0:602-607)
    and cdiv(min(window - 1 + in_flight, max_model_len), block_size) + 1 in each sliding group (0.32.0:862-896; the
    +1 since 0.9.2, kv_cache_interface.py 0.9.2). Groups per kind: cdiv(layers, group_size) (padded,
    kv_cache_utils.py 0.32.0:1479-1489). The GPU's block size for both kinds (FlashAttention's MultipleOf(16),
    v1/attention/backends/flash_attn.py 0.32.0:355-366); the CPU backend's 32-token sliding blocks differ by <1 %."""
    full, sliding = counts.get(FULL, 0), counts.get(SLIDING, 0)
    gs = kv_group_size([full, sliding], version)
    window_tokens = min(window - 1 + in_flight, max_model_len)
    blocks = cdiv(full, gs) * cdiv(max_model_len, block_size) + cdiv(sliding, gs) * (cdiv(window_tokens, block_size)
                                                                                      + 1)
    return gs * block_size * per_layer * blocks / max_model_len


# Hybrid attention + Mamba/linear-attention pools: the platform raises the block size until an attention page holds
# a state page (Platform._align_hybrid_block_size, platforms/interface.py 0.20.0:560-620, 0.32.0:939-1122; before
# 0.20 in models/config.py, not checked here), and a request holds 2 state blocks per group under prefix caching's
# "align" mode, on by default for hybrid models from 0.26.0 (config/model.py 0.26.0:1896; models/config.py
# 0.32.0:684-688; kv_cache_interface.py 0.32.0:1076-1082), 1 before.
STATE_POOL_SINCE = (0, 20, 0)
STATE_ALIGN_MODE_SINCE = (0, 26, 0)
FA_KERNEL_BLOCK = 16  # FlashAttention's MultipleOf(16) (v1/attention/backends/flash_attn.py 0.32.0:355-366)


def state_pool_block_size(per_layer: int, state_bytes: int, block_size: int = 16) -> int:
    """The attention block size (tokens) vLLM's GPU start-up picks so one attention page holds one state page:
    k x cdiv(state, k x per_layer) with k = max(16, block_size) (interface.py 0.32.0:1060-1098), never below
    block_size."""
    k = max(FA_KERNEL_BLOCK, block_size)
    return max(block_size, k * cdiv(state_bytes, k * per_layer))


def state_pool_bytes_per_token(counts: dict[str, int], per_layer: int, state_bytes: int, block_size: int,
                               max_model_len: int, version=None) -> float:
    """Bytes per token of V1's pool for full-attention and Mamba/linear-attention (LINEAR) layers, as its capacity
    counts them (bytes one max_model_len request holds / max_model_len; kv_cache_utils.py 0.32.0:1195-1228).

    per_layer: one attention layer's KV bytes per token on this rank (B); state_bytes: one LINEAR layer's state per
    request (B). Pages are state_pool_block_size() x per_layer (the state page padded to it); layers are grouped as
    for sliding windows (kv_group_size); a request takes cdiv(max_model_len, block) blocks per attention group and
    2 (1 before STATE_ALIGN_MODE_SINCE) per state group (MambaSpec.max_memory_usage_bytes)."""
    full, linear = counts.get(FULL, 0), counts.get(LINEAR, 0)
    bs = state_pool_block_size(per_layer, state_bytes, block_size)
    gs = kv_group_size([full, linear], version)
    per_state = 2 if version is None or version >= STATE_ALIGN_MODE_SINCE else 1
    blocks = cdiv(full, gs) * cdiv(max_model_len, bs) + cdiv(linear, gs) * per_state
    return gs * bs * per_layer * blocks / max_model_len


MLA_SINCE = (0, 7, 1)  # vLLM's MLA attention (latent KV cache): models/deepseek_v2.py 0.7.1:329-436


def mla_latent_cache(version, quant_method: str = "") -> bool:
    """Whether vLLM caches MLA's latent (one kv_lora_rank + qk_rope_head_dim "head") rather than full K/V heads:
    from 0.7.1 (config.py 0.7.1:972-999; 0.7.x turns it off for quantizations other than fp8 and
    compressed-tensors); VLLM_MLA_DISABLE=1 turns it off in every version (not modelled)."""
    if version is None:
        return True
    if version < MLA_SINCE:
        return False
    return not (version < (0, 8, 0) and quant_method and quant_method not in ("fp8", "compressed-tensors"))


def _int(cfg: dict, *keys, default=None):
    for k in keys:
        v = cfg.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return int(v)
    return default


def _moe(cfg: dict, layers: int, intermediate: int) -> MoE | None:
    experts = _int(cfg, "num_experts", "num_local_experts", "n_routed_experts", default=0)
    if not experts:
        return None
    inter = _int(cfg, "moe_intermediate_size", default=intermediate)
    first_dense = _int(cfg, "first_k_dense_replace", default=0)
    freq = cfg.get("moe_layer_freq", 1)
    step = _int(cfg, "decoder_sparse_step", default=1) or 1
    dense_only = set(cfg.get("mlp_only_layers") or [])
    if isinstance(freq, list):
        moe_layers = tuple(i for i in range(layers) if i < len(freq) and freq[i])
    else:
        freq = int(freq) or 1
        moe_layers = tuple(i for i in range(layers) if i >= first_dense and i % freq == 0
                           and i not in dense_only and (i + 1) % step == 0)
    shared = _int(cfg, "n_shared_experts", "num_shared_experts", default=0) * inter
    shared = _int(cfg, "shared_expert_intermediate_size", default=shared) or 0
    return MoE(experts, inter, shared, moe_layers, shared_gate=bool(cfg.get("shared_expert_intermediate_size")),
               top_k=_int(cfg, "num_experts_per_tok", "moe_topk", default=0) or 0)


def _mla(cfg: dict) -> MLA | None:
    if not _int(cfg, "kv_lora_rank"):
        return None
    return MLA(int(cfg["kv_lora_rank"]), _int(cfg, "qk_rope_head_dim", default=64),
               _int(cfg, "qk_nope_head_dim", default=128), _int(cfg, "v_head_dim", default=128),
               _int(cfg, "q_lora_rank", default=0) or 0)


def layer_kinds(cfg: dict, layers: int) -> tuple[tuple[str, ...], int]:
    """(kind per layer, sliding window in tokens) from `layer_types`, Gemma's alternation (Gemma 2: even layers
    slide; Gemma 3: all but every `sliding_window_pattern`-th), Qwen3-Next's `full_attention_interval`, or a
    `sliding_window` on every layer (Mistral v0.1; not when `use_sliding_window` is false, as in Qwen2)."""
    window = _int(cfg, "sliding_window", default=0) or 0
    types = cfg.get("layer_types")
    if isinstance(types, list) and len(types) >= layers:
        kinds = tuple(_LAYER_TYPE_WORDS.get(str(t).lower(), FULL) for t in types[:layers])
        return kinds, window
    mt = str(cfg.get("model_type") or "")
    if mt == "gemma2" and window:
        return tuple(SLIDING if i % 2 == 0 else FULL for i in range(layers)), window
    # Gemma 3 without the key: transformers' Gemma3TextConfig default of 6 (configuration_gemma3.py:109-115, which
    # writes the layer_types vLLM reads)
    pattern = _int(cfg, "sliding_window_pattern", default=6 if mt.startswith("gemma3") else 0)
    if mt.startswith("gemma3") and window and pattern:
        return tuple(FULL if (i + 1) % pattern == 0 else SLIDING for i in range(layers)), window
    interval = _int(cfg, "full_attention_interval", default=0)
    if interval:
        return tuple(FULL if (i + 1) % interval == 0 else LINEAR for i in range(layers)), window
    if window and cfg.get("use_sliding_window", True) is not False and window < _int(
            cfg, "max_position_embeddings", default=window + 1):
        return (SLIDING,) * layers, window
    return (), 0


_SSM_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def _gated_delta_net(cfg: dict, kinds: tuple[str, ...]) -> GatedDeltaNet | None:
    """The LINEAR layers' state of a Qwen3-Next / Qwen3.5 config (linear_num_key_heads, linear_num_value_heads,
    linear_key_head_dim, linear_value_head_dim, linear_conv_kernel_dim); None for another kind of state."""
    keys = ("linear_num_key_heads", "linear_num_value_heads", "linear_key_head_dim", "linear_value_head_dim",
            "linear_conv_kernel_dim")
    if LINEAR not in kinds or any(_int(cfg, k) is None for k in keys):
        return None
    return GatedDeltaNet(*(int(cfg[k]) for k in keys), _SSM_DTYPE_BYTES.get(str(cfg.get("mamba_ssm_dtype")), 0))


def _rope_rows(rope: dict, max_position: int) -> int:
    """Rows of one rotary cos/sin cache: vLLM 0.32 `get_rope` (layers/rotary_embedding/__init__.py:32-351) builds
    max_position rows (base.py:94-103), x factor for linear scaling (linear_scaling_rope.py:85-92), the original
    length x factor for yarn / deepseek_yarn (yarn_scaling_rope.py:79, deepseek_scaling_rope.py:106), x 4 for
    M-RoPE (mrope_section: mrope.py:347-351, positions_factor 4 by default)."""
    kind = str(rope.get("rope_type") or rope.get("type") or "default")
    factor = float(rope.get("factor") or 1)
    if kind in ("longrope", "su") and rope.get("original_max_position_embeddings"):
        # Phi-3's short and long caches concatenated (phi3_long_rope_scaled_rope.py:80-95)
        return int(rope["original_max_position_embeddings"]) + max_position
    if kind == "linear":
        return int(max_position * factor)
    if kind in ("yarn", "deepseek_yarn", "deepseek_llama_scaling") and rope.get("original_max_position_embeddings"):
        rows = int(int(rope["original_max_position_embeddings"]) * factor)
        return rows * 4 if "mrope_section" in rope else rows
    if "mrope_section" in rope or kind == "mrope":
        return max_position * 4
    return max_position


# M-RoPE's cache holds 4 x max_position rows from vLLM 0.7.2 (MRotaryEmbedding.cache_max_position_num,
# rotary_embedding.py 0.7.2:779-780; 0.7.0 :760-790 builds max_position rows)
MROPE_X4_FROM = (0, 7, 2)
# ... except Qwen3-VL / Qwen3-VL-MoE / Qwen3.5's decoder from 0.32.0: positions_factor 1 unless video pruning is on
# (models/qwen3_vl.py:1818-1831 mrope_positions_factor, qwen3_vl_moe.py:77, qwen3_5.py:165; mrope.py:319-355)
MROPE_X1_QWEN3_FROM = (0, 32, 0)
MROPE, MROPE_QWEN3 = "mrope", "mrope-qwen3"


def mrope_kind(cfg: dict) -> str:
    """"" when the text config's rope is not vLLM's MRotaryEmbedding (mrope_section, or rope type mrope), else
    MROPE, or MROPE_QWEN3 for the Qwen3-VL / Qwen3.5 decoders (model_type qwen3_vl*, qwen3_5*)."""
    rope = cfg.get("rope_scaling") or cfg.get("rope_parameters") or {}
    rope = rope if isinstance(rope, dict) else {}
    if isinstance(rope.get("full_attention"), dict):
        rope = rope["full_attention"]
    if "mrope_section" not in rope and str(rope.get("rope_type") or rope.get("type")) != "mrope":
        return ""
    return MROPE_QWEN3 if str(cfg.get("model_type") or "").startswith(("qwen3_vl", "qwen3_5")) else MROPE


def rope_values_in(values: int, mrope: str, version) -> int:
    """The rotary cache values (`rope_cache_values`: M-RoPE at 4 x max_position rows) as vLLM `version` builds them
    (a Version tuple, or None for the newest rule): the same rule in every release from 0.4.0 (a buffer in the model
    dtype: `cache.to(torch.get_default_dtype())` 0.4.0 rotary_embedding.py:65-66, `cache.to(dtype)` 0.5.4 :83-84,
    0.6.4 :96-98, 0.8.2 :100-102, 0.32 base.py:58-63) except M-RoPE (`mrope_kind`): max_position rows before 0.7.2
    (MROPE_X4_FROM), and for MROPE_QWEN3 from 0.32.0 (MROPE_X1_QWEN3_FROM; video pruning, which keeps 4 x, is not
    modelled here)."""
    if not mrope:
        return values
    v = None if version is None else tuple(version)[:3]
    if (v is not None and v < MROPE_X4_FROM) or (mrope == MROPE_QWEN3 and (v is None or v >= MROPE_X1_QWEN3_FROM)):
        return values // 4
    return values


def rope_cache_values(cfg: dict, head_dim: int, rope_dim: int | None = None) -> int:
    """Values of the rotary cos/sin caches vLLM registers as buffers (`cos_sin_cache`, rotary_embedding/base.py:58-63;
    x the model dtype's bytes, whole on every TP rank): rows (_rope_rows) x rotary_dim values, cos and sin halves.
    rotary_dim: rope_dim (MLA's qk_rope_head_dim) or head_dim x partial_rotary_factor (__init__.py:63-72). `get_rope`
    keeps one cache per distinct rope config (__init__.py:74-85): Gemma 3 has two, the global layers' (scaled) and the
    sliding layers' (rope_local_base_freq, unscaled; models/gemma3.py:150-163). `cfg`: the text config."""
    max_position = _int(cfg, "max_position_embeddings", default=0) or 0
    if not max_position or not head_dim:
        return 0
    rope = cfg.get("rope_scaling") or cfg.get("rope_parameters") or {}
    rope = rope if isinstance(rope, dict) else {}
    if isinstance(rope.get("full_attention"), dict):  # transformers 5's per-layer-type rope_parameters
        rope = rope["full_attention"]
    if "original_max_position_embeddings" not in rope and cfg.get("original_max_position_embeddings"):
        rope = {**rope, "original_max_position_embeddings": cfg["original_max_position_embeddings"]}  # Phi-3
    partial = float(cfg.get("partial_rotary_factor") or rope.get("partial_rotary_factor") or 1.0)
    rotary_dim = rope_dim or int(head_dim * partial)
    total = _rope_rows(rope, max_position) * rotary_dim
    if str(cfg.get("model_type") or "").startswith("gemma3") and layer_kinds(cfg, _int(cfg, "num_hidden_layers",
                                                                                        default=0) or 0)[0]:
        total += max_position * rotary_dim  # the local (sliding) layers' unscaled cache
    return total


def _chatglm_keys(cfg: dict) -> dict:
    """ChatGLM-style names (num_layers, multi_query_group_num, kv_channels, padded_vocab_size, ffn_hidden_size)
    in the Llama names vLLM's ChatGLM model reads them as (model_executor/models/chatglm.py); the SwiGLU
    dense_h_to_4h is [2 x ffn_hidden_size, hidden] and the qkv has a bias (add_qkv_bias)."""
    if "num_layers" not in cfg or "num_hidden_layers" in cfg:
        return cfg
    heads = int(cfg.get("num_attention_heads") or 0)
    return {**cfg, "num_hidden_layers": cfg["num_layers"],
            "num_key_value_heads": cfg.get("multi_query_group_num") if cfg.get("multi_query_attention") else heads,
            "head_dim": cfg.get("kv_channels"), "intermediate_size": cfg.get("ffn_hidden_size"),
            "vocab_size": cfg.get("padded_vocab_size", cfg.get("vocab_size")),
            "attention_bias": bool(cfg.get("add_qkv_bias", True)),
            "max_position_embeddings": cfg.get("seq_length", cfg.get("max_position_embeddings"))}


def normalise(cfg: dict) -> dict:
    """The text config with ChatGLM-style keys renamed to the Llama names (other configs unchanged)."""
    return _chatglm_keys(cfg)


def decoder_from_config(cfg: dict, architecture: str, where: str, *, qkv_bias: bool | None = None,
                        intermediate: int | None = None) -> Decoder:
    """The Decoder of a text config (already normalised). UsageError naming the first missing key."""
    need = ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
    for key in need:
        if key not in cfg or cfg[key] is None:
            raise UsageError(f"{where} lacks {key!r}; a text model needs hidden_size, num_hidden_layers, "
                             "num_attention_heads, intermediate_size (or moe_intermediate_size), vocab_size")
        raw = cfg[key]  # 0 heads divide by zero; a text or a fraction is no size
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or raw < 1 or raw != int(raw):
            raise UsageError(f"{where}: {key} is {raw!r}; accepted: a positive integer")
    hidden, layers, heads = int(cfg["hidden_size"]), int(cfg["num_hidden_layers"]), int(cfg["num_attention_heads"])
    inter = intermediate if intermediate is not None else _int(cfg, "intermediate_size", "moe_intermediate_size")
    if inter is None:
        raise UsageError(f"{where} lacks 'intermediate_size'; a text model needs hidden_size, num_hidden_layers, "
                         "num_attention_heads, intermediate_size (or moe_intermediate_size), vocab_size")
    mt = str(cfg.get("model_type") or "")
    # tie_word_embeddings absent: transformers' Gemma configs default it to true (configuration_gemma2.py:83), and
    # vLLM's Gemma 2 has no lm_head at all (model_executor/models/gemma2.py:368, 0.32); found by the vLLM-exact test
    kinds, window = layer_kinds(cfg, layers)
    return Decoder(
        architecture=architecture, known=architecture in KNOWN_ARCHITECTURES or mt in KNOWN_MODEL_TYPES,
        hidden=hidden, layers=layers, heads=heads, kv_heads=_int(cfg, "num_key_value_heads", default=heads) or heads,
        head_dim=_int(cfg, "head_dim", default=hidden // heads) or hidden // heads, intermediate=int(inter),
        vocab=int(cfg["vocab_size"]), tied=bool(cfg.get("tie_word_embeddings", mt.startswith("gemma"))),
        qkv_bias=bool(cfg.get("attention_bias", mt.startswith("qwen2"))) if qkv_bias is None else qkv_bias,
        qk_norm=mt.startswith("qwen3") or mt.startswith("gemma3"),
        norms_per_layer=4 if mt.startswith("gemma") else 2,
        moe=_moe(cfg, layers, int(inter)), mla=_mla(cfg), layer_kinds=kinds, sliding_window=window,
        linear_state=_gated_delta_net(cfg, kinds))
