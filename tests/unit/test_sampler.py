from __future__ import annotations

import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest

from diagnostics.engine.sampler import (
    NoGPU,
    NvmlSource,
    Peak,
    RssSource,
    Sampler,
    open_nvml,
    tree_gpu_bytes,
    visible_device,
)
from diagnostics.errors import UsageError

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
    # three windows, each holding its own maxima (device and process independently)
    assert [(x.device_bytes, x.process_bytes) for x in s.samples] == [(900, 90), (300, 20), (50, 1)]
    assert [x.t_s for x in s.samples] == pytest.approx([0.0, 0.11, 0.24])
    assert s.readings == 6


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


class FakeNvml:
    """Enough of pynvml for NvmlSource: a card with `used` bytes and a list of compute processes."""

    class NVMLError(Exception):
        pass

    def __init__(self, used, processes, fail_processes=False):
        self.used, self.processes, self.fail_processes = used, processes, fail_processes

    def nvmlDeviceGetMemoryInfo(self, handle):
        assert handle == "handle-0"
        return SimpleNamespace(used=self.used, total=24 << 30, free=(24 << 30) - self.used)

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        if self.fail_processes:
            raise self.NVMLError("Not Supported")
        return self.processes


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


def test_nvml_source_reads_device_used_and_the_tree_share():
    nvml = FakeNvml(used=20 << 30, processes=[proc(10, 15 << 30), proc(20, 2 << 30), proc(99, 3 << 30)])
    src = NvmlSource(None, nvml=nvml, handle="handle-0", tree=FakeTree({10, 20}))
    assert src.read() == (20 << 30, 17 << 30)
    nvml.fail_processes = True  # e.g. vGPU/MIG setups: device figure still comes back
    assert src.read() == (20 << 30, 0)


def test_nvml_source_feeds_the_sampler_peaks():
    nvml = FakeNvml(used=1 << 30, processes=[proc(10, 512 << 20)])
    s = Sampler(NvmlSource(None, nvml=nvml, handle="handle-0", tree=FakeTree({10})), store_every_s=0.1)
    for i, used in enumerate([1 << 30, 9 << 30, 4 << 30]):
        nvml.used = used
        nvml.processes = [proc(10, used // 2)]
        s.tick(now=s.t0 + i * 0.2)
    s.stop()
    assert s.peak.device_bytes == 9 << 30 and s.peak.process_bytes == (9 << 30) // 2
    assert s.peak.device_t_s == pytest.approx(0.2)


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


def test_sampler_thread_records_an_error_instead_of_dying_silently():
    class Broken(ScriptedSource):
        def read(self):
            raise OSError("boom")

    s = Sampler(Broken([])).start()
    s._thread.join(timeout=5)
    s.stop()
    assert s.error == "OSError: boom" and s.samples == []


# --- phases from the log's stamps -----------------------------------------------------------------------

import time as _time  # noqa: E402

from diagnostics.engine.sampler import (  # noqa: E402
    Sample,
    phase_at,
    phase_boundaries,
    phase_peaks,
    phase_times,
    stamp_epoch,
    write_timeline_csv,
)


def local_epoch(text):
    return _time.mktime(_time.strptime(text, "%Y-%m-%d %H:%M:%S"))


def test_stamp_epoch_picks_the_year_nearest_the_spawn():
    spawn = local_epoch("2027-01-01 00:00:02")
    assert stamp_epoch("12-31 23:59:59", spawn) == local_epoch("2026-12-31 23:59:59")
    assert stamp_epoch("01-01 00:00:05", spawn) == spawn + 3


def test_phase_times_map_stamps_to_seconds_since_spawn():
    spawn = local_epoch("2026-11-24 15:00:00") + 0.3
    stamps = {"weights_start": "11-24 15:00:05", "ready": "11-24 15:00:09", "not_a_marker": "11-24 15:00:07"}
    # the parent saw the first stamped line 0.9 s after spawn; its stamp (15:00:01) is consistent: no shift
    times = phase_times(stamps, spawn, first_stamp="11-24 15:00:01", first_seen_t_s=0.9)
    assert times == {"weights_start": pytest.approx(4.7), "ready": pytest.approx(8.7)}


def test_phase_times_realign_when_the_log_clock_disagrees():
    spawn = local_epoch("2026-11-24 15:00:00") + 0.3
    stamps = {"weights_start": "11-24 16:00:05"}  # child logged in another time zone (+1 h)
    times = phase_times(stamps, spawn, first_stamp="11-24 16:00:01", first_seen_t_s=0.9)
    # aligned on the first stamp: seen at 0.9 s, taken as mid-second -> 15:00:01 maps to 0.4 s
    assert times["weights_start"] == pytest.approx(4.4)


def test_phase_boundaries_order_ties_like_vllm_and_label_graph_capture():
    times = {"ready": 16.0, "kv_done": 16.0, "profile_done": 16.0, "weights_start": 15.0}
    b = phase_boundaries(times)
    assert b == [(0.0, "init"), (15.0, "weights"), (16.0, "kv_cache"), (16.0, "kv_cache"), (16.0, "ready")]
    assert [phase_at(t, b) for t in (0.0, 14.9, 15.0, 15.99, 16.0, 99.0)] == [
        "init", "init", "weights", "weights", "ready", "ready"]
    g = phase_boundaries({"weights_done": 5.0, "kv_done": 10.0, "graphs_done": 30.0, "ready": 31.0})
    assert [phase_at(t, g) for t in (6, 11, 30.5, 40)] == ["profile", "cuda_graph", "warmup", "ready"]


def test_phase_peaks_and_timeline_csv(tmp_path):
    samples = [Sample(0.0, 1 << 30, 5), Sample(1.0, 3 << 30, 9), Sample(2.0, 2 << 30, 7), Sample(3.0, 8 << 30, 1)]
    b = phase_boundaries({"weights_start": 0.5, "kv_done": 2.5})
    assert phase_peaks(samples, b, use_device=True) == {"init": 1 << 30, "weights": 3 << 30, "kv_cache": 8 << 30}
    assert phase_peaks(samples, b, use_device=False) == {"init": 5, "weights": 9, "kv_cache": 1}
    path = tmp_path / "t.csv"
    write_timeline_csv(path, samples, b)
    lines = path.read_text().splitlines()
    assert lines[0] == "t_s,device_used_gib,process_gib,phase"
    assert lines[2] == "1.000,3.0000,0.0000,weights" and lines[4].endswith(",kv_cache")


# --- the device must be clean after a start (launch's checks, with fakes and a plain process group) ----------

from pathlib import Path as _Path  # noqa: E402

from diagnostics.engine.launch import DeviceNotClean, StartSpec, _reap_group, _settle_device, group_members  # noqa: E402
from diagnostics.engine.sampler import ProcessTree  # noqa: E402


def _spec(**kw):
    return StartSpec(model="m", settings={}, card="3090", load_format="auto", timeout_s=1, request=False,
                     image_size=(1, 1), env={}, log_path=_Path("/tmp/x/mml4096-seqs32-util1.0.log"),
                     timeline_path=_Path("/tmp/x/t.csv"), **kw)


def test_device_not_back_at_baseline_stops_the_sweep():
    nvml = FakeNvml(used=int(3.5 * (1 << 30)), processes=[])
    with pytest.raises(DeviceNotClean) as info:
        _settle_device(nvml, "handle-0", baseline=1 << 30, spec=_spec(settle_timeout_s=0))
    assert str(info.value) == ("device memory did not return to baseline (3.50 GiB vs 1.00 GiB) after "
                               "mml4096-seqs32-util1.0; stopping the sweep instead of measuring garbage")
    nvml.used = (1 << 30) + (100 << 20)  # within the 0.25 GiB tolerance
    assert _settle_device(nvml, "handle-0", baseline=1 << 30, spec=_spec(settle_timeout_s=0)) == nvml.used


def test_leftover_processes_of_the_group_are_killed_and_reported():
    # the group leader exits at once and leaves a grandchild sleeping in its process group
    code = "import subprocess, sys; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); print('x')"
    leader = subprocess.Popen([sys.executable, "-c", code], start_new_session=True, stdout=subprocess.PIPE, text=True)
    tree = ProcessTree(leader.pid)
    leader.stdout.readline()
    tree.processes()  # the sampler would have seen the grandchild while the leader lived
    leader.wait(timeout=30)
    left = group_members(leader.pid)
    assert len(left) == 1
    killed = _reap_group(leader.pid, SimpleNamespace(tree=tree), _spec(settle_timeout_s=0.5))
    assert killed == left and group_members(leader.pid) == []


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
