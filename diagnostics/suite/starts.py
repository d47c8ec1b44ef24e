"""How one combination's engine starts run (the plugin's Manager.start): the worst-case request they send, the
compile-cache state they start with (cold / warm / user), and the StartSpec of each start.

cold: a fresh VLLM_CACHE_ROOT and TORCHINDUCTOR_CACHE_DIR under `<run>/caches/<id>/startK` per start; warm: one
directory per combination, filled by a discarded warm-up start with the same settings (no request), then every
measured start reuses it; user: no variables set (whatever the user's caches hold). The directories are removed
when the combination is done. The record names the state (`cache_state`), and the warm-up's figures (`warmup`).
"""

from __future__ import annotations

import contextlib
import shutil

import pytest

from diagnostics.engine import launch
from diagnostics.engine.nvml import NoGPU
from diagnostics.errors import UsageError
from diagnostics.kit import IMAGE_PROMPT
from diagnostics.suite import hub, run
from diagnostics.suite.results import ResultWriter, file_stem
from diagnostics.suite.worst_case import worst_case
from diagnostics.units import utc_now

DEFAULT_IMAGE_SIZE = (1344, 1344)  # MiniCPM-V-2_6 at its slicing maximum (9 slices + the overview)


def worst_case_for(manager, combination, settings: dict) -> dict | None:
    """The worst-case request this combination's starts send (suite/worst_case.py), as the child takes it, or
    None: --worst-case on/off, else the matrix's worst_case, else on for GPU cards and off on the cpu card."""
    wanted = {"on": True, "off": False}.get(manager.worst_case_mode)
    if wanted is None:
        wanted = combination.worst_case if combination.worst_case is not None else not manager.card.is_cpu
    if not wanted:
        return None
    try:
        case = worst_case(manager.model_spec(), manager.card, manager.machine_info().get("vllm") or "", settings)
    except UsageError as err:
        pytest.fail(f"vllm-memcheck: {combination.id}: no worst-case request ({err}); set max_model_len in the "
                    "matrix or pass --worst-case=off", pytrace=False)
    data = case.to_json()
    if case.placeholders:
        data["placeholders"] = list(case.placeholders)
        data["prompt"] = manager.image_prompt() or IMAGE_PROMPT
    return data


def no_gpu_line(why: str, card_name: str | None) -> str:
    return (f"no usable GPU ({why}); run `python -m diagnostics plan --card {card_name or '3090'}` for a "
            "prediction, or --card=cpu for vLLM's CPU backend")


@contextlib.contextmanager
def caches(manager, combination, spec_for):
    """Yields cache_env(k) -> the environment of the k-th measured start: cold, a fresh cache directory per
    start (removed after); warm, one directory per combination, filled by a discarded warm-up start with the
    same settings first (its log: logs/ID.warmup.log); user, the user's own caches (no variables set)."""
    root = manager.run_dir / "caches" / combination.id
    manager.warmup = None
    try:
        if manager.cache_state == "warm":
            spec = spec_for("warmup", run.cache_env(root), warm_up=True)
            result = launch.run_start(spec)
            manager.warmup = {"returncode": result.returncode, "wall_s": result.wall_s,
                              "startup_s": result.startup_s, "log_file": f"logs/{spec.log_path.name}"}
        if manager.cache_state == "user":
            yield lambda k: {}
        elif manager.cache_state == "warm":
            yield lambda k: run.cache_env(root)
        else:
            def cold(k: int) -> dict:
                fresh = root / f"start{k + 1}"
                shutil.rmtree(fresh, ignore_errors=True)
                return run.cache_env(fresh)

            yield cold
    finally:
        shutil.rmtree(root, ignore_errors=True)


def start_spec(manager, combination, settings: dict, model_path: str, case: dict | None, name: str, env: dict,
               warm_up: bool = False) -> launch.StartSpec:
    """The StartSpec of one start named `name` (its log logs/NAME.log): a warm-up start sends no request and no
    worst case and gets no planted budget; planted_budget_mib is refused off the cpu card."""
    run_dir = manager.run_dir
    if combination.planted_budget_mib and not manager.card.is_cpu:
        pytest.fail(f"{combination.id}: planted_budget_mib is for the cpu card (a test of the harness)",
                    pytrace=False)
    spec = launch.StartSpec(
        model=model_path, settings=settings, card=manager.card,
        load_format=manager.load_format, timeout_s=manager.engine_timeout,
        request=combination.request and not warm_up,
        image_size=combination.image_size or DEFAULT_IMAGE_SIZE, env={**manager.engine_env(), **hub.start_env(model_path), **env},
        log_path=run_dir / "logs" / f"{file_stem(name)}.log",
        timeline_path=run_dir / "timelines" / f"{file_stem(name)}.csv", id=combination.id,
        image=manager.sends_image(settings) if combination.request else None, prompt=manager.image_prompt(),
        devices=manager.devices_for(settings), worst_case=None if warm_up else case,
        planted_budget_bytes=(combination.planted_budget_mib << 20
                              if combination.planted_budget_mib and not warm_up else None))
    spec.log_path.parent.mkdir(parents=True, exist_ok=True)
    spec.timeline_path.parent.mkdir(parents=True, exist_ok=True)
    return spec


def start_once(manager, combination, settings: dict, spec: launch.StartSpec, benchmark=None):
    """One engine start, judged: the plugin's Measurement (its record not yet written)."""
    started_at = utc_now()
    try:
        if benchmark is not None:
            result = benchmark.pedantic(launch.run_start, args=(spec,), rounds=1, iterations=1)
        else:
            result = launch.run_start(spec)
    except NoGPU as err:
        pytest.skip(no_gpu_line(str(err), manager.card.name if manager.card else None))
    except UsageError as err:  # the start's environment (CUDA_DEVICE_ORDER, too few GPUs, the lock): one line
        pytest.fail(f"vllm-memcheck: {err}", pytrace=False)
    except launch.DeviceNotClean as err:
        if err.result is not None:  # the start that left the device unclean is evidence: record it first
            ResultWriter(manager.run_dir).append(manager.judge(combination, settings, err.result, started_at).record)
        pytest.exit(f"vllm-memcheck: {err}", returncode=pytest.ExitCode.TESTS_FAILED)
    measurement = manager.judge(combination, settings, result, started_at)
    if benchmark is not None:
        record = measurement.record
        benchmark.extra_info.update({"combination": combination.id, "outcome": record["outcome"],
                                     "startup_s": result.startup_s,
                                     "peak_gib": record["peak_device_gib"] or record["peak_process_gib"]})
    return measurement
