"""run_start(spec): one engine start in its own process group, measured, and the device left clean.

Sequence: take the global engine lock -> (GPU) read the baseline device memory -> write the spec JSON ->
spawn `python -m diagnostics.engine.child` with start_new_session=True (stdout+stderr -> spec.log_path) ->
sample memory until it exits or the timeout kills the whole group (SIGTERM, then SIGKILL after grace_s) ->
make sure nothing of the group survives and (GPU) the device is back near its baseline, else DeviceNotClean ->
mark the phases from the log's timestamps, compute per-phase peaks, write the timeline CSV.

The lock (fcntl.flock on /tmp/vllm-engine.lock, or $VLLM_MEMCHECK_ENGINE_LOCK) serialises engine starts across
every process on the machine — pytest-xdist workers, a second sweep, a developer's shell — because two engines
on one device would measure each other. It is held from the baseline reading until the device is clean again.
A start that claims GPUs (`StartSpec.devices`, pytest-xdist with one GPU per worker) takes one lock per claimed
GPU instead and measures the group of them (engine/gpus.py), so starts on different GPUs run side by side.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from collections.abc import Callable

from diagnostics.engine import gpus as devices, timeline
from diagnostics.engine.devices import DeviceNotClean, StartDevices, pin_cuda_order, start_devices
from diagnostics.engine.sampler import NvmlSource, RssSource, Sampler
from diagnostics.errors import UsageError
from diagnostics.kit import CPU_SHIM_DIR, IMAGE_PROMPT
from diagnostics.logs.reader import read_log
from diagnostics.logs.record import LogRecord
from diagnostics.outcomes import BEFORE_KV_PHASES
from diagnostics.units import GiB, to_gib, utc_now

DEFAULT_LOCK = "/tmp/vllm-engine.lock"
LOCK_ENV = "VLLM_MEMCHECK_ENGINE_LOCK"
# Added to the user's environment for every start. The Hugging Face variables are the user's: offline mode comes in
# StartSpec.env only for local models (diagnostics.suite.hub.start_env), never as a default.
BASE_ENV = {
    "VLLM_NO_USAGE_STATS": "1",
    "VLLM_DO_NOT_TRACK": "1",
    "PYTHONUNBUFFERED": "1",
}
POLL_S = 0.05
PROJECT_ROOT = Path(__file__).resolve().parents[2]




@dataclass
class StartSpec:
    model: str
    settings: dict
    card: object  # diagnostics.cards.Card (or its short name); "cpu" means vLLM's CPU backend
    load_format: str
    timeout_s: float | None  # None: no limit (--engine-timeout=0)
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
    session_tolerance_gib: float = 0.5  # GPU: ... and within this of the session's first baseline (creeping leaks)
    on_spawn: Callable[[int], None] | None = None  # called with the child's pid (= its process group id)
    devices: tuple | None = None  # NVML indices this start claims (engine/gpus.py); None: the visible device
    worst_case: dict | None = None  # the worst-case request sent after start-up (suite/worst_case.py, to_json + prompt)
    planted_budget_bytes: int | None = None  # tests on the CPU backend: cap the engine's data segment after start-up

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
    phase_times_s: dict = field(default_factory=dict)  # marker -> seconds since spawn (+-1 s, see timeline.py)
    baseline_device_gib: float | None = None
    device_after_gib: float | None = None
    sampler: dict = field(default_factory=dict)  # Sampler.summary(): kind, readings, rate, max gap, error
    devices: list = field(default_factory=list)  # GPU: per device sampled: name, memory_info, reserved, peaks
    child: dict = field(default_factory=dict)  # the child's own result file
    leftover_pids_killed: list = field(default_factory=list)
    lock_wait_s: float = 0.0
    started_at: str | None = None
    finished_at: str | None = None
    log: LogRecord | None = None  # what diagnostics.logs.reader found in the log (read once, here)
    device_peaks_gib: dict = field(default_factory=dict)  # claimed GPUs only: NVML index -> that device's peak
    worst_case: dict | None = None  # the child's worst-case request: ok, prompt_tokens, what was sent, error

    def to_json(self) -> dict:
        d = asdict(self)
        d["log_path"], d["timeline_path"] = str(self.log_path), str(self.timeline_path)
        d["log"] = self.log.to_json() if self.log is not None else None
        return d


def lock_path() -> str:
    return os.environ.get(LOCK_ENV) or DEFAULT_LOCK


@contextlib.contextmanager
def engine_lock():
    """Exclusive fcntl.flock on the engine lock file; yields the seconds spent waiting for it."""
    path = lock_path()
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError as exc:
        raise UsageError(f"cannot open the engine lock {path} ({exc.strerror}; another user made it?): set {LOCK_ENV} "
                         "to a lock file every user of this GPU can write") from None
    with contextlib.suppress(PermissionError):
        os.fchmod(fd, 0o666)  # every user of the box serialises on it, whatever the umask of who made it
    with os.fdopen(fd, "r+") as f:
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
        prompt = IMAGE_PROMPT
    model = str(Path(spec.model).resolve()) if Path(spec.model).exists() else spec.model  # local dir or hub id
    return {"model": model, "settings": spec.settings, "load_format": spec.load_format,
            "request": spec.request, "image": image, "image_size": list(spec.image_size), "prompt": prompt,
            "max_tokens": spec.max_tokens, "result_path": str(result_path), "worst_case": spec.worst_case,
            "planted_budget_bytes": spec.planted_budget_bytes}


def child_env(spec: StartSpec) -> dict:
    env = dict(os.environ)
    env.update(BASE_ENV)
    paths = [str(PROJECT_ROOT)]
    if spec.is_cpu:
        paths.insert(0, CPU_SHIM_DIR)
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    if spec.devices:
        env.update(devices.child_devices_env(spec.devices))
    env.update({k: str(v) for k, v in (spec.env or {}).items()})
    if not spec.is_cpu:
        pin_cuda_order(env)
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
        with open(log_path, encoding="utf-8", errors="replace") as f:
            m = timeline.LOG_STAMP.search(f.read(1 << 16))
    except OSError:
        return None
    return m.group(1) if m else None


@dataclass
class _Paths:
    """The files of one start, absolute: the child must find its spec, and relative paths keep their meaning."""

    log: Path
    timeline: Path
    result: Path
    spec: Path

    @classmethod
    def of(cls, spec: StartSpec) -> _Paths:
        log, timeline = Path(spec.log_path).resolve(), Path(spec.timeline_path).resolve()
        log.parent.mkdir(parents=True, exist_ok=True)
        timeline.parent.mkdir(parents=True, exist_ok=True)
        return cls(log, timeline, log.with_suffix(".result.json"), log.with_suffix(".spec.json"))


@dataclass
class _Facts:
    """What run_start learnt while the child ran: the inputs of its StartResult besides the sampler."""

    started_at: str
    lock_wait_s: float
    spawn_wall: float
    baseline: list | None = None  # GPU: used bytes of each sampled device before the start
    returncode: int | None = None
    timed_out: bool = False
    wall_s: float = 0.0
    seen_stamp: str | None = None  # the log's first "MM-DD HH:MM:SS" stamp, and when the parent saw it
    seen_t: float | None = None
    device_after: list | None = None  # GPU: used bytes of each device once it settled
    leftovers: list = field(default_factory=list)
    device_peaks: dict = field(default_factory=dict)


def run_start(spec: StartSpec) -> StartResult:
    """Start the engine the spec describes, measure it, and leave the device as it was (see module doc)."""
    paths = _Paths.of(spec)
    with contextlib.suppress(FileNotFoundError):
        paths.result.unlink()
    paths.spec.write_text(json.dumps(child_spec(spec, paths.result), indent=1, default=str), encoding="utf-8")
    env = child_env(spec)
    claimed = bool(spec.devices) and not spec.is_cpu
    with (devices.gpu_locks(spec.devices, lock_path()) if claimed else engine_lock()) as waited:
        used = None if spec.is_cpu else start_devices(spec.settings, env)
        gpu = None if spec.is_cpu else StartDevices.open(used)
        started_at = utc_now()
        with open(paths.log, "wb") as log:
            spawn_wall, spawn_mono = time.time(), time.monotonic()
            proc = subprocess.Popen([sys.executable, "-m", "diagnostics.engine.child", str(paths.spec)],
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, start_new_session=True)
        facts = _Facts(started_at, waited, spawn_wall, gpu.baselines if gpu else None)
        try:
            source = RssSource(proc.pid) if spec.is_cpu else NvmlSource(proc.pid, nvml=gpu.nvml, handles=gpu.handles)
            sampler = Sampler(source)
            sampler.t0 = spawn_mono
            sampler.start()
            if spec.on_spawn is not None:
                spec.on_spawn(proc.pid)
            facts.timed_out, facts.seen_stamp, facts.seen_t = _wait(proc, spec, paths.log, spawn_mono)
        finally:
            if proc.poll() is None:  # an exception (Ctrl-C) in here must not leave an engine running
                kill_group(proc.pid, signal.SIGKILL)
                proc.wait()
        facts.returncode, facts.wall_s = proc.returncode, time.monotonic() - spawn_mono
        unclean = None
        try:
            facts.leftovers = _reap_group(proc.pid, source, spec)
        except DeviceNotClean as exc:
            unclean = exc
        sampler.stop()
        if gpu is not None:
            try:
                facts.device_after = gpu.settle(spec, source.tree) if unclean is None else None
            except DeviceNotClean as exc:
                unclean = exc
            source.close()
            if claimed:  # each claimed device's peak, keyed by its NVML index
                facts.device_peaks = {str(d): round(b / GiB, 4) for d, b in zip(used, source.device_peaks)}
    result = _result(spec, paths, facts, sampler)
    if unclean is not None:  # the evidence first: the caller records this start, then stops the sweep
        unclean.result = result
        raise unclean
    return result


def _wait(proc, spec: StartSpec, log_path: Path, spawn_mono: float):
    """Wait for the child; on timeout kill the group. Also note when the log's first stamp shows up."""
    seen_stamp = seen_t = None
    deadline = spawn_mono + spec.timeout_s if spec.timeout_s else math.inf
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


def _gib(n_bytes: int | None) -> float | None:
    return None if n_bytes is None else round(to_gib(n_bytes), 4)


def _process_known(sampler: Sampler, facts: _Facts) -> bool:
    """The tree's own figure is a measurement: RSS on CPU; on a GPU when NVML listed the tree (NvmlSource)."""
    if not sampler.readings:
        return False
    if not isinstance(sampler.source, NvmlSource) or facts.baseline is None:
        return True
    rise = max(sampler.source.device_peaks) - max(facts.baseline)
    return sampler.source.process_known(rise)


def _device_figures(sampler: Sampler, facts: _Facts) -> dict:
    """GPU: baseline and settled figures (GiB) of the device that peaked highest, and every device's figures."""
    source = sampler.source
    if not isinstance(source, NvmlSource) or facts.baseline is None:
        return {}
    after = facts.device_after or [None] * len(facts.baseline)
    devices = [{"memory_info": m.kind, "reserved_gib": _gib(m.last.reserved if m.last else None),
                "baseline_gib": _gib(b), "peak_gib": _gib(p) if p else None, "after_gib": _gib(a)}
               for m, b, p, a in zip(source.memory, facts.baseline, source.device_peaks, after)]
    top = max(range(len(devices)), key=lambda i: source.device_peaks[i])
    return {"baseline": _gib(facts.baseline[top]), "after": _gib(after[top]), "devices": devices}


def _result(spec: StartSpec, paths: _Paths, facts: _Facts, sampler: Sampler) -> StartResult:
    """Read the log once (phase marks, and the LogRecord the result carries), write the timeline CSV, and
    assemble the StartResult (GiB rounded to 4 places, seconds to 3)."""
    try:
        child = json.loads(paths.result.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        child = {}
    log = read_log(paths.log.read_text(encoding="utf-8", errors="replace"))
    times = timeline.phase_times(dict(log.timestamps), facts.spawn_wall, facts.seen_stamp, facts.seen_t)
    bounds = timeline.phase_boundaries(times)
    on_gpu = sampler.peak.device_bytes is not None
    timeline.write_timeline_csv(paths.timeline, sampler.timeline_rows(), bounds)
    peaks = {k: _gib(v) for k, v in timeline.phase_peaks(sampler.samples, bounds, on_gpu).items()}
    before_kv = [peaks[p] for p in BEFORE_KV_PHASES if p in peaks] if timeline.has_kv_marker(times) else []
    torch_peak = (child.get("torch") or {}).get("max_memory_allocated")  # None unless the engine ran in the child
    gpu = _device_figures(sampler, facts)
    ready_wall = child.get("engine_ready_wall")
    return StartResult(
        returncode=facts.returncode,
        signal=signal_name(facts.returncode),
        timed_out=facts.timed_out,
        wall_s=round(facts.wall_s, 3),
        startup_s=round(ready_wall - facts.spawn_wall, 3) if ready_wall else None,
        peak_device_gib=_gib(sampler.peak.device_bytes) if on_gpu else None,
        peak_process_gib=_gib(sampler.peak.process_bytes) if _process_known(sampler, facts) else None,
        phase_peaks_gib=peaks,
        torch_peak_gib=_gib(torch_peak),
        request=child.get("request"),
        log_path=paths.log,
        timeline_path=paths.timeline,
        before_kv_peak_gib=max(before_kv) if before_kv else None,
        phase_times_s={k: round(v, 3) for k, v in times.items()},
        baseline_device_gib=gpu.get("baseline"),
        device_after_gib=gpu.get("after"),
        sampler=sampler.summary(facts.wall_s) | {"memory_info": getattr(sampler.source, "memory_info", None)},
        devices=gpu.get("devices", []),
        child=child,
        leftover_pids_killed=facts.leftovers,
        lock_wait_s=round(facts.lock_wait_s, 3),
        started_at=facts.started_at,
        finished_at=utc_now(),
        log=log,
        device_peaks_gib=facts.device_peaks,
        worst_case=child.get("worst_case"),
    )
