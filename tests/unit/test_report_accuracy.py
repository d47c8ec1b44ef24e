"""docs/accuracy.md's promise: each figure's worst error stays within its stated bound (report/accuracy.BOUNDS),
and the shipped calibration is what `calibrate` fits on the field-case inputs today."""

from __future__ import annotations

from pathlib import Path

from diagnostics.commands.calibrate import samples_from_inputs
from diagnostics.predict import calibrate as cal
from diagnostics.predict.coefficients import SHIPPED, load_calibration
from diagnostics.report.accuracy import BOUNDS, summary_rows

ROOT = Path(__file__).resolve().parents[2]
INPUTS = ROOT / "tests" / "data" / "calibration" / "field-inputs.toml"


def test_every_figure_within_its_stated_bound_in_sample_and_leave_one_out():
    samples, _ = samples_from_inputs(INPUTS)
    rows = cal.evaluate(samples, cal.fit(samples))
    for entry in cal.term_summary(rows):
        in_bound, loo_bound = BOUNDS[entry["figure"]]
        assert entry["fitted"][1] <= in_bound, (entry["figure"], entry["fitted"])
        if loo_bound is not None:
            assert entry["loo"][1] <= loo_bound, (entry["figure"], entry["loo"])
    assert summary_rows(rows)


def test_shipped_calibration_is_the_current_fit():
    samples, _ = samples_from_inputs(INPUTS)
    fitted = cal.fit(samples).coefficients
    shipped = load_calibration(SHIPPED).coefficients
    assert abs(shipped.llm_activation_scale - fitted.llm_activation_scale) < 1e-4
    assert abs(shipped.non_torch_gib[0] - fitted.non_torch_gib[0]) < 1e-4
    assert len(load_calibration(SHIPPED).inputs) == len(samples)
