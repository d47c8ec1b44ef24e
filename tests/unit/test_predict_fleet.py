"""predict/fleet.py: one settings set across cards and versions."""

from __future__ import annotations

import pytest

from diagnostics.cards import list_cards
from diagnostics.errors import UsageError
from diagnostics.predict.estimator import plan
from diagnostics.predict.fleet import expand_cards, expand_versions, fleet
from diagnostics.versions import KNOWN_VERSIONS

SETTINGS = {"max_model_len": 8192, "max_num_seqs": 16}


def test_all_cards_are_the_gpu_cards():
    cards = expand_cards("all")
    assert len(cards) == 19 and "cpu" not in {c.name for c in cards}  # 19 GPU cards since main added one
    assert [c.name for c in expand_cards("3090, 4090,l40s")] == ["3090", "4090", "l40s"]


def test_cards_file_adds_a_card_to_all(tmp_path):
    path = tmp_path / "cards.toml"
    path.write_text('[cards.my-card]\nlabel = "Mine"\ntotal_gib = 30.0\n')
    names = [c.name for c in expand_cards("all", path)]
    assert names[-1] == "my-card" and len(names) == 20  # 19 built-in GPU cards since main added one


def test_versions():
    assert expand_versions("all") == list(KNOWN_VERSIONS)
    assert expand_versions("v0.6.3, 0.32.0") == ["0.6.3", "0.32.0"]
    with pytest.raises(UsageError, match="accepted"):
        expand_versions("0.1.0")
    with pytest.raises(UsageError, match="unknown card 'nope'"):
        expand_cards("3090,nope")
    with pytest.raises(UsageError, match="names no card"):
        expand_cards(" , ")


def test_rows_are_the_plans():
    rows = fleet("minicpm-v-2_6", expand_cards("3090,h100-80"), ["0.6.3", "0.32.0"], "llm", SETTINGS)
    assert [(r.card.name, r.version) for r in rows] == [("3090", "0.6.3"), ("3090", "0.32.0"),
                                                         ("h100-80", "0.6.3"), ("h100-80", "0.32.0")]
    for r in rows:
        p = plan("minicpm-v-2_6", r.card, r.version, "llm", SETTINGS)
        doc = r.to_json()
        assert (doc["verdict"], doc["kv_cache_tokens"]) == (p.verdict, p.kv_cache_tokens)
        assert doc["max_concurrency"] == (round(p.kv_cache_tokens / 8192, 2) if p.kv_cache_tokens > 0 else 0.0)


def test_a_setting_a_version_lacks_is_a_row_not_a_crash():
    rows = fleet("minicpm-v-2_6", expand_cards("3090"), ["0.6.3", "0.32.0"], "llm",
                 {"kv_cache_memory_bytes": 2 << 30})
    assert rows[0].plan is None and "needs vLLM >= 0.10.2" in rows[0].error
    assert rows[0].to_json()["verdict"] == "n/a" and rows[1].plan is not None


def test_fit_per_row():
    rows = fleet("minicpm-v-2_6", expand_cards("3090,l40s"), ["0.32.0"], "llm", {"max_num_seqs": 16},
                 fit_setting="max_model_len")
    by_card = {r.card.name: r.to_json() for r in rows}
    assert by_card["l40s"]["value"] > by_card["3090"]["value"] > 0
    with pytest.raises(UsageError, match="together"):
        fleet("minicpm-v-2_6", expand_cards("3090"), ["0.32.0"], "llm", SETTINGS, fit_setting="max_model_len")
    assert len(list_cards()) == 20  # 19 GPU cards + cpu since main added one


def test_settings_vllm_refuses_are_a_row_in_vllms_words_not_ok():                          # newcomer-3 defect 1
    cards = expand_cards("3090,4090")
    overrides = {"max_model_len": 4096, "max_num_batched_tokens": 2048, "max_num_seqs": 8}
    rows = fleet("minicpm-v-2_6", cards, ["0.6.3", "0.32.0"], overrides=overrides)
    v0 = [r for r in rows if r.version == "0.6.3"]
    assert all(r.plan is None and "vLLM 0.6.3 refuses these settings at start-up: max_num_batched_tokens (2048) "
               "is smaller than max_model_len (4096)" in r.error for r in v0)
    assert all(r.plan is not None for r in rows if r.version == "0.32.0")  # V1 chunks prefill: it starts
    big = fleet("minicpm-v-2_6", expand_cards("a10,h100-80"), ["0.32.0"], overrides={"max_model_len": 1000000})
    assert all(r.plan is None and "greater than the derived max_model_len" in r.error for r in big)


def test_the_table_uses_the_calibration_it_is_given():                                    # newcomer-3 defect 3
    from diagnostics.predict.coefficients import load_calibration_arg

    (row,) = fleet("minicpm-v-2_6", expand_cards("3090"), ["0.6.3"], coefficients=load_calibration_arg("shipped"))
    (plain,) = fleet("minicpm-v-2_6", expand_cards("3090"), ["0.6.3"])
    assert row.plan.coefficients.name != plain.plan.coefficients.name and row.plan.peak_gib != plain.plan.peak_gib


@pytest.mark.parametrize("card, vllm, words", [                                             # newcomer-3 #106-#111
    ("", None, "--card '' names no card"),
    ("3090,3090", None, "names 3090 twice"),
    ("all,3090", None, "all stands alone"),
    ("3090", "0.6.3,0.6.3", "names 0.6.3 twice"),
    ("3090", "all,0.6.3", "all stands alone"),
])
def test_a_card_or_version_list_that_names_nothing_or_twice_is_refused(card, vllm, words):
    with pytest.raises(UsageError, match=words):
        expand_cards(card)
        expand_versions(vllm)


@pytest.mark.parametrize("text", ["..0.6.3", "0.6.3..", " .. "])
def test_a_range_with_a_missing_end_says_so(text):
    """It said "cannot read vLLM version ''" (newcomer pass)."""
    from diagnostics.predict.fleet import expand_versions

    with pytest.raises(UsageError, match="a range needs both ends; accepted: OLDER..NEWER"):
        expand_versions(text)


@pytest.mark.parametrize("text", ["0.6.3 0.7.0", "0.6.3garbage", "0.6.3;rm", "0.6.3,,0.7.0", "0.6.0..0.7.0..0.8.0"])
def test_a_vllm_value_with_anything_but_versions_is_refused_not_read_as_its_start(text):      # newcomer re-check
    with pytest.raises(UsageError):
        expand_versions(text)


@pytest.mark.parametrize("text, want", [("0.6.3.post1", "0.6.3"), ("v0.8.4", "0.8.4"), ("0.11.0rc1", "0.11.0"),
                                        ("0.6.3+cu121", "0.6.3")])
def test_the_version_spellings_users_type_are_read(text, want):
    assert expand_versions(text) == [want]
