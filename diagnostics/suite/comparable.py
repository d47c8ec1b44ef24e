"""The gate's refusals: two runs are compared only when they measured like with like.

`compare` (suite/baseline.py) calls `check_comparable(old, new, tolerances)` first, so `python -m diagnostics
compare` and `pytest --compare-baseline` refuse the same inputs, each with one line (a UsageError: exit 2 on the
command line; a failed session in the plugin). A gate that cannot compare must not say "no regression":

- an empty baseline (nothing to compare with: every candidate combination would be "new");
- a combination id twice in one run (which record counts would depend on line order);
- runs of different models, cards, load formats, or peaks in different units (device memory from NVML against
  the process tree's memory on the CPU backend);
- the same id started with different settings in the two runs;
- a combination the baseline measured a peak for and the candidate did not (or the reverse), with the same
  outcome on both sides: its peak would silently count as "same". Checked only while the peak check is on.

Driver differences stay a warning (suite/baseline.py): a driver upgrade is a change worth measuring.
Each check is its own small function so other checks (cache state, repeats) can be added beside them.
"""

from __future__ import annotations

import math
from collections import Counter

from diagnostics.errors import UsageError

_SHOWN = 3  # ids named in a refusal before "..."


def _ids(ids) -> str:
    ids = sorted(str(i) for i in ids)
    return ", ".join(ids[:_SHOWN]) + (f" and {len(ids) - _SHOWN} more" if len(ids) > _SHOWN else "")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def refuse_empty_baseline(old: list[dict]) -> None:
    """UsageError when the baseline holds no result record."""
    if not old:
        raise UsageError("the baseline has no result records: nothing to compare with; accepted: a baseline saved "
                         "by --save-baseline after a sweep, a results.jsonl or a run directory with results")


def refuse_duplicate_ids(records: list[dict], which: str) -> None:
    """UsageError when one combination id has two records in `which` ("baseline" or "candidate")."""
    twice = [rid for rid, n in Counter(r.get("id") for r in records if r.get("id")).items() if n > 1]
    if twice:
        raise UsageError(f"the {which} has more than one record for {_ids(twice)}: which one counts would depend "
                         "on line order; accepted: one record per combination id (a run's results.jsonl as written)")


def _card(record: dict):
    info = record.get("machine_info") if isinstance(record.get("machine_info"), dict) else {}
    card = record.get("card") if isinstance(record.get("card"), dict) else {}
    return info.get("card") or card.get("name") or info.get("gpu_name")


def _peak_unit(record: dict):
    if _number(record.get("peak_device_gib")):
        return "device memory (NVML)"
    if _number(record.get("peak_process_gib")):
        return "process memory (the engine's process tree)"
    return None


RUN_FACTS = (
    ("model", lambda r: r.get("model")),
    ("card", _card),
    ("load format", lambda r: r.get("load_format")),
    ("peak unit", _peak_unit),
)


def refuse_unlike_runs(old: list[dict], new: list[dict]) -> None:
    """UsageError when the two runs differ in model, card, load format or the unit of their peaks (values
    a run does not record are not compared)."""
    for label, fact in RUN_FACTS:
        a = {str(v) for v in map(fact, old) if v not in (None, "")}
        b = {str(v) for v in map(fact, new) if v not in (None, "")}
        if a and b and a != b:
            raise UsageError(f"the baseline and the candidate differ in {label} ({', '.join(sorted(a))} vs "
                             f"{', '.join(sorted(b))}): the gate compares like with like; accepted: two runs of "
                             f"the same {label}")


def _settings(record: dict) -> dict:
    settings = record.get("settings")
    return settings if isinstance(settings, dict) else {}


def refuse_unlike_settings(old_by_id: dict, new_by_id: dict) -> None:
    """UsageError when a combination id was started with different settings in the two runs (a record without
    settings is not compared)."""
    differ = [rid for rid in new_by_id.keys() & old_by_id.keys()
              if _settings(old_by_id[rid]) and _settings(new_by_id[rid])
              and old_by_id[rid]["settings"] != new_by_id[rid]["settings"]]
    if differ:
        rid = sorted(differ)[0]
        a, b = old_by_id[rid]["settings"], new_by_id[rid]["settings"]
        keys = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
        raise UsageError(f"combination {_ids(differ)} ran with other settings in the candidate ({rid}: "
                         f"{', '.join(f'{k}={a.get(k)!r} vs {b.get(k)!r}' for k in keys[:3])}): not the same "
                         "start; accepted: both runs from the same matrix")


def refuse_missing_peaks(old_by_id: dict, new_by_id: dict, tolerances: dict) -> None:
    """UsageError when a combination with the same outcome on both sides has a peak on one side only (the peak
    check would pass it as "same"). Skipped when the peak check is off."""
    if tolerances.get("peak") is None:
        return
    for which, have, lack in (("candidate", old_by_id, new_by_id), ("baseline", new_by_id, old_by_id)):
        ids = [rid for rid in have.keys() & lack.keys()
               if have[rid].get("outcome") == lack[rid].get("outcome")
               and _peak_unit(have[rid]) and not _peak_unit(lack[rid])]
        if ids:
            raise UsageError(f"the {which} recorded no peak memory for {_ids(ids)} (the other run did): the peak "
                             "check cannot pass what was not measured; accepted: runs that measured peaks, or "
                             "--fail-on-regression peak:off")


def check_comparable(old: list[dict], new: list[dict], tolerances: dict) -> None:
    """Every refusal above, in order; UsageError (one line) on the first that applies."""
    refuse_empty_baseline(old)
    refuse_duplicate_ids(old, "baseline")
    refuse_duplicate_ids(new, "candidate")
    refuse_unlike_runs(old, new)
    old_by_id = {r["id"]: r for r in old if r.get("id")}
    new_by_id = {r["id"]: r for r in new if r.get("id")}
    refuse_unlike_settings(old_by_id, new_by_id)
    refuse_missing_peaks(old_by_id, new_by_id, tolerances)
