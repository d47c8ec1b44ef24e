"""engine/selfcheck.py against the real nvidia-ml-py module over a fake driver (tests/unit/fake_nvml_driver.py)
whose memory a fake allocator moves: each check's ok and fail case."""

from __future__ import annotations

import pytest

from diagnostics.cards import get_card
from diagnostics.engine import selfcheck as sc
from diagnostics.engine.nvml import NoGPU
from diagnostics.units import GiB, MiB
from fake_nvml_driver import NVML_ERROR_NOT_SUPPORTED, FakeAllocator, FakeDriver, FakeGpu

RTX3090 = ("NVIDIA GeForce RTX 3090", int(23.69 * GiB))


@pytest.fixture
def box(monkeypatch):
    """box(*gpus, **driver) -> (driver, the real pynvml module talking to it); a gpu is (name, total) or a FakeGpu."""
    def make(*gpus, **kwargs):
        driver = FakeDriver([g if isinstance(g, FakeGpu) else FakeGpu(name=g[0], total=g[1]) for g in gpus],
                            **kwargs)
        return driver, driver.install(monkeypatch)
    return make



@pytest.fixture(autouse=True)
def slow_enough(monkeypatch):
    """The whole-run tests hold the planted allocation 100 ms: a loaded CI box may starve the sampler thread for
    more than 10 ms (the 10 ms figure itself is test_short_allocation_at_10_ms_is_caught_by_the_sampler's)."""
    monkeypatch.setattr(sc.__name__ + ".PLANTED_HOLD_S", 0.1)


def _by_name(checks):
    return {c.name: c for c in checks}


def test_a_sound_box_is_trusted(box):
    driver, nvml = box(RTX3090)
    checks = _by_name(sc.run_checks(get_card("3090"), FakeAllocator(driver), device=0, nvml=nvml))
    assert [c.status for c in checks.values()] == ["ok"] * 5
    assert "+0.00%" in checks["known allocation"].detail
    assert "caught 5 of 5" in checks["short allocation"].detail
    assert sc.trusted(list(checks.values()))


def test_short_allocation_at_10_ms_is_caught_by_the_sampler(box):
    driver, nvml = box(RTX3090)
    nvml.nvmlInit()
    check = sc.check_planted(nvml, nvml.nvmlDeviceGetHandleByIndex(0), FakeAllocator(driver), hold_s=0.010, trials=3)
    # a loaded CI box may delay the sampler thread by more than 10 ms: at least one of three must be caught
    assert check.status in ("ok", "warn"), check.detail


def test_known_allocation_off_by_more_than_1_percent_fails(box):
    driver, nvml = box(RTX3090)
    nvml.nvmlInit()
    check = sc.check_known(nvml, nvml.nvmlDeviceGetHandleByIndex(0), FakeAllocator(driver, scale=1.02))
    assert check.status == "fail" and "+2.00%" in check.detail


def test_an_allocation_the_sampler_cannot_see_fails_both_sampler_checks(box):
    driver, nvml = box(RTX3090)
    nvml.nvmlInit()
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    alloc = FakeAllocator(driver, invisible=True)
    assert sc.check_known(nvml, handle, alloc).status == "fail"
    planted = sc.check_planted(nvml, handle, alloc, trials=2)
    assert planted.status == "fail" and "caught 0 of 2" in planted.detail


def test_memory_not_given_back_fails_the_baseline_check(box):
    driver, nvml = box(RTX3090)
    checks = _by_name(sc.run_checks(get_card("3090"), FakeAllocator(driver, leak=64 * MiB), device=0, nvml=nvml))
    assert checks["back at baseline"].status == "fail" and "MiB" in checks["back at baseline"].detail
    assert not sc.trusted(list(checks.values()))


HIDDEN = [  # (the device, the driver, the pid NVML lists for this process, what the check says)
    (FakeGpu(name=RTX3090[0], total=RTX3090[1]), "550.54.15", 1, "not this one"),  # a container's pid namespace
    (FakeGpu(name=RTX3090[0], total=RTX3090[1], errors={"nvmlDeviceGetComputeRunningProcesses_v3":
                                                        NVML_ERROR_NOT_SUPPORTED}), "550.54.15", None,
     "cannot list processes (NVMLError_NotSupported"),
    # a driver before 510.39 lacks the _v3 process query: the real wrapper raises NVMLLibraryMismatchError, which is
    # no NVMLError (selfcheck crashed on it while the sampler and devices were already hardened)
    (FakeGpu(name=RTX3090[0], total=RTX3090[1]), "470.57.02", None, "cannot list processes (NVMLLibraryMismatchError"),
]


@pytest.mark.parametrize("gpu, driver_version, pid, expect", HIDDEN, ids=["other-pid", "not-supported", "driver-470"])
def test_hidden_per_process_accounting_is_unavailable_not_a_failure(box, gpu, driver_version, pid, expect):
    driver, nvml = box(gpu, driver=driver_version)
    checks = sc.run_checks(get_card("3090"), FakeAllocator(driver, pid=pid), device=0, nvml=nvml)
    per = _by_name(checks)["per-process"]
    assert per.status == "unavailable" and expect in per.detail
    assert sc.trusted(checks)


def test_card_total_or_name_mismatch_fails(box):
    _, nvml = box(("NVIDIA GeForce RTX 3090", 20 * GiB), RTX3090)
    nvml.nvmlInit()
    short, whole = nvml.nvmlDeviceGetHandleByIndex(0), nvml.nvmlDeviceGetHandleByIndex(1)
    check = sc.check_device(nvml, short, get_card("3090"))
    assert check.status == "fail" and "-3.69 GiB" in check.detail
    assert sc.check_device(nvml, whole, get_card("4090")).status == "fail"
    assert sc.check_device(nvml, whole, None).status == "warn"


@pytest.mark.parametrize("nvml_name, card", [("NVIDIA L40S", "l40"), ("NVIDIA GeForce RTX 3090 Ti", "3090"),
                                             ("NVIDIA H200", "h20")])
def test_a_card_whose_name_only_contains_the_profile_name_is_not_that_card(box, nvml_name, card):
    """The plugin's whole-name rule (cards.names_card): `selfcheck --card l40` on an L40S said "ok" while the plugin
    refused the same pair (selfcheck matched by substring)."""
    _, nvml = box((nvml_name, int(get_card(card).total_gib * GiB)))
    nvml.nvmlInit()
    check = sc.check_device(nvml, nvml.nvmlDeviceGetHandleByIndex(0), get_card(card))
    assert check.status == "fail" and f"--card {card} is a" in check.detail


def test_no_device_is_no_gpu(box):
    _, nvml = box()
    with pytest.raises(NoGPU):
        sc.run_checks(get_card("3090"), None, device=0, nvml=nvml)
