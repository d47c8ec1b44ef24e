"""Quantized checkpoints: read `quantization_config` from config.json and size the weights as vLLM stores them.

Only the decoder layers' linear weights (q/k/v/o, gate/up/down) are quantized; embeddings, lm_head, norms, biases
and a vision tower stay in the activation dtype. Bytes per quantized weight, from the layouts of vLLM's linear
methods (model_executor/layers/quantization/):
* awq (4 bit, group g): qweight int32 [in, out/8] + qzeros int32 [in/g, out/8] + scales fp16 [in/g, out]
  -> bits/8 + bits/(8g) + 2/g
* gptq (bits b, group g; g=-1 is per channel): qweight [in*b/32, out] + qzeros [in/g, out*b/32] + scales
  fp16 [in/g, out] -> b/8 + b/(8g) + 2/g (the int32 g_idx is per input channel and left out)
* fp8 (and compressed-tensors float 8-bit): 1 byte + per-channel scales (left out)
* bitsandbytes: 4-bit 0.5 byte + fp32 absmax per 64-weight block (1/16 byte); 8-bit 1 byte + per-row scales
* fbgemm_fp8: float8 weights, one fp32 scale per output row (left out) -> 1 byte (fbgemm_fp8.py)
* mxfp4 (gpt-oss): only the MoE experts, U8 blocks of two 4-bit values + one E8M0 scale per 32 weights
  -> 0.5 + 1/32 byte (mxfp4.py); attention and the rest stay 16-bit. vLLM's MoE backends round the expert
  widths up on load (fused_moe/oracle/mxfp4.py:816-850): a header-sized plan notes it
* modelopt: FP8 -> 1 byte; NVFP4 -> 0.5 byte + one fp8 scale per 16 weights (1/16 byte) (modelopt.py)
A checkpoint directory with safetensors files is sized from its headers instead (diagnostics.checkpoint); these
rules are the fallback for a config.json alone.
Other methods are refused with the list of accepted ones rather than sized wrongly.
"""

from __future__ import annotations

from dataclasses import dataclass

from diagnostics.errors import UsageError

METHODS = ("awq", "awq_marlin", "gptq", "gptq_marlin", "fp8", "bitsandbytes", "compressed-tensors", "fbgemm_fp8",
           "mxfp4", "modelopt", "modelopt_fp4")


@dataclass(frozen=True)
class Quantization:
    method: str
    bits: int
    group_size: int  # -1: per output channel

    def bytes_per_weight(self) -> float:
        """Average stored bytes per quantized weight, scales and zero points included."""
        b, g = self.bits, self.group_size
        if self.method in ("awq", "awq_marlin", "gptq", "gptq_marlin"):
            return b / 8 + ((b / 8 + 2) / g if g > 0 else 0.0)
        if self.method == "bitsandbytes":
            return 0.5 + 4 / 64 if b == 4 else 1.0
        if self.method == "mxfp4":
            return 0.5 + 1 / 32
        if self.method == "nvfp4":
            return 0.5 + 1 / 16
        return b / 8  # fp8, fbgemm_fp8, compressed-tensors float8

    @property
    def experts_only(self) -> bool:
        """mxfp4 checkpoints quantize the MoE experts only."""
        return self.method == "mxfp4"


def _int(qc: dict, key: str, default: int) -> int:
    value = qc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"quantization_config.{key}={value!r} is not an integer")
    return value


def _compressed_tensors(qc: dict) -> Quantization:
    groups = qc.get("config_groups") or {}
    weights = [g.get("weights") or {} for g in groups.values() if isinstance(g, dict)]
    if not weights:
        raise UsageError("quantization_config (compressed-tensors) has no config_groups.*.weights; accepted: "
                         "a config_groups entry with num_bits")
    w = weights[0]
    bits = int(w.get("num_bits", 8))
    if w.get("type") == "float":
        return Quantization("fp8", bits, -1)
    group = w.get("group_size")
    return Quantization("gptq", bits, int(group) if group else -1)


def read_quantization(cfg: dict) -> Quantization | None:
    """The checkpoint's quantization from config.json's `quantization_config` (None when it has none).

    UsageError for a method or bit width this module cannot size."""
    qc = cfg.get("quantization_config")
    if qc is None:
        return None
    if not isinstance(qc, dict):
        raise UsageError("config.json quantization_config is not a JSON object")
    method = str(qc.get("quant_method") or ("bitsandbytes" if "load_in_4bit" in qc or "load_in_8bit" in qc
                                             else "")).lower()
    if method not in METHODS:
        raise UsageError(f"quantization method {method or '(none)'!r} is not modelled; accepted: {', '.join(METHODS)}")
    if method == "compressed-tensors":
        return _compressed_tensors(qc)
    if method in ("fp8", "fbgemm_fp8"):
        return Quantization(method, 8, -1)
    if method == "mxfp4":
        return Quantization("mxfp4", 4, 32)
    if method in ("modelopt", "modelopt_fp4"):
        algo = str(qc.get("quant_algo") or (qc.get("quantization") or {}).get("quant_algo") or "").upper()
        if method == "modelopt_fp4" or "FP4" in algo:
            return Quantization("nvfp4", 4, 16)
        return Quantization("fp8", 8, -1)
    if method == "bitsandbytes":
        return Quantization("bitsandbytes", 4 if qc.get("load_in_4bit") else 8, 64)
    bits = _int(qc, "bits", _int(qc, "w_bit", 4))
    group = _int(qc, "group_size", _int(qc, "q_group_size", 128))
    if bits not in (2, 3, 4, 8) or group == 0:
        raise UsageError(f"quantization_config bits={bits} group_size={group} is not modelled; accepted: bits 2, 3, "
                         "4 or 8 and a group size > 0 or -1")
    return Quantization(method, bits, group)


def decoder_linear_params(hidden: int, layers: int, heads: int, kv_heads: int, head_dim: int,
                          intermediate: int) -> int:
    """Weights of the decoder layers' linear layers (q, k, v, o, gate, up, down), biases excluded."""
    q, kv = heads * head_dim, kv_heads * head_dim
    return layers * (hidden * q + 2 * hidden * kv + q * hidden + 3 * hidden * intermediate)
