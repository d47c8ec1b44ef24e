"""run_start(spec): one engine start in its own process group, measured, and the device left clean.

Sequence: take the global engine lock -> (GPU) read the baseline device memory -> write the spec JSON ->
spawn `python -m diagnostics.engine.child` with start_new_session=True (stdout+stderr -> spec.log_path) ->
sample memory until it exits or the timeout kills the whole group (SIGTERM, then SIGKILL after grace_s) ->
make sure nothing of the group survives and (GPU) the device is back near its baseline, else DeviceNotClean ->
mark the phases from the log's timestamps, compute per-phase peaks, write the timeline CSV.

The lock (fcntl.flock on /tmp/vllm-engine.lock, or $VLLM_MEMCHECK_ENGINE_LOCK) serialises engine starts across
every process on the machine — pytest-xdist workers, a second sweep, a developer's shell — because two engines
on one device would measure each other. It is held from the baseline reading until the device is clean again.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from diagnostics.engine import sampler as smp
from diagnostics.units import GiB, to_gib

DEFAULT_LOCK = "/tmp/vllm-engine.lock"
LOCK_ENV = "VLLM_MEMCHECK_ENGINE_LOCK"
BASE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "VLLM_DO_NOT_TRACK": "1",
    "PYTHONUNBUFFERED": "1",
}
POLL_S = 0.05
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class DeviceNotClean(RuntimeError):
    """Memory (GPU) or processes (CPU) of a finished start did not go away: later measurements would be garbage."""


@dataclass
class StartSpec:
    model: str
    settings: dict
    card: object  # diagnostics.cards.Card (or its short name); "cpu" means vLLM's CPU backend
    load_format: str
    timeout_s: float
    request: bool
    image_size: tuple[int, int]
    env: dict
    log_path: Path
    timeline_path: Path
    id: str | None = None  # names the start in errors; default: the log file's stem
    prompt: str | None = None  # default: diagnostics.kit.IMAGE_PROMPT with an image, a plain sentence without
    image: bool | None = None  # send an image with the request; None: when limit_mm_per_prompt allows one
    max_tokens: int = 8
    grace_s: float = 10.0  # SIGTERM -> SIGKILL
    settle_timeout_s: float = 30.0  # how long the device may take to return to its baseline
    settle_tolerance_gib: float = 0.25  # GPU: "back at baseline" means within this
    on_spawn: Callable[[int], None] | None = None  # called with the child's pid (= its process group id)

    @property
    def name(self) -> str:
        return self.id or Path(self.log_path).stem

    @property
    def is_cpu(self) -> bool:
        return bool(getattr(self.card, "is_cpu", False)) or getattr(self.card, "name", self.card) == "cpu"


@dataclass
class StartResult:
    returncode: int | None
    signal: str | None
    timed_out: bool
    wall_s: float
    startup_s: float | None
    peak_device_gib: float | None
    peak_process_gib: float | None
    phase_peaks_gib: dict
    torch_peak_gib: float | None
    request: dict | None
    log_path: Path
    timeline_path: Path
    # beyond the architecture's fields
    before_kv_peak_gib: float | None = None  # max over init/weights/profile: what the profile threshold gates
    phase_times_s: dict = field(default_factory=dict)  # marker -> seconds since spawn (+-1 s, see sampler.py)
    baseline_device_gib: float | None = None
    device_after_gib: float | None = None
    sampler: dict = field(default_factory=dict)  # kind, readings, error
    child: dict = field(default_factory=dict)  # the child's own result file
    leftover_pids_killed: list = field(default_factory=list)
    lock_wait_s: float = 0.0
    started_at: str | None = None
    finished_at: str | None = None

    def to_json(self) -> dict:
        d = asdict(self)
        d["log_path"], d["timeline_path"] = str(self.log_path), str(self.timeline_path)
        return d


def outcome_of(result: StartResult, log_outcome: str) -> str:
    """The start's outcome: the harness's own facts (timeout, killed by a signal) beat what the log shows."""
    if result.timed_out:
        return "timeout"
    if result.signal is not None and log_outcome in ("ok", "unknown"):
        return "crash"
    if result.returncode not in (0, None) and log_outcome == "ok":
        return "error"
    return log_outcome


def lock_path() -> str:
    return os.environ.get(LOCK_ENV) or DEFAULT_LOCK


@contextlib.contextmanager
def engine_lock():
    """Exclusive fcntl.flock on the engine lock file; yields the seconds spent waiting for it."""
    path = lock_path()
    with open(path, "a+") as f:
        t = time.monotonic()
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield time.monotonic() - t
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def wants_image(spec: StartSpec) -> bool:
    if spec.image is not None:
        return spec.image
    limits = spec.settings.get("limit_mm_per_prompt") or {}
    return int(limits.get("image", 0) or 0) > 0


def child_spec(spec: StartSpec, result_path: Path) -> dict:
    image = bool(spec.request and wants_image(spec))
    prompt = spec.prompt
    if prompt is None and image:
        from diagnostics.kit import IMAGE_PROMPT

        prompt = IMAGE_PROMPT
    model = str(Path(spec.model).resolve()) if Path(spec.model).exists() else spec.model  # local dir or hub id
    return {"model": model, "settings": spec.settings, "load_format": spec.load_format,
            "request": spec.request, "image": image, "image_size": list(spec.image_size), "prompt": prompt,
            "max_tokens": spec.max_tokens, "result_path": str(result_path)}


def child_env(spec: StartSpec) -> dict:
    env = dict(os.environ)
    env.update(BASE_ENV)
    paths = [str(PROJECT_ROOT)]
    if spec.is_cpu:
        from diagnostics.kit import CPU_SHIM_DIR

        paths.insert(0, CPU_SHIM_DIR)
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update({k: str(v) for k, v in (spec.env or {}).items()})
    return env


def signal_name(returncode: int | None) -> str | None:
    if returncode is None or returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is pgid."""
    import psutil

    members = []
    for p in psutil.process_iter(["status"]):
        try:
            if os.getpgid(p.pid) == pgid and p.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(p.pid)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return members


def kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def first_stamp(log_path: Path) -> str | None:
    try:
        with open(log_path, "r", encoding="utf-8", errors="replace") as f:
            m = smp.LOG_STAMP.search(f.read(1 << 16))
    except OSError:
        return None
    return m.group(1) if m else None


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def run_start(spec: StartSpec) -> StartResult:
    """Start the engine the spec describes, measure it, and leave the device as it was (see module doc)."""
    # Absolute paths: the child must find its spec, and the caller's relative paths keep their meaning.
    log_path, timeline_path = Path(spec.log_path).resolve(), Path(spec.timeline_path).resolve()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    timeline_path.parent.mkdir(parents=True, exist_ok=True)
    result_path = log_path.with_suffix(".result.json")
    spec_path = log_path.with_suffix(".spec.json")
    with contextlib.suppress(FileNotFoundError):
        result_path.unlink()
    spec_path.write_text(json.dumps(child_spec(spec, result_path), indent=1, default=str), encoding="utf-8")

    with engine_lock() as waited:
        nvml = handle = None
        baseline = None
        if not spec.is_cpu:
            nvml, handle = smp.open_nvml()
            baseline = int(nvml.nvmlDeviceGetMemoryInfo(handle).used)
        started_at = utc_now()
        with open(log_path, "wb") as log:
            spawn_wall, spawn_mono = time.time(), time.monotonic()
            proc = subprocess.Popen([sys.executable, "-m", "diagnostics.engine.child", str(spec_path)],
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=child_env(spec), start_new_session=True)
        pgid = proc.pid
        try:
            source = (smp.RssSource(proc.pid) if spec.is_cpu
                      else smp.NvmlSource(proc.pid, nvml=nvml, handle=handle))
            sampler = smp.Sampler(source)
            sampler.t0 = spawn_mono
            sampler.start()
            if spec.on_spawn is not None:
                spec.on_spawn(proc.pid)
            timed_out, seen_stamp, seen_t = _wait(proc, spec, log_path, spawn_mono)
        finally:
            if proc.poll() is None:  # an exception (Ctrl-C) in here must not leave an engine running
                kill_group(pgid, signal.SIGKILL)
                proc.wait()
        wall_s = time.monotonic() - spawn_mono
        leftovers = _reap_group(pgid, source, spec)
        sampler.stop()
        device_after = _settle_device(nvml, handle, baseline, spec) if nvml is not None else None
        if nvml is not None:
            source.close()
    return _result(spec, proc.returncode, timed_out, wall_s, sampler, result_path, log_path, timeline_path,
                   spawn_wall, seen_stamp, seen_t, baseline, device_after, leftovers, waited, started_at)


def _wait(proc, spec: StartSpec, log_path: Path, spawn_mono: float):
    """Wait for the child; on timeout kill the group. Also note when the log's first stamp shows up."""
    seen_stamp = seen_t = None
    deadline = spawn_mono + spec.timeout_s
    while proc.poll() is None:
        now = time.monotonic()
        if seen_stamp is None:
            seen_stamp = first_stamp(log_path)
            if seen_stamp is not None:
                seen_t = now - spawn_mono
        if now >= deadline:
            kill_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=spec.grace_s)
            except subprocess.TimeoutExpired:
                pass
            kill_group(proc.pid, signal.SIGKILL)  # also the group's other processes, which may ignore SIGTERM
            proc.wait()
            return True, seen_stamp, seen_t
        time.sleep(POLL_S)
    return False, seen_stamp, seen_t


def _reap_group(pgid: int, source, spec: StartSpec) -> list[int]:
    """Wait for the group (and every process seen in the tree) to end; SIGKILL stragglers; raise if any stay."""
    tree = source.tree

    def alive() -> list[int]:
        return sorted(set(group_members(pgid)) | set(tree.alive_seen() if tree is not None else []))

    deadline = time.monotonic() + spec.settle_timeout_s
    left = alive()
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = alive()
    if not left:
        return []
    killed = list(left)
    kill_group(pgid, signal.SIGKILL)
    for pid in left:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    if alive():
        raise DeviceNotClean(f"processes {alive()} of {spec.name} survived SIGKILL; stopping the sweep instead "
                             "of measuring garbage")
    return killed


def _settle_device(nvml, handle, baseline: int, spec: StartSpec) -> int:
    """GPU: wait until NVML's used memory is back within tolerance of the baseline, else DeviceNotClean."""
    limit = baseline + spec.settle_tolerance_gib * GiB
    deadline = time.monotonic() + spec.settle_timeout_s
    while True:
        used = int(nvml.nvmlDeviceGetMemoryInfo(handle).used)
        if used <= limit:
            return used
        if time.monotonic() >= deadline:
            raise DeviceNotClean(f"device memory did not return to baseline ({to_gib(used):.2f} GiB vs "
                                 f"{to_gib(baseline):.2f} GiB) after {spec.name}; stopping the sweep instead of "
                                 "measuring garbage")
        time.sleep(0.25)


def _log_timestamps(log_text: str) -> dict:
    try:
        from diagnostics.logreader import read_log
    except ImportError:  # the reader is another module; a start is still measured without phase marks
        return {}
    return dict(read_log(log_text).timestamps)


def _result(spec, returncode, timed_out, wall_s, sampler, result_path, log_path, timeline_path, spawn_wall,
            seen_stamp, seen_t, baseline, device_after, leftovers, waited, started_at) -> StartResult:
    try:
        child = json.loads(result_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        child = {}
    log_text = log_path.read_text(encoding="utf-8", errors="replace")
    times = smp.phase_times(_log_timestamps(log_text), spawn_wall, seen_stamp, seen_t)
    bounds = smp.phase_boundaries(times)
    on_gpu = sampler.peak.device_bytes is not None
    smp.write_timeline_csv(timeline_path, sampler.samples, bounds)
    peaks = {k: round(to_gib(v), 4) for k, v in smp.phase_peaks(sampler.samples, bounds, on_gpu).items()}
    before_kv = [peaks[p] for p in smp.BEFORE_KV_PHASES if p in peaks]
    torch_stats = child.get("torch") or {}
    torch_peak = torch_stats.get("max_memory_allocated")
    ready_wall = child.get("engine_ready_wall")
    return StartResult(
        returncode=returncode,
        signal=signal_name(returncode),
        timed_out=timed_out,
        wall_s=round(wall_s, 3),
        startup_s=round(ready_wall - spawn_wall, 3) if ready_wall else None,
        peak_device_gib=round(to_gib(sampler.peak.device_bytes), 4) if on_gpu else None,
        peak_process_gib=round(to_gib(sampler.peak.process_bytes), 4) if sampler.readings else None,
        phase_peaks_gib=peaks,
        torch_peak_gib=round(to_gib(torch_peak), 4) if torch_peak is not None else None,
        request=child.get("request"),
        log_path=log_path,
        timeline_path=timeline_path,
        before_kv_peak_gib=max(before_kv) if before_kv else None,
        phase_times_s={k: round(v, 3) for k, v in times.items()},
        baseline_device_gib=round(to_gib(baseline), 4) if baseline is not None else None,
        device_after_gib=round(to_gib(device_after), 4) if device_after is not None else None,
        sampler={"kind": sampler.source.kind, "readings": sampler.readings, "stored": len(sampler.samples),
                 "error": sampler.error},
        child=child,
        leftover_pids_killed=leftovers,
        lock_wait_s=round(waited, 3),
        started_at=started_at,
        finished_at=utc_now(),
    )
