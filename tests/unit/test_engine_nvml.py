"""engine/nvml.py: opening the device (CUDA_VISIBLE_DEVICES, missing library, missing index) as one NoGPU line."""

from __future__ import annotations

import pytest
from fake_nvml_driver import FakeDriver, FakeGpu
from fake_nvml_driver import GiB as _GiB
from fake_nvml_driver import MiB as _MiB

from diagnostics.engine import nvml as nvml_mod
from diagnostics.engine.nvml import NoGPU, open_nvml, visible_device
from diagnostics.errors import UsageError


def test_nvml_missing_library_is_one_no_gpu_line():
    # this machine has no libnvidia-ml.so: the real pynvml raises NVMLError_LibraryNotFound
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        pytest.skip("NVML works on this machine")
    except pynvml.NVMLError:
        pass
    with pytest.raises(NoGPU) as info:
        open_nvml(0)
    msg = str(info.value)
    assert msg.startswith("no usable GPU: NVML Shared Library Not Found;")
    assert "python -m diagnostics plan" in msg and "--card=cpu" in msg and "\n" not in msg
    assert isinstance(info.value, UsageError)


def test_visible_device_follows_cuda_visible_devices():
    assert visible_device({}) == 0
    assert visible_device({"CUDA_VISIBLE_DEVICES": "3,1"}) == 3
    assert visible_device({"CUDA_VISIBLE_DEVICES": "GPU-8e6a-01"}) == "GPU-8e6a-01"
    with pytest.raises(UsageError, match="CUDA_VISIBLE_DEVICES='gpu0'"):
        visible_device({"CUDA_VISIBLE_DEVICES": "gpu0"})


def test_open_nvml_names_a_device_index_that_nvml_does_not_have(monkeypatch):
    driver = FakeDriver([FakeGpu()])
    with pytest.raises(NoGPU) as info:
        open_nvml(2, nvml=driver.install(monkeypatch))
    assert info.value.reason == "NVML sees 1 GPU(s), no index 2"
    assert driver.calls["nvmlDeviceGetHandleByIndex_v2"] == 0  # never asked NVML for a handle it does not have
    with pytest.raises(NoGPU) as info:
        open_nvml(0, nvml=FakeDriver([]).install(monkeypatch))
    assert info.value.reason == "NVML sees no GPU"


# --- over the REAL nvidia-ml-py wrappers and a fake driver (tests/unit/fake_nvml_driver.py; issue #16) ---------



def test_device_figure_is_v2_used_without_the_driver_reserved_memory(monkeypatch):   # review F2
    pynvml = FakeDriver([FakeGpu(used=5 * _GiB, reserved=600 * _MiB, total=40 * _GiB)]).install(monkeypatch)
    nvml, h = nvml_mod.open_nvml(0, nvml=pynvml)
    memory = nvml_mod.DeviceMemory(nvml, h)
    info = memory.read()
    assert (info.used, info.reserved, info.kind) == (5 * _GiB, 600 * _MiB, "v2")  # v1 would say 5.6 GiB
    assert info.usable_total == 40 * _GiB - 600 * _MiB  # CUDA's total: the frame of cards.py


def test_old_driver_falls_back_to_v1_and_says_so(monkeypatch):                      # review F2
    pynvml = FakeDriver([FakeGpu(used=5 * _GiB, reserved=300 * _MiB, total=24 * _GiB)], driver="470.82.01").install(monkeypatch)
    nvml, h = nvml_mod.open_nvml(0, nvml=pynvml)
    memory = nvml_mod.DeviceMemory(nvml, h)
    assert (memory.read().used, memory.kind) == (5 * _GiB, "v1")
    assert memory.read().usable_total == 24 * _GiB - 300 * _MiB


@pytest.mark.parametrize("value, expected", [(None, [0]), ("1", [1]), ("1,0", [1, 0]), (" 2 , 3", [2, 3]),
                                             ("GPU-ab12", ["GPU-ab12"]), ("MIG-0f3e,1", ["MIG-0f3e", 1])])
def test_visible_devices_lists_every_cuda_visible_device(value, expected):            # review F7
    env = {} if value is None else {"CUDA_VISIBLE_DEVICES": value}
    assert nvml_mod.visible_devices(env) == expected


def test_empty_cuda_visible_devices_is_no_gpu_and_junk_is_a_usage_error():            # review F14
    with pytest.raises(nvml_mod.NoGPU, match="hides every GPU"):
        nvml_mod.visible_devices({"CUDA_VISIBLE_DEVICES": ""})
    with pytest.raises(UsageError, match="neither a device index nor a GPU-/MIG- UUID"):
        nvml_mod.visible_devices({"CUDA_VISIBLE_DEVICES": "0,gpu1"})


def test_indices_uuids_and_uuid_prefixes_name_the_right_card(monkeypatch):            # review F7
    driver = FakeDriver([FakeGpu("NVIDIA GeForce RTX 3090"), FakeGpu("NVIDIA GeForce RTX 4090")])
    pynvml = driver.install(monkeypatch)
    names = lambda devices: [pynvml.nvmlDeviceGetName(h) for h in nvml_mod.open_devices(devices, pynvml)[1]]
    assert names([1, 0]) == ["NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 3090"]
    assert names([driver.gpus[1].uuid]) == ["NVIDIA GeForce RTX 4090"]
    assert names([driver.gpus[1].uuid[:12]]) == ["NVIDIA GeForce RTX 4090"]  # CUDA takes prefixes, NVML does not
    assert names(nvml_mod.visible_devices({"CUDA_VISIBLE_DEVICES": "1"})) == ["NVIDIA GeForce RTX 4090"]
    with pytest.raises(nvml_mod.NoGPU, match="no index 2"):
        nvml_mod.open_devices([2], pynvml)
    with pytest.raises(nvml_mod.NoGPU, match="no GPU has this UUID"):
        nvml_mod.open_devices(["GPU-ffff"], pynvml)
    assert driver.initialised == 4  # the failed opens shut NVML down again; the 4 good ones are the caller's


def test_a_mig_parent_is_refused_and_a_slice_is_its_own_device(monkeypatch):           # review F8
    slice_ = FakeGpu("NVIDIA A100-SXM4-40GB MIG 3g.20gb", total=20096 * _MiB, used=_GiB)
    driver = FakeDriver([FakeGpu("NVIDIA A100-SXM4-40GB", total=40 * _GiB, mig_mode=1, mig=[slice_])])
    pynvml = driver.install(monkeypatch)
    with pytest.raises(nvml_mod.NoGPU, match="MIG mode.*MIG-<uuid>"):
        nvml_mod.open_nvml(0, nvml=pynvml)
    nvml, h = nvml_mod.open_nvml(slice_.uuid, nvml=pynvml)
    assert nvml_mod.DeviceMemory(nvml, h).read().total == 20096 * _MiB
    assert nvml_mod.gpu_name(slice_.uuid, nvml=pynvml) == "NVIDIA A100-SXM4-40GB MIG 3g.20gb"
    with pytest.raises(nvml_mod.NoGPU, match="legacy MIG-GPU"):
        nvml_mod.open_nvml(f"MIG-{driver.gpus[0].uuid}/1/0", nvml=pynvml)


def test_no_driver_library_is_one_no_gpu_line(monkeypatch):                           # review F13/Q1
    pynvml = FakeDriver(loadable=False).install(monkeypatch)
    with pytest.raises(nvml_mod.NoGPU, match="NVML Shared Library Not Found"):
        nvml_mod.open_nvml(nvml=pynvml)


def test_device_info_gives_cudas_total_the_memory_kind_and_compute_capability(monkeypatch):   # review F2, C3
    gpu = FakeGpu("NVIDIA A100-SXM4-80GB", total=81920 * _MiB, reserved=880 * _MiB, compute_capability=(8, 0))
    info = nvml_mod.device_info(FakeDriver([gpu], driver="550.54.15", cuda=12040).install(monkeypatch))
    assert info["gpu_total_gib"] == round((81920 - 880) / 1024, 2) and info["nvml_total_gib"] == 80.0
    assert (info["memory_info"], info["reserved_gib"], info["compute_capability"]) == ("v2", 0.86, "8.0")
    assert (info["driver"], info["cuda_driver"]) == ("550.54.15", "12.4")


def test_list_gpus_shows_allocated_memory_not_reserved(monkeypatch):                  # review F14
    gpus = [FakeGpu(used=8 * _MiB, reserved=900 * _MiB, total=80 * _GiB)]
    found, driver, reason = nvml_mod.list_gpus(FakeDriver(gpus).install(monkeypatch))
    assert reason is None and found[0]["used_gib"] == 0.01
