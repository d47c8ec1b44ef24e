"""The upgrade gate: baselines keyed by card + driver + vLLM version, and a regression comparison.

Like pytest-benchmark keys saved runs by machine, a baseline lives in `<directory>/<key>/<name>.json` with
`key = baseline_key(machine_info)` ("3090-drv550.54-vllm0.6.3") and `machine_info` inside the file.
`compare(old, new, tolerances)` marks each combination improved / regressed / same / new / missing.

A regression is: a start that used to come up (`outcome == "ok"`) now fails; peak memory grew by more
than the `peak` tolerance; KV capacity (`kv_cache_tokens`) shrank by more than `kv_tokens`; start-up
slowed by more than `startup`. Defaults: DEFAULT_TOLERANCES. A baseline from another card or driver is a
warning naming both, never a crash (the numbers are still shown).
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from diagnostics.errors import UsageError
from diagnostics.redact import redact
from diagnostics.suite.comparable import check_comparable
from diagnostics.suite.results import RESULTS_FILE, check_text, load_results_noting
from diagnostics.units import plural, utc_now

SCHEMA_VERSION = 1
DEFAULT_TOLERANCES = {"peak": 0.05, "kv_tokens": 0.05, "startup": 0.20}
STATUSES = ("improved", "regressed", "same", "new", "missing", "incomparable")
FAILING = ("regressed", "missing")  # statuses that fail the gate
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
MAX_NAME = 100  # <name>.json.tmp must fit a file system's 255-byte name (checked before the sweep, not after)


# -- tolerances -----------------------------------------------------------------------------------------
def parse_tolerances(spec: str | None) -> dict[str, float | None]:
    """`"peak:5%,kv_tokens:5%,startup:20%"` -> {"peak": 0.05, ...}. Keys not named keep their default;
    `KEY:off` turns a check off (value None). A value is `N%` or a fraction `0.05`."""
    tolerances: dict[str, float | None] = dict(DEFAULT_TOLERANCES)
    if spec is None or not spec.strip():
        return tolerances
    accepted = ", ".join(DEFAULT_TOLERANCES)
    keys = [item.partition(":")[0].strip() for item in spec.split(",") if item.strip()]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise UsageError(f"tolerance {twice[0]} given twice in {spec!r}; accepted: each of {accepted} once")
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition(":")
        key, value = key.strip(), value.strip()
        if not sep or key not in DEFAULT_TOLERANCES:
            raise UsageError(
                f"bad tolerance {item!r} in {spec!r}; accepted: KEY:N% with KEY one of {accepted} (e.g. peak:5%)"
            )
        if value.lower() in ("off", "none"):
            tolerances[key] = None
            continue
        try:
            number = float(value[:-1]) / 100 if value.endswith("%") else float(value)
        except ValueError:
            number = -1.0
        if not (0 <= number < 10) or (not value.endswith("%") and number > 1):
            raise UsageError(
                f"bad tolerance {item!r} in {spec!r}; accepted: a percentage like {key}:5% or a fraction "
                f"like {key}:0.05, or {key}:off"
            )
        tolerances[key] = number
    return tolerances


def format_tolerances(tolerances: dict) -> str:
    return ",".join(f"{k}:{'off' if v is None else f'{v * 100:g}%'}" for k, v in tolerances.items())


def given_keys(spec: str | None) -> frozenset:
    """The tolerance keys a --fail-on-regression SPEC names (parse_tolerances checks the spec itself)."""
    if not spec:
        return frozenset()
    return frozenset(item.partition(":")[0].strip() for item in spec.split(",") if item.strip())


# A tolerance derived from measured spread (--repeat): SPREAD_MULTIPLE x the larger relative spread (max - min) /
# median of the two records, never below the figure's floor. Without a spread: DEFAULT_TOLERANCES.
SPREAD_MULTIPLE = 3.0
SPREAD_FLOORS = {"peak": 0.02, "kv_tokens": 0.01, "startup": 0.10}


def row_tolerance(key: str, old: dict, new: dict, tolerances: dict, given: frozenset | None) -> tuple:
    """(tolerance or None, why) for figure `key` of one combination: the spec's value when the spec names `key`
    (or when `given` is None: every tolerance counts as given, the pre-spread behaviour), else derived from the
    spread both records carry (results.with_repeats), else the default."""
    tol = tolerances.get(key)
    if given is None or key in given or tol is None:
        return tol, "given" if tol is not None else "off"
    spreads = [((r.get("repeat") or {}).get("figures") or {}).get(key) for r in (old, new)]
    measured = [sp["relative"] for sp in spreads if sp and sp.get("n", 0) > 1]
    if not measured:
        return tol, "default: no spread measured (--repeat N)"
    worst = max(measured)
    floor = SPREAD_FLOORS[key]
    derived = max(floor, SPREAD_MULTIPLE * worst)
    basis = "floor" if derived == floor else f"{SPREAD_MULTIPLE:g} x spread"
    return round(derived, 6), f"{basis}: spread {worst * 100:.2f}% over {max(sp['n'] for sp in spreads if sp)} starts"


def figure(record: dict, key: str, value):
    """The value the gate compares: the median of the record's repeats when it has them, else `value`."""
    sp = ((record.get("repeat") or {}).get("figures") or {}).get(key)
    return sp["median"] if sp and sp.get("n", 0) > 1 else value


# -- cache state (cold / warm / user) ------------------------------------------------------------------------
def cache_state_of(results: list[dict]) -> str | None:
    """The cache state the records name ("cold", "warm", "user"), "mixed" when they differ, None when none
    names one (results from before --cache-state)."""
    states = {r.get("cache_state") for r in results if r.get("cache_state")}
    if not states:
        return None
    return states.pop() if len(states) == 1 else "mixed"


def check_cache_states(old_state: str | None, new_state: str | None, allow: bool, flag: str) -> list[str]:
    """Like with like: UsageError when baseline and candidate ran with different known cache states, unless
    `allow` (`flag` names the option that allows it): then one warning. A state not recorded: a warning."""
    if old_state == new_state:
        return []
    if old_state is None or new_state is None:
        which = "baseline" if old_state is None else "candidate"
        return [f"the {which} does not record its cache state (cold/warm); figures compared as they are"]
    if not allow:
        raise UsageError(f"baseline ran with {old_state} compile caches, the candidate with {new_state}: a cold "
                         f"start's KV pool and start-up differ from a warm one's with no change in vLLM; measure "
                         f"both with the same --cache-state, or pass {flag} to see them side by side (not judged)")
    return [f"baseline {old_state}, candidate {new_state} compile caches ({flag}): figures shown, not judged"]


# -- storage --------------------------------------------------------------------------------------------
def _slug(text: object) -> str:
    return re.sub(r"[^A-Za-z0-9._]+", "_", str(text)).strip("_") or "unknown"


def baseline_key(machine_info: dict | None) -> str:
    """`3090-drv550.54-vllm0.6.3`: card short name (or GPU name), driver, vLLM version."""
    info = machine_info or {}
    card = info.get("card") or info.get("gpu_name") or "unknown"
    driver = info.get("driver") or "none"
    vllm = info.get("vllm") or "unknown"
    return f"{_slug(card)}-drv{_slug(driver)}-vllm{_slug(vllm)}"


def machine_info_of(results: list[dict]) -> dict:
    """The machine_info the results were measured on (the first record that has one)."""
    for record in results:
        if isinstance(record.get("machine_info"), dict):
            return record["machine_info"]
    return {}


def check_name(name: str, flag: str = "baseline name") -> None:
    """UsageError unless `name` can name a baseline file (letters, digits, '.', '_', '-')."""
    if not _NAME_RE.match(name or "") or len(name) > MAX_NAME:
        raise UsageError(f"bad baseline name {name[:40]!r}{'...' if len(name or '') > 40 else ''} ({flag}); "
                         f"accepted: up to {MAX_NAME} letters, digits, '.', '_' and '-' (e.g. pinned)")


def save_baseline(results: list[dict], name: str, directory: str | Path) -> Path:
    """Write `<directory>/<key>/<name>.json` (redacted) and return its path."""
    if not _NAME_RE.match(name or ""):
        raise UsageError(f"bad baseline name {name!r}; accepted: letters, digits, '.', '_' and '-' (e.g. pinned)")
    if not results:
        raise UsageError(f"no results to save as baseline {name!r}; run the sweep first")
    info = machine_info_of(results)
    path = Path(directory) / baseline_key(info) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "saved_at": utc_now(),
        "machine_info": info,
        "results": list(results),
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(redact(document), indent=1, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def _read_baseline_file(path: Path) -> tuple[dict, list[dict]]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not a readable baseline ({exc}); expected a JSON file written by --save-baseline") \
            from None
    if (not isinstance(document, dict) or not isinstance(document.get("results"), list)
            or not all(isinstance(r, dict) for r in document["results"])):
        raise UsageError(f"{path}: not a baseline; expected a JSON object with 'results' (written by --save-baseline)")
    version = document.get("schema_version", SCHEMA_VERSION)
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= SCHEMA_VERSION:
        raise UsageError(f"{path}: schema_version {version!r}; this vllm-memcheck reads baselines of schema_version "
                         f"{SCHEMA_VERSION} (a newer one wrote it? update vllm-memcheck)")
    meta = {k: v for k, v in document.items() if k != "results"}
    meta.setdefault("machine_info", machine_info_of(document["results"]))
    meta["path"] = str(path)
    meta.setdefault("warnings", [])
    return meta, document["results"]


def load_baseline(
    name_or_file: str | Path, directory: str | Path, machine_info: dict | None = None
) -> tuple[dict, list[dict]] | None:
    """A baseline by FILE path, or by NAME under the key of `machine_info` (falling back to the newest
    baseline of that name under any key, with a warning in meta["warnings"]). None when there is none yet.

    meta = {"schema_version", "name", "saved_at", "machine_info", "path", "warnings": [...]}.
    """
    text = str(name_or_file)
    as_path = Path(text)
    if as_path.suffix == ".json" or "/" in text or "\\" in text or as_path.is_file():
        if not as_path.is_file():
            what = "is a directory" if as_path.is_dir() else "does not exist"
            raise UsageError(f"baseline file {text!r} {what}; accepted: a FILE written by --save-baseline or a NAME")
        return _read_baseline_file(as_path)
    if not _NAME_RE.match(text):
        raise UsageError(f"bad baseline name {text!r}; accepted: letters, digits, '.', '_' and '-' or a FILE path")
    directory = Path(directory)
    if machine_info is not None:
        exact = directory / baseline_key(machine_info) / f"{text}.json"
        if exact.is_file():
            return _read_baseline_file(exact)
    candidates = sorted(directory.glob(f"*/{text}.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    if not candidates:
        return None
    meta, results = _read_baseline_file(candidates[0])
    if machine_info is not None:
        message = (
            f"no baseline {text!r} for {baseline_key(machine_info)}; using the one saved for "
            f"{candidates[0].parent.name} ({candidates[0]})"
        )
        meta["warnings"].append(message)
        warnings.warn(message, stacklevel=2)
    return meta, results


# -- comparison -----------------------------------------------------------------------------------------
@dataclass
class Row:
    id: str
    status: str  # one of STATUSES
    changes: list[str] = field(default_factory=list)
    old: dict | None = None
    new: dict | None = None
    tolerances: dict = field(default_factory=dict)  # key -> (tolerance, why) the row was judged with


@dataclass
class Comparison:
    rows: list[Row]
    regressed: bool
    warnings: list[str]
    tolerances: dict
    versions: tuple = (None, None)  # vLLM of the baseline, vLLM of the candidate (machine_info)

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for r in self.rows if r.status == s) for s in STATUSES}


def peak_gib(record: dict | None) -> float | None:
    """The peak a comparison uses: device memory (GPU) when measured, else the process tree (CPU)."""
    if not record:
        return None
    value = record.get("peak_device_gib")
    return value if value is not None else record.get("peak_process_gib")


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def peak_pair(old: dict, new: dict) -> tuple[float | None, float | None]:
    """The peaks the gate compares: each start's own increase (device peak - baseline) when both records have a
    baseline, so another process's drift on the card is no regression of vLLM; else the peaks as recorded."""
    a, b = peak_gib(old), peak_gib(new)
    base_a, base_b = old.get("baseline_device_gib"), new.get("baseline_device_gib")
    if None in (a, b, base_a, base_b) or old.get("peak_device_gib") is None or new.get("peak_device_gib") is None:
        return a, b
    return round(a - base_a, 4), round(b - base_b, 4)


def _relative(old: float, new: float) -> float:
    return (new - old) / old if old else (0.0 if new == old else float("inf"))


def _machine_warnings(old_info: dict, new_info: dict) -> list[str]:
    def describe(info: dict) -> str:
        card = info.get("gpu_name") or info.get("card") or "unknown card"
        return f"{card} (driver {info.get('driver') or 'none'})"

    old_card = (old_info.get("card"), old_info.get("gpu_name"))
    new_card = (new_info.get("card"), new_info.get("gpu_name"))
    if not old_info or not new_info:
        return []
    if old_card != new_card or old_info.get("driver") != new_info.get("driver"):
        return [
            f"baseline measured on {describe(old_info)}, this run on {describe(new_info)}: "
            "differences may come from the machine, not from vLLM"
        ]
    return []


def _compare_row(old: dict, new: dict, tolerances: dict, given: frozenset | None = None) -> Row:
    rid = new.get("id") or old.get("id")
    row = Row(id=rid, status="same", old=old, new=new)
    crossed = bool(old.get("cache_state") and new.get("cache_state") and old["cache_state"] != new["cache_state"])
    worse, better = [], []
    o_out, n_out = old.get("outcome"), new.get("outcome")
    if o_out != n_out:
        if o_out == "ok":
            worse.append(f"start failed: ok -> {n_out}")
        elif n_out == "ok":
            better.append(f"start now succeeds: {o_out} -> ok")
        else:
            row.changes.append(f"failure changed: {o_out} -> {n_out}")
    metrics = (
        ("peak", "peak memory", *peak_pair(old, new), +1, "GiB"),
        ("kv_tokens", "KV cache tokens", old.get("kv_cache_tokens"), new.get("kv_cache_tokens"), -1, ""),
        ("startup", "start-up", old.get("startup_s"), new.get("startup_s"), +1, "s"),
    )
    for key, label, a, b, worse_sign, unit in metrics:
        a, b = figure(old, key, a), figure(new, key, b)
        tol, why = row_tolerance(key, old, new, tolerances, given)
        if tol is None or not (_is_number(a) and _is_number(b)) or o_out != n_out:
            continue
        row.tolerances[key] = (tol, why)
        change = _relative(float(a), float(b))
        text = f"{label} {_num(a)} -> {_num(b)}{(' ' + unit) if unit else ''} ({change * 100:+.1f}%)"
        if change * worse_sign > tol:
            worse.append(text)
        elif change * worse_sign < -tol:
            better.append(text)
    if crossed and not any(w.startswith("start failed") for w in worse):
        # cold against warm: the figures move with the cache, not with vLLM; shown, never a regression
        row.status = "incomparable"
        row.changes = [f"cache {old['cache_state']} -> {new['cache_state']}: not judged"] + worse + better + row.changes
        return row
    if worse:
        row.status = "regressed"
    elif better:
        row.status = "improved"
    row.changes = worse + better + row.changes
    return row


def compare(old: list[dict], new: list[dict], tolerances: dict | None = None,
            given: frozenset | None = None) -> Comparison:
    """Per-combination comparison of two result lists (matched by id). `given`: the tolerance keys the user named;
    the others are derived from the records' measured spread where they have one (row_tolerance). None: every
    tolerance as given. Rows whose records name different cache states are "incomparable" (check_cache_states
    refuses such inputs unless allowed). UsageError (one line) when the two cannot be compared like with like
    (suite/comparable.py: empty baseline, duplicate ids, other model, card, load format, units or settings, peaks
    missing on one side)."""
    tol = dict(DEFAULT_TOLERANCES) if tolerances is None else {**DEFAULT_TOLERANCES, **tolerances}
    check_comparable(old, new, tol)
    old_by_id = {r["id"]: r for r in old if r.get("id")}
    new_by_id = {r["id"]: r for r in new if r.get("id")}
    rows = []
    for rid, record in new_by_id.items():
        if rid in old_by_id:
            rows.append(_compare_row(old_by_id[rid], record, tol, given))
        else:
            rows.append(Row(id=rid, status="new", changes=["not in the baseline"], new=record))
    for rid, record in old_by_id.items():
        if rid not in new_by_id:
            rows.append(Row(id=rid, status="missing", changes=["not in this run"], old=record))
    warns = _machine_warnings(machine_info_of(old), machine_info_of(new))
    missing = [r.id for r in rows if r.status == "missing"]
    if missing:  # a truncated or partial candidate run: what it did not measure cannot pass the gate
        warns.append(f"{plural(len(missing), 'combination')} of the baseline "
                     f"{'is' if len(missing) == 1 else 'are'} missing from the candidate: {', '.join(missing[:5])}"
                     + (" ..." if len(missing) > 5 else ""))
    regressed = any(r.status in FAILING for r in rows)
    return Comparison(rows=rows, regressed=regressed, warnings=warns, tolerances=tol,
                      versions=(machine_info_of(old).get("vllm"), machine_info_of(new).get("vllm")))


def tolerance_cell(row: Row) -> str:
    """`peak 2% (floor: spread 0.31% over 2 starts); kv_tokens 5% (given)`: what each figure was judged with."""
    return "; ".join(f"{key} {tol * 100:.3g}% ({why})" for key, (tol, why) in row.tolerances.items())


def _num(value) -> str:
    if value is None:
        return "-"
    if not _is_number(value):
        return str(value)
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) >= 100):
        return f"{int(value):,}"
    return f"{value:.2f}"


def planned_cause(row: Row) -> list[str]:
    """For a regression across vLLM versions: the planned term that moved the same way (predict/changelog.py)."""
    from diagnostics.predict.changelog import regression_cause

    cause = regression_cause(row.old or {}, row.new or {}) if row.status == "regressed" else None
    return [f"planned: {cause}"] if cause else []


def format_table(comparison: Comparison, tablefmt: str = "github") -> str:
    """Side-by-side table (old | new per metric) followed by warnings and a one-line summary."""
    from tabulate import tabulate

    headers = ["combination", "status", "outcome old", "outcome new", "peak old (GiB)", "peak new (GiB)",
               "KV tokens old", "KV tokens new", "start-up old (s)", "start-up new (s)", "changes"]
    derived = any(why not in ("given", "off") for row in comparison.rows for _, why in row.tolerances.values())
    if derived:
        headers.append("tolerance (why)")
    order = {s: i for i, s in enumerate(("regressed", "improved", "new", "missing", "incomparable", "same"))}
    table = []
    for row in sorted(comparison.rows, key=lambda r: (order[r.status], r.id)):
        o, n = row.old or {}, row.new or {}
        table.append([
            row.id, row.status.upper() if row.status == "regressed" else row.status,
            o.get("outcome", "-"), n.get("outcome", "-"),
            _num(peak_gib(o)), _num(peak_gib(n)),
            _num(o.get("kv_cache_tokens")), _num(n.get("kv_cache_tokens")),
            _num(o.get("startup_s")), _num(n.get("startup_s")),
            "; ".join(row.changes + planned_cause(row)) if row.status != "same" or row.changes else "",
        ] + ([tolerance_cell(row)] if derived else []))
    old_v, new_v = (v or "version unknown" for v in comparison.versions)
    lines = [f"baseline: vLLM {old_v} | candidate: vLLM {new_v}",
             tabulate(table, headers=headers, tablefmt=tablefmt, disable_numparse=True)]
    for w in comparison.warnings:
        lines.append(f"warning: {w}")
    counts = comparison.counts()
    summary = ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts[s])
    verdict = "REGRESSION" if comparison.regressed else "no regression"
    if comparison.regressed and not any(r.status == "regressed" for r in comparison.rows):
        verdict = "INCOMPLETE"
    lines.append(f"{verdict}: {summary or 'nothing to compare'} (tolerances {format_tolerances(comparison.tolerances)})")
    return "\n".join(lines)


# -- reading any results source -------------------------------------------------------------------------
def load_results_source(path: str | Path) -> tuple[dict, list[dict]]:
    """(meta, results) from a results.jsonl, a run directory or a saved baseline JSON; UsageError when the
    input is missing, not JSON lines, or has no result records."""
    p = Path(path)
    if p.is_dir():
        p = p / RESULTS_FILE
    if not p.is_file():
        raise UsageError(f"{path}: no such results file; accepted: results.jsonl, a run directory or a baseline JSON")
    check_text(p)  # NUL bytes or a size no sweep writes: refused before it is read whole
    text = p.read_text(encoding="utf-8", errors="replace")
    stripped = text.lstrip()
    if stripped.startswith("{") and '"results"' in text:
        try:
            document = json.loads(text)
        except ValueError:
            document = None
        if isinstance(document, dict) and isinstance(document.get("results"), list):
            return _read_baseline_file(p)
    records, notes = load_results_noting(p)
    records = [r for r in records if isinstance(r.get("id"), str) and "outcome" in r]
    if not records:
        raise UsageError(
            f"{path}: no result records; expected JSON lines with 'id' and 'outcome' (a sweep's results.jsonl)"
        )
    return {"path": str(p), "machine_info": machine_info_of(records), "warnings": notes}, records

