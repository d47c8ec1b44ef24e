"""results.jsonl: one JSON object per finished combination, appended and fsync'ed as soon as it is known.

An interrupted sweep keeps every finished result (each line is written in one call, flushed and fsync'ed),
`load_results` tolerates a truncated last line (the one being written when the sweep died), and
`finished_ids` tells `--resume` what to skip. Runs live in `<report_dir>/<YYYYMMDD-HHMMSS>/`; the text file
`<report_dir>/latest` names the newest run (a text file, not a symlink, so it works on every file system).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import warnings
from datetime import datetime, UTC
from pathlib import Path

from diagnostics.errors import UsageError
from diagnostics.outcomes import OUTCOMES
from diagnostics.predict.accuracy import compare, prediction_record, verdict_right
from diagnostics.units import utc_now

SCHEMA_VERSION = 1
RESULTS_FILE = "results.jsonl"
LATEST_FILE = "latest"
RUN_NAME_FORMAT = "%Y%m%d-%H%M%S"


def make_record(start: dict, verdict, result, log, run_dir: str | os.PathLike, plan=None) -> dict:
    """One results.jsonl record (docs/architecture.md): `start` names the start (id, scenario, model, model_path,
    load_format, settings, card, machine_info, started_at), `verdict` is the diagnostics.suite.judge.Verdict,
    `result` the launcher's StartResult, `log` its LogRecord, `plan` the estimator's Plan for the same settings
    (None: not predicted). Sizes in GiB, times in seconds."""
    start = dict(start)
    started_at = start.pop("started_at")
    expectation, limits, explanation = verdict.expectation, verdict.limits, verdict.explanation
    vllm_numbers = dict(log.numbers)
    engine = (result.child or {}).get("engine") or log.engine  # the engine class that ran, whatever was asked
    return {
        **start,
        "expected": expectation.outcome,
        "expected_basis": expectation.basis,
        "outcome": verdict.outcome,
        "phase": verdict.phase,
        "passed": verdict.passed,
        "status": verdict.status,
        "reasons": verdict.reasons,
        "notes": verdict.notes,
        "limits_gib": {"profile_peak": limits.profile_peak_gib, "peak": limits.peak_gib},
        "profile_peak_gib": verdict.profile_peak_gib,
        **_measured(result),
        "vllm_numbers": vllm_numbers,
        **{key: vllm_numbers.get(key) for key in LOG_FIGURES},
        **_prediction(plan, vllm_numbers, result, verdict.outcome),
        "kv_cache_tokens": kv_tokens(vllm_numbers, start.get("settings") or {}),
        "engine": engine,
        "use_v1": None if engine is None else engine == "V1",
        "diagnosis": {
            "summary": explanation.summary if explanation else verdict.failure_text(),
            "culprits": [c.to_json() for c in (explanation.culprits if explanation else [])],  # Culprit's one shape
            "error_line": log.error_line,
        },
        "request": result.request,
        "log_file": os.path.relpath(result.log_path, run_dir),
        "timeline_file": os.path.relpath(result.timeline_path, run_dir),
        "started_at": started_at,
        "finished_at": utc_now(),
    }


LOG_FIGURES = ("kv_cache_gib", "kv_cache_tokens", "weights_gib", "activation_peak_gib")  # copied to the top level


def _prediction(plan, vllm_numbers: dict, result, outcome: str) -> dict:
    """plan's prediction beside what vLLM printed and the launcher measured (NVML device peak on a GPU), with
    the relative error of each figure both have, and whether plan's verdict was the start's outcome."""
    if plan is None:
        return {"prediction": None, "accuracy": [], "plan_verdict_right": None}
    predicted = prediction_record(plan)
    measured = {"peak_gib": result.peak_device_gib} if result.peak_device_gib is not None else {}
    return {"prediction": predicted,
            "accuracy": [c.to_json() for c in compare(predicted, vllm_numbers, measured)],
            "plan_verdict_right": verdict_right(plan.verdict, outcome)}


def _measured(result) -> dict:
    """The launcher's figures of one start, as the record carries them."""
    return {
        "startup_s": result.startup_s,
        "wall_s": result.wall_s,
        "lock_wait_s": result.lock_wait_s,  # waiting for another engine start to finish
        "returncode": result.returncode,
        "signal": result.signal,
        "timed_out": result.timed_out,
        "peak_device_gib": result.peak_device_gib,
        "peak_process_gib": result.peak_process_gib,
        "phase_peaks_gib": dict(result.phase_peaks_gib),
        "torch_peak_gib": result.torch_peak_gib,  # None (unknown) where the engine ran outside the child's process
        "baseline_device_gib": result.baseline_device_gib,  # used before the start: other processes, the driver
        "device_after_gib": result.device_after_gib,
        "devices": list(result.devices),  # per sampled device: memory_info (v2/v1), reserved, baseline, peak
        "sampler": dict(result.sampler),  # kind, readings, readings_per_s, max_gap_s, failed_reads, error
        # GPUs a start claimed (xdist, tensor parallel): each device's peak and their sum (engine/gpus.py)
        "device_peaks_gib": dict(getattr(result, "device_peaks_gib", None) or {}),
        "device_peaks_sum_gib": (round(sum(result.device_peaks_gib.values()), 4)
                                 if getattr(result, "device_peaks_gib", None) else None),
        # the worst-case request after start-up (engine/child.py serve_worst_case): ok, prompt_tokens, what was sent
        "worst_case": getattr(result, "worst_case", None),
    }


# The figures the upgrade gate compares (keys as its tolerances name them): -> how one record gives each.
def own_peak_gib(record: dict) -> float | None:
    """The start's own peak (GiB): device peak - the device's baseline on a GPU when both are known, else the
    peak as recorded (the process tree's RSS on the CPU backend)."""
    peak, base = record.get("peak_device_gib"), record.get("baseline_device_gib")
    if peak is not None and base is not None:
        return round(peak - base, 4)
    return peak if peak is not None else record.get("peak_process_gib")


REPEAT_FIGURES = {"peak": own_peak_gib, "kv_tokens": lambda r: r.get("kv_cache_tokens"),
                  "startup": lambda r: r.get("startup_s")}


def spread(values: list) -> dict | None:
    """{"min", "median", "max", "n", "relative"} of the numbers in `values` (None when there are none);
    relative = (max - min) / median (0 when the median is 0)."""
    numbers = sorted(v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool))
    if not numbers:
        return None
    n = len(numbers)
    median = numbers[n // 2] if n % 2 else (numbers[n // 2 - 1] + numbers[n // 2]) / 2
    return {"min": numbers[0], "median": median, "max": numbers[-1], "n": n,
            "relative": round((numbers[-1] - numbers[0]) / median, 6) if median else 0.0}


def with_repeats(chosen: dict, records: list[dict]) -> dict:
    """The record of a combination started len(records) times (--repeat): `chosen` (the first failed start, else
    the last) with "repeat": {"n", "figures": {peak|kv_tokens|startup: spread()}, "starts": [each start's outcome,
    status, figures, log file]}. Only starts with the chosen one's outcome enter the spread."""
    same = [r for r in records if r.get("outcome") == chosen.get("outcome")]
    figures = {key: spread([get(r) for r in same]) for key, get in REPEAT_FIGURES.items()}
    starts = [{"outcome": r.get("outcome"), "status": r.get("status"), "started_at": r.get("started_at"),
               "log_file": r.get("log_file"), **{key: get(r) for key, get in REPEAT_FIGURES.items()}}
              for r in records]
    return {**chosen, "repeat": {"n": len(records), "figures": {k: v for k, v in figures.items() if v},
                                 "starts": starts}}


def kv_tokens(vllm_numbers: dict, settings: dict) -> int | None:
    """KV cache capacity in tokens: vLLM's own figure (V1), else GPU blocks x block_size (V0 prints only
    "# GPU blocks: N"; block_size 16 unless set), so the gate compares KV between V0 versions too."""
    tokens = vllm_numbers.get("kv_cache_tokens")
    if tokens is not None or vllm_numbers.get("gpu_blocks") is None:
        return tokens
    return int(vllm_numbers["gpu_blocks"]) * int(settings.get("block_size") or 16)


class ResultWriter:
    """Appends one result per line to `<run_dir>/results.jsonl`; each append is durable when it returns."""

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / RESULTS_FILE

    def append(self, record: dict) -> None:
        if not record.get("id"):
            raise ValueError("a result record needs a non-empty 'id'")
        record = {"schema_version": SCHEMA_VERSION, "run": self.run_dir.name, **record}
        line = json.dumps(record, default=_json_default, allow_nan=False) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            _terminate_partial_line(f, self.path)
            f.write(line)
            f.flush()
            os.fsync(f.fileno())


def _terminate_partial_line(f, path: Path) -> None:
    """If an earlier writer died mid-line, start on a fresh line so the new record stays readable."""
    size = path.stat().st_size
    if size == 0:
        return
    with open(path, "rb") as r:
        r.seek(size - 1)
        if r.read(1) != b"\n":
            f.write("\n")


def _json_default(value):
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"result field of type {type(value).__name__} is not JSON-serialisable: {value!r}")


def file_stem(combination_id: str) -> str:
    """The file name stem of a combination's log, timeline and chart: the id with anything but letters, digits,
    '.', '_' and '-' replaced by '_' (never a path: no '/', no '..'), at most 100 characters. When the id had to
    change, 8 hex digits of its SHA-1 are appended, so ids `a/b` and `a_b` never share a file."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", str(combination_id)).lstrip(".") or "_"
    if stem == combination_id and len(stem) <= 100:
        return stem
    return f"{stem[:80]}-{hashlib.sha1(str(combination_id).encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


def load_results(path: str | os.PathLike) -> list[dict]:
    """Every complete record of a results.jsonl (or of a run directory).

    A line that does not parse is skipped with a warning when it is the last one (a write cut short);
    anywhere else it means the file was damaged, and that is a UsageError naming file and line.
    """
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.exists():
        return []
    check_text(path)
    lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            if number == len(lines):
                warnings.warn(f"{path}:{number}: truncated last line skipped ({exc}); the run was cut short while "
                              "writing it", stacklevel=2)
                continue
            raise UsageError(f"{path}:{number}: not a result record ({exc}); expected one JSON object per line") \
                from None
        _check_figures(record, f"{path}:{number}")
        records.append(record)
    return records


MAX_RESULTS_BYTES = 512 << 20  # 3,000 records are ~6 MB; far past this it is no sweep's results.jsonl


def check_text(path: Path) -> None:
    """UsageError for what is no results file at all, before reading it whole: NUL bytes at its start (binary,
    or a file of zeros: JSON text never holds one), or a size no sweep writes."""
    try:
        with open(path, "rb") as f:
            head = f.read(8192)
        size = path.stat().st_size
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if b"\0" in head:
        what = "zero bytes" if head.count(0) == len(head) else "NUL bytes (binary data)"
        raise UsageError(f"{path}: starts with {what}, not JSON lines; accepted: a sweep's results.jsonl")
    if size > MAX_RESULTS_BYTES:
        raise UsageError(f"{path}: {size:,} bytes, more than any sweep writes ({MAX_RESULTS_BYTES >> 20} MiB); "
                         "accepted: a sweep's results.jsonl")


def load_results_noting(path: str | os.PathLike) -> tuple[list[dict], list[str]]:
    """load_results, with what it warned about (a truncated last line) returned as text instead of dropped."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = load_results(path)
    return records, [str(w.message) for w in caught]


NUMERIC_FIELDS = ("peak_device_gib", "peak_process_gib", "profile_peak_gib", "startup_s", "wall_s",
                  "kv_cache_gib", "kv_cache_tokens", "weights_gib", "activation_peak_gib")


# the JSON type of each structured field a record carries (null is always accepted): what make_record writes
SHAPES = {"settings": dict, "machine_info": dict, "card": (dict, str), "diagnosis": dict, "phase_peaks_gib": dict,
          "limits_gib": dict, "vllm_numbers": dict, "prediction": dict, "request": dict, "sampler": dict,
          "device_peaks_gib": dict, "reasons": list, "notes": list, "accuracy": list, "devices": list,
          "id": str, "run": str, "model": str, "scenario": str, "outcome": str, "phase": str, "expected": str,
          "log_file": str, "timeline_file": str, "load_format": str, "status": str}
ITEM_SHAPES = {"accuracy": dict, "reasons": str, "notes": str}  # what each list holds
_JSON_NAMES = {dict: "a JSON object", list: "a JSON list", str: "text"}


def _shape_name(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(_JSON_NAMES[k] for k in kinds)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


NON_NEGATIVE = ("peak_device_gib", "peak_process_gib", "startup_s", "wall_s", "kv_cache_tokens")
NESTED_NUMBERS = {"card": ("total_gib", "profile_threshold_gib", "headroom_gib"), "machine_info": ("gpu_total_gib",)}
NUMBER_TABLES = ("phase_peaks_gib", "limits_gib", "device_peaks_gib")  # objects whose every value is a figure


def _check_number(value, name: str, where: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not math.isfinite(value)):
        raise UsageError(f"{where}: {name} is {_short(value)}; expected a finite number or null "
                         "(a sweep's results.jsonl)")


def _check_figures(record: dict, where: str) -> None:
    """A figure that is neither a finite number nor null, or a field of the wrong JSON type, means the file was
    edited or damaged: say where (UsageError, one line), not crash later or print NaN."""
    for key in NUMERIC_FIELDS:
        _check_number(record.get(key), key, where)
        if key in NON_NEGATIVE and (record.get(key) or 0) < 0:
            raise UsageError(f"{where}: {key} is {record[key]!r}; expected a figure >= 0 or null")
    version = record.get("schema_version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)
                                or not 1 <= version <= SCHEMA_VERSION):
        raise UsageError(f"{where}: schema_version {_short(version)}; this vllm-memcheck reads schema_version "
                         f"{SCHEMA_VERSION} (a newer one wrote it? update vllm-memcheck)")
    outcome = record.get("outcome")
    if isinstance(outcome, str) and outcome not in OUTCOMES:
        raise UsageError(f"{where}: outcome {_short(outcome)} is none of {', '.join(OUTCOMES)}")
    for key, kind in SHAPES.items():
        value = record.get(key)
        if value is not None and not isinstance(value, kind):
            raise UsageError(f"{where}: {key} is {_short(value)}; expected {_shape_name(kind)} or null "
                             "(a sweep's results.jsonl)")
        item_kind = ITEM_SHAPES.get(key)
        if item_kind and value and not all(isinstance(item, item_kind) for item in value):
            raise UsageError(f"{where}: {key} holds {_short(value)}; expected a list of {_shape_name(item_kind)}")
    for key, inner in NESTED_NUMBERS.items():
        table = record.get(key)
        for name in inner if isinstance(table, dict) else ():
            _check_number(table.get(name), f"{key}.{name}", where)
    for key in NUMBER_TABLES:
        for name, value in (record.get(key) or {}).items():
            _check_number(value, f"{key}.{name}", where)
    diagnosis = record.get("diagnosis") or {}
    culprits = diagnosis.get("culprits")
    if culprits is not None and not (isinstance(culprits, list) and all(isinstance(c, dict) for c in culprits)):
        raise UsageError(f"{where}: diagnosis.culprits is {_short(culprits)}; expected a list of JSON objects")
    for key in ("summary", "error_line"):
        if diagnosis.get(key) is not None and not isinstance(diagnosis[key], str):
            raise UsageError(f"{where}: diagnosis.{key} is {_short(diagnosis[key])}; expected text or null")


def finished_ids(run_dir: str | os.PathLike) -> set[str]:
    """Ids of the combinations that already have a result in this run (what `--resume` skips)."""
    return {r["id"] for r in load_results(run_dir) if r.get("id")}


def new_run_dir(report_dir: str | os.PathLike, now: datetime | None = None) -> Path:
    """Create `<report_dir>/<YYYYMMDD-HHMMSS>` (UTC; `-2`, `-3`... when taken) and point `latest` at it."""
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    base = (now or datetime.now(UTC)).strftime(RUN_NAME_FORMAT)
    name, n = base, 1
    while True:
        run_dir = report_dir / name
        try:
            run_dir.mkdir()
            break
        except FileExistsError:
            n += 1
            name = f"{base}-{n}"
    set_latest(report_dir, run_dir)
    return run_dir


def set_latest(report_dir: str | os.PathLike, run_dir: str | os.PathLike) -> None:
    """Write the run's name into `<report_dir>/latest` atomically (write a temp file, then rename)."""
    report_dir = Path(report_dir)
    tmp = report_dir / f".{LATEST_FILE}.{os.getpid()}"
    tmp.write_text(Path(run_dir).name + "\n", encoding="utf-8")
    os.replace(tmp, report_dir / LATEST_FILE)


def latest_run_dir(report_dir: str | os.PathLike) -> Path | None:
    """The run `latest` names, or None when there is none (or it was deleted)."""
    report_dir = Path(report_dir)
    pointer = report_dir / LATEST_FILE
    if not pointer.is_file():
        return None
    name = pointer.read_text(encoding="utf-8").strip()
    run_dir = report_dir / name
    return run_dir if name and run_dir.is_dir() else None
