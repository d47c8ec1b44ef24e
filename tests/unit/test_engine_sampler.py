"""engine/sampler.py: exact peaks over a downsampled timeline, RSS of a process tree, NVML readings (fakes)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest

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


def test_sampler_thread_records_an_error_instead_of_dying_silently():
    class Broken(ScriptedSource):
        def read(self):
            raise OSError("boom")

    s = Sampler(Broken([])).start()
    s._thread.join(timeout=5)
    s.stop()
    assert s.error == "OSError: boom" and s.samples == []
