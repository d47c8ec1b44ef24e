"""vLLM 0.32's multimodal budget for a Kimi-VL directory whose processor (the checkpoint's remote code) is absent.

vlm_vllm_check.py cannot process Kimi-VL's dummy image offline: KimiVLProcessor / KimiVLImageProcessor are remote
code that the stored files do not ship. vLLM itself counts the image's tokens with its own formula
(kimi_vl.py KimiVLProcessingInfo.get_num_image_tokens, from the processor's patch_size, merge_kernel_size and
in_token_limit) on its own dummy size (MaxImageTokenMeta, 1024 x 1024). This tool runs those two pieces of vLLM with
the three values read from the directory's preprocessor_config.json standing in for the processor object, and then
vLLM's MultiModalBudget as vlm_vllm_check.budget_row does (encoder budget, items per prompt and batch). What it does
not run: the HF processor's pixel path (nothing of it changes a token count in vLLM's formula).

usage: python tests/tools/kimi_vl_budget_check.py MODEL_DIR ROWS_JSON   (last stdout line: {"rows": [...]})
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace


def install(model_dir: str) -> None:
    """Point vLLM's KimiVLProcessingInfo at the stored processor values and its budget at vLLM's formula."""
    import vllm.multimodal.encoder_budget as eb
    from vllm.model_executor.models import kimi_vl

    pre = json.loads((Path(model_dir) / "preprocessor_config.json").read_text())
    image_processor = SimpleNamespace(patch_size=int(pre["patch_size"]), in_token_limit=int(pre["in_token_limit"]),
                                      merge_kernel_size=list(pre["merge_kernel_size"]))
    kimi_vl.KimiVLProcessingInfo.get_hf_processor = lambda self, **kw: SimpleNamespace(
        image_processor=image_processor, image_token="<|media_pad|>")

    def max_tokens(processor, mm_counts, cache):
        meta = kimi_vl.MaxImageTokenMeta()
        return {"image": processor.info.get_num_image_tokens(image_width=meta.width, image_height=meta.height)}

    eb.get_mm_max_toks_per_item = max_tokens


def main(argv: list[str]) -> int:
    model_dir, rows = argv[0], json.loads(argv[1])
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from vlm_vllm_check import _guarded, budget_row

    install(model_dir)
    print(json.dumps({"rows": [_guarded(budget_row, model_dir, row) for row in rows]}))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    sys.exit(main(sys.argv[1:]))
