"""The transient peak of one MoE layer in the profile run's forward pass at max_num_batched_tokens (bytes).

vLLM's fused MoE (unquantized, 16-bit activations) expands every token to its top_k experts and keeps the expanded
rows in scratch buffers, so a MoE layer holds far more than the dense formula's `intermediate_size` row: with
M tokens (chunked to VLLM_FUSED_MOE_CHUNK_SIZE where that existed), k = num_experts_per_tok, N = 2 x I (gate and
up of one expert's rank slice I = moe_intermediate_size / TP) and H = hidden_size:

* up to 0.7.x, three buffers: cache1 (M, k, N), cache2 (M k, N/2), cache3 (M, k, H)
  (fused_moe/fused_moe.py 0.7.0:703-711; 0.5.4:469-477);
* 0.8.0 to 0.31, `fused_experts_impl`: cache1 and cache3 share one buffer of M k max(N, H), cache2 (M k, N/2)
  apart (fused_moe.py 0.8.0:1353-1362, 0.10.0:1418-1427, 0.31.0:1737-1753);
* 0.32, the modular kernel with TritonExperts (oracle/unquantized.py:134-139): workspace2 (M, k, max(N, H)) and a
  common workspace of max(M k max(N/2, H), M H) that holds cache2 and the fused output
  (fused_moe/experts/triton_moe.py:238-241; modular_kernel.py:1085-1145).

Chunking: M = min(tokens, VLLM_FUSED_MOE_CHUNK_SIZE), 64 Ki tokens up to 0.11 (envs.py 0.11.0:56), 16 Ki in 0.12-0.17
(envs.py 0.12.0:58); gone from 0.18 (M = all tokens: fused_moe.py 0.32.0:1708).

The layer's peak adds the residual and the normed input (2 H per token, as the dense formula). It is an `estimate`:
the kernel depends on the card and on FlashInfer (0.32 prefers FlashInfer's TRT-LLM/CUTLASS kernels where they run,
oracle/unquantized.py:68-74), so the range spans both Triton buffer layouts, and the high bound adds the fused output,
the router's logits (M x experts, fp32), the top-k ids/weights and a shared expert's MLP.
"""

from __future__ import annotations

from dataclasses import dataclass

from diagnostics.versions import Version, parse_version

SHARED_CACHE13_SINCE = Version(0, 8, 0)
MODULAR_SINCE = Version(0, 32, 0)
CHUNK_SIZES = ((Version(0, 0, 0), 64 * 1024), (Version(0, 12, 0), 16 * 1024), (Version(0, 18, 0), None))
DEFAULT_TOP_K = 2  # when a config names no num_experts_per_tok (Mixtral's value; an estimate)


@dataclass(frozen=True)
class MoEPass:
    """One MoE layer's transient bytes at `tokens` (value, low, high) and the rule that gave the value."""

    value: int
    low: int
    high: int
    rule: str


def chunk_tokens(tokens: int, version) -> int:
    """Tokens one fused-MoE call handles at once: min(tokens, VLLM_FUSED_MOE_CHUNK_SIZE) where it existed."""
    v = parse_version(version)
    size = next(s for since, s in reversed(CHUNK_SIZES) if v >= since)
    return tokens if size is None else min(tokens, size)


def _caches(m: int, k: int, n: int, h: int) -> dict[str, int]:
    """Elements of the fused-MoE scratch buffers for M tokens under each version's layout."""
    return {"separate": m * k * (n + n // 2 + h),
            "shared13": m * k * max(n, h) + m * k * (n // 2),
            "modular": m * k * max(n, h) + max(m * k * max(n // 2, h), m * h)}


def moe_layer_bytes(decoder, tokens: int, db: int, tp: int = 1, version=None, top_k: int | None = None) -> MoEPass:
    """Transient bytes of one MoE layer at `tokens` tokens on one TP rank (db: bytes per activation element;
    version: vLLM's, default the newest rules; top_k: num_experts_per_tok). `decoder` must have `moe`."""
    moe, h = decoder.moe, decoder.hidden
    v = parse_version(version or "0.32.0")
    k = top_k or moe.top_k or DEFAULT_TOP_K
    m = chunk_tokens(tokens, v)
    n = 2 * max(1, moe.inter // tp)
    caches = _caches(m, k, n, h)
    rule = "modular" if v >= MODULAR_SINCE else "shared13" if v >= SHARED_CACHE13_SINCE else "separate"
    base = 2 * h * tokens
    value = base + caches[rule]
    low = base + min(caches["shared13"], caches[rule])
    extras = (tokens * h + tokens * moe.experts * 4 // db + tokens * k * 8 // db
              + tokens * 3 * (moe.shared_inter // tp))
    high = base + max(caches["modular"], caches[rule]) + extras
    return MoEPass(value * db, low * db, high * db, rule)
