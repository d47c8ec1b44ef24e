"""tests/tools/device_check.py (the one-minute check for a GPU box) runs to the end on every kind of driver the
fake NVML driver models, so its first real run needs no fix."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from fake_nvml_driver import FakeDriver, FakeGpu, MiB

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import device_check

DRIVERS = {
    "h200": lambda: FakeDriver([FakeGpu("NVIDIA H200", total=143771 * MiB, used=8 * MiB, reserved=600 * MiB)]),
    "old-driver": lambda: FakeDriver([FakeGpu("Tesla T4", compute_capability=(7, 5))], driver="470.82.01"),
    "mig": lambda: FakeDriver([FakeGpu("NVIDIA A100-SXM4-40GB", mig_mode=1, mig=[
        FakeGpu("NVIDIA A100-SXM4-40GB MIG 3g.20gb", total=20096 * MiB)])]),
    "two-cards": lambda: FakeDriver([FakeGpu("NVIDIA GeForce RTX 3090"), FakeGpu("NVIDIA GeForce RTX 4090")]),
}


@pytest.mark.parametrize("kind", sorted(DRIVERS))
def test_device_check_reports_every_driver_without_crashing(kind, monkeypatch, tmp_path, capsys):
    DRIVERS[kind]().install(monkeypatch)
    monkeypatch.setattr(device_check, "ALLOC", "print('', flush=True)")  # no torch+CUDA in CI: the skip path
    monkeypatch.setattr(device_check, "ORDER", "print([])")
    assert device_check.main(["--json", str(tmp_path / "facts.json")]) == 0
    facts = json.loads((tmp_path / "facts.json").read_text())
    assert json.loads(capsys.readouterr().out) == facts
    first = facts["devices"][0]
    if kind == "h200":
        v1, v2 = first["v1_total_used_free_mib"], first["v2_total_reserved_used_free_mib"]
        assert v1[1] - v2[2] == v2[1] == 600  # v1 used - v2 used = reserved
    if kind == "old-driver":
        assert "FunctionNotFound" in first["v2_total_reserved_used_free_mib"]
        assert "NVMLLibraryMismatchError" in first["process_query_ms"]
    if kind == "mig":
        assert "NoPermission" in first["v1_total_used_free_mib"]
        assert first["mig_slices"][0][0].endswith("MIG 3g.20gb") and first["mig_slices"][0][2] == 20096
    if kind == "two-cards":
        assert [d["name"] for d in facts["devices"]] == ["NVIDIA GeForce RTX 3090", "NVIDIA GeForce RTX 4090"]
    assert facts["allocation_on_device_0"] in ({"skipped": "no torch with CUDA here"},) or "NoPermission" in str(
        facts["allocation_on_device_0"])
