"""MiniCPM-V-2_6 checkpoint layout (tensor names and shapes) and a random-weight safetensors writer.

The names are the Hugging Face MiniCPM-V layout vLLM loads strictly: `llm.` (Qwen2), `vpm.` (SigLIP/Idefics2
tower), `resampler.` (one cross-attention with `query_num` queries). The resampler's `pos_embed` is a
non-persistent buffer and is not in the checkpoint.
"""

from __future__ import annotations

from pathlib import Path


def checkpoint_layout(config: dict) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape for a MiniCPM-V-2_6 config.json dict (LLM fields at top level + vision_config)."""
    return {**_llm_layout(config), **_vision_layout(config), **_resampler_layout(config)}


def _llm_layout(config: dict) -> dict[str, tuple[int, ...]]:
    """`llm.`: the Qwen2 decoder (q/k/v with bias, o, gated MLP, two RMSNorms per layer), untied LM head; for
    config version 4.5 the Qwen3 decoder (no q/k/v bias, q_norm / k_norm of head_dim per layer)."""
    qwen3 = float(config.get("version") or 0) == 4.5
    h = config["hidden_size"]
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or h // heads
    inter = config["intermediate_size"]
    vocab = config["vocab_size"]
    t: dict[str, tuple[int, ...]] = {
        "llm.model.embed_tokens.weight": (vocab, h),
        "llm.model.norm.weight": (h,),
        "llm.lm_head.weight": (vocab, h),
    }
    for i in range(config["num_hidden_layers"]):
        p = f"llm.model.layers.{i}."
        t[p + "self_attn.q_proj.weight"] = (heads * head_dim, h)
        for name in ("k_proj", "v_proj"):
            t[p + f"self_attn.{name}.weight"] = (kv_heads * head_dim, h)
        if qwen3:
            t[p + "self_attn.q_norm.weight"] = (head_dim,)
            t[p + "self_attn.k_norm.weight"] = (head_dim,)
        else:
            t[p + "self_attn.q_proj.bias"] = (heads * head_dim,)
            for name in ("k_proj", "v_proj"):
                t[p + f"self_attn.{name}.bias"] = (kv_heads * head_dim,)
        t[p + "self_attn.o_proj.weight"] = (h, heads * head_dim)
        t[p + "mlp.gate_proj.weight"] = (inter, h)
        t[p + "mlp.up_proj.weight"] = (inter, h)
        t[p + "mlp.down_proj.weight"] = (h, inter)
        t[p + "input_layernorm.weight"] = (h,)
        t[p + "post_attention_layernorm.weight"] = (h,)
    return t


def _vision_layout(config: dict) -> dict[str, tuple[int, ...]]:
    """`vpm.`: the SigLIP/Idefics2 tower (patch conv, position table, layers, post-LN)."""
    v = config["vision_config"]
    vh, vmlp, patch = v["hidden_size"], v["intermediate_size"], v["patch_size"]
    vision_layers = v["num_hidden_layers"] - (1 if config.get("drop_vision_last_layer") else 0)
    t: dict[str, tuple[int, ...]] = {
        "vpm.embeddings.patch_embedding.weight": (vh, v.get("num_channels", 3), patch, patch),
        "vpm.embeddings.patch_embedding.bias": (vh,),
        "vpm.embeddings.position_embedding.weight": ((v["image_size"] // patch) ** 2, vh),
    }
    for i in range(vision_layers):
        p = f"vpm.encoder.layers.{i}."
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            t[p + f"self_attn.{name}.weight"] = (vh, vh)
            t[p + f"self_attn.{name}.bias"] = (vh,)
        for name in ("layer_norm1", "layer_norm2"):
            t[p + f"{name}.weight"] = (vh,)
            t[p + f"{name}.bias"] = (vh,)
        t[p + "mlp.fc1.weight"] = (vmlp, vh)
        t[p + "mlp.fc1.bias"] = (vmlp,)
        t[p + "mlp.fc2.weight"] = (vh, vmlp)
        t[p + "mlp.fc2.bias"] = (vh,)
    t["vpm.post_layernorm.weight"] = (vh,)
    t["vpm.post_layernorm.bias"] = (vh,)
    return t


def _resampler_layout(config: dict) -> dict[str, tuple[int, ...]]:
    """`resampler.`: one cross-attention with `query_num` queries (kv_proj only when the widths differ)."""
    h, vh, q = config["hidden_size"], config["vision_config"]["hidden_size"], config["query_num"]
    t: dict[str, tuple[int, ...]] = {"resampler.query": (q, h)}
    if vh != h:
        t["resampler.kv_proj.weight"] = (h, vh)
    t["resampler.attn.in_proj_weight"] = (3 * h, h)
    t["resampler.attn.in_proj_bias"] = (3 * h,)
    t["resampler.attn.out_proj.weight"] = (h, h)
    t["resampler.attn.out_proj.bias"] = (h,)
    for name in ("ln_q", "ln_kv", "ln_post"):
        t[f"resampler.{name}.weight"] = (h,)
        t[f"resampler.{name}.bias"] = (h,)
    t["resampler.proj"] = (h, h)
    return t


def _is_norm_weight(name: str) -> bool:
    module = name.rsplit(".", 2)[-2]
    return name.endswith(".weight") and ("norm" in module or module.startswith("ln_"))


def parameter_count(config: dict) -> int:
    total = 0
    for shape in checkpoint_layout(config).values():
        n = 1
        for d in shape:
            n *= d
        total += n
    return total


def write_random_weights(out_dir, config: dict, seed: int = 0, dtype: str = "float32") -> Path:
    """Write model.safetensors with small random values (norm weights 1, biases 0) in the checkpoint layout."""
    import numpy as np
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    tensors = {}
    for name, shape in checkpoint_layout(config).items():
        if _is_norm_weight(name):
            arr = np.ones(shape, dtype=np.float32)
        elif name.endswith("bias"):
            arr = np.zeros(shape, dtype=np.float32)
        else:
            arr = rng.normal(0.0, 0.02, size=shape).astype(np.float32)
        tensors[name] = arr.astype(dtype)
    path = Path(out_dir) / "model.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt"})
    return path
