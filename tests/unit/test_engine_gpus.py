"""engine/gpus.py and the launcher with claimed GPUs: the real nvidia-ml-py over a fake driver of four devices
(tests/unit/fake_nvml_driver.py), a stand-in engine child."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fake_nvml_driver import MiB, FakeDriver, FakeGpu

from diagnostics.engine import gpus as devices, launch
from diagnostics.errors import UsageError
from diagnostics.units import GiB

BASE_USED = 300 * MiB  # what each idle device shows allocated


@pytest.fixture
def four(monkeypatch):
    """(driver, the real pynvml module): four 80 GiB H100s, each with BASE_USED allocated."""
    driver = FakeDriver([FakeGpu(name=f"NVIDIA H100 80GB HBM3 #{i}", total=80 * GiB, used=BASE_USED) for i in range(4)])
    return driver, driver.install(monkeypatch)


def test_gpus_workers_and_claims():
    assert devices.parse_gpus("0,2,3") == [0, 2, 3] and devices.parse_gpus(None) is None
    for bad in ("0,0", "a", "-1", ","):
        with pytest.raises(UsageError, match="accepted: distinct NVML device indices"):
            devices.parse_gpus(bad)
    assert devices.worker_index("gw3") == 3 and devices.worker_index(None) == 0 and devices.worker_index("master") == 0
    gpus = [0, 2, 3]
    assert [devices.pick_devices(w, gpus) for w in range(4)] == [(0,), (2,), (3,), (0,)]
    assert devices.pick_devices(2, gpus, 2) == (3, 0)  # tensor parallel: own GPU, then the next, wrapping
    with pytest.raises(UsageError, match="pipeline_parallel_size = 4 needs 4 GPUs but --gpus gives 3"):
        devices.pick_devices(0, gpus, 4)
    assert devices.child_devices_env((3, 0)) == {"CUDA_VISIBLE_DEVICES": "3,0", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


def _hold(base, indices, seconds, events):
    with devices.gpu_locks(indices, base):
        events.append(("in", tuple(indices), time.monotonic()))
        time.sleep(seconds)
        events.append(("out", tuple(indices), time.monotonic()))


def test_one_lock_per_gpu(tmp_path):
    base, events = str(tmp_path / "engine.lock"), []
    first = [threading.Thread(target=_hold, args=(base, idx, 0.5, events)) for idx in ([0], [1])]
    for t in first:
        t.start()
    time.sleep(0.2)  # both hold their GPU now; a claim of GPUs 1 and 2 must wait for GPU 1
    late = threading.Thread(target=_hold, args=(base, [1, 2], 0.1, events))
    late.start()
    for t in first + [late]:
        t.join()
    t_of = {(kind, idx): t for kind, idx, t in events}
    # GPU 0 and GPU 1 ran side by side; the (1, 2) claim came in only once GPU 1 was free
    assert t_of[("in", (1,))] < t_of[("out", (0,))] and t_of[("in", (0,))] < t_of[("out", (1,))]
    assert t_of[("in", (1, 2))] >= t_of[("out", (1,))]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["engine.lock.gpu0", "engine.lock.gpu1", "engine.lock.gpu2"]


def test_device_group_sums_and_keeps_each_peak(four):
    driver, nvml = four
    group, handle = devices.open_group((1, 3), nvml)
    driver.alloc(1, 10 * GiB, pid=111)
    driver.alloc(3, 4 * GiB, pid=222)
    driver.alloc(0, 50 * GiB, pid=333)  # another worker's GPU: not ours
    info = group.nvmlDeviceGetMemoryInfo(handle)
    assert info.used == 2 * BASE_USED + 14 * GiB and info.total == 160 * GiB
    assert {p.pid for p in group.nvmlDeviceGetComputeRunningProcesses(handle)} == {111, 222}
    driver.release(1, 10 * GiB)
    group.nvmlDeviceGetMemoryInfo(handle)
    assert group.peaks_gib() == {"1": round((10 * GiB + BASE_USED) / GiB, 4), "3": round((4 * GiB + BASE_USED) / GiB, 4)}
    with pytest.raises(Exception, match="no index 7"):
        devices.open_group((7,), nvml)


def test_a_tensor_parallel_start_measures_each_claimed_device(tmp_path, monkeypatch, four):
    """run_start with devices=(1, 3): the per-GPU locks, the child's CUDA_VISIBLE_DEVICES, each device's peak."""
    driver, _ = four  # engine/devices.py opens the claimed GPUs through the real pynvml, now talking to `driver`
    monkeypatch.setenv(launch.LOCK_ENV, str(tmp_path / "engine.lock"))
    seen_env = tmp_path / "child-env.txt"
    stand_in = (f"import os, time; open({str(seen_env)!r}, 'w').write(os.environ['CUDA_VISIBLE_DEVICES']); "
                "time.sleep(0.8)")
    real_popen = subprocess.Popen
    monkeypatch.setattr(launch.subprocess, "Popen",
                        lambda args, **kw: real_popen([sys.executable, "-c", stand_in], **kw))

    def engine_allocates(pid):  # what a TP=2 engine does to its two GPUs while it starts
        def run():
            driver.alloc(1, 30 * GiB, pid=pid)
            driver.alloc(3, 20 * GiB, pid=pid)
            time.sleep(0.3)
            driver.release(1, 30 * GiB, pid=pid)
            driver.release(3, 20 * GiB, pid=pid)
        threading.Thread(target=run, daemon=True).start()

    spec = launch.StartSpec(model="m", settings={"tensor_parallel_size": 2}, card="h100-80", load_format="auto",
                            timeout_s=30, request=False, image_size=(1, 1), env={},
                            log_path=tmp_path / "logs" / "tp2.log", timeline_path=tmp_path / "t" / "tp2.csv",
                            devices=(1, 3), on_spawn=engine_allocates, settle_timeout_s=5)
    spec.log_path.parent.mkdir()
    spec.timeline_path.parent.mkdir()
    result = launch.run_start(spec)
    assert seen_env.read_text() == "1,3"
    base = BASE_USED / GiB
    assert result.device_peaks_gib == {"1": round(30 + base, 4), "3": round(20 + base, 4)}
    assert result.peak_device_gib == round(30 + base, 4)  # the busiest device (engine/devices.py); the sum is the record's
    assert result.peak_process_gib == 50.0
    assert (tmp_path / "engine.lock.gpu1").exists() and (tmp_path / "engine.lock.gpu3").exists()
    assert not Path(str(tmp_path / "engine.lock")).exists()  # the machine-wide lock was not taken
