"""engine/launch.py: the process group must be clean after a start (a plain process group); the child's
environment and the engine lock. The device side is in test_engine_devices.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path as _Path
from types import SimpleNamespace


from diagnostics.engine.launch import StartSpec, _reap_group, group_members
from diagnostics.engine.sampler import ProcessTree


def _spec(**kw):
    return StartSpec(model="m", settings={}, card="3090", load_format="auto", timeout_s=1, request=False,
                     image_size=(1, 1), env={}, log_path=_Path("/tmp/x/mml4096-seqs32-util1.0.log"),
                     timeline_path=_Path("/tmp/x/t.csv"), **kw)


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


# --- issue #16: the child's device order, the lock's permissions ------------------------------------------------

def test_child_env_pins_cuda_order_to_nvml_order(tmp_path):                             # review F7
    from diagnostics.engine.launch import StartSpec, child_env

    spec = StartSpec(model="m", settings={}, card="3090", load_format="auto", timeout_s=1, request=False,
                     image_size=(1, 1), env={"CUDA_VISIBLE_DEVICES": "1"}, log_path=tmp_path / "x.log",
                     timeline_path=tmp_path / "x.csv")
    env = child_env(spec)
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID" and env["CUDA_VISIBLE_DEVICES"] == "1"


def test_engine_lock_is_made_writable_for_every_user(tmp_path, monkeypatch):          # review F13
    import os
    import stat

    from diagnostics.engine import launch

    path = tmp_path / "engine.lock"
    monkeypatch.setenv(launch.LOCK_ENV, str(path))
    old = os.umask(0o022)
    try:
        with launch.engine_lock() as waited:
            assert waited >= 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666
