"""The upgrade gate inside a sweep: --save-baseline, --compare-baseline, --fail-on-regression, --baseline-dir and
--save-baseline-if-missing, checked before the first start and applied when the session finishes.

Checked at configure time (a usage error, never a traceback after a long sweep): the names are valid, the baseline
directory is writable when something will be saved there, and the baseline to compare with exists and reads —
a missing one fails unless --save-baseline-if-missing says to record this run as it on purpose. At the end the
comparison (suite/baseline.py) fails the session on a regression and on combinations the candidate did not run.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

from diagnostics.errors import UsageError
from diagnostics.suite import run
from diagnostics.suite.baseline import (cache_state_of, check_cache_states, check_name, compare, format_table,
                                       given_keys, load_baseline, parse_tolerances, save_baseline)
from diagnostics.suite.comparable import refuse_duplicate_ids, refuse_empty_baseline, refuse_unlike_runs


@dataclass
class Gate:
    """The session's baseline options and, after `check`, the baseline to compare with (or None)."""

    baseline_dir: Path
    save_name: str | None = None
    compare_name: str | None = None
    tolerances: dict | None = None
    save_if_missing: bool = False
    cache_state: str | None = None  # this session's --cache-state: the baseline must have been measured alike
    allow_cache_mismatch: bool = False
    given: frozenset = frozenset()  # tolerance keys --fail-on-regression names; the others come from the spread
    baseline: tuple | None = None  # (meta, results) loaded by check()
    lines: list[str] = field(default_factory=list)  # what the terminal summary prints

    @classmethod
    def from_config(cls, config, cache_state: str | None = None) -> Gate:
        spec = run.option(config, "fail_on_regression")
        compare_name = run.option(config, "compare_baseline")
        return cls(baseline_dir=Path(run.option(config, "baseline_dir") or ".memcheck/baselines"),
                   save_name=run.option(config, "save_baseline"), compare_name=compare_name,
                   tolerances=parse_tolerances(spec or run.DEFAULT_REGRESSION_SPEC) if compare_name or spec else None,
                   save_if_missing=bool(run.option(config, "save_baseline_if_missing")),
                   cache_state=cache_state, allow_cache_mismatch=bool(run.option(config, "allow_cache_mismatch")),
                   given=given_keys(spec))

    def check(self, machine_info) -> None:
        """Everything that can be known before the first start; UsageError naming the option otherwise.
        `machine_info()` gives this machine's info (card, driver, vLLM): asked only to look a baseline up."""
        if self.save_name:
            check_name(self.save_name, "--save-baseline")
        if self.save_if_missing and not self.compare_name:
            raise UsageError("--save-baseline-if-missing without --compare-baseline: nothing to record it as; "
                             "accepted: --compare-baseline=NAME --save-baseline-if-missing, or --save-baseline=NAME")
        if self.compare_name:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the fallback's warning is in meta["warnings"]
                info = machine_info()
                self.baseline = load_baseline(self.compare_name, self.baseline_dir, info)
            if self.baseline is not None:  # what is wrong with the baseline alone: now, not after the sweep
                self._refuse_baseline(self.baseline[1], info)
            if self.baseline is not None and self.cache_state:  # like with like, before the first start
                self.baseline[0].setdefault("warnings", []).extend(check_cache_states(
                    cache_state_of(self.baseline[1]), self.cache_state, self.allow_cache_mismatch,
                    "--allow-cache-mismatch"))
            if self.baseline is None and not self.save_if_missing:
                raise UsageError(f"--compare-baseline={self.compare_name}: no baseline {self.compare_name!r} under "
                                 f"{self.baseline_dir}/ (for any card or vLLM); save one with --save-baseline="
                                 f"{self.compare_name} on the vLLM you trust, pass --baseline-dir, or add "
                                 "--save-baseline-if-missing to record this run as it on purpose")
        if self.save_name or (self.compare_name and self.baseline is None):
            run.check_writable_dir(self.baseline_dir, "--baseline-dir")

    def _refuse_baseline(self, old: list[dict], info: dict) -> None:
        """The gate's refusals (suite/comparable.py) that need only the baseline and this machine: empty, ids
        twice, another card. UsageError naming --compare-baseline."""
        try:
            refuse_empty_baseline(old)
            refuse_duplicate_ids(old, "baseline")
            if info and info.get("card"):
                refuse_unlike_runs([r for r in old if isinstance(r, dict)],
                                   [{"machine_info": {"card": info.get("card")}}])
        except UsageError as err:
            raise UsageError(f"--compare-baseline={self.compare_name}: {err}") from None

    def finish(self, results: list[dict], notes: list[str]) -> bool:
        """Compare and/or save at the end of the session; True when the gate fails the session."""
        failed = False
        if self.compare_name and self.baseline is None:
            path = save_baseline(results, self.compare_name, self.baseline_dir)
            self.lines.append(f"no baseline {self.compare_name!r} yet under {self.baseline_dir}/; recorded this run "
                              f"as it (--save-baseline-if-missing): {path}")
        elif self.compare_name:
            failed = self._compare(results, notes)
        if self.save_name:
            path = save_baseline(results, self.save_name, self.baseline_dir)
            self.lines.append(f"saved baseline {self.save_name!r}: {path}")
        return failed

    def _compare(self, results: list[dict], notes: list[str]) -> bool:
        """The comparison's table into self.lines; True when the session fails (a regression, a missing
        combination, or two runs that cannot be compared like with like: suite/comparable.py)."""
        meta, old = self.baseline
        try:
            comparison = compare(old, results, self.tolerances, self.given)
        except UsageError as err:
            self.lines.append(f"vllm-memcheck: the gate cannot compare with baseline {meta.get('path')}: {err}; "
                              "the session fails")
            return True
        comparison.warnings = [*meta.get("warnings", []), *notes, *comparison.warnings]
        self.lines.append(f"compared with baseline {meta.get('path')}:")
        self.lines.append(format_table(comparison))
        if comparison.regressed:
            self.lines.append("regression beyond tolerance, or combinations missing: the session fails")
        return comparison.regressed
