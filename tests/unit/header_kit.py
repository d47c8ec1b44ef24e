"""Header-only safetensors checkpoints for the unit tests: a real header (8-byte length + JSON, offsets end to
end) without the data, which is all diagnostics.checkpoint reads. test_predict_shards checks the writer against the
safetensors package."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

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


