"""Regenerate tests/data/vllm_exact/answers-<version>.json: real answers of diagnostics.vllm_exact.child for the
cases the unit tests read (the cpu_backend test checks their shape and figures against the live child).

usage: python tests/tools/vllm_exact_answers.py   (needs the installed vLLM; ~1-3 min on 2 cores)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from diagnostics.models import get_model
from diagnostics.predict.estimator import plan
from diagnostics.versions import installed_version
from diagnostics.vllm_exact import engine_settings, model_dir, run_child

TEXT = ROOT / "tests" / "data" / "models"
CARD = "a100-80"
# case -> (model, settings as the user gives them); planned on CARD, as tests/cpu_backend/test_vllm_exact_agreement.py does
CASES = {
    "deepseek-v2-lite": (str(TEXT / "deepseek-v2-lite"), {"max_model_len": 4096}),
    "qwen3-next-80b-a3b": (str(TEXT / "qwen3-next-80b-a3b"), {"max_model_len": 4096}),
    "gemma-2-9b": (str(TEXT / "gemma-2-9b"), {"max_model_len": 4096}),
    "qwen3-30b-a3b-tp4": (str(TEXT / "qwen3-30b-a3b"), {"max_model_len": 4096, "tensor_parallel_size": 4}),
    "qwen2.5-32b-tp2": (str(ROOT / "tests" / "data" / "calibration" / "models" / "qwen2.5-32b-instruct"),
                        {"max_model_len": 10000, "tensor_parallel_size": 2}),
    "qwen3-next-80b-a3b-tp4": (str(TEXT / "qwen3-next-80b-a3b"), {"max_model_len": 4096, "tensor_parallel_size": 4}),
    "gemma-3-4b": ("gemma-3-4b", {"max_model_len": 4096}),  # 29 sliding + 5 full text layers: padded groups
    "gemma-3-27b": ("gemma-3-27b", {"max_model_len": 4096}),
}


def main() -> int:
    version = installed_version()
    jobs = [{"model": str(model_dir(get_model(m))), "settings": engine_settings(plan(m, CARD, version, "llm", s).settings)}
            for m, s in CASES.values()]
    jobs.append({"model": str(model_dir(get_model("llama-3.2-11b-vision"))), "settings": {"max_model_len": 4096}})
    answers = run_child(jobs, timeout_s=1800)
    for job in jobs:  # stored relative to the repository (no machine paths in a committed file)
        job["model"] = str(Path(job["model"]).relative_to(ROOT))
    out = {"_source": f"diagnostics.vllm_exact.child answers (vLLM {version}, CPU) for the jobs beside them; "
                      "written by tests/tools/vllm_exact_answers.py",
           "_jobs": dict(zip(list(CASES) + ["llama-3.2-11b-vision"], jobs))}
    out.update(zip(list(CASES) + ["llama-3.2-11b-vision"], answers))
    path = ROOT / "tests" / "data" / "vllm_exact" / f"answers-{version}.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
