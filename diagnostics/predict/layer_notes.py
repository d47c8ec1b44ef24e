"""plan's notes on what the KV and activation figures do with a decoder's layer kinds: sliding-window layers (V1's
hybrid KV manager), Mamba/linear-attention state, MoE layers' fused-MoE scratch. `ctx` is the estimator's _Context
(model, settings, engine, version, dtype bytes, tp). Pure: no torch, no vllm."""

from __future__ import annotations

from diagnostics.decoder import (FULL, HYBRID_KV_SINCE, LINEAR, SLIDING, STATE_POOL_SINCE, kv_group_size,
                                 state_pool_block_size)
from diagnostics.predict.moe import DEFAULT_TOP_K, moe_layer_bytes
from diagnostics.settings import KV_CACHE_DTYPES
from diagnostics.units import GiB, fmt_gib


def group_words(n: dict, version, other: str = SLIDING) -> str:
    """How vLLM groups the full and the `other` layers (diagnostics.decoder.kv_group_size), padding included."""
    gs = kv_group_size([n[FULL], n[other]], version)
    pad = sum(-c % gs for c in (n[FULL], n[other]) if c)
    return f"layers grouped {gs} to a block" + (f", {pad} padding layer{'s' if pad > 1 else ''} counted" if pad else "")


def layer_kind_notes(ctx) -> list[str]:
    """What the KV figure does with sliding-window and Mamba/linear-attention layers (diagnostics.decoder)."""
    m = ctx.model
    n, out = m.attention_layers(), []
    if n[SLIDING]:
        out.append(f"{n[SLIDING]} of {m.layers} layers use a {m.window}-token sliding window: " + (
            "V1's hybrid KV manager keeps min(window - 1 + tokens in flight, max_model_len) tokens of a request in "
            f"each, plus one block; {group_words(n, ctx.v)}"
            if ctx.eng == "V1" and ctx.v >= HYBRID_KV_SINCE else
            "this engine gives them the whole length like full-attention layers"))
    state = m.decoder.linear_state if m.decoder is not None else None
    if n[LINEAR] and state is not None and ctx.eng == "V1" and ctx.v >= STATE_POOL_SINCE and not n[SLIDING]:
        s = ctx.settings
        tp = int(s.get("tensor_parallel_size", 1))
        db = KV_CACHE_DTYPES.get(s.get("kv_cache_dtype", "auto")) or ctx.db
        per = m.decoder.kv_bytes_per_token_layer(db, tp, ctx.v)
        sb = state.state_bytes(m.dtype_bytes, tp)
        out.append(f"{n[LINEAR]} of {m.layers} layers are linear attention (gated delta net): each holds "
                   f"{sb:,} B of state per request on this rank; vLLM raises the attention block to "
                   f"{state_pool_block_size(per, sb, int(s['block_size']))} tokens so a page holds one state, and "
                   f"the KV figure counts the state's blocks; {group_words(n, ctx.v, LINEAR)}")
    elif n[LINEAR]:
        out.append(f"{n[LINEAR]} of {m.layers} layers are Mamba/linear-attention: only the {n[FULL]} full-attention "
                   "layers hold paged KV; their per-request state is not modelled (KV tokens are an upper bound)")
    d = m.decoder
    if d is not None and d.moe is not None and d.moe.moe_layers:
        mbt = int(ctx.settings["max_num_batched_tokens"])
        moe = moe_layer_bytes(d, mbt, ctx.db, ctx.tp, ctx.v)
        out.append(f"MoE layers: the profile run's LLM pass is sized from one MoE layer's fused-MoE buffers at "
                   f"{mbt:,} tokens x top-{d.moe.top_k or DEFAULT_TOP_K} experts: {fmt_gib(moe.value / GiB)} per "
                   f"rank (estimate {fmt_gib(moe.low / GiB)} - {fmt_gib(moe.high / GiB)}: the kernel depends on the "
                   f"card; vLLM {ctx.v}'s {moe.rule} Triton layout, predict.moe)")
    return out
