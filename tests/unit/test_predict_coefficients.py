"""predict/coefficients.py: the one place estimate constants live, and plan() honours a replaced set."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from diagnostics.errors import UsageError
from diagnostics.predict.coefficients import DEFAULT, Coefficients
from diagnostics.predict.estimator import plan


def test_plan_uses_the_coefficients_it_is_given():
    base = plan("minicpm-v-2_6", "3090", "0.6.3", overrides={"max_model_len": 4096, "max_num_seqs": 32})
    more = dataclasses.replace(DEFAULT, non_torch_gib=(1.3, 1.1, 1.6), cuda_context_gib=(0.8, 0.7, 1.0))
    other = plan("minicpm-v-2_6", "3090", "0.6.3", overrides={"max_model_len": 4096, "max_num_seqs": 32},
                 coefficients=more)
    assert other.components["non_torch"].value_gib == pytest.approx(1.3)
    assert other.peak_gib == pytest.approx(base.peak_gib + 1.0 + 0.5)
    assert other.coefficients is more and base.coefficients is DEFAULT


def test_no_estimate_constant_outside_the_coefficients_module():
    """The term functions take every estimate from a Coefficients object (issue #8/#13)."""
    fields = {f.name.upper() for f in dataclasses.fields(Coefficients)}
    for path in (Path(__file__).resolve().parents[2] / "diagnostics" / "predict").glob("*.py"):
        if path.name == "coefficients.py":
            continue
        text = path.read_text()
        for name in fields | {"CUDA_CONTEXT_GIB", "NON_TORCH_GIB", "SAMPLER_BYTES_PER_LOGIT", "LLM_RANGE"}:
            assert f"{name} =" not in text, f"{path.name} defines {name}"


@pytest.mark.parametrize("text, says", [("", "(it is empty)"), ("[cards.x]\ntotal_gib = 20\n", "(it has [cards])")])
def test_a_toml_that_is_no_calibration_is_refused(tmp_path, text, says):
    """Any TOML planned with the built-in coefficients under the file's name (a newcomer's find, #9)."""
    from diagnostics.predict.coefficients import load_calibration

    path = tmp_path / "cal.toml"
    path.write_text(text)
    with pytest.raises(UsageError, match=re.escape(says)):
        load_calibration(path)


@pytest.mark.parametrize("value", ["1e308", "nan", "inf", "-inf"])
def test_a_coefficient_the_arithmetic_cannot_use_is_one_line(tmp_path, value):            # newcomer-3 #328, #330
    from diagnostics.errors import UsageError
    from diagnostics.predict.coefficients import load_calibration

    path = tmp_path / "cal.toml"
    path.write_text(f"[calibration]\nname = 'x'\n[coefficients]\nencoder_scale_linear = {value}\n")
    with pytest.raises(UsageError, match=r"encoder_scale_linear must be a finite number"):
        load_calibration(path)


@pytest.mark.parametrize("line, says", [
    ("encoder_scale_linear = -0.5", "encoder_scale_linear = -0.5 is negative; accepted: numbers >= 0"),
    ("non_torch_gib = [0.3, -0.1, 0.6]", "non_torch_gib = [0.3, -0.1, 0.6] is negative"),
    ("cuda_graph_v1 = [-0.5, 0.2, 512]", "cuda_graph_v1 = [-0.5, 0.2, 512] gives a negative CUDA-graph figure"),
])
def test_a_negative_coefficient_is_one_line(tmp_path, line, says):                       # newcomer pass
    from diagnostics.errors import UsageError
    from diagnostics.predict.coefficients import load_calibration

    path = tmp_path / "cal.toml"
    path.write_text(f"[calibration]\nname = 'x'\n[coefficients]\n{line}\n")
    with pytest.raises(UsageError, match=re.escape(says)) as err:
        load_calibration(path)
    assert "\n" not in str(err.value)
    # a fitted graph line may have a negative intercept while every captured batch's figure stays >= 0
    path.write_text("[calibration]\nname = 'x'\n[coefficients]\ncuda_graph_v1 = [-0.001, 0.8, 512]\n")
    assert load_calibration(path).coefficients.cuda_graph_v1 == (-0.001, 0.8, 512)
