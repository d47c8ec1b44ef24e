"""diagnostics.explain.search: culprits and the smallest fix by counterfactual from a plan (the estimator)."""

from __future__ import annotations

import pytest

from diagnostics import explain
from diagnostics.errors import UsageError
from diagnostics.explain.terms import UTIL_RAISE_CURES, util_direction
from diagnostics.predict import estimator

MINICPM = "minicpm-v-2_6"


def _plan(card, version, **overrides):
    return estimator.plan(MINICPM, card, version, "llm", overrides=overrides)


@pytest.mark.parametrize("version", ["0.6.1", "0.6.3"])
def test_seed_3090_defaults_blame_seqs_and_len_and_the_fix_fits(version):
    p = _plan("3090", version)
    assert p.verdict != "ok"
    e = explain_plan_checked(p)
    names = [c.setting for c in e.culprits]
    assert "max_num_seqs" in names and "max_model_len" in names
    assert e.fix and _plan("3090", version, **e.fix).verdict == "ok"
    # the seed's own fix fits too
    assert _plan("3090", version, max_model_len=4096, max_num_seqs=32, gpu_memory_utilization=1.0).verdict == "ok"
    seqs = next(c for c in e.culprits if c.setting == "max_num_seqs")
    assert seqs.value == 256 and seqs.suggested < 256
    assert "256" in seqs.why and _fmt_int(p.profile["vit_tokens"]) in seqs.why
    assert f"{p.card.total_gib:.2f}" in seqs.why


def explain_plan_checked(p):
    e = explain.explain_plan(p)
    assert e.outcome == p.verdict and e.basis == "estimate"
    if e.fix and len(e.fix) > 1:  # minimal: no strict subset of a combined fix is enough
        for k in e.fix:
            rest = {kk: v for kk, v in e.fix.items() if kk != k}
            assert estimator.plan(p.model, p.card, p.vllm_version, p.entrypoint,
                                  overrides={**p.overrides, **rest}).verdict != "ok", (k, e.fix)
    for c in e.culprits:  # every "fixes alone" culprit really does
        if c.fixes_alone:
            q = estimator.plan(p.model, p.card, p.vllm_version, p.entrypoint,
                               overrides={**p.overrides, c.setting: c.suggested})
            assert q.verdict == "ok", c
    effects = [c.effect_gib for c in e.culprits]
    assert effects == sorted(effects, reverse=True)
    return e


def _fmt_int(n) -> str:
    return f"{int(n):,}"


def test_l20_defaults_fail_in_the_profile_run_vllm_7721():
    p = _plan("l20", "0.5.5")
    assert p.verdict == "oom_profile"
    e = explain_plan_checked(p)
    assert e.culprits and all(c.setting != "gpu_memory_utilization" for c in e.culprits)


PROFILE_OOM_GRID = [("3090", "0.5.5", {}), ("3090", "0.6.3", {}), ("a10", "0.6.1", {"max_model_len": 2048}),
                    ("t4", "0.6.3", {}), ("l20", "0.6.3", {}), ("3090", "0.8.5", {}), ("4090", "0.33.0", {}),
                    ("l4", "0.33.0", {"max_num_batched_tokens": 32768}), ("3090", "0.10.2", {})]


def test_utilization_is_never_offered_for_a_profile_run_oom():
    seen = 0
    for card, version, ov in PROFILE_OOM_GRID:
        p = _plan(card, version, **ov)
        if p.verdict != "oom_profile":
            continue
        seen += 1
        e = explain.explain_plan(p)
        assert all(c.setting != "gpu_memory_utilization" for c in e.culprits), (card, version, ov)
        if "gpu_memory_utilization" in e.fix:  # only as a follow-up KV cure in a combination
            rest = {k: v for k, v in e.fix.items() if k != "gpu_memory_utilization"}
            q = _plan(card, version, **ov, **rest)
            assert q.verdict in UTIL_RAISE_CURES, (card, version, q.verdict)
    assert seen >= 3


def test_no_kv_cache_plan_offers_raising_utilization():
    found = None
    for card, version in (("3090", "0.6.3"), ("3090", "0.33.0"), ("a100-80", "0.33.0"), ("l40s", "0.8.5")):
        for util in (0.3, 0.4, 0.5, 0.6, 0.65, 0.7, 0.75):
            p = _plan(card, version, gpu_memory_utilization=util, max_num_seqs=16, max_model_len=4096)
            if p.verdict == "no_kv_cache":
                found = p
                break
        if found:
            break
    assert found is not None, "the estimator predicts no_kv_cache for none of the low-utilization plans"
    e = explain_plan_checked(found)
    u = next(c for c in e.culprits if c.setting == "gpu_memory_utilization")
    assert u.suggested > u.value and u.term == "budget"


def test_cuda_graph_oom_v0_plan_offers_lowering_utilization():
    found = None
    # a small profile (chunked prefill: MBT 512) leaves little freed activation memory for the graphs
    for card in ("3090", "4090", "a10", "l4", "a100-40"):
        for util in (1.0, 0.99, 0.98, 0.97, 0.96, 0.95):
            # (audit a3: a user's chunked prefill keeps the 5120 multimodal floor, so MBT 512 is set explicitly)
            p = _plan(card, "0.6.3", gpu_memory_utilization=util, max_model_len=4096, enable_chunked_prefill=True,
                      max_num_batched_tokens=512)
            if p.verdict == "oom_cuda_graph":
                found = p
                break
        if found:
            break
    assert found is not None, "the estimator predicts oom_cuda_graph for no V0 plan with utilization near 1"
    e = explain_plan_checked(found)
    u = next((c for c in e.culprits if c.setting == "gpu_memory_utilization"), None)
    eager = next((c for c in e.culprits if c.setting == "enforce_eager"), None)
    assert u is not None and u.suggested < u.value
    assert eager is not None and eager.suggested is True


def test_ok_plan_has_no_culprits():
    p = _plan("a100-80", "0.6.3", max_model_len=4096, max_num_seqs=32)
    assert p.verdict == "ok"
    e = explain.explain_plan(p)
    assert e.culprits == [] and e.fix == {} and "start" in e.summary


def test_sweep_every_fix_fits_and_advice_direction_holds():
    from diagnostics.cards import list_cards
    from diagnostics.versions import KNOWN_VERSIONS

    failures = fixes = 0
    for card in [c.name for c in list_cards() if not c.is_cpu]:
        for version in KNOWN_VERSIONS[::6]:
            for ov in ({}, {"max_model_len": 4096}, {"gpu_memory_utilization": 0.5},
                       {"max_num_seqs": 32, "gpu_memory_utilization": 0.98}):
                try:
                    p = _plan(card, version, **ov)
                except UsageError as err:  # MiniCPM-V before 0.5.4: refused, as every family outside its window
                    assert "has no model class" in str(err)
                    continue
                e = explain.explain_plan(p)
                assert e.outcome == p.verdict
                if p.verdict == "ok" or p.verdict == "error":
                    continue
                failures += 1
                for c in e.culprits:
                    if c.setting == "gpu_memory_utilization":
                        d = util_direction(p.verdict, p.engine)
                        assert d != 0 and (c.suggested - c.value) * d > 0, (card, version, ov, p.verdict, c)
                if e.fix:
                    fixes += 1
                    q = estimator.plan(p.model, p.card, p.vllm_version, p.entrypoint,
                                       overrides={**p.overrides, **e.fix})
                    assert q.verdict == "ok", (card, version, ov, e.fix, q.verdict)
    assert failures > 50 and fixes > failures / 2


def test_explainer_imports_neither_torch_nor_vllm():
    import subprocess
    import sys

    code = ("import sys, diagnostics.explain as e, diagnostics.predict.estimator as est; "
            "e.explain_plan(est.plan('minicpm-v-2_6', '3090', '0.6.3')); "
            "print(any(m == 'torch' or m.startswith(('torch.', 'vllm')) for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"




@pytest.mark.parametrize("card, half", [("3090", "bfloat16"), ("a10", "bfloat16")])
def test_issue11_float32_is_named_as_the_cause_of_oom_weights(card, half):
    # dtype=float32 doubles the weights (30.17 GiB); bfloat16 (15.09 GiB) fits these cards
    p = estimator.plan("minicpm-v-2_6", card, "0.33.0", overrides={"dtype": "float32"})
    e = explain.explain_plan(p)
    assert p.verdict == "oom_weights"
    assert "in float32" in e.summary and f"dtype={half} halves them" in e.summary
    assert e.fix.get("dtype") == half  # then whatever fails next, e.g. the profile run, is fixed too
    assert estimator.plan("minicpm-v-2_6", card, "0.33.0", overrides={"dtype": "float32", **e.fix}).verdict == "ok"
    assert [c.setting for c in e.culprits][:1] == ["dtype"]


def test_issue11_float32_on_a_card_bf16_does_not_fit_still_names_the_dtype():
    p = estimator.plan("minicpm-v-2_6", "t4", "0.33.0", overrides={"dtype": "float32"})
    e = explain.explain_plan(p)
    assert "dtype=float16 halves them" in e.summary and e.fix == {}  # T4: float16; 15.09 GiB still > 14.75


def test_a_plan_without_memory_verdict_keeps_its_notes_apart():
    """MiniCPM-V on V1 before 0.8.3 cannot start (not memory): its notes ran together ("...not memory CUDA ...")."""
    from diagnostics.explain.search import explain_plan
    from diagnostics.predict.estimator import plan

    summary = explain_plan(plan("minicpm-v-2_6", "3090", "0.7.3", overrides={"use_v1": True})).summary
    assert "a reason that is not memory. " in summary and "memory CUDA" not in summary
