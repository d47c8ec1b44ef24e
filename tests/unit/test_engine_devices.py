"""diagnostics.engine.devices: the GPUs of one start, over the real nvidia-ml-py wrappers and a fake driver."""

from __future__ import annotations

import pytest

from fake_nvml_driver import GiB, MiB, FakeDriver, FakeGpu

from diagnostics.engine import devices as dev
from diagnostics.engine.nvml import NoGPU
from diagnostics.errors import UsageError


class _Spec:
    name = "combo-1"
    settle_timeout_s = 0.3
    settle_tolerance_gib = 0.25
    session_tolerance_gib = 0.5


class _Tree:
    seen = {10: None}


@pytest.fixture(autouse=True)
def fresh_session(monkeypatch):
    monkeypatch.setattr(dev, "_SESSION_BASELINE", {})


def test_the_child_gets_pci_bus_order_and_another_order_is_refused():                  # review F7
    env = {}
    dev.pin_cuda_order(env)
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    with pytest.raises(UsageError, match="CUDA_DEVICE_ORDER=FASTEST_FIRST"):
        dev.pin_cuda_order({"CUDA_DEVICE_ORDER": "FASTEST_FIRST"})


def test_start_devices_are_the_first_tp_x_pp_visible_ones():                           # review F7
    env = {"CUDA_VISIBLE_DEVICES": "3,1,2"}
    assert dev.start_devices({}, env) == [3]
    assert dev.start_devices({"tensor_parallel_size": 2}, env) == [3, 1]
    with pytest.raises(UsageError, match="tensor_parallel_size=4 .* needs 4 GPUs, CUDA_VISIBLE_DEVICES shows 3"):
        dev.start_devices({"tensor_parallel_size": 4}, env)


def _open(monkeypatch, *gpus):
    driver = FakeDriver(list(gpus))
    driver.install(monkeypatch)
    return driver, dev.StartDevices.open(list(range(len(gpus))))


def test_baselines_are_allocated_memory_of_every_device(monkeypatch):                  # review F2, F3
    _, devices = _open(monkeypatch, FakeGpu(used=GiB, reserved=600 * MiB), FakeGpu(used=2 * GiB))
    assert devices.baselines == [GiB, 2 * GiB]


def test_a_creeping_leak_stops_the_sweep_at_the_session_tolerance(monkeypatch):        # review F12
    gpu = FakeGpu(used=GiB)
    for start in range(3):  # each start leaves 0.2 GiB: below the per-start tolerance, not below the session's
        devices = dev.StartDevices.open([0]) if start else _open(monkeypatch, gpu)[1]
        gpu.used += int(0.2 * GiB)
        if start < 2:
            assert devices.settle(_Spec(), _Tree()) == [gpu.used]
    with pytest.raises(dev.DeviceNotClean, match="before the first start 1.00 GiB"):
        devices.settle(_Spec(), _Tree())


def test_not_back_at_baseline_names_the_other_processes(monkeypatch):                  # review F12
    gpu = FakeGpu(used=GiB)
    _, devices = _open(monkeypatch, gpu)
    gpu.used, gpu.processes = 3 * GiB, [(10, GiB), (4242, 2 * GiB)]
    with pytest.raises(dev.DeviceNotClean, match=r"other processes: pid 4242 \(2.00 GiB\)"):
        devices.settle(_Spec(), _Tree())


def test_grace_hopper_is_not_held_to_its_baseline(monkeypatch):                        # review F12
    gpu = FakeGpu("NVIDIA GH200 480GB", used=GiB, total=96 * GiB)
    _, devices = _open(monkeypatch, gpu)
    gpu.used = 5 * GiB  # NVML: FB pages of NUMA-node GPUs are not released when the process ends
    assert devices.settle(_Spec(), _Tree()) == [5 * GiB]


def test_a_mig_parent_cannot_be_a_start_device(monkeypatch):                           # review F8
    parent = FakeGpu("NVIDIA A100-SXM4-40GB", mig_mode=1, mig=[FakeGpu("NVIDIA A100-SXM4-40GB MIG 3g.20gb")])
    FakeDriver([parent]).install(monkeypatch)
    with pytest.raises(NoGPU, match="MIG mode"):
        dev.StartDevices.open([0])


def test_device_not_back_at_baseline_stops_the_sweep_and_within_tolerance_passes(monkeypatch):
    gpu = FakeGpu(used=GiB)
    _, devices = _open(monkeypatch, gpu)
    gpu.used = int(3.5 * GiB)
    spec = _Spec()
    spec.settle_timeout_s = 0
    with pytest.raises(dev.DeviceNotClean) as info:
        devices.settle(spec, _Tree())
    assert str(info.value) == ("device memory of NVIDIA GeForce RTX 3090 did not return to baseline after combo-1 "
                               "(3.50 GiB; before the start 1.00 GiB, before the first start 1.00 GiB); stopping the "
                               "sweep instead of measuring garbage")
    gpu.used = GiB + 100 * MiB  # within the 0.25 GiB tolerance
    assert devices.settle(spec, _Tree()) == [gpu.used]
