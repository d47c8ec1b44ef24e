"""explain/context.py: the model a log names (hub id, local copy's path, short name) and the plan for its settings."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from diagnostics.cards import get_card
from diagnostics.explain.context import record_model, record_plan, record_version
from diagnostics.logs.reader import read_log

LOGS = Path(__file__).resolve().parents[1] / "data" / "logs"


def _record(settings=None, evidence=(), error_line=None):
    return SimpleNamespace(settings=settings or {}, evidence=list(evidence), error_line=error_line)


def test_a_real_qwen25vl_log_is_planned_without_model():
    """vllm-project/vllm#12742 (turn 16): vLLM 0.7.3.dev242's engine config line, verbatim; it names the hub id."""
    record = read_log((LOGS / "real_qwen25vl_v073_config_line.log").read_text())
    model = record_model(record, None)
    assert model is not None and model.name == "qwen2.5-vl-7b" and model.family.variant == "qwen2.5-vl"
    plan = record_plan(record, model, get_card("a100-80"), record_version(record))
    assert plan is not None and plan.vllm_version == "0.7.3"
    assert (plan.settings["max_model_len"], plan.settings["enforce_eager"]) == (40000, True)  # what the log echoed


def test_a_local_copys_path_names_the_stored_model():
    # as vllm-project/vllm#16570 printed it: model='/data/ps/pretrained_model/Qwen/Qwen2.5-VL-72B-Instruct/'
    got = record_model(_record({"model": "/data/ps/pretrained_model/Qwen/Qwen2.5-VL-72B-Instruct/"}), None)
    assert got.name == "qwen2.5-vl-72b"
    assert record_model(_record({"model": "/models/gemma-3-27b-it"}), None).name == "gemma-3-27b"
    assert record_model(_record(error_line="loading openbmb/MiniCPM-V-4_5 failed"), None).name == "minicpm-v-4_5"
    assert record_model(_record({"model": "openbmb/MiniCPM-V-2_6"}), None).name == "openbmb/MiniCPM-V-2_6"


def test_a_model_no_family_stores_is_not_guessed():
    assert record_model(_record({"model": "Qwen/Qwen2.5-7B-Instruct"}), None) is None  # a text model, not stored
    assert record_model(_record({"model": "Qwen/Qwen2.5-VL-32B-Instruct"}), None) is None  # no stored 32B config
