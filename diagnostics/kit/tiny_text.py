"""A tiny random-weight Qwen2ForCausalLM directory for starting a real vLLM engine on CPU (no model hub).

hidden 64, 2 layers, 2 heads of head_dim 32 (a head size the CPU attention backend accepts), vocab 512,
float32 safetensors written by transformers' save_pretrained, tokenizer from diagnostics.kit.tokenizer.
Builds in a few seconds; about 0.5 MB on disk.
"""

from __future__ import annotations

import json
from pathlib import Path

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
EOS = "<|endoftext|>"
SHAPES = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2, head_dim=32,
              intermediate_size=128, vocab_size=512, max_position_embeddings=4096)


def build_tiny_text(out_dir, seed: int = 0) -> Path:
    """Write config.json, generation_config.json, model.safetensors and the tokenizer into out_dir."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from diagnostics.kit.tokenizer import TokenizerSpec, build_tokenizer

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(out_dir, TokenizerSpec(tuple(SPECIAL_TOKENS), eos=EOS, pad=EOS, vocab_size=SHAPES["vocab_size"]))
    eos_id = tok.special_ids[EOS]
    config = Qwen2Config(**SHAPES, tie_word_embeddings=False, bos_token_id=eos_id, eos_token_id=eos_id,
                         pad_token_id=eos_id, torch_dtype="float32", rope_theta=10000.0)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).to(torch.float32)
    model.save_pretrained(out_dir, safe_serialization=True)
    (out_dir / "generation_config.json").write_text(
        json.dumps({"bos_token_id": eos_id, "eos_token_id": eos_id, "pad_token_id": eos_id}, indent=2) + "\n")
    return out_dir


if __name__ == "__main__":
    import sys

    print(build_tiny_text(sys.argv[1]))
