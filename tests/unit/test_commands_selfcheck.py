"""`python -m diagnostics selfcheck`: the table, --json, exit 1 when measurement cannot be trusted, one line and
exit 2 without a GPU. The real nvidia-ml-py runs over a fake driver and a fake allocator
(tests/unit/fake_nvml_driver.py)."""

from __future__ import annotations

import argparse
import json

import pytest
from fake_nvml_driver import FakeAllocator, FakeDriver, FakeGpu

from diagnostics.cli import main
from diagnostics.commands import selfcheck
from diagnostics.engine import selfcheck as sc
from diagnostics.errors import UsageError
from diagnostics.units import GiB, MiB

RTX3090 = ("NVIDIA GeForce RTX 3090", int(23.69 * GiB))


@pytest.fixture
def box(monkeypatch):
    """box(*gpus) -> (driver, the real pynvml module talking to it); a gpu is (name, total)."""
    def make(*gpus):
        driver = FakeDriver([FakeGpu(name=name, total=total) for name, total in gpus])
        return driver, driver.install(monkeypatch)
    return make



@pytest.fixture(autouse=True)
def slow_enough(monkeypatch):
    """The whole-run tests hold the planted allocation 100 ms: a loaded CI box may starve the sampler thread for
    more than 10 ms (the 10 ms figure itself is test_short_allocation_at_10_ms_is_caught_by_the_sampler's)."""
    monkeypatch.setattr(sc.__name__ + ".PLANTED_HOLD_S", 0.1)


def _args(**kw):
    return argparse.Namespace(**{"card": "auto", "cards": None, "json": False, **kw})


def test_table_and_exit_0_on_a_sound_box(capsys, box):
    driver, nvml = box(RTX3090)
    assert selfcheck.run(_args(), FakeAllocator(driver), nvml) == 0
    out = capsys.readouterr().out
    for name in ("device", "per-process", "known allocation", "short allocation", "back at baseline"):
        assert name in out
    assert "card 3090" in out and out.rstrip().endswith("measurement can be trusted")


def test_json_and_exit_1_when_a_check_fails(capsys, box):
    driver, nvml = box(RTX3090)
    assert selfcheck.run(_args(json=True, card="3090"), FakeAllocator(driver, leak=100 * MiB), nvml) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["trusted"] is False and doc["card"] == "3090"
    assert {c["name"]: c["status"] for c in doc["checks"]}["back at baseline"] == "fail"


def test_unknown_card_name_is_a_usage_error(box):
    driver, nvml = box(RTX3090)
    with pytest.raises(UsageError, match="unknown card"):
        selfcheck.run(_args(card="rtx9999"), FakeAllocator(driver), nvml)


def test_no_device_is_one_line_refusal(box):
    _, nvml = box()
    with pytest.raises(UsageError, match=r"^no usable GPU \(NVML sees no GPU\); selfcheck proves"):
        selfcheck.run(_args(card="3090"), None, nvml)


def test_cli_without_a_gpu_refuses_in_one_line(capsys):
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
        pytest.skip("NVML works on this machine")
    except pynvml.NVMLError:
        pass
    assert main(["selfcheck"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vllm-memcheck selfcheck: error: no usable GPU (") and "\n" not in err
