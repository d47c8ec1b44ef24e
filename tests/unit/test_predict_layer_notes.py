"""plan's layer-kind notes (diagnostics/predict/layer_notes.py): what the KV and activation figures do with sliding
windows, linear-attention state and MoE layers, said only where the model has them."""

from __future__ import annotations

from pathlib import Path

from diagnostics.models import get_model
from diagnostics.predict.estimator import plan

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "tests" / "data" / "models"


def notes(model, version="0.32.0") -> str:
    return "\n".join(plan(get_model(model), "a100-80", version, "llm", {"max_model_len": 4096}).notes)


def test_sliding_window_layers_are_grouped_as_vllms_hybrid_manager_groups_them():
    text = notes(MODELS / "gemma-2-9b")
    assert "sliding window" in text and "layers grouped" in text
    assert "whole length like full-attention layers" in notes(MODELS / "gemma-2-9b", "0.6.3")  # V0: no hybrid manager


def test_linear_attention_state_is_counted_from_the_state_pool_version_on():
    assert "gated delta net" in notes(MODELS / "qwen3-next-80b-a3b")


def test_moe_layers_name_the_fused_moe_scratch_and_dense_models_do_not():
    assert "MoE layers: the profile run's LLM pass" in notes(MODELS / "deepseek-v2-lite")
    dense = notes(MODELS / "qwen3-8b")
    assert "MoE layers" not in dense and "sliding window" not in dense and "linear attention" not in dense
