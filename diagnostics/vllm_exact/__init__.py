"""The optional vLLM-backed path of `plan` (issue #20 point 3): ask the installed vLLM's own classes, on the CPU,
with no weights, for rank 0's parameter bytes and the KV cache's per-layer spec of a checkpoint's config.json.

This module imports neither torch nor vLLM: it runs `diagnostics.vllm_exact.child` in a subprocess (vLLM's import
alone takes ~10 s; a model build ~10-30 s on 2 cores) with a timeout, and caches each answer as JSON under
$VLLM_MEMCHECK_CACHE (default ~/.cache/vllm-memcheck)/vllm-exact, keyed by the config files' bytes, the vLLM
version and the settings that change what vLLM builds. `plan` uses it only when the planned version is the
installed one (`applies`); every other version keeps the pure rules of `diagnostics.predict`.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from diagnostics.models import STORED_DIR, ModelSpec
from diagnostics.predict.exact import VllmExact
from diagnostics.versions import installed_version, read_version

# plan settings that change what vLLM builds or how it sizes the KV cache (passed to EngineArgs by the child)
SETTING_KEYS = ("tensor_parallel_size", "dtype", "kv_cache_dtype", "max_model_len", "quantization",
                "enable_expert_parallel", "hf_overrides", "max_num_batched_tokens", "block_size")
CONFIG_FILES = ("config.json", "preprocessor_config.json", "video_preprocessor_config.json",
                "processor_config.json", "generation_config.json")
DEFAULT_TIMEOUT_S = 240.0
ROOT = Path(__file__).resolve().parents[2]
SHIM_DIR = Path(__file__).resolve().parents[1] / "kit" / "cpu_shim"


OFF_ENV = "VLLM_MEMCHECK_VLLM_EXACT"  # "off" (or 0/no/false): the environment's twin of plan --no-vllm-exact


def applies(version: str) -> bool:
    """True when vLLM is installed (package metadata, nothing imported), `version` is that version, and
    $VLLM_MEMCHECK_VLLM_EXACT does not turn the path off."""
    if os.environ.get(OFF_ENV, "").strip().lower() in ("off", "0", "no", "false"):
        return False
    installed = read_version(installed_version())
    return installed is not None and read_version(version) == installed


def model_dir(model: ModelSpec) -> Path | None:
    """The checkpoint directory vLLM can be handed: the folder of the config.json the spec was read from (a stored
    config or a local directory); None for a built-in spec (MiniCPM-V-2_6 has no config.json here)."""
    source = Path(str(model.source))
    return source.parent if source.name == "config.json" and source.is_file() else None


def engine_settings(settings: dict, model: ModelSpec | None = None) -> dict:
    """The subset of plan's resolved settings the child hands to EngineArgs ("auto" values left to vLLM); for a
    stored config directory, the family's stored_hf_overrides merged under the user's hf_overrides (what vLLM would
    read from the real checkpoint's weights, which the directory lacks)."""
    eng = {k: settings[k] for k in SETTING_KEYS if settings.get(k) not in (None, "auto")}
    directory = model_dir(model) if model is not None else None
    if directory is not None and directory.parent == STORED_DIR and model.family is not None:
        extra = model.family.info.stored_hf_overrides
        if extra:
            eng["hf_overrides"] = {**extra, **(eng.get("hf_overrides") or {})}
    return eng


def cache_dir() -> Path:
    base = os.environ.get("VLLM_MEMCHECK_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "vllm-memcheck")
    return Path(base) / "vllm-exact"


# what the child computes; a new revision leaves older cached answers unread (2: hybrid state pools sized on the
# GPU's block alignment, issue 20)
CHILD_REVISION = 2


def cache_key(directory: Path, version: str, settings: dict) -> str:
    """sha256 over the config files' bytes, the vLLM version, the engine settings (sorted JSON) and CHILD_REVISION."""
    h = hashlib.sha256(f"{version}\n{json.dumps(settings, sort_keys=True)}\n".encode())
    if CHILD_REVISION > 1:
        h.update(f"child revision {CHILD_REVISION}\n".encode())
    for name in CONFIG_FILES:
        path = directory / name
        if path.is_file():
            h.update(name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:32]


def child_env() -> dict:
    """The child's environment: offline hub, the package importable, and the CPU shim (torchvision stub for
    vLLM's VLM modules; vLLM inspects model classes in a further subprocess, hence sitecustomize on PYTHONPATH)."""
    path = os.pathsep.join(p for p in (str(SHIM_DIR), str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, PYTHONPATH=path, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                VLLM_MEMCHECK_TORCHVISION_STUB="visible")


def run_child(jobs: list[dict], timeout_s: float = DEFAULT_TIMEOUT_S) -> list[dict]:
    """One subprocess answers every job ({"model": DIR, "settings": {...}}); a list of the child's answers, each
    {"error": "..."} where vLLM could not build it. RuntimeError when the child fails as a whole or times out."""
    cmd = [sys.executable, "-m", "diagnostics.vllm_exact.child", json.dumps(jobs)]
    try:
        done = subprocess.run(cmd, env=child_env(), capture_output=True, text=True, timeout=timeout_s, cwd=ROOT)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"vLLM's own sizing timed out after {timeout_s:g} s") from None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1][:300]
        raise RuntimeError(f"vLLM's own sizing failed (exit {done.returncode}): {tail}")
    answers = json.loads(lines[-1])
    if not isinstance(answers, list) or len(answers) != len(jobs):
        raise RuntimeError("vLLM's own sizing answered in an unexpected shape")
    return answers


def ask(model: ModelSpec, version: str, settings: dict, timeout_s: float = DEFAULT_TIMEOUT_S
        ) -> tuple[VllmExact | None, str | None]:
    """(vLLM's own figures, None) or (None, why not) for `model` under plan's resolved `settings`.

    Cached per (config files, version, engine settings); a failure vLLM reports for the model is cached too (the
    same inputs fail the same way), a timeout is not."""
    directory = model_dir(model)
    if directory is None:
        return None, f"{model.name} has no config.json here for vLLM's own code"
    if int(settings.get("pipeline_parallel_size") or 1) > 1 or model.is_gguf:  # one stage-less bf16 build only
        return None, "vLLM's own classes are asked for one whole model here, not a pipeline stage or GGUF blocks"
    eng = engine_settings(settings, model)
    path = cache_dir() / f"{cache_key(directory, version, eng)}.json"
    answer = None
    if path.is_file():
        try:
            answer = json.loads(path.read_text())
        except (OSError, ValueError):
            answer = None
    if answer is None:
        try:
            answer = run_child([{"model": str(directory), "settings": eng}], timeout_s)[0]
        except RuntimeError as exc:
            return None, str(exc)
        _store(path, answer)
    if "error" in answer:
        return None, f"vLLM {version} could not build {model.name} on the CPU: {answer['error']}"
    return VllmExact.from_json(answer, eng), None


def _store(path: Path, answer: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(answer))
        tmp.replace(path)
    except OSError:
        pass  # a read-only home: the answer is still used, only not kept
