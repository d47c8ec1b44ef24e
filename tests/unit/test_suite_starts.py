"""suite/starts.py: the cache state each start gets and the worst-case request of a combination (no engine)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from diagnostics.cards import get_card
from diagnostics.suite import starts
from diagnostics.suite.matrix import Combination


def manager(tmp_path, state, **kw):
    return SimpleNamespace(run_dir=tmp_path, cache_state=state, warmup=None, **kw)


def test_cold_starts_get_fresh_caches_and_nothing_is_left(tmp_path):
    with starts.caches(manager(tmp_path, "cold"), Combination("a", {}), None) as env_for:
        first, second = env_for(0), env_for(1)
        Path(first["VLLM_CACHE_ROOT"]).mkdir(parents=True)
    assert first["VLLM_CACHE_ROOT"] != second["VLLM_CACHE_ROOT"]
    assert {first["TORCHINDUCTOR_CACHE_DIR"], second["TORCHINDUCTOR_CACHE_DIR"]}.isdisjoint({None})
    assert not (tmp_path / "caches" / "a").exists()


def test_warm_starts_share_the_cache_a_discarded_warm_up_filled(tmp_path, monkeypatch):
    seen = []

    def spec_for(suffix, env, warm_up=False):
        seen.append((suffix, env, warm_up))
        return SimpleNamespace(log_path=tmp_path / "logs" / f"a.{suffix}.log")

    monkeypatch.setattr(starts.launch, "run_start", lambda spec: SimpleNamespace(returncode=0, wall_s=9.0,
                                                                                 startup_s=7.5))
    m = manager(tmp_path, "warm")
    with starts.caches(m, Combination("a", {}), spec_for) as env_for:
        assert env_for(0) == env_for(1) == seen[0][1]
    assert seen == [("warmup", seen[0][1], True)]
    assert m.warmup == {"returncode": 0, "wall_s": 9.0, "startup_s": 7.5, "log_file": "logs/a.warmup.log"}
    with starts.caches(manager(tmp_path, "user"), Combination("a", {}), spec_for) as env_for:
        assert env_for(0) == {}


def test_worst_case_for_follows_the_option_then_the_matrix_then_the_card():
    def m(mode, card):
        return SimpleNamespace(worst_case_mode=mode, card=get_card(card), model_spec=lambda: None,
                               machine_info=lambda: {"vllm": "0.32.0"}, image_prompt=lambda: None)

    settings = {"max_model_len": 512, "max_num_seqs": 8}
    plain, off = Combination("a", settings), Combination("b", settings, worst_case=False)
    assert starts.worst_case_for(m("auto", "cpu"), plain, settings) is None  # the cpu card: off unless asked
    assert starts.worst_case_for(m("auto", "3090"), off, settings) is None  # the matrix said no
    case = starts.worst_case_for(m("auto", "3090"), plain, settings)  # GPU cards: on
    assert (case["prompt_tokens"], case["batch"], case["items"]) == (496, 4, [])
    assert starts.worst_case_for(m("on", "cpu"), off, settings)["max_model_len"] == 512
    with pytest.raises(pytest.fail.Exception, match="no worst-case request .*max_model_len"):
        starts.worst_case_for(m("on", "cpu"), plain, {})
