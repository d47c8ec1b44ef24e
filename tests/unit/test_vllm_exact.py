"""diagnostics.vllm_exact: when plan asks the installed vLLM, what it hands the child, and the cache.

The child's answers used here are real (tests/data/vllm_exact, checked against the live child by
tests/cpu_backend/test_vllm_exact_agreement.py); no vLLM is started by these tests except the one timed out on purpose."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from diagnostics import vllm_exact
from diagnostics.cli import main
from diagnostics.models import get_model
from diagnostics.predict.estimator import plan
from diagnostics.units import GiB
from diagnostics.versions import installed_version

DATA = Path(__file__).resolve().parents[1] / "data"
ANSWERS = json.loads((DATA / "vllm_exact" / "answers-0.32.0.json").read_text())
DS = DATA / "models" / "deepseek-v2-lite"


@pytest.fixture
def on(monkeypatch, tmp_path):
    monkeypatch.delenv(vllm_exact.OFF_ENV, raising=False)
    monkeypatch.setenv("VLLM_MEMCHECK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(vllm_exact, "installed_version", lambda: "0.32.0")
    return tmp_path / "cache" / "vllm-exact"


def test_applies_only_to_the_installed_version_and_can_be_turned_off(on, monkeypatch):
    assert vllm_exact.applies("0.32.0") and vllm_exact.applies("v0.32.0")
    assert not vllm_exact.applies("0.10.1")
    monkeypatch.setenv(vllm_exact.OFF_ENV, "off")
    assert not vllm_exact.applies("0.32.0")
    monkeypatch.delenv(vllm_exact.OFF_ENV)
    monkeypatch.setattr(vllm_exact, "installed_version", lambda: None)
    assert not vllm_exact.applies("0.32.0")


def test_the_child_gets_a_checkpoint_directory_and_the_settings_that_change_the_build():
    assert vllm_exact.model_dir(get_model("qwen2.5-vl-7b")).name == "qwen2.5-vl-7b"
    assert vllm_exact.model_dir(get_model("minicpm-v-2_6")) is None  # built in: no config.json to hand vLLM
    s = {"tensor_parallel_size": 2, "dtype": "auto", "max_model_len": 4096, "max_num_seqs": 8, "kv_cache_dtype": "fp8"}
    assert vllm_exact.engine_settings(s) == {"tensor_parallel_size": 2, "max_model_len": 4096, "kv_cache_dtype": "fp8"}


def test_cache_key_follows_config_bytes_version_and_settings(tmp_path):
    (tmp_path / "config.json").write_text('{"a": 1}')
    k = vllm_exact.cache_key(tmp_path, "0.32.0", {"max_model_len": 4096})
    assert k == vllm_exact.cache_key(tmp_path, "0.32.0", {"max_model_len": 4096})
    assert k != vllm_exact.cache_key(tmp_path, "0.31.0", {"max_model_len": 4096})
    assert k != vllm_exact.cache_key(tmp_path, "0.32.0", {"max_model_len": 8192})
    (tmp_path / "config.json").write_text('{"a": 2}')
    assert k != vllm_exact.cache_key(tmp_path, "0.32.0", {"max_model_len": 4096})


def test_a_new_child_revision_leaves_older_cached_answers_unread(tmp_path, monkeypatch):
    """Answers cached before the child sized hybrid state pools on the GPU's blocks hold the old Qwen3-Next figure."""
    (tmp_path / "config.json").write_text('{"a": 1}')
    k = vllm_exact.cache_key(tmp_path, "0.32.0", {"max_model_len": 4096})
    monkeypatch.setattr(vllm_exact, "CHILD_REVISION", 1)
    assert vllm_exact.cache_key(tmp_path, "0.32.0", {"max_model_len": 4096}) != k


def _resolved(settings: dict, model: Path = DS) -> dict:
    return plan(str(model), "a100-80", "0.32.0", "llm", settings).settings


def _seed(cache: Path, settings: dict, answer: dict, model: Path = DS) -> None:
    """The answer where plan will look for it: keyed by the settings as plan resolves them."""
    cache.mkdir(parents=True, exist_ok=True)
    key = vllm_exact.cache_key(model, "0.32.0", vllm_exact.engine_settings(_resolved(settings, model)))
    (cache / f"{key}.json").write_text(json.dumps(answer))


def _no_child(*_a, **_k):
    raise AssertionError("the cached answer should have been used")


def test_a_cached_answer_is_used_without_a_subprocess(on, monkeypatch):
    _seed(on, {"max_model_len": 4096}, ANSWERS["deepseek-v2-lite"])
    monkeypatch.setattr(vllm_exact, "run_child", _no_child)
    got, why = vllm_exact.ask(get_model(str(DS)), "0.32.0", _resolved({"max_model_len": 4096}))
    assert why is None and got.kv_bytes_per_token == 31104


def test_a_model_vllm_cannot_build_gives_the_reason(on, monkeypatch):
    _seed(on, {"max_model_len": 4096}, ANSWERS["llama-3.2-11b-vision"])
    monkeypatch.setattr(vllm_exact, "run_child", _no_child)
    got, why = vllm_exact.ask(get_model(str(DS)), "0.32.0", _resolved({"max_model_len": 4096}))
    assert got is None and "could not build" in why and "ValidationError" in why


def test_pipeline_stages_are_not_asked_of_vllms_whole_model_build(on, monkeypatch):
    monkeypatch.setattr(vllm_exact, "run_child", _no_child)
    got, why = vllm_exact.ask(get_model(str(DS)), "0.32.0", _resolved({"pipeline_parallel_size": 2}))
    assert got is None and "pipeline stage" in why


def test_a_child_past_its_timeout_is_a_reason_not_a_crash(on):
    got, why = vllm_exact.ask(get_model(str(DS)), "0.32.0", {"max_model_len": 1234}, timeout_s=0.01)
    assert got is None and "timed out" in why
    assert not any(on.glob("*.json")) if on.exists() else True  # a timeout is not cached


def test_plan_uses_vllms_figures_for_the_installed_version_unless_told_not_to(on, monkeypatch, capsys):
    settings = {"max_model_len": 4096}
    _seed(on, settings, ANSWERS["deepseek-v2-lite"])
    monkeypatch.setattr(vllm_exact, "run_child", _no_child)
    argv = ["plan", "--model", str(DS), "--card", "a100-80", "--vllm", "0.32.0", "--set", "max_model_len=4096"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "exact (vLLM 0.32.0's own code)" in text and "31,104 B/token" in text
    assert main(argv + ["--no-vllm-exact"]) == 0
    assert "exact (vLLM 0.32.0's own code)" not in capsys.readouterr().out
    assert main(argv[:-4] + ["--vllm", "0.10.1", "--set", "max_model_len=4096"]) == 0  # another version: pure rules
    assert "own code" not in capsys.readouterr().out


def test_the_exact_weights_reach_the_json_answer(on, monkeypatch, capsys):
    _seed(on, {"max_model_len": 4096}, ANSWERS["deepseek-v2-lite"])
    monkeypatch.setattr(vllm_exact, "run_child", _no_child)
    assert main(["plan", "--model", str(DS), "--card", "a100-80", "--vllm", "0.32.0", "--set", "max_model_len=4096",
                 "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    w = ANSWERS["deepseek-v2-lite"]["weights"]
    assert got["components"]["weights_gib"] == round((w["param_bytes"] + w["buffer_bytes"]) / GiB, 2)


def test_installed_version_is_read_without_importing_vllm():
    assert installed_version() is None or "vllm" not in os.environ.get("PYTHONPATH", "")


def test_plan_fit_searches_with_vllms_figures(on, monkeypatch, capsys):
    """Gemma 2: vLLM sizes its sliding-window pool itself (349,440 B/token at 4096 on the CPU's blocks), and its
    weights are its parameters + buffers (4 MiB of rotary caches): the fit's plans must show vLLM's figures."""
    gemma = DATA / "models" / "gemma-2-9b"
    _seed(on, {"max_model_len": 4096}, ANSWERS["gemma-2-9b"], gemma)
    monkeypatch.setattr(vllm_exact, "run_child", _no_child)
    argv = ["plan", "--model", str(gemma), "--card", "a100-80", "--vllm", "0.32.0", "--set", "max_model_len=4096",
            "--fit", "max_num_seqs", "--json"]
    assert main(argv) == 0
    exact_fit = json.loads(capsys.readouterr().out)
    assert main(argv + ["--no-vllm-exact"]) == 0
    pure_fit = json.loads(capsys.readouterr().out)
    w = ANSWERS["gemma-2-9b"]["weights"]
    assert exact_fit["at"]["components"]["weights_gib"] == round((w["param_bytes"] + w["buffer_bytes"]) / GiB, 2)
    assert exact_fit["at"]["kv_cache_tokens"] != pure_fit["at"]["kv_cache_tokens"]


def test_a_stored_directory_is_built_as_the_real_checkpoint_with_the_familys_hf_overrides(tmp_path):
    """Mistral-Small-3.1's checkpoint ships lm_head.weight, so vLLM 0.32 unties the head; its stored directory has no
    weights and vLLM would tie it (23,340,272,640 instead of 24,011,361,280 parameters), unless told."""
    from diagnostics.models import STORED_DIR, get_model
    from diagnostics.predict.estimator import plan
    from diagnostics.vllm_exact import engine_settings

    p = plan("mistral-small-3.1-24b", "a100-80", "0.32.0", "llm", {"max_model_len": 4096})
    assert engine_settings(p.settings, p.model)["hf_overrides"] == {"tie_word_embeddings": False}
    assert "hf_overrides" not in engine_settings(p.settings)  # no model: plan's settings alone
    copy = tmp_path / "Mistral-Small-3.1-24B-Instruct-2503"  # the user's own directory: vLLM reads its weights
    copy.mkdir()
    (copy / "config.json").write_text((STORED_DIR / "mistral-small-3.1-24b" / "config.json").read_text())
    local = get_model(str(copy))
    assert "hf_overrides" not in engine_settings(p.settings, local)
    g = plan("gemma-3-4b", "a100-80", "0.32.0", "llm", {"max_model_len": 4096})
    assert "hf_overrides" not in engine_settings(g.settings, g.model)
