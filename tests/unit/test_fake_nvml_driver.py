"""The fake driver itself: the REAL nvidia-ml-py wrappers over it behave as NVML documents (so tests built on it
test the project against NVML, not against a fake's idea of NVML)."""

from __future__ import annotations

import time

import pytest
import pynvml  # noqa: F401  (nvidia-ml-py is a dependency: its absence is a failure, not a skip)

from fake_nvml_driver import GiB, MiB, NVML_ERROR_GPU_IS_LOST, NVML_ERROR_UNKNOWN, FakeDriver, FakeGpu

def test_v1_used_includes_reserved_and_v2_separates_it(monkeypatch):
    nvml = FakeDriver([FakeGpu("NVIDIA A100-SXM4-80GB", total=80 * GiB, used=8 * MiB, reserved=904 * MiB)]).install(monkeypatch)
    nvml.nvmlInit()
    assert nvml.nvmlDeviceGetCount() == 1
    h = nvml.nvmlDeviceGetHandleByIndex(0)
    v1 = nvml.nvmlDeviceGetMemoryInfo(h)
    v2 = nvml.nvmlDeviceGetMemoryInfo(h, version=nvml.nvmlMemory_v2)
    assert (v1.total, v1.used) == (80 * GiB, 912 * MiB)  # rust-nvml/nvml-wrapper#57: 912 MB v1 on an idle A100
    assert (v2.total, v2.reserved, v2.used, v2.free) == (80 * GiB, 904 * MiB, 8 * MiB, 80 * GiB - 912 * MiB)
    assert nvml.nvmlDeviceGetName(h) == "NVIDIA A100-SXM4-80GB"  # str, as nvidia-ml-py >= 11.5 returns it


def test_old_driver_lacks_v2_and_v3_as_the_real_wrappers_see_it(monkeypatch):
    gpu = FakeGpu(total=24 * GiB, used=GiB, reserved=300 * MiB, processes=[(10, GiB)])
    nvml = FakeDriver([gpu], driver="470.82.01").install(monkeypatch)
    nvml.nvmlInit()
    h = nvml.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(nvml.NVMLError_FunctionNotFound):
        nvml.nvmlDeviceGetMemoryInfo(h, version=nvml.nvmlMemory_v2)
    with pytest.raises(nvml.NVMLLibraryMismatchError) as caught:
        nvml.nvmlDeviceGetComputeRunningProcesses(h)
    assert not isinstance(caught.value, nvml.NVMLError)  # the trap of review F4: not an NVMLError
    v1 = nvml.nvmlDeviceGetMemoryInfo(h)
    assert (v1.total, v1.used) == (24 * GiB - 300 * MiB, GiB)


def test_process_list_with_host_pids_and_unavailable_memory(monkeypatch):
    nvml = FakeDriver([FakeGpu(processes=[(90001, 8 * GiB), (90002, None)])]).install(monkeypatch)
    nvml.nvmlInit()
    procs = nvml.nvmlDeviceGetComputeRunningProcesses(nvml.nvmlDeviceGetHandleByIndex(0))
    assert [(p.pid, p.usedGpuMemory) for p in procs] == [(90001, 8 * GiB), (90002, None)]
    empty = FakeDriver([FakeGpu()]).install(monkeypatch)
    empty.nvmlInit()
    assert empty.nvmlDeviceGetComputeRunningProcesses(empty.nvmlDeviceGetHandleByIndex(0)) == []


def test_mig_parent_refuses_without_root_and_a_slice_is_its_own_device(monkeypatch):
    slice_ = FakeGpu("NVIDIA A100-SXM4-40GB MIG 3g.20gb", total=20 * GiB - 512 * MiB, used=GiB)
    parent = FakeGpu("NVIDIA A100-SXM4-40GB", total=40 * GiB, mig_mode=1, mig=[slice_])
    driver = FakeDriver([parent])
    nvml = driver.install(monkeypatch)
    nvml.nvmlInit()
    h = nvml.nvmlDeviceGetHandleByIndex(0)
    assert nvml.nvmlDeviceGetMigMode(h) == [1, 1]
    assert not nvml.nvmlDeviceIsMigDeviceHandle(h)
    with pytest.raises(nvml.NVMLError_NoPermission):
        nvml.nvmlDeviceGetMemoryInfo(h)
    m = nvml.nvmlDeviceGetHandleByUUID(slice_.uuid)
    assert slice_.uuid.startswith("MIG-") and nvml.nvmlDeviceIsMigDeviceHandle(m)
    assert nvml.nvmlDeviceGetName(m) == "NVIDIA A100-SXM4-40GB MIG 3g.20gb"
    assert nvml.nvmlDeviceGetMemoryInfo(m, version=nvml.nvmlMemory_v2).total == 20 * GiB - 512 * MiB
    with pytest.raises(nvml.NVMLError_NotFound):  # legacy MIG-GPU-<uuid>/gi/ci form
        nvml.nvmlDeviceGetHandleByUUID(f"MIG-{parent.uuid}/1/0")
    with pytest.raises(nvml.NVMLError_NotFound):  # CUDA takes UUID prefixes, NVML does not
        nvml.nvmlDeviceGetHandleByUUID(parent.uuid[:12])
    driver.root = True
    assert nvml.nvmlDeviceGetMemoryInfo(h, version=nvml.nvmlMemory_v2).used == GiB  # aggregate over slices


def test_scripted_errors_library_missing_and_use_after_shutdown(monkeypatch):
    gpu = FakeGpu(errors={"nvmlDeviceGetMemoryInfo_v2": [NVML_ERROR_UNKNOWN, NVML_ERROR_GPU_IS_LOST]})
    nvml = FakeDriver([gpu]).install(monkeypatch)
    nvml.nvmlInit()
    h = nvml.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(nvml.NVMLError_Unknown):
        nvml.nvmlDeviceGetMemoryInfo(h, version=nvml.nvmlMemory_v2)
    with pytest.raises(nvml.NVMLError_GpuIsLost):
        nvml.nvmlDeviceGetMemoryInfo(h, version=nvml.nvmlMemory_v2)
    assert nvml.nvmlDeviceGetMemoryInfo(h, version=nvml.nvmlMemory_v2).used == 0
    nvml.nvmlShutdown()
    with pytest.raises(nvml.NVMLError_Uninitialized):
        nvml.nvmlDeviceGetMemoryInfo(h)
    missing = FakeDriver(loadable=False).install(monkeypatch)
    with pytest.raises(missing.NVMLError_LibraryNotFound, match="NVML Shared Library Not Found"):
        missing.nvmlInit()


def test_driver_facts_latency_and_call_counts(monkeypatch):
    driver = FakeDriver([FakeGpu("Tesla T4", compute_capability=(7, 5))], driver="535.161.08", cuda=12020)
    driver.latency["nvmlDeviceGetComputeRunningProcesses_v3"] = 0.005
    nvml = driver.install(monkeypatch)
    nvml.nvmlInit()
    h = nvml.nvmlDeviceGetHandleByIndex(0)
    assert nvml.nvmlSystemGetDriverVersion() == "535.161.08"
    assert nvml.nvmlSystemGetCudaDriverVersion() == 12020
    assert nvml.nvmlDeviceGetCudaComputeCapability(h) == (7, 5)
    with pytest.raises(nvml.NVMLError_NotSupported):  # a card without MIG
        nvml.nvmlDeviceGetMigMode(h)
    t = time.perf_counter()
    nvml.nvmlDeviceGetComputeRunningProcesses(h)
    assert time.perf_counter() - t >= 0.005
    assert driver.calls["nvmlDeviceGetComputeRunningProcesses_v3"] == 1  # no process: one C call, not two
