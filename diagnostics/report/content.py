"""The report's content, built once from a run directory and redacted; every format renders this dict.

`build_report(source)` reads `results.jsonl` (and each failing combination's log tail), works out the
verdict, the environment block, the settings that differ from vLLM's defaults and one row per combination.
The JSON report is this dict as it is; Markdown, HTML and the charts only lay it out.
"""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

from diagnostics.cards import get_card
from diagnostics.errors import UsageError
from diagnostics.models import get_model
from diagnostics.outcomes import MEMORY_FAILURES
from diagnostics.redact import Redactor
from diagnostics.settings import ENGINE_DEFAULTS, resolve, version_default
from diagnostics.suite.results import RESULTS_FILE, file_stem, load_results
from diagnostics.units import fmt_gib, fmt_tokens, utc_now

REPORT_SCHEMA_VERSION = 1
LOG_TAIL_LINES = 40
CHARTS_DIR = "charts"

ENV_LABELS = {
    "gpu": "GPU",
    "gpu_total_gib": "GPU memory (GiB)",
    "driver": "driver",
    "cuda": "CUDA",
    "torch": "torch",
    "vllm": "vLLM",
    "python": "Python",
    "platform": "platform",
    "cpu": "CPU",
    "model": "model",
    "entrypoint": "entry point",
    "load_format": "load format",
    "card_profile": "card profile",
}

# -- reading ----------------------------------------------------------------------------------------------
def resolve_source(source: str | Path) -> tuple[Path, Path]:
    """(run_dir, results_file) for a run directory or a results.jsonl path."""
    path = Path(source)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.is_file():
        raise UsageError(f"{source}: no results file; accepted: a run directory (reports/<run>/) or its results.jsonl")
    return path.parent, path


def load_records(source: str | Path) -> tuple[Path, list[dict]]:
    run_dir, path = resolve_source(source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        records = load_results(path)
    records = [r for r in records if isinstance(r.get("id"), str)]
    if not records:
        raise UsageError(f"{path}: no result records; expected JSON lines with 'id' and 'outcome' (a sweep's results.jsonl)")
    ids = [r["id"] for r in records]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:  # a line repeated or two runs pasted together: which one is the combination's?
        raise UsageError(f"{path}: more than one record for {', '.join(twice[:3])}{' ...' if len(twice) > 3 else ''}; "
                         "accepted: one record per combination id (a run's results.jsonl as the sweep wrote it)")
    for label, fact in (("models", lambda r: r.get("model")), ("cards", _card_name)):
        values = sorted({str(v) for v in map(fact, records) if v})
        if len(values) > 1:  # one verdict would be written for two runs' records
            raise UsageError(f"{path}: records of {len(values)} {label} ({', '.join(values[:3])}); accepted: one "
                             "run's results.jsonl (several runs: pass each as its own RUN for a cross-card report)")
    return run_dir, records


def _card_name(record: dict):
    card = record.get("card")
    info = record.get("machine_info") if isinstance(record.get("machine_info"), dict) else {}
    return (card.get("name") if isinstance(card, dict) else card) or info.get("card")


def owned_file(run_dir: Path, name) -> Path | None:
    """The file a record names (`log_file`, `timeline_file`) when it is a regular file inside the run directory,
    else None: an absolute path, a `..` that climbs out, or a symlink that leads out is never read, so a results
    file from someone else cannot put /etc/passwd into a paste-ready report."""
    if not isinstance(name, str) or not name or "\0" in name or Path(name).is_absolute():
        return None
    try:
        root = Path(run_dir).resolve()
        path = (root / name).resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a name the OS refuses
        return None
    if not path.is_relative_to(root):
        return None
    try:
        return path if path.is_file() else None
    except OSError:
        return None


def read_timeline(run_dir: Path, record: dict) -> list[dict]:
    """Rows of the combination's timeline CSV (t_s, device_used_gib, process_gib, phase); [] when absent or
    not the run's own file (owned_file)."""
    path = owned_file(run_dir, record.get("timeline_file"))
    if path is None:
        return []
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            try:
                t = float(row["t_s"])
            except (KeyError, TypeError, ValueError):
                continue
            rows.append({
                "t_s": t,
                "device_used_gib": _float(row.get("device_used_gib")),
                "process_gib": _float(row.get("process_gib")),
                "phase": (row.get("phase") or "").strip() or "unknown",
            })
    return rows


def _float(text) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def log_tail(run_dir: Path, record: dict, lines: int = LOG_TAIL_LINES) -> list[str] | None:
    path = owned_file(run_dir, record.get("log_file"))
    if path is None:
        return None
    text = path.read_text(encoding="utf-8", errors="replace")
    return text.rstrip("\n").split("\n")[-lines:]


# -- defaults ---------------------------------------------------------------------------------------------
def default_of(setting: str, vllm_version: str | None, value=None):
    """(known, default) of a setting in that vLLM version (diagnostics.settings.version_default); for an unknown
    or unplanned version only the version-independent defaults are known. A per-modality limit_mm_per_prompt
    default is compared per modality of `value`."""
    try:
        known, default = version_default(setting, vllm_version)
    except UsageError:
        known, default = setting in ENGINE_DEFAULTS, ENGINE_DEFAULTS.get(setting)
    if setting == "limit_mm_per_prompt" and known and isinstance(value, dict):
        default = {modality: default for modality in value}
    return known, default


def resolved_defaults(record: dict) -> dict | None:
    """vLLM's defaults for this model, card, version and entry point via diagnostics.settings.resolve;
    None when it cannot tell (unknown model path, card or version): settings.version_default is used then."""
    try:
        card = record.get("card")
        card_name = card.get("name") if isinstance(card, dict) else card
        info = record.get("machine_info") or {}
        entrypoint = "serve" if str(record.get("entrypoint") or "llm").startswith("serve") else "llm"
        defaults = resolve(get_model(record["model"]), get_card(card_name), info.get("vllm"), entrypoint, {})
    except Exception:
        return None
    defaults = dict(defaults)
    defaults["trust_remote_code"] = False  # vLLM's own default (resolve() assumes the suite's True)
    return defaults


def non_default_settings(records: list[dict], vllm_version: str | None, defaults: dict | None = None) -> tuple[dict, dict]:
    """(common, varied): settings equal in every combination that differ from vLLM's default, and the
    settings whose value varies across combinations (with their values). `defaults` (from
    resolved_defaults) wins over settings.version_default."""
    keys: list[str] = []
    for r in records:
        for k in (r.get("settings") or {}):
            if k not in keys:
                keys.append(k)
    common, varied = {}, {}
    for k in keys:
        values = [(r.get("settings") or {}).get(k, "(default)") for r in records]
        distinct = []
        for v in values:
            if v not in distinct:
                distinct.append(v)
        if len(distinct) > 1:
            varied[k] = distinct
            continue
        if defaults is not None and k in defaults:
            known, default = True, defaults[k]
        else:
            known, default = default_of(k, vllm_version, distinct[0])
        if not known or distinct[0] != default:
            common[k] = distinct[0]
    return common, varied


# -- verdict ----------------------------------------------------------------------------------------------
def peak_of(record: dict) -> float | None:
    value = record.get("peak_device_gib")
    return value if value is not None else record.get("peak_process_gib")


def verdict(records: list[dict], environment: dict, card: dict) -> str:
    n = len(records)
    ok = [r for r in records if r.get("outcome") == "ok"]
    failed = [r for r in records if r.get("outcome") != "ok"]
    failed_tests = [r for r in records if r.get("passed") is False]
    where = environment.get("gpu") or card.get("name") or "an unknown card"
    total = environment.get("gpu_total_gib")
    parts = [
        f"{n} combination{'s' if n != 1 else ''} of {environment.get('model') or 'the model'} started with "
        f"vLLM {environment.get('vllm') or '(unknown version)'} on {where}"
        + (f" ({fmt_gib(total)})" if isinstance(total, (int, float)) and total else "")
        + f": {len(ok)} came up, {len(failed)} did not."
    ]
    if any(r.get("load_format") == "dummy" for r in records):
        parts.append("Weights were dummy (load_format=dummy): random values in the real shapes, so the memory "
                     "figures are those of the real checkpoint.")
    if failed:
        by_outcome: dict[str, int] = {}
        for r in failed:
            by_outcome[r.get("outcome") or "unknown"] = by_outcome.get(r.get("outcome") or "unknown", 0) + 1
        memory = sum(v for k, v in by_outcome.items() if k in MEMORY_FAILURES)
        listing = ", ".join(f"{v} {k}" for k, v in sorted(by_outcome.items(), key=lambda kv: -kv[1]))
        parts.append(f"Failures: {listing}" + (f" ({memory} memory-related)." if memory else "."))
        culprits: dict[str, int] = {}
        for r in failed:
            for c in ((r.get("diagnosis") or {}).get("culprits") or [])[:1]:
                culprits[c.get("setting")] = culprits.get(c.get("setting"), 0) + 1
        top, count = max(culprits.items(), key=lambda kv: kv[1]) if culprits else (None, 0)
        if count >= 2:
            parts.append(f"The setting most often to blame: {top} ({count} of {len(failed)} failures).")
    peaks = [(peak_of(r), r["id"]) for r in records if peak_of(r) is not None]
    if peaks:
        peak, pid = max(peaks)
        line = f"Highest peak: {fmt_gib(peak)} ({pid})"
        threshold = card.get("profile_threshold_gib")
        if threshold:
            line += ", " + ("above" if peak > threshold else "within") + f" the card's threshold of {fmt_gib(threshold)}"
        parts.append(line + ".")
    if ok:
        best = max(ok, key=lambda r: (r.get("kv_cache_tokens") or 0))
        if best.get("kv_cache_tokens"):
            parts.append(f"Most KV capacity among the starts that came up: {fmt_tokens(best['kv_cache_tokens'])} tokens ({best['id']}).")
    if failed_tests:
        parts.append(f"{len(failed_tests)} test{'s' if len(failed_tests) != 1 else ''} failed the suite's checks.")
    elif all(r.get("passed") is not None for r in records):
        parts.append("Every combination met the suite's checks (expected failures included).")
    return " ".join(parts)


# -- building ---------------------------------------------------------------------------------------------
def _environment(records: list[dict]) -> tuple[dict, dict]:
    first = records[0]
    info = next((r["machine_info"] for r in records if isinstance(r.get("machine_info"), dict)), {})
    card = first.get("card") if isinstance(first.get("card"), dict) else {"name": first.get("card")}
    total = info.get("gpu_total_gib") or card.get("total_gib")
    env = {
        "gpu": info.get("gpu_name") or card.get("name"),
        "gpu_total_gib": round(total, 2) if isinstance(total, (int, float)) and total else None,
        "driver": info.get("driver"),
        "cuda": info.get("cuda"),
        "torch": info.get("torch"),
        "vllm": info.get("vllm"),
        "python": info.get("python"),
        "platform": info.get("platform"),
        "cpu": info.get("cpu"),
        "model": first.get("model"),
        "entrypoint": first.get("entrypoint") or "llm (vllm.LLM)",
        "load_format": first.get("load_format"),
        "card_profile": _card_profile(card),
    }
    return env, card


def _card_profile(card: dict) -> str | None:
    if not card.get("name"):
        return None
    parts = [f"total {fmt_gib(card.get('total_gib'))}"]
    if card.get("profile_threshold_gib"):
        parts.append(f"profile threshold {fmt_gib(card['profile_threshold_gib'])}")
    if card.get("headroom_gib"):
        parts.append(f"headroom {fmt_gib(card['headroom_gib'])}")
    return f"{card['name']}: " + ", ".join(parts)


def _combination(run_dir: Path, record: dict) -> dict:
    failed = record.get("outcome") != "ok"
    diagnosis = record.get("diagnosis") or {}
    phase_peaks = record.get("phase_peaks_gib") or {}
    return {
        "id": record["id"],
        "scenario": record.get("scenario"),
        "outcome": record.get("outcome") or "unknown",
        "phase": record.get("phase"),
        "expected": record.get("expected"),
        "passed": record.get("passed"),
        "reasons": list(record.get("reasons") or []),
        "settings": record.get("settings") or {},
        "peak_device_gib": record.get("peak_device_gib"),
        "peak_process_gib": record.get("peak_process_gib"),
        "profile_peak_gib": record.get("profile_peak_gib", phase_peaks.get("profile")),
        "limits_gib": dict(record.get("limits_gib") or {}),
        "weights_gib": record.get("weights_gib"),
        "activation_peak_gib": record.get("activation_peak_gib"),
        "kv_cache_gib": record.get("kv_cache_gib"),
        "kv_cache_tokens": record.get("kv_cache_tokens"),
        "startup_s": record.get("startup_s"),
        "wall_s": record.get("wall_s"),
        "timed_out": record.get("timed_out"),
        "signal": record.get("signal"),
        "diagnosis": {"summary": diagnosis.get("summary") or "", "culprits": list(diagnosis.get("culprits") or []),
                      "error_line": diagnosis.get("error_line")},
        "prediction": record.get("prediction"),
        "accuracy": list(record.get("accuracy") or []),
        "log_file": record.get("log_file"),
        "timeline_file": record.get("timeline_file"),
        "log_tail": log_tail(run_dir, record) if failed or record.get("passed") is False else None,
        "chart": f"{CHARTS_DIR}/{chart_name(record['id'])}",
    }


def chart_name(combination_id: str) -> str:
    """charts/<file_stem>.png: never outside charts/, never shared by two ids (suite/results.file_stem)."""
    return file_stem(combination_id) + ".png"


def plan_accuracy(records: list[dict]) -> dict:
    """How well `plan` called the run: {"right", "known", "line": "plan's verdict right for N of M starts",
    "rows": [{"id", "figure", "predicted", "actual", "source", "error"}]} (records without a prediction: none)."""
    known = [r for r in records if r.get("plan_verdict_right") is not None]
    right = sum(1 for r in known if r["plan_verdict_right"])
    rows = [{"id": r.get("id"), **c} for r in records for c in (r.get("accuracy") or [])]
    line = f"plan's verdict right for {right} of {len(known)} starts" if known else "no start was predicted by plan"
    return {"right": right, "known": len(known), "line": line, "rows": rows}
def _search(run_dir: Path) -> dict | None:
    """search.json of a `--search` run (suite/search_run.py), None for a matrix run."""
    path = run_dir / "search.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def build_report(source: str | Path, redactor: Redactor | None = None) -> dict:
    """The redacted report dict for a run directory or results.jsonl."""
    run_dir, records = load_records(source)
    environment, card = _environment(records)
    defaults = resolved_defaults(records[0])
    common, varied = non_default_settings(records, environment.get("vllm"), defaults)
    report = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "generated_at": utc_now(),
        "run": records[0].get("run") or run_dir.name,
        "verdict": verdict(records, environment, card),
        "environment": environment,
        "card": card,
        "settings": {
            "non_default": common,
            "varied": varied,
            "defaults_from": "diagnostics.settings.resolve" if defaults is not None
            else "diagnostics.settings.version_default (vLLM defaults by version)",
        },
        "counts": {
            "combinations": len(records),
            "ok": sum(1 for r in records if r.get("outcome") == "ok"),
            "failed": sum(1 for r in records if r.get("outcome") != "ok"),
            "passed": sum(1 for r in records if r.get("passed") is True),
            "failed_checks": sum(1 for r in records if r.get("passed") is False),
        },
        "combinations": [_combination(run_dir, r) for r in records],
        "plan_accuracy": plan_accuracy(records),
        "charts": {"overview": f"{CHARTS_DIR}/overview.png"},
        "search": _search(run_dir),
    }
    red = redactor or Redactor.for_this_machine()
    red.learn(report)
    return red.obj(report)
