"""Header-only safetensors checkpoints for the unit tests: a real header (8-byte length + JSON, offsets end to
end) without the data, which is all diagnostics.checkpoint reads. test_predict_shards checks the writer against the
safetensors package."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from diagnostics.gguf_header import GGML_TYPES
from diagnostics.models import get_model

WIDTH = {"BF16": 2, "F16": 2, "F32": 4, "I32": 4, "U8": 1, "F8_E4M3": 1}


def write_header_only(path: Path, tensors: dict[str, tuple[str, tuple[int, ...]]]) -> Path:
    """A .safetensors header for {name: (dtype, shape)}, data offsets end to end, no data bytes."""
    header, offset = {}, 0
    for name, (dtype, shape) in tensors.items():
        n = WIDTH[dtype] * int(np.prod(shape)) if shape else WIDTH[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    return path


def llama_dir(tmp_path, arch="LlamaForCausalLM", dtype="BF16", tied=False, vocab=1000, kv=2):
    """A 2-layer Llama-style checkpoint directory (config.json + header) with a third, extra layer in the header
    (past num_hidden_layers, as DeepSeek's MTP layer); returns its ModelSpec."""
    cfg = {"architectures": [arch], "model_type": "llama" if arch == "LlamaForCausalLM" else "novel",
           "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": kv,
           "intermediate_size": 128, "vocab_size": vocab, "tie_word_embeddings": tied,
           "max_position_embeddings": 4096, "torch_dtype": "bfloat16"}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    t = {"model.embed_tokens.weight": (dtype, (vocab, 64)), "model.norm.weight": (dtype, (64,))}
    if not tied:
        t["lm_head.weight"] = (dtype, (vocab, 64))
    for i in range(3):  # layer 2 is past num_hidden_layers (an MTP-style extra layer): not loaded
        p = f"model.layers.{i}."
        t.update({p + "self_attn.q_proj.weight": (dtype, (64, 64)), p + "self_attn.k_proj.weight": (dtype, (16 * kv, 64)),
                  p + "self_attn.v_proj.weight": (dtype, (16 * kv, 64)), p + "self_attn.o_proj.weight": (dtype, (64, 64)),
                  p + "mlp.gate_proj.weight": (dtype, (128, 64)), p + "mlp.up_proj.weight": (dtype, (128, 64)),
                  p + "mlp.down_proj.weight": (dtype, (64, 128)), p + "input_layernorm.weight": (dtype, (64,)),
                  p + "post_attention_layernorm.weight": (dtype, (64,))})
    write_header_only(tmp_path / "model.safetensors", t)
    return get_model(tmp_path)




# -- GGUF (tests/unit/test_gguf_header.py checks this writer against the gguf package's GGUFReader when installed) --
TYPE_ID = {name: i for i, (name, _, _) in GGML_TYPES.items()}
H, INTER, V = 256, 512, 1024  # hidden, intermediate, vocab: whole K-quant blocks of 256


def _s(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def write_gguf(path: Path, tensors: list[tuple[str, tuple[int, ...], str]], version: int = 3, cut: int = 0,
               magic: bytes = b"GGUF") -> Path:
    """A GGUF file: metadata (a string, a u32, a string array, an i32 array), the tensor infos (dims innermost
    first) and zero-filled data at 32-byte aligned offsets; `cut` bytes dropped from the end."""
    meta = (_s("general.architecture") + struct.pack("<I", 8) + _s("llama")
            + _s("general.alignment") + struct.pack("<I", 4) + struct.pack("<I", 32)
            + _s("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 3) + _s("a") + _s("bb") + _s("<s>")
            + _s("tokenizer.ggml.token_type") + struct.pack("<IIQ", 9, 5, 3) + struct.pack("<3i", 1, 1, 3))
    infos, offset, sizes = b"", 0, []
    for name, dims, tname in tensors:
        _, block, size = GGML_TYPES[TYPE_ID[tname]]
        n = 1
        for d in dims:
            n *= d
        nbytes = n // block * size
        infos += _s(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
        infos += struct.pack("<IQ", TYPE_ID[tname], offset)
        sizes.append(nbytes)
        offset = -(-(offset + nbytes) // 32) * 32
    head = magic + struct.pack("<IQQ", version, len(tensors), 4) + meta + infos
    head += b"\0" * (-len(head) % 32)
    data = head + b"\0" * offset
    path.write_bytes(data[:len(data) - cut] if cut else data)
    return path


def llama_gguf(d: Path, v_type: str = "Q6_K") -> Path:
    """A 2-layer Llama GGUF (Q4_K weights, `v_type` for attn_v, F32 norms, Q6_K output) plus its config.json."""
    t = [("token_embd.weight", (H, V), "Q4_K"), ("output_norm.weight", (H,), "F32"), ("output.weight", (H, V), "Q6_K")]
    for i in range(2):
        p = f"blk.{i}."
        t += [(p + "attn_q.weight", (H, H), "Q4_K"), (p + "attn_k.weight", (H, 64), "Q4_K"),
              (p + "attn_v.weight", (H, 64), v_type), (p + "attn_output.weight", (H, H), "Q4_K"),
              (p + "ffn_gate.weight", (H, INTER), "Q4_K"), (p + "ffn_up.weight", (H, INTER), "Q4_K"),
              (p + "ffn_down.weight", (INTER, H), "Q4_K"), (p + "attn_norm.weight", (H,), "F32"),
              (p + "ffn_norm.weight", (H,), "F32")]
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": H, "num_hidden_layers": 2,
           "num_attention_heads": 4, "num_key_value_heads": 1, "intermediate_size": INTER, "vocab_size": V,
           "max_position_embeddings": 2048, "torch_dtype": "bfloat16"}
    (d / "config.json").write_text(json.dumps(cfg))
    return write_gguf(d / "model-Q4_K_M.gguf", t)
