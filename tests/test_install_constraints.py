"""Every pinned vLLM the upgrade gate may install resolves with its constraints file, as pip would on a fresh venv.

`scripts/install-vllm.sh VERSION --dry-run --ignore-installed --report R` runs the very pip command that
`scripts/install.sh gpu VERSION` and the tox gate environments run, together with this project's own runtime
requirements, and the report must show the pinned vLLM with a transformers inside the constraints (below 5).

Needs PyPI. A resolution fetches the metadata of ~120 packages: about 20 s of CPU and 1-4 min of wall time each
(measured on the project's loaded 2-core machine: 19 resolutions, 6 at a time, took 24 min, 6m47s of CPU). So by
default the test resolves the versions with their own file (the pins docs/upgrade-gate.md and tox name) and the
newest series file (CI_SERIES); MEMCHECK_RESOLVE=all resolves every file (one release per series file).
Without network the test skips, unless MEMCHECK_NETWORK_TESTS=required (set by .ci/run), where it fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "install-vllm.sh"
CONSTRAINTS = ROOT / "scripts" / "constraints"
# A series file (vllm-0.6.txt) is resolved with the newest release of its series that has no file of its own.
SERIES_PROBE = {"0.5": "0.5.4", "0.6": "0.6.6.post1", "0.7": "0.7.2", "0.8": "0.8.4", "0.9": "0.9.2",
                "0.10": "0.10.1.1", "0.11": "0.11.2", "0.20": "0.20.2", "0.21": "0.21.0", "0.22": "0.22.1",
                "0.23": "0.23.0"}
CI_SERIES = ("0.20",)  # the series files resolved by default, besides the exact-version files
WORKERS = 6
RESOLVE_TIMEOUT_S = 1200


def constraint_files(every: bool = True) -> dict[str, Path]:
    """version to resolve -> its constraints file; every=False: the exact-version files and CI_SERIES only."""
    out = {}
    for f in sorted(CONSTRAINTS.glob("vllm-*.txt")):
        tag = f.stem.removeprefix("vllm-")
        if every or tag not in SERIES_PROBE or tag in CI_SERIES:
            out[SERIES_PROBE.get(tag, tag)] = f
    return out


def project_requirements() -> list[str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]


def pip_options() -> list[str]:
    """--use-feature=fast-deps where this pip has it: reads wheel metadata by HTTP range instead of downloading
    every wheel (torch alone is 0.8 GB) from indexes that do not serve PEP 658 metadata."""
    help_text = subprocess.run([sys.executable, "-m", "pip", "install", "--help"], capture_output=True, text=True).stdout
    return ["--use-feature=fast-deps"] if "fast-deps" in help_text else []


def resolve(version: str, report: Path, extra: list[str]) -> subprocess.CompletedProcess:
    cmd = ["bash", str(SCRIPT), version, "--dry-run", "--ignore-installed", "-q", "--report", str(report), *extra,
           *project_requirements()]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PY": sys.executable},
                              timeout=RESOLVE_TIMEOUT_S)
    except subprocess.TimeoutExpired:  # this version fails, the others still report
        return subprocess.CompletedProcess(cmd, 124, "", f"pip did not resolve within {RESOLVE_TIMEOUT_S} s")


def pypi_reachable() -> bool:
    probe = subprocess.run([sys.executable, "-m", "pip", "index", "versions", "vllm"], capture_output=True, text=True,
                           timeout=120)
    return probe.returncode == 0 and "0.6.3" in probe.stdout


def test_every_series_file_has_a_probe_and_every_file_a_transformers_line():
    files = constraint_files()
    assert files, "scripts/constraints/ holds no vllm-*.txt"
    for version, f in files.items():
        assert Version(version), f"{f.name}: no release to resolve it with; add its series to SERIES_PROBE"
        reqs = [Requirement(line) for line in f.read_text().splitlines() if line and not line.startswith("#")]
        assert any(r.name == "transformers" and not r.specifier.contains("5.0.0") for r in reqs), f.name


@pytest.fixture(scope="module")
def resolutions(tmp_path_factory):
    if not pypi_reachable():
        if os.environ.get("MEMCHECK_NETWORK_TESTS") == "required":
            pytest.fail("PyPI is unreachable, and MEMCHECK_NETWORK_TESTS=required")
        pytest.skip("PyPI is unreachable: cannot resolve the pinned vLLM versions")
    files = constraint_files(every=os.environ.get("MEMCHECK_RESOLVE") == "all")
    out_dir, extra = tmp_path_factory.mktemp("resolve"), pip_options()
    with ThreadPoolExecutor(WORKERS) as pool:
        jobs = {v: pool.submit(resolve, v, out_dir / f"{v}.json", extra) for v in files}
        return {v: (job.result(), out_dir / f"{v}.json", files[v]) for v, job in jobs.items()}


@pytest.mark.slow
@pytest.mark.parametrize("version", sorted(constraint_files(), key=Version))
def test_pinned_vllm_resolves_with_its_constraints(resolutions, version):
    if version not in resolutions:
        pytest.skip("resolved only with MEMCHECK_RESOLVE=all (see the module docstring)")
    proc, report, constraints = resolutions[version]
    assert proc.returncode == 0, f"vllm=={version} with {constraints.name} does not resolve:\n{proc.stderr[-3000:]}"
    installed = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}
    assert installed["vllm"] == version
    transformers = Version(installed["transformers"])
    assert transformers.major < 5
    for line in constraints.read_text().splitlines():
        if line.startswith("transformers"):
            assert Requirement(line).specifier.contains(transformers), (version, transformers, line)
