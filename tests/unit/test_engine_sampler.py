"""engine/sampler.py: exact peaks over a downsampled timeline, RSS of a process tree, NVML readings (the real
nvidia-ml-py wrappers over a fake driver: tests/unit/fake_nvml_driver.py)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import textwrap
import time
from types import SimpleNamespace

import pytest

from fake_nvml_driver import NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_UNKNOWN, FakeDriver, FakeGpu
from fake_nvml_driver import GiB as _GiB
from fake_nvml_driver import MiB as _MiB

from diagnostics.engine import sampler as sampler_module
from diagnostics.engine import sampler as smp
from diagnostics.engine import timeline as tl
from diagnostics.engine.nvml import open_devices, open_nvml
from diagnostics.engine.sampler import NvmlSource, Peak, RssSource, Sampler, tree_gpu_bytes

MiB = 1 << 20


class ScriptedSource:
    """Returns the given readings in order (a fake MemorySource)."""

    kind = "fake"
    interval_s = 0.01

    def __init__(self, readings):
        self.readings = list(readings)

    def read(self):
        return self.readings.pop(0)

    def close(self):
        pass


def test_peak_is_exact_although_the_timeline_is_downsampled():
    readings = [(100, 10), (900, 15), (200, 90), (300, 20), (250, 5), (50, 1)]
    s = Sampler(ScriptedSource(readings), store_every_s=0.1)
    for t in [0.0, 0.03, 0.06, 0.11, 0.15, 0.24]:  # windows: [0, .03, .06] [.11, .15] [.24]
        s.tick(now=s.t0 + t)
    s.stop()
    assert (s.peak.device_bytes, s.peak.device_t_s) == (900, pytest.approx(0.03))
    assert (s.peak.process_bytes, s.peak.process_t_s) == (90, pytest.approx(0.06))
    # the CSV's three windows, each holding its own maxima (device and process independently)
    assert [(x.device_bytes, x.process_bytes) for x in s.timeline_rows()] == [(900, 90), (300, 20), (50, 1)]
    assert [x.t_s for x in s.timeline_rows()] == pytest.approx([0.0, 0.11, 0.24])
    assert s.readings == 6 and [x.device_bytes for x in s.samples] == [r[0] for r in readings]  # every reading kept


def test_cpu_source_has_no_device_figure_and_peak_keeps_none():
    s = Sampler(ScriptedSource([(None, 5), (None, 7)]))
    s.tick(now=s.t0)
    s.tick(now=s.t0 + 1)
    s.stop()
    assert s.peak.device_bytes is None and s.peak.process_bytes == 7
    assert [x.device_bytes for x in s.samples] == [None, None]


def test_peak_update_arithmetic():
    p = Peak()
    p.update(0.0, None, 0)
    assert p.process_t_s == 0.0 and p.device_bytes is None
    p.update(1.0, 5, 3)
    p.update(2.0, 4, 3)  # equal process bytes keep the first time
    assert (p.device_bytes, p.device_t_s, p.process_bytes, p.process_t_s) == (5, 1.0, 3, 1.0)


def test_rss_of_a_child_that_allocates_400_mib():
    code = textwrap.dedent(
        """
        import sys, time
        block = b"\\x01" * (400 << 20)   # bytes(n) of a non-zero value: every page written
        print("allocated", flush=True)
        time.sleep(1.0)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        sampler = Sampler(RssSource(child.pid)).start()
        assert child.stdout.readline().strip() == "allocated"
        child.wait(timeout=30)
    finally:
        sampler.stop()
        child.kill() if child.poll() is None else None
    assert child.returncode == 0
    assert 400 * MiB <= sampler.peak.process_bytes < 400 * MiB + 150 * MiB
    assert len(sampler.samples) >= 3 and sampler.error is None
    assert max(x.process_bytes for x in sampler.samples) == sampler.peak.process_bytes


def test_rss_sums_the_whole_process_tree():
    code = textwrap.dedent(
        """
        import subprocess, sys, time
        kid = subprocess.Popen([sys.executable, "-c",
            "import time; b = b'\\\\x01' * (200 << 20); print('k', flush=True); time.sleep(30)"],
            stdout=subprocess.PIPE, text=True)
        kid.stdout.readline()
        block = b"\\x01" * (200 << 20)
        print("ready", flush=True)
        sys.stdin.readline()
        kid.kill()
        kid.wait()
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout.readline().strip() == "ready"
        source = RssSource(parent.pid)
        _, total = source.read()
        assert len(source.tree.seen) == 2
    finally:
        parent.communicate("go\n", timeout=30)
    assert 400 * MiB <= total < 400 * MiB + 200 * MiB
    assert source.tree.alive_seen() == []


class FakeTree:
    def __init__(self, pids):
        self._pids = set(pids)

    def pids(self):
        return self._pids


def proc(pid, used):
    return SimpleNamespace(pid=pid, usedGpuMemory=used)


def test_tree_gpu_bytes_counts_only_the_tree_and_treats_unknown_as_zero():
    procs = [proc(10, 3 << 30), proc(11, 1 << 30), proc(99, 7 << 30), proc(12, None)]
    assert tree_gpu_bytes(procs, {10, 11, 12}) == 4 << 30
    assert tree_gpu_bytes(procs, set()) == 0


def test_nvml_source_reads_device_used_and_the_tree_share(monkeypatch):
    gpu = FakeGpu(used=20 << 30, processes=[(10, 15 << 30), (20, 2 << 30), (99, 3 << 30)])
    nvml, h = open_nvml(0, nvml=FakeDriver([gpu]).install(monkeypatch))
    src = NvmlSource(None, nvml=nvml, handle=h, tree=FakeTree({10, 20}))
    assert src.read() == (20 << 30, 17 << 30) and src.process_known(0)
    gpu.errors["nvmlDeviceGetComputeRunningProcesses_v3"] = NVML_ERROR_NOT_SUPPORTED  # vGPU: no process list
    vgpu = NvmlSource(None, nvml=nvml, handle=h, tree=FakeTree({10, 20}))
    assert vgpu.read() == (20 << 30, 0) and not vgpu.process_known(0)  # device figure still comes back


def test_nvml_source_feeds_the_sampler_peaks(monkeypatch):
    monkeypatch.setattr(sampler_module, "PID_REFRESH_S", 0.0)  # the process query on every reading here
    gpu = FakeGpu(used=1 << 30, processes=[(10, 512 << 20)])
    nvml, h = open_nvml(0, nvml=FakeDriver([gpu]).install(monkeypatch))
    s = Sampler(NvmlSource(None, nvml=nvml, handle=h, tree=FakeTree({10})), store_every_s=0.1)
    for i, used in enumerate([1 << 30, 9 << 30, 4 << 30]):
        gpu.used = used
        gpu.processes = [(10, used // 2)]
        s.tick(now=s.t0 + i * 0.2)
    s.stop()
    assert s.peak.device_bytes == 9 << 30 and s.peak.process_bytes == (9 << 30) // 2
    assert s.peak.device_t_s == pytest.approx(0.2)


def test_sampler_thread_records_an_error_instead_of_dying_silently():
    class Broken(ScriptedSource):
        def read(self):
            raise OSError("boom")

    s = Sampler(Broken([])).start()
    s._thread.join(timeout=5)
    s.stop()
    assert s.error == "OSError: boom" and s.samples == []
    assert s.failed_reads == sampler_module.MAX_FAILED_READS  # retried before giving up


# --- over the REAL nvidia-ml-py wrappers and a fake driver (tests/unit/fake_nvml_driver.py; issue #16) ---------


class _Tree:
    def __init__(self, *pids):
        self._pids, self.seen = set(pids), dict.fromkeys(pids)

    def pids(self):
        return set(self._pids)


def test_old_driver_process_query_does_not_kill_the_device_figure(monkeypatch):      # review F4
    gpu = FakeGpu(used=5 * _GiB, reserved=300 * _MiB, processes=[(10, 3 * _GiB)])
    nvml, h = open_nvml(0, nvml=FakeDriver([gpu], driver="470.82.01").install(monkeypatch))
    source = smp.NvmlSource(None, nvml=nvml, handle=h, tree=_Tree(10))
    device, process = source.read()  # NVMLLibraryMismatchError from the process query, which is no NVMLError
    assert (device, process) == (5 * _GiB, 0)
    assert "NVMLLibraryMismatchError" in source.process_error and not source.process_known(0)
    assert source.memory_info == "v1"


def test_device_figure_excludes_driver_reserved_memory(monkeypatch):                    # review F2
    nvml, h = open_nvml(0, nvml=FakeDriver([FakeGpu(used=5 * _GiB, reserved=600 * _MiB)]).install(monkeypatch))
    source = smp.NvmlSource(None, nvml=nvml, handle=h, tree=None)
    assert source.read()[0] == 5 * _GiB and source.memory_info == "v2"


def test_host_pids_make_the_process_figure_unknown_not_zero(monkeypatch):              # review F10
    gpu = FakeGpu(used=9 * _GiB, processes=[(90001, 8 * _GiB)])  # NVML lists the host pid of our child
    nvml, h = open_nvml(0, nvml=FakeDriver([gpu]).install(monkeypatch))
    source = smp.NvmlSource(None, nvml=nvml, handle=h, tree=_Tree(10))
    assert source.read() == (9 * _GiB, 0)
    assert not source.process_known(8 * _GiB)  # the device rose by 8 GiB and no tree pid was ever listed
    gpu.processes = [(10, 8 * _GiB)]
    source._process_at = float("-inf")
    assert source.read() == (9 * _GiB, 8 * _GiB) and source.process_known(8 * _GiB)


def test_the_process_query_runs_every_refresh_not_every_reading(monkeypatch):          # review F11
    driver = FakeDriver([FakeGpu(used=_GiB, processes=[(10, _GiB)])])
    nvml, h = open_nvml(0, nvml=driver.install(monkeypatch))
    source = smp.NvmlSource(None, nvml=nvml, handle=h, tree=_Tree(10))
    for _ in range(20):
        source.read()
    assert driver.calls["nvmlDeviceGetMemoryInfo_v2"] == 20
    assert driver.calls["nvmlDeviceGetComputeRunningProcesses_v3"] == 2  # one query (two C calls), not 20


def test_every_device_of_a_tensor_parallel_start_is_sampled(monkeypatch):             # review F7
    gpus = [FakeGpu(used=3 * _GiB), FakeGpu(used=7 * _GiB)]
    nvml, handles = open_devices([0, 1], nvml=FakeDriver(gpus).install(monkeypatch))
    source = smp.NvmlSource(None, nvml=nvml, handles=handles, tree=None)
    assert source.read()[0] == 7 * _GiB
    gpus[0].used = 9 * _GiB
    assert source.read()[0] == 9 * _GiB and source.device_peaks == [9 * _GiB, 7 * _GiB]


def test_a_kv_allocation_after_the_marker_is_not_a_profile_peak():                      # review F5
    class Src:
        kind, interval_s = "fake", 0.01

        def __init__(self, r):
            self.r = list(r)

        def read(self):
            return self.r.pop(0)

    ts = [9.95 + 0.01 * i for i in range(20)]
    s = smp.Sampler(Src([(12 * _GiB if t < 10.03 else 20 * _GiB, 0) for t in ts]), store_every_s=0.1)
    for t in ts:
        s.tick(now=s.t0 + t)
    s.stop()
    peaks = tl.phase_peaks(s.samples, tl.phase_boundaries({"weights_start": 1.0, "profile_done": 10.0}), True)
    assert peaks["weights"] == 12 * _GiB and peaks["kv_cache"] == 20 * _GiB
    rows = s.timeline_rows()  # the CSV is still downsampled, and its maximum is the exact peak
    assert len(rows) == 2 and max(r.device_bytes for r in rows) == 20 * _GiB


def test_without_a_kv_marker_there_is_no_before_kv_peak():                              # review F6
    readings = [smp.Sample(0.0, _GiB, 0), smp.Sample(9.0, 21 * _GiB, 0)]
    peaks = tl.phase_peaks(readings, tl.phase_boundaries({}), True)
    assert [peaks[p] for p in ("init", "weights", "profile") if p in peaks] == []
    assert not tl.has_kv_marker({"weights_start": 1.0}) and tl.has_kv_marker({"ready": 9.0})


def test_a_failing_device_read_is_retried_and_a_dead_device_fails_the_sampling(monkeypatch):   # review F4
    gpu = FakeGpu(used=_GiB, errors={"nvmlDeviceGetMemoryInfo_v2": [NVML_ERROR_UNKNOWN] * 3})
    nvml, h = open_nvml(0, nvml=FakeDriver([gpu]).install(monkeypatch))
    s = smp.Sampler(smp.NvmlSource(None, nvml=nvml, handle=h, tree=None)).start()
    deadline = time.monotonic() + 5
    while s.readings < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    gpu.errors["nvmlDeviceGetMemoryInfo_v2"] = 15  # NVML_ERROR_GPU_IS_LOST from now on
    while s.error is None and time.monotonic() < deadline:
        time.sleep(0.01)
    s.stop()
    summary = s.summary(wall_s=1.0)
    assert summary["failed_reads"] >= 3 + smp.MAX_FAILED_READS and s.readings >= 5
    assert "NVMLError_GpuIsLost" in summary["error"]


def test_stop_does_not_hang_on_a_hung_read():                                          # review F11
    class Hung:
        kind, interval_s = "fake", 0.01

        def read(self):
            time.sleep(3)
            return 0, 0

    s = smp.Sampler(Hung()).start()
    time.sleep(0.05)
    t = time.monotonic()
    s.stop(timeout_s=0.2)
    assert time.monotonic() - t < 1.0 and "did not stop" in s.error


def test_the_loop_keeps_its_rate_when_each_read_takes_half_the_interval():              # review F11
    """On a simulated clock: reads of 5 ms every 10 ms give 100 readings per second (the old loop, which waited
    the full interval after each read, gave 66)."""
    clock = [0.0]

    class Slow:
        kind, interval_s = "fake", 0.01

        def read(self):
            clock[0] += 0.005
            return 1, 0

    s = smp.Sampler(Slow(), clock=lambda: clock[0])

    def wait(seconds):
        clock[0] += seconds
        return clock[0] >= 1.0

    s._wait = wait
    s._run()
    assert s.readings == 100 and s.max_gap_s == pytest.approx(0.01)


@pytest.mark.slow
def test_sampling_rate_on_a_slowed_nvml(monkeypatch):                                   # review F11 (benchmark)
    """The achieved rate in real time, with NVML latencies as measured on real drivers (MangoHud#2104): the memory
    query (12 us there) takes 1 ms here, the process query 4.5 ms per C call (two per query, every 0.2 s). The
    figure depends on the machine's load; it is printed, and stated in docs/gpu-box.md."""
    driver = FakeDriver([FakeGpu(used=_GiB, processes=[(10, _GiB)])])
    driver.latency.update({"nvmlDeviceGetMemoryInfo_v2": 0.001, "nvmlDeviceGetComputeRunningProcesses_v3": 0.0045})
    nvml, h = open_nvml(0, nvml=driver.install(monkeypatch))
    s = smp.Sampler(smp.NvmlSource(None, nvml=nvml, handle=h, tree=_Tree(10))).start()
    time.sleep(2.0)
    s.stop()
    gaps = sorted(b.t_s - a.t_s for a, b in zip(s.samples, s.samples[1:]))
    rate = s.readings / (s.samples[-1].t_s - s.samples[0].t_s)
    print(f"\nsampling on a slowed fake NVML: {rate:.1f} readings/s, median gap {statistics.median(gaps) * 1e3:.1f} ms, "
          f"95th percentile {gaps[int(0.95 * len(gaps))] * 1e3:.1f} ms, max {gaps[-1] * 1e3:.1f} ms, "
          f"{driver.calls['nvmlDeviceGetComputeRunningProcesses_v3'] // 2} process queries")
    assert 7 <= driver.calls["nvmlDeviceGetComputeRunningProcesses_v3"] // 2 <= 11  # every 0.2 s, not per reading
    assert rate >= 20  # a floor even on a machine loaded 7x over (56-67/s measured so); ~100/s unloaded


def test_a_garbled_process_list_makes_the_process_figure_unknown(monkeypatch):         # review F10 (535.43-535.86)
    gpu = FakeGpu(used=5 * _GiB, total=24 * _GiB, processes=[(10, 1 << 62)])
    nvml, h = open_nvml(0, nvml=FakeDriver([gpu], driver="535.54.03").install(monkeypatch))
    source = smp.NvmlSource(None, nvml=nvml, handle=h, tree=_Tree(10))
    assert source.read() == (5 * _GiB, 0)
    assert "garbled" in source.process_error and not source.process_known(0)
