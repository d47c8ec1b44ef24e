"""quantization_config -> bytes per stored weight, as vLLM's linear methods lay them out."""

from __future__ import annotations

import pytest

from diagnostics.errors import UsageError
from diagnostics.quantization import Quantization, decoder_linear_params, read_quantization


def test_no_quantization_config_is_none():
    assert read_quantization({"hidden_size": 8}) is None


@pytest.mark.parametrize("qc, method, bits, group, per_weight", [
    ({"quant_method": "awq", "bits": 4, "group_size": 128}, "awq", 4, 128, 0.5 + 2.5 / 128),
    ({"quant_method": "awq", "w_bit": 4, "q_group_size": 64}, "awq", 4, 64, 0.5 + 2.5 / 64),  # AutoAWQ's names
    ({"quant_method": "gptq", "bits": 8, "group_size": -1}, "gptq", 8, -1, 1.0),
    ({"quant_method": "fp8"}, "fp8", 8, -1, 1.0),
    ({"load_in_4bit": True}, "bitsandbytes", 4, 64, 0.5 + 1 / 16),
    ({"quant_method": "compressed-tensors",
      "config_groups": {"g0": {"weights": {"num_bits": 8, "type": "float"}}}}, "fp8", 8, -1, 1.0),
    ({"quant_method": "compressed-tensors",
      "config_groups": {"g0": {"weights": {"num_bits": 4, "type": "int", "group_size": 128}}}}, "gptq", 4, 128,
     0.5 + 2.5 / 128),
])
def test_read_quantization(qc, method, bits, group, per_weight):
    q = read_quantization({"quantization_config": qc})
    assert (q.method, q.bits, q.group_size) == (method, bits, group)
    assert q.bytes_per_weight() == pytest.approx(per_weight)


@pytest.mark.parametrize("qc, fragment", [
    ({"quant_method": "hqq"}, "accepted: awq"),
    ({"quant_method": "gptq", "bits": 5}, "bits 2, 3"),
    ({"quant_method": "awq", "bits": "four"}, "not an integer"),
    ("awq", "not a JSON object"),
    ({"quant_method": "compressed-tensors"}, "config_groups"),
])
def test_bad_quantization_configs_are_usage_errors(qc, fragment):
    with pytest.raises(UsageError, match=fragment):
        read_quantization({"quantization_config": qc})


def test_decoder_linear_params_counts_attention_and_mlp_projections():
    # Qwen2-7B: q/o 3584^2 each, k/v 3584 x 512 each, gate/up/down 3584 x 18944 each, 28 layers
    assert decoder_linear_params(3584, 28, 28, 4, 128, 18944) == 28 * (2 * 3584**2 + 2 * 3584 * 512 + 3 * 3584 * 18944)
    assert Quantization("awq", 4, 128).bytes_per_weight() < 0.53
