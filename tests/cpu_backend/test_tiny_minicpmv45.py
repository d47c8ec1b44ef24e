"""MiniCPM-V-4.5 through the whole harness on vLLM's CPU backend: a tiny MiniCPMV4_5, video on, one image request.

The tiny kit (diagnostics.kit.build_minicpmv26(version="4.5")) writes config.json `version` 4.5, so vLLM 0.32
builds MiniCPMV4_5 (minicpmv.py get_version_by_config / _SUPPORT_VERSION: a Qwen3 LLM with q/k RMSNorm and no qkv
bias, Resampler4_5 with its temporal position table) with MiniCPM-V's real token arithmetic (64 queries per 448-px
slice, 9 slices + overview, 16 frames of 64 tokens per dummy video). The CPU worker profiles the encoder only in
compile mode, so the start leaves out enforce_eager (~40-60 s on 2 cores); one start, video on, because the video
is the item this family profiles by default. What vLLM printed (encoder budget N, items M, modality) must equal
plan's figures for the same settings, and plan must have read the kit as MiniCPM-V-4.5 with vLLM's parameter count.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from diagnostics.engine.launch import run_start
from diagnostics.kit import IMAGE_PROMPT
from diagnostics.kit.weights import checkpoint_layout
from diagnostics.logs.reader import read_log
from diagnostics.models import get_model
from diagnostics.predict.estimator import plan
from diagnostics.suite.judge import outcome_of

pytestmark = [pytest.mark.cpu_engine, pytest.mark.slow]

SETTINGS = {"enforce_eager": None, "dtype": "float32", "kv_cache_memory_bytes": 64 << 20, "max_model_len": 4096,
            "max_num_seqs": 4, "max_num_batched_tokens": 2048, "limit_mm_per_prompt": {"image": 1, "video": 1},
            "trust_remote_code": True}


@pytest.fixture(scope="session")
def tiny_minicpmv45(cpu_vllm, tmp_path_factory):
    from diagnostics.kit import build_minicpmv26

    return build_minicpmv26(tmp_path_factory.mktemp("models") / "tiny-minicpmv45", size="tiny", weights="random",
                            version="4.5")


def test_tiny_minicpmv45_starts_and_its_dummy_items_equal_plan(tiny_minicpmv45, cpu_start):
    model = get_model(str(tiny_minicpmv45))
    assert model.family.variant == "minicpm-v-4_5"
    spec = cpu_start(tiny_minicpmv45, "tiny-minicpmv45", timeout_s=360.0, **SETTINGS)
    spec = dataclasses.replace(spec, prompt=IMAGE_PROMPT, image=True, max_tokens=4)
    result = run_start(spec)
    log = spec.log_path.read_text(errors="replace")
    record = read_log(log)
    assert outcome_of(result, record.outcome) == "ok", (record.error_line, log[-3000:])
    # vLLM logs the architecture (MiniCPMV), not the class it picks by version; the class shows in the weights: the
    # kit's random checkpoint has the Qwen3 layout (q_norm / k_norm, no qkv bias), which vLLM 0.32 loads strictly
    # (0.32 model_loader/default_loader.py:562-566: weights not initialized from the checkpoint raise;
    # models/utils.py:443 AutoWeightsLoader: a name without a parameter raises), so a start that loaded it built
    # MiniCPMV4_5, not MiniCPMV2_6's Qwen2.
    assert "Loading weights took" in log and "Resolved architecture: MiniCPMV" in log
    layout = checkpoint_layout(json.loads((tiny_minicpmv45 / "config.json").read_text()))
    assert "llm.model.layers.0.self_attn.q_norm.weight" in layout
    assert not any(k.startswith("llm.") and k.endswith("q_proj.bias") for k in layout)
    assert result.request and result.request["ok"], result.request

    predicted = plan(str(tiny_minicpmv45), "cpu", "0.32.0", "llm", spec.settings).profile
    printed = record.numbers
    assert predicted["tokens_per_modality"] == {"image": 640, "video": 1024}
    assert (printed["encoder_budget_tokens"], printed["encoder_items"], printed["encoder_modality"]) == (
        predicted["encoder_budget_tokens"], predicted["encoder_items"], predicted["modality"])
