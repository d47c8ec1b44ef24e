"""engine/launch.py: the device and the process group must be clean after a start (fakes, a plain process group)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path as _Path
from types import SimpleNamespace

import pytest

from diagnostics.engine.launch import DeviceNotClean, StartSpec, _reap_group, _settle_device, group_members
from diagnostics.engine.sampler import ProcessTree


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
