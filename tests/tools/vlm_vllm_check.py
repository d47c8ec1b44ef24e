"""What vLLM 0.32's own code computes for a VLM checkpoint directory: no engine start, no weights, CPU only.

For each settings row: EngineArgs(...).create_engine_config(LLM_CLASS) and vLLM's MultiModalBudget -> the resolved
architecture, max_num_batched_tokens, the max tokens per item of every active modality, the encoder budget, the
profiled modality and its dummy item count. With --meta: vLLM's model built on the meta device after a 1-rank gloo
init -> model class, parameter count and bytes, by top-level prefix. Installs the import-only torchvision stub
(diagnostics/kit/cpu_shim/torchvision_stub.py) first, since the CPU install cannot have torchvision.
Prints one JSON object on the last stdout line; a row that fails gives {"error": "..."} instead of numbers.

usage: python tests/tools/vlm_vllm_check.py MODEL_DIR ROWS_JSON [--meta [META_JSON]]
  ROWS_JSON: a list of EngineArgs kwargs dicts (model and load_format are filled in)
  META_JSON: EngineArgs kwargs for the meta build (default {"max_model_len": 4096}); e.g. hf_overrides
    {"tie_word_embeddings": false} builds what vLLM builds for a checkpoint that ships its own lm_head
    (ModelConfig.maybe_untie_word_embeddings, vllm/config/model.py:1242), which a weightless kit cannot show
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

SHIM_DIR = Path(__file__).resolve().parents[2] / "diagnostics" / "kit" / "cpu_shim"


def engine_config(model_dir: str, row: dict):
    from vllm.engine.arg_utils import EngineArgs
    from vllm.usage.usage_lib import UsageContext

    kwargs = {"trust_remote_code": True, "load_format": "dummy", **row}
    return EngineArgs(model=model_dir, **kwargs).create_engine_config(UsageContext.LLM_CLASS)


def budget_row(model_dir: str, row: dict) -> dict:
    from vllm.multimodal import MULTIMODAL_REGISTRY
    from vllm.multimodal.encoder_budget import MultiModalBudget

    vllm_config = engine_config(model_dir, row)
    budget = MultiModalBudget(vllm_config, MULTIMODAL_REGISTRY)
    out = {
        "architecture": vllm_config.model_config.architectures[0],
        "max_model_len": vllm_config.model_config.max_model_len,
        "max_num_batched_tokens": vllm_config.scheduler_config.max_num_batched_tokens,
        "max_num_seqs": vllm_config.scheduler_config.max_num_seqs,
        "encoder_budget": budget.encoder_compute_budget,
        "tokens_per_item": dict(budget.mm_max_toks_per_item),
        "items_per_prompt": dict(budget.mm_max_items_per_prompt),
        "items_per_batch": dict(budget.mm_max_items_per_batch),
    }
    if budget.mm_max_toks_per_item:
        modality = budget.get_modality_with_max_tokens()
        out["modality"] = modality
        out["items"] = budget.mm_max_items_per_batch[modality]
    return out


def meta_params(model_dir: str, row: dict) -> dict:
    from kit_vllm_check import count_meta_params  # beside this script: python puts its folder on sys.path

    return count_meta_params(engine_config(model_dir, {"enforce_eager": True, **row}))


def _guarded(fn, *args) -> dict:
    try:
        return fn(*args)
    except Exception as exc:  # report per row: one family's processor failing offline is a finding, not a crash
        if os.environ.get("VLM_CHECK_TRACEBACK"):
            import traceback

            traceback.print_exc()
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"}


def main(argv: list[str]) -> int:
    model_dir, rows = argv[0], json.loads(argv[1])
    result = {"rows": [_guarded(budget_row, model_dir, row) for row in rows]}
    if "--meta" in argv:
        after = argv[argv.index("--meta") + 1:]
        meta_row = json.loads(after[0]) if after else {"max_model_len": 4096}
        result["meta"] = _guarded(meta_params, model_dir, meta_row)
        if after:
            result["meta"]["settings"] = meta_row
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    # vLLM inspects model classes in a subprocess: the stub must be installed there too (sitecustomize)
    site_dir = Path(__import__("tempfile").mkdtemp(prefix="tv-stub-site-"))
    (site_dir / "sitecustomize.py").write_text(
        f"import sys\nsys.path.insert(0, {str(SHIM_DIR)!r})\nimport torchvision_stub\ntorchvision_stub.install(visible=True)\n")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(site_dir), os.environ.get("PYTHONPATH")) if p)
    sys.path.insert(0, str(SHIM_DIR))
    import torchvision_stub

    torchvision_stub.install(visible=True)
    sys.exit(main(sys.argv[1:]))
