"""predict/basis.py: the basis-label contract, checked over many plans (issue 20 point 4).

A term labelled `exact` must come from a registered exact source (a checkpoint header, a setting vLLM takes as
is, vLLM's own code); config arithmetic, TP splits by rule and every figure of an architecture without rules are
not `exact`. The test would fail if, e.g., weights_term went back to "exact: parameter bytes as vLLM builds the
model" on the config path (the test below checks that such a label is refused)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diagnostics.models import get_model, stored_models
from header_kit import llama_dir, llama_gguf
from diagnostics.predict.basis import check
from diagnostics.predict.estimator import plan

DATA = Path(__file__).resolve().parents[1] / "data" / "models"
SETTINGS = ({}, {"tensor_parallel_size": 2}, {"enforce_eager": True, "max_model_len": 4096},
            {"kv_cache_memory_bytes": 2 * 2**30, "max_model_len": 4096}, {"num_gpu_blocks_override": 512})


def _configs(tmp: Path) -> list:
    text = [DATA / "qwen3-30b-a3b", DATA / "deepseek-v2-lite"]
    novel = tmp / "novel"
    novel.mkdir()
    cfg = json.loads((DATA / "qwen3-30b-a3b" / "config.json").read_text())
    (novel / "config.json").write_text(json.dumps({**cfg, "architectures": ["NovelForCausalLM"],
                                                   "model_type": "novel"}))
    gemma = tmp / "gemma2"
    gemma.mkdir()
    (gemma / "config.json").write_text(json.dumps({
        "architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2", "hidden_size": 2304, "num_hidden_layers": 26,
        "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "intermediate_size": 9216,
        "vocab_size": 256000, "sliding_window": 4096, "max_position_embeddings": 8192, "tie_word_embeddings": True}))
    return ["minicpm-v-2_6", *stored_models(), *text, novel, gemma]


@pytest.mark.parametrize("version", ["0.6.3", "0.32.0"])
def test_every_term_of_every_plan_keeps_the_contract(tmp_path, version):
    breaches, seen = [], 0
    for model in _configs(tmp_path):
        spec = get_model(model)
        for settings in SETTINGS:
            try:
                p = plan(spec, "h100-80", version, "serve", settings)
            except Exception as exc:  # a family without rules for this version: skip that pair, say why
                assert "vLLM" in str(exc) or "version" in str(exc), exc
                continue
            seen += 1
            for name, term in p.components.items():
                why = check(name, term.basis)
                if why:
                    breaches.append(f"{spec.name} {settings}: {why}")
            if spec.checkpoint is None:  # no header: nothing about the weights can be exact
                assert not p.components["weights"].basis.startswith("exact"), (spec.name, settings)
            if spec.decoder is not None and not spec.decoder.known:
                assert p.components["weights"].basis.startswith("estimate")
                assert p.components["kv_cache"].basis.startswith(("estimate", "derived: kv_cache_memory_bytes"))
            if settings.get("kv_cache_memory_bytes"):  # the user's setting, taken as given: not read, not computed
                assert p.components["kv_cache"].basis == "derived: kv_cache_memory_bytes (your setting, as vLLM takes it)"
            if not spec.is_multimodal:  # a text model has no encoder pass: no figure to call exact
                assert p.components["encoder_profile"].basis.startswith("derived: no encoder pass"), spec.name
    assert seen >= 35 and not breaches, breaches[:5]  # 0.6.3 predates most VLM families: fewer pairs


def test_the_contract_refuses_a_rule_labelled_exact_and_accepts_the_registered_sources():
    assert check("weights", "exact: parameter bytes as vLLM builds the model (TP shard)")
    assert check("weights", "exact") and check("weights", "guess: 3 GiB")
    assert check("weights", "exact: /x (1 safetensors file) headers (12 tensors, loaded as stored)") is None
    assert check("weights", "exact (vLLM 0.32's own code): parameter bytes on the meta device") is None
    assert check("kv_cache", "exact: kv_cache_memory_bytes")  # a user's setting is not read or computed: derived
    assert check("encoder_profile", "exact: none")  # no encoder is not a figure vLLM computed
    assert check("kv_cache", "derived: kv_cache_memory_bytes (your setting, as vLLM takes it)") is None
    assert check("kv_cache", "derived: util x total - (weights + non_torch + activation peak)") is None


def test_a_header_checkpoint_is_exact_only_when_loaded_as_stored(tmp_path):
    m = llama_dir(tmp_path, vocab=1024)
    p1 = plan(m, "h100-80", "0.32.0", "serve", {"max_model_len": 4096})
    p2 = plan(m, "h100-80", "0.32.0", "serve", {"max_model_len": 4096, "tensor_parallel_size": 2})
    assert p1.components["weights"].basis.startswith("derived")  # layer 2 past num_hidden_layers is dropped
    assert p2.components["weights"].basis.startswith("derived")
    assert check("weights", p1.components["weights"].basis) is None


def test_pipeline_stages_and_gguf_keep_the_contract(tmp_path):
    (tmp_path / "gguf").mkdir()
    llama_gguf(tmp_path / "gguf")
    (tmp_path / "kit").mkdir()
    models = [*_configs(tmp_path)[-4:], llama_dir(tmp_path / "kit", vocab=1024), tmp_path / "gguf"]
    breaches = []
    for model in models:
        spec = get_model(model)
        for settings in ({"pipeline_parallel_size": 2}, {"pipeline_parallel_size": 2, "tensor_parallel_size": 2}):
            p = plan(spec, "h100-80", "0.10.0", "serve", {**settings, "max_model_len": 2048})
            breaches += [f"{spec.name} {settings}: {why}" for name, term in p.components.items()
                         if (why := check(name, term.basis))]
            assert not p.components["weights"].basis.startswith("exact"), (spec.name, settings)
    assert not breaches, breaches[:5]
