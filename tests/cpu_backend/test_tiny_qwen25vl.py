"""A second VLM family through the whole harness on vLLM's CPU backend: a tiny Qwen2.5-VL, one image request.

The tiny model (diagnostics.kit.vlm.build_tiny_qwen25vl) keeps Qwen2.5-VL's token arithmetic (14 px patches,
2 x 2 merge) with max_pixels 64 x 28 x 28, so its largest dummy image is 64 tokens. The CPU worker profiles the
encoder only in compile mode, so this start leaves out enforce_eager (~40-60 s on 2 cores). The engine gets the
kit's CPU shim with the torchvision stub made visible (transformers builds video processors only then); the kit
names transformers' PIL image processor through auto_map, hence
trust_remote_code. Video stays off: a dummy video would run torchvision code the CPU install does not have.
What vLLM printed (encoder budget N, items M, modality) must equal plan's figures for the same settings.
"""

from __future__ import annotations

import dataclasses

import pytest

from diagnostics.engine.launch import run_start
from diagnostics.kit.vlm import QWEN_IMAGE_PROMPT
from diagnostics.logs.reader import read_log
from diagnostics.predict.estimator import plan
from diagnostics.suite.judge import outcome_of

pytestmark = [pytest.mark.cpu_engine, pytest.mark.slow]

SETTINGS = {"enforce_eager": None, "dtype": "float32", "kv_cache_memory_bytes": 64 << 20, "max_model_len": 4096,
            "max_num_seqs": 4, "max_num_batched_tokens": 2048, "limit_mm_per_prompt": {"image": 1, "video": 0},
            "trust_remote_code": True}


@pytest.fixture(scope="session")
def tiny_qwen25vl(cpu_vllm, tmp_path_factory):
    from diagnostics.kit.vlm import build_tiny_qwen25vl

    return build_tiny_qwen25vl(tmp_path_factory.mktemp("models") / "tiny-qwen25vl")


def test_tiny_qwen25vl_answers_an_image_and_its_encoder_profile_equals_plan(tiny_qwen25vl, cpu_start):
    spec = cpu_start(tiny_qwen25vl, "tiny-qwen25vl", timeout_s=360.0, **SETTINGS)
    spec = dataclasses.replace(spec, prompt=QWEN_IMAGE_PROMPT, image=True, max_tokens=4,
                               env={"VLLM_MEMCHECK_TORCHVISION_STUB": "visible"})
    result = run_start(spec)
    log = spec.log_path.read_text(errors="replace")
    record = read_log(log)
    assert outcome_of(result, record.outcome) == "ok", (record.error_line, log[-3000:])
    assert result.request and result.request["ok"], result.request

    predicted = plan(str(tiny_qwen25vl), "cpu", "0.32.0", "llm", spec.settings).profile
    printed = record.numbers
    assert predicted["tokens_per_item"] == 64
    assert (printed["encoder_budget_tokens"], printed["encoder_items"], printed["encoder_modality"]) == (
        predicted["encoder_budget_tokens"], predicted["encoder_items"], predicted["modality"])
