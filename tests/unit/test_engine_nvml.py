"""engine/nvml.py: opening the device (CUDA_VISIBLE_DEVICES, missing library, missing index) as one NoGPU line."""

from __future__ import annotations

import pytest

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


def test_open_nvml_names_a_device_index_that_nvml_does_not_have():
    from types import SimpleNamespace

    class NVMLError(Exception):
        pass

    def no_handle(i):
        raise AssertionError("must not ask NVML for a handle it does not have")

    one_gpu = SimpleNamespace(NVMLError=NVMLError, nvmlInit=lambda: None, nvmlDeviceGetCount=lambda: 1,
                              nvmlDeviceGetHandleByIndex=no_handle)
    with pytest.raises(NoGPU) as info:
        open_nvml(2, nvml=one_gpu)
    assert info.value.reason == "NVML sees 1 GPU(s), no index 2"
    one_gpu.nvmlDeviceGetCount = lambda: 0
    with pytest.raises(NoGPU) as info:
        open_nvml(0, nvml=one_gpu)
    assert info.value.reason == "NVML sees no GPU"
