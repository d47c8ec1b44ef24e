"""engine/selfcheck.py against a fake NVML whose memory a fake allocator moves: each check's ok and fail case."""

from __future__ import annotations

import pytest

from diagnostics.cards import get_card
from diagnostics.engine import selfcheck as sc
from diagnostics.engine.nvml import NoGPU
from diagnostics.units import GiB, MiB
from fake_pynvml import FakeAllocator, FakeNVML

RTX3090 = ("NVIDIA GeForce RTX 3090", int(23.69 * GiB))



@pytest.fixture(autouse=True)
def slow_enough(monkeypatch):
    """The whole-run tests hold the planted allocation 100 ms: a loaded CI box may starve the sampler thread for
    more than 10 ms (the 10 ms figure itself is test_short_allocation_at_10_ms_is_caught_by_the_sampler's)."""
    monkeypatch.setattr(sc.__name__ + ".PLANTED_HOLD_S", 0.1)


def _by_name(checks):
    return {c.name: c for c in checks}


def test_a_sound_box_is_trusted():
    nvml = FakeNVML([RTX3090])
    checks = _by_name(sc.run_checks(get_card("3090"), FakeAllocator(nvml), device=0, nvml=nvml))
    assert [c.status for c in checks.values()] == ["ok"] * 5
    assert "+0.00%" in checks["known allocation"].detail
    assert "caught 5 of 5" in checks["short allocation"].detail
    assert sc.trusted(list(checks.values()))


def test_short_allocation_at_10_ms_is_caught_by_the_sampler():
    nvml = FakeNVML([RTX3090])
    check = sc.check_planted(nvml, 0, FakeAllocator(nvml), hold_s=0.010, trials=3)
    # a loaded CI box may delay the sampler thread by more than 10 ms: at least one of three must be caught
    assert check.status in ("ok", "warn"), check.detail


def test_known_allocation_off_by_more_than_1_percent_fails():
    nvml = FakeNVML([RTX3090])
    check = sc.check_known(nvml, 0, FakeAllocator(nvml, scale=1.02))
    assert check.status == "fail" and "+2.00%" in check.detail


def test_an_allocation_the_sampler_cannot_see_fails_both_sampler_checks():
    nvml = FakeNVML([RTX3090])
    alloc = FakeAllocator(nvml, invisible=True)
    assert sc.check_known(nvml, 0, alloc).status == "fail"
    planted = sc.check_planted(nvml, 0, alloc, trials=2)
    assert planted.status == "fail" and "caught 0 of 2" in planted.detail


def test_memory_not_given_back_fails_the_baseline_check():
    nvml = FakeNVML([RTX3090])
    checks = _by_name(sc.run_checks(get_card("3090"), FakeAllocator(nvml, leak=64 * MiB), device=0, nvml=nvml))
    assert checks["back at baseline"].status == "fail" and "MiB" in checks["back at baseline"].detail
    assert not sc.trusted(list(checks.values()))


@pytest.mark.parametrize("kwargs, expect", [({"hide_processes": True}, "not this one"),
                                            ({"procs_error": True}, "cannot list processes")])
def test_hidden_per_process_accounting_is_unavailable_not_a_failure(kwargs, expect):
    nvml = FakeNVML([RTX3090], **kwargs)
    checks = sc.run_checks(get_card("3090"), FakeAllocator(nvml), device=0, nvml=nvml)
    per = _by_name(checks)["per-process"]
    assert per.status == "unavailable" and expect in per.detail
    assert sc.trusted(checks)


def test_card_total_or_name_mismatch_fails():
    nvml = FakeNVML([("NVIDIA GeForce RTX 3090", 20 * GiB)])
    check = sc.check_device(nvml, 0, get_card("3090"))
    assert check.status == "fail" and "-3.69 GiB" in check.detail
    nvml = FakeNVML([RTX3090])
    assert sc.check_device(nvml, 0, get_card("4090")).status == "fail"
    assert sc.check_device(nvml, 0, None).status == "warn"


def test_no_device_is_no_gpu():
    with pytest.raises(NoGPU):
        sc.run_checks(get_card("3090"), None, device=0, nvml=FakeNVML([]))
