"""plan's derived max_model_len and its refusal against vLLM's own `_get_and_verify_max_len` (the installed vLLM,
no weights): the length keys, model_max_length, rope scaling, and the words of the ValueError (issue #9)."""

from __future__ import annotations

import pytest

from diagnostics.models import model_from_config
from diagnostics.settings import vllm_refusal

BASE = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 256, "num_hidden_layers": 2,
        "num_attention_heads": 4, "intermediate_size": 512, "vocab_size": 1000, "max_position_embeddings": 8192}
CASES = [{}, {"n_positions": 4096}, {"seq_length": 2048, "max_seq_len": 16384}, {"model_max_length": 32768},
         {"rope_scaling": {"rope_type": "linear", "factor": 2.0}},
         {"rope_scaling": {"rope_type": "dynamic", "factor": 4.0}},
         {"rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8192}}]


def _vllm_max_len(extra: dict, max_model_len):
    transformers = pytest.importorskip("transformers")
    import vllm.config  # noqa: F401  (vLLM's config package first: the convertor module imports it back)
    from vllm.config.model import _get_and_verify_max_len
    from vllm.transformers_utils.config import patch_rope_parameters
    from vllm.transformers_utils.model_arch_config_convertor import ModelArchConfigConvertorBase

    cfg = {k: v for k, v in BASE.items() if k not in ("architectures", "model_type")}
    hf = transformers.LlamaConfig(**cfg, **extra)
    patch_rope_parameters(hf)
    arch = ModelArchConfigConvertorBase(hf, hf).convert()
    return _get_and_verify_max_len(hf, arch, None, max_model_len, False, None)


@pytest.mark.parametrize("extra", CASES, ids=["plain", "n_positions", "seq_length", "model_max_length", "linear",
                                              "dynamic", "yarn"])
def test_plan_derives_max_model_len_and_refuses_as_vllm_does(cpu_vllm, extra):
    model = model_from_config(dict(BASE, **extra))
    assert model.derived_max_model_len == _vllm_max_len(extra, None)
    with pytest.raises(ValueError) as refused:
        _vllm_max_len(extra, 10**6)
    ours = vllm_refusal({"max_model_len": 10**6, "max_num_batched_tokens": 10**6, "max_num_seqs": 8}, model)
    assert ours is not None and str(refused.value).startswith(ours.split(" To allow")[0])
