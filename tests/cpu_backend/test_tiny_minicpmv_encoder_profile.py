"""The encoder profile of a real vLLM engine (CPU backend) against the estimator, on the tiny MiniCPM-V-2_6.

The tiny kit model keeps the real token arithmetic (64 queries per 448-px slice, 9 slices + overview), so the
dummy-item counts vLLM prints are those of a real-size start with the same scheduler settings. The CPU worker runs
`profile_run` only in compile mode (it returns early when eager), so these starts leave out `enforce_eager`
(~40-50 s each on 2 cores). Each start goes through the suite's harness (run_start), its log through the log
reader, and the same settings through `plan` for vLLM 0.32: N and M must be equal.

Three rows start an engine (an image budget, video on, fewer slices: each changes what the profile run pushes);
the other rows go through vLLM's own MultiModalBudget for the same engine config (tests/tools/kit_vllm_check.py,
no start, a few seconds), which is where the engine takes N and M from. Each start costs about a minute of CI.
The video-on start then serves the worst-case request (suite/worst_case.py): 4 prompts of 4080 tokens, each with
the 448 x 4032 image and a 16-frame video, sampled with top_p/top_k/logprobs (issue 25).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from diagnostics.engine.launch import run_start
from diagnostics.suite.judge import outcome_of
from diagnostics.predict.estimator import plan
from diagnostics.predict.mm_fit import apply, fit_knob

pytestmark = [pytest.mark.cpu_engine, pytest.mark.slow]

COMPILE = {"enforce_eager": None, "dtype": "float32", "kv_cache_memory_bytes": 64 << 20}

CHECK_SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "kit_vllm_check.py"

# One axis changed per row (besides the baseline row), each a knob a user turns: what vLLM printed must follow.
STARTED = ("mbt2048", "video-on", "slices4")  # the rows that start a real engine; the rest: vLLM's budget classes
SETTINGS = {
    "mbt2048": {"max_model_len": 4096, "max_num_batched_tokens": 2048,
                "limit_mm_per_prompt": {"image": 1, "video": 0}},
    "mbt4096-seqs1-img8": {"max_model_len": 2048, "max_num_batched_tokens": 4096, "max_num_seqs": 1,
                           "limit_mm_per_prompt": {"image": 8, "video": 0}},
    "mbt8192-seqs2": {"max_model_len": 4096, "max_num_batched_tokens": 8192, "max_num_seqs": 2,
                      "limit_mm_per_prompt": {"image": 1, "video": 0}},
    "video-on": {"max_model_len": 4096, "max_num_batched_tokens": 2048,
                 "limit_mm_per_prompt": {"image": 1, "video": 1}},
    "mml1024-video-on": {"max_model_len": 1024, "max_num_batched_tokens": 2048,
                         "limit_mm_per_prompt": {"image": 1, "video": 1}},
    "slices4": {"max_model_len": 4096, "max_num_batched_tokens": 2048, "max_num_seqs": 16,
                "limit_mm_per_prompt": {"image": 1, "video": 0}, "mm_processor_kwargs": {"max_slice_nums": 4}},
}


# `plan --fit max_slice_nums` for the real MiniCPM-V-2_6 on an L4 (predict/mm_fit.py): the tiny kit keeps the real
# token arithmetic, so vLLM's budget for it at the answer and one slice above must be the fit's own plans' items.
FIT_HELD = {"max_model_len": 4096, "max_num_batched_tokens": 2048, "max_num_seqs": 256,
            "gpu_memory_utilization": 0.8, "limit_mm_per_prompt": {"image": 999, "video": 0}}
FIT = fit_knob("max_slice_nums", "minicpm-v-2_6", "l4", "0.32.0", "llm", FIT_HELD)
SETTINGS["fit-slices"] = apply(FIT.knob, FIT.value, FIT_HELD)
SETTINGS["fit-slices-above"] = apply(FIT.knob, FIT.value + 1, FIT_HELD)


@pytest.mark.parametrize("name", STARTED)
def test_encoder_budget_and_items_match_the_estimator(name, tiny_minicpmv26, cpu_start):
    settings = {**COMPILE, **SETTINGS[name]}
    spec = cpu_start(tiny_minicpmv26, name, request=False, timeout_s=300.0, trust_remote_code=True, **settings)
    if name == WORST_CASE_ROW:
        spec.worst_case = worst_case_for(tiny_minicpmv26, spec.settings)
    result = run_start(spec)
    record = result.log  # the launcher read the log once
    assert outcome_of(result, record.outcome) == "ok", (record.error_line, spec.log_path.read_text()[-3000:])

    # Predict from exactly what the engine was given (the CPU fixture adds its own max_num_seqs/max_model_len).
    predicted = plan(str(tiny_minicpmv26), "cpu", "0.32.0", "llm", spec.settings).profile
    printed = record.numbers
    assert (printed["encoder_budget_tokens"], printed["encoder_items"], printed["encoder_modality"]) == (
        predicted["encoder_budget_tokens"], predicted["encoder_items"], predicted["modality"]
    )
    if name == WORST_CASE_ROW:  # issue 25: the same start then served the worst-case request, exactly at length
        served = result.worst_case
        assert served["ok"] is True, served
        assert served["prompt_tokens"] == spec.worst_case["prompt_tokens"] == 4096 - 16 and served["batch"] == 4
        assert [(i["modality"], i["width"], i["height"], i["frames"]) for i in spec.worst_case["items"]] == [
            ("image", 448, 448 * 9, 1), ("video", 448, 448, 16)]


WORST_CASE_ROW = "video-on"


def worst_case_for(model_dir, settings: dict) -> dict:
    """The worst-case request the plugin would send (Manager.worst_case_for) for these settings of the tiny kit."""
    from diagnostics.cards import get_card
    from diagnostics.kit import IMAGE_PROMPT
    from diagnostics.models import get_model
    from diagnostics.suite.worst_case import worst_case

    case = worst_case(get_model(str(model_dir)), get_card("cpu"), "0.32.0", settings)
    return case.to_json() | {"placeholders": list(case.placeholders), "prompt": IMAGE_PROMPT}


def test_vllms_budget_classes_match_the_estimator_for_the_rows_not_started(tiny_minicpmv26, cpu_start, tmp_path):
    """The rows not started: vLLM's MultiModalBudget for the engine config each row's start would get (what the
    engine profiles with), one subprocess for all of them, against plan for the same settings."""
    names = [n for n in SETTINGS if n not in STARTED]
    rows = [cpu_start(tiny_minicpmv26, n, request=False, **{**COMPILE, **SETTINGS[n]}).settings for n in names]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "hf"))
    done = subprocess.run([sys.executable, str(CHECK_SCRIPT), str(tiny_minicpmv26), json.dumps(rows)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    got_rows = json.loads(done.stdout.strip().splitlines()[-1])["rows"]
    assert len(got_rows) == len(names) == 5
    for name, settings, got in zip(names, rows, got_rows):
        predicted = plan(str(tiny_minicpmv26), "cpu", "0.32.0", "llm", settings).profile
        assert (got["encoder_budget"], got["items"], got["modality"]) == (
            predicted["encoder_budget_tokens"], predicted["encoder_items"], predicted["modality"]), name
    by_name = dict(zip(names, got_rows))
    assert FIT.at.verdict == "ok" and FIT.above.verdict != "ok"
    for name, fitted in (("fit-slices", FIT.at), ("fit-slices-above", FIT.above)):
        got = by_name[name]
        assert (got["tokens_per_item"]["image"], got["encoder_budget"], got["items"], got["dummy_slices"]) == (
            fitted.profile["tokens_per_item"], fitted.profile["encoder_budget_tokens"],
            fitted.profile["encoder_items"], fitted.profile["encoder_slices"] // fitted.profile["encoder_items"]), name
