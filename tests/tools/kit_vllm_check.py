"""Check a MiniCPM-V-2_6 kit directory through vLLM's own config, processor and multimodal-budget code.

No engine start, no weights: for each settings row, EngineArgs(...).create_engine_config(LLM_CLASS), vLLM's
MiniCPM-V processor, MultiModalBudget (encoder budget N, profiled items M, modality), and one dummy item of the
profiled modality. With --meta, vLLM's model is built on the meta device after a 1-rank gloo init and its
parameters counted. Prints one JSON object on the last stdout line.

usage: python tests/tools/kit_vllm_check.py KIT_DIR ROWS_JSON [--meta]
  ROWS_JSON: a list of EngineArgs kwargs dicts (model and trust_remote_code are filled in)
"""

from __future__ import annotations

import json
import os
import sys


def budget_row(kit_dir: str, row: dict) -> dict:
    from vllm.engine.arg_utils import EngineArgs
    from vllm.multimodal import MULTIMODAL_REGISTRY
    from vllm.multimodal.encoder_budget import MultiModalBudget
    from vllm.usage.usage_lib import UsageContext

    args = EngineArgs(model=kit_dir, trust_remote_code=True, load_format="dummy", **row)
    vllm_config = args.create_engine_config(UsageContext.LLM_CLASS)
    budget = MultiModalBudget(vllm_config, MULTIMODAL_REGISTRY)
    modality = budget.get_modality_with_max_tokens()
    processor = budget.processor
    dummy = processor.get_dummy_mm_inputs(mm_counts={modality: 1}, cache=None)
    item = dummy["mm_kwargs"][modality][0]
    key = "pixel_values" if modality == "image" else "video_pixel_values"
    slices = item[key].data
    placeholder = dummy["mm_placeholders"][modality][0]
    return {
        "architecture": vllm_config.model_config.architectures[0],
        "hf_config_class": type(vllm_config.model_config.hf_config).__name__,
        "max_num_batched_tokens": vllm_config.scheduler_config.max_num_batched_tokens,
        "max_num_seqs": vllm_config.scheduler_config.max_num_seqs,
        "encoder_budget": budget.get_encoder_budget(),
        "modality": modality,
        "items": budget.mm_max_items_per_batch[modality],
        "tokens_per_item": dict(budget.mm_max_toks_per_item),
        "items_per_prompt": dict(budget.mm_max_items_per_prompt),
        "dummy_slices": len(slices),
        "dummy_patches": int(sum(t.shape[-1] // t.shape[-2] for t in slices)),
        "dummy_largest_slice_patches": int(max(t.shape[-1] // t.shape[-2] for t in slices)),
        "dummy_placeholder_tokens": placeholder.length,
        "dummy_embeddings": placeholder.get_num_embeds(),
    }


def meta_params(kit_dir: str) -> dict:
    from vllm.engine.arg_utils import EngineArgs
    from vllm.usage.usage_lib import UsageContext

    vllm_config = EngineArgs(
        model=kit_dir, trust_remote_code=True, load_format="dummy", max_model_len=4096,
        limit_mm_per_prompt={"image": 1, "video": 0}, enforce_eager=True,
    ).create_engine_config(UsageContext.LLM_CLASS)
    return count_meta_params(vllm_config)


def count_meta_params(vllm_config) -> dict:
    """vLLM's model for `vllm_config` built on the meta device after a 1-rank gloo init (no weights, no memory):
    its class, parameter count, bytes, dtype and parameters per top-level prefix. Also used by vlm_vllm_check."""
    import tempfile

    import torch
    from vllm.config import set_current_vllm_config
    from vllm.distributed.parallel_state import ensure_model_parallel_initialized, init_distributed_environment
    from vllm.model_executor.model_loader.utils import initialize_model

    init_file = os.path.join(tempfile.mkdtemp(), "gloo-init")
    with set_current_vllm_config(vllm_config):
        init_distributed_environment(world_size=1, rank=0, local_rank=0,
                                     distributed_init_method=f"file://{init_file}", backend="gloo")
        ensure_model_parallel_initialized(1, 1)
        dtype = vllm_config.model_config.dtype
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            with torch.device("meta"):
                model = initialize_model(vllm_config=vllm_config)
        finally:
            torch.set_default_dtype(previous)
    params = {name: p for name, p in model.named_parameters()}
    by_prefix: dict[str, int] = {}
    for name, p in params.items():
        by_prefix[name.split(".")[0]] = by_prefix.get(name.split(".")[0], 0) + p.numel()
    return {
        "model_class": type(model).__name__,
        "params": sum(p.numel() for p in params.values()),
        "bytes": sum(p.numel() * p.element_size() for p in params.values()),
        "dtype": str(dtype),
        "by_prefix": by_prefix,
    }


def main(argv: list[str]) -> int:
    kit_dir, rows_json = argv[0], argv[1]
    rows = json.loads(rows_json)
    result = {"rows": [budget_row(kit_dir, row) for row in rows]}
    if "--meta" in argv:
        result["meta"] = meta_params(kit_dir)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    sys.exit(main(sys.argv[1:]))
