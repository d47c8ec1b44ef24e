"""Text models are planned only on vLLM releases whose model registry has their architecture and whose get_rope
knows their rope_scaling type (diagnostics.predict.architectures; data from tests/tools/text_arch_windows.py)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from diagnostics.cli import main
from diagnostics.errors import UsageError
from diagnostics.models import get_model, model_from_config
from diagnostics.predict.architectures import text_refusal, windows
from diagnostics.predict.changelog import changelog
from diagnostics.predict.estimator import plan
from diagnostics.versions import KNOWN_VERSIONS, parse_version

ROOT = Path(__file__).resolve().parents[2]
STORED = ROOT / "tests/data/models"
QWEN3_8B = get_model(STORED / "qwen3-8b")


def test_qwen3_is_refused_before_its_first_release_and_planned_from_it():
    with pytest.raises(UsageError, match=r"Qwen3ForCausalLM is in vLLM from 0\.8\.4 "
                                         r"\(vllm/model_executor/models/registry\.py\), not in 0\.6\.3; "
                                         r"accepted: --vllm 0\.8\.4 or later"):
        plan(QWEN3_8B, "a100-80", "0.6.3")
    for v in ("0.8.4", "0.8.5", "0.32.0"):
        assert plan(QWEN3_8B, "a100-80", v).verdict == "ok"


@pytest.mark.parametrize("model, refused, planned, match", [
    ("qwen3-30b-a3b", "0.6.3", "0.8.4", "Qwen3MoeForCausalLM is in vLLM from 0.8.4"),
    ("gemma-2-9b", "0.4.0", "0.5.1", r"Gemma2ForCausalLM is in vLLM from 0\.5\.1 \(vllm/model_executor/models/__init__"),
    ("qwen3-next-80b-a3b", "0.10.1", "0.10.2", "Qwen3NextForCausalLM is in vLLM from 0.10.2"),
    # Llama-3.1/3.2's rope_scaling {"rope_type": "llama3"}: get_rope has the branch from 0.5.3(.post1)
    ("llama-3.2-3b", "0.5.2", "0.5.3", r"rope_scaling type 'llama3' is in vLLM's get_rope from 0\.5\.3"),
])
def test_stored_text_models_outside_their_window_are_refused(model, refused, planned, match):
    m = get_model(STORED / model)
    with pytest.raises(UsageError, match=match):
        plan(m, "h100-80", refused)
    assert plan(m, "h100-80", planned).verdict in ("ok", "kv_too_small", "oom_weights")


def test_cli_refusal_is_one_line_and_exit_2(capsys):
    assert main(["plan", "--model", str(STORED / "qwen3-8b"), "--card", "a100-80", "--vllm", "0.6.3"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "accepted: --vllm 0.8.4 or later" in err and "Traceback" not in err


def test_changelog_shows_n_a_before_the_first_release():
    steps = changelog(QWEN3_8B, "a100-80", [v for v in KNOWN_VERSIONS if (0, 6, 0) <= parse_version(v) <= (0, 9, 0)])
    before = [s for s in steps if parse_version(s.version) < (0, 8, 4)]
    after = [s for s in steps if parse_version(s.version) >= (0, 8, 4)]
    assert before and after
    assert all(s.plan is None and "from 0.8.4" in s.refusal for s in before)
    assert all(s.plan is not None for s in after)


def test_a_removed_architecture_is_refused_after_its_last_release():
    m = dataclasses.replace(QWEN3_8B, architecture="Phi3SmallForCausalLM", name="phi3-small")
    assert windows()["architectures"]["Phi3SmallForCausalLM"] == {"since": "0.4.3", "last": "0.9.2"}
    assert text_refusal(m, "0.9.2") is None
    assert "accepted: --vllm 0.9.2 or earlier" in text_refusal(m, "0.10.0")


def test_an_architecture_no_release_registers_keeps_the_estimate_path():
    cfg = json.loads((STORED / "qwen3-8b/config.json").read_text())
    m = model_from_config({**cfg, "architectures": ["NoSuchForCausalLM"]}, name="x")
    assert text_refusal(m, "0.4.0") is None
    assert plan(m, "a100-80", "0.4.0").verdict == "ok"


def test_vlm_families_keep_their_own_windows():
    m = get_model("minicpm-v-2_6")
    assert m.family is not None and text_refusal(m, "0.4.0") is None


def test_data_lists_every_architecture_of_the_stored_text_models():
    data = windows()
    assert set(data["releases"]) <= set(KNOWN_VERSIONS) and len(data["releases"]) == len(KNOWN_VERSIONS)
    for cfg in sorted(STORED.glob("*/config.json")):
        for arch in json.loads(cfg.read_text())["architectures"]:
            assert arch in data["architectures"], (cfg, arch)
            assert data["architectures"][arch]["since"] in data["releases"]
