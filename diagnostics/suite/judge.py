"""What one start-up test asserts, and the failure text it gives: pure (no pytest, torch, vLLM, NVML, matplotlib).

pytest-memray style: `judge(...)` takes the facts of one start and returns a small `Verdict` that renders its
own failure text (`failure_text`) and its numbers section (`numbers_text`); the plugin only turns it into
pass / xfail / fail.

  * outcome (`classify`): the launcher's facts (timeout, killed by a signal) beat the log; then what the log
    could not tell: an unrecognised log of a clean exit is "ok", of a failed exit or failed request "error";
  * expected outcome (`expect`): the matrix's word, else the estimator's when clear-cut;
  * limits (`limits_for`): (a) profile-phase peak <= the card's profile_threshold_gib (absolute: the card must
    hold it); (b) the start's own increase (overall peak - the baseline the device had before the start, so
    other processes and the driver are apart) <= gpu_memory_utilization x total + headroom_gib (with
    kv_cache_memory_bytes: profile-phase peak + KV bytes + headroom); vLLM budgets from its own start too.
    A matrix may override both per card; the cpu card asserts only what the matrix states (its RSS peak);
  * the measurement itself (`_check_sampler`): a GPU start whose sampler failed, or read far below its rate,
    measured nothing and fails, whatever the peaks say.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from diagnostics.cards import Card
from diagnostics.errors import UsageError
from diagnostics.outcomes import MEMORY_FAILURES
from diagnostics.predict.estimator import plan
from diagnostics.settings import default_gpu_memory_utilization, resolve
from diagnostics.versions import OLDEST
from diagnostics.units import GiB, fmt_gib

if TYPE_CHECKING:  # explain imports the estimator too; the type only, no import at run time
    from diagnostics.explain.model import Explanation

PEAK_TERMS = ("weights", "non_torch", "activation_peak")  # what the estimator's start-up peak is made of
MIN_READINGS_SHARE = 0.25  # a GPU sampler with fewer than this share of wall_s / interval_s readings did not measure


def outcome_of(result, log_outcome: str) -> str:
    """The start's outcome: the harness's own facts (timeout, killed by a signal) beat what the log shows."""
    if result.timed_out:
        return "timeout"
    if result.signal is not None and log_outcome in ("ok", "unknown"):
        return "crash"
    if result.returncode not in (0, None) and log_outcome == "ok":
        return "error"
    return log_outcome


def classify(result, record) -> str:
    """The outcome of a start (`outcome_of`), then what the log could not tell: an unrecognised log of a clean
    exit is "ok"; of a failed exit or a failed request, "error"."""
    outcome = outcome_of(result, record.outcome)
    request_failed = bool(result.request) and not result.request.get("ok", True)
    if outcome == "ok" and request_failed:
        return "error"
    if outcome != "unknown":
        return outcome
    return "ok" if result.returncode == 0 and not request_failed else "error"


def matches(expected: str, outcome: str, basis: str) -> bool:
    """Did the expected thing happen? "oom" (and any estimator-predicted memory failure) = any memory failure."""
    if expected == outcome:
        return True
    if expected == "oom" or (basis == "estimator" and expected in MEMORY_FAILURES):
        return outcome in MEMORY_FAILURES
    return False


def plan_bounds(prediction) -> tuple[float, float]:
    """(low, high) of a Plan's predicted peak in GiB: the peak moved by the uncertainty of the terms it is made
    of (weights + non-torch + activation peak; the CUDA context is exact; the KV cache comes after the peak)."""
    terms = [prediction.components[name] for name in PEAK_TERMS if name in prediction.components]
    below = sum(max(t.value_gib - t.low_gib, 0.0) for t in terms)
    above = sum(max(t.high_gib - t.value_gib, 0.0) for t in terms)
    return prediction.peak_gib - below, prediction.peak_gib + above


@dataclass(frozen=True)
class Expectation:
    """The expected outcome (None: not asserted) and on what it rests ("matrix", "estimator", or why not)."""

    outcome: str | None
    basis: str


def predict_start(model, card, vllm_version: str | None, settings: dict, coefficients=None):
    """plan's Plan for exactly the settings a start used (entry point "llm", as the launcher starts vLLM), or None
    when the model is unknown or plan cannot plan these settings. `coefficients`: Coefficients | Calibration."""
    if model is None or card is None:
        return None
    try:
        return plan(model, card, vllm_version, "llm", settings, coefficients)
    except UsageError:
        return None


def expect(combination, card, model, vllm_version: str | None, settings: dict, coefficients=None) -> Expectation:
    """The matrix's expected outcome, else the estimator's when its whole peak range is on one side of the card."""
    if combination.expect:
        return Expectation(combination.expect, "matrix")
    if card is None or card.is_cpu:
        return Expectation(None, "not asserted: the estimator has no CPU-backend model")
    if model is None:
        return Expectation(None, "not asserted: the estimator does not know this model")
    try:
        prediction = plan(model, card, vllm_version, "llm", settings, coefficients)
    except UsageError as err:
        return Expectation(None, f"not asserted: the estimator cannot plan this ({err})")
    low, high = plan_bounds(prediction)
    total = card.total_gib
    if prediction.verdict == "ok" and high < total:
        return Expectation("ok", "estimator")
    if prediction.verdict in MEMORY_FAILURES and low > total:
        return Expectation(prediction.verdict, "estimator")
    return Expectation(None, f"not asserted: estimator says {prediction.verdict} with peak {low:.2f}-{high:.2f} "
                             f"GiB against {total:.2f} GiB (not clear-cut)")


def default_utilization(model, card, vllm_version: str | None, settings: dict) -> float:
    """vLLM's gpu_memory_utilization for these settings (diagnostics.settings.resolve); where they cannot be
    resolved (a model the estimator does not know: resolve needs its spec), the version's default
    (settings.default_gpu_memory_utilization), and 0.90 (the oldest rule) for a version outside the planned range."""
    try:
        fallback = default_gpu_memory_utilization(vllm_version)
    except UsageError:
        fallback = default_gpu_memory_utilization(OLDEST)
    if model is None:
        return fallback
    try:
        value = resolve(model, card, vllm_version, "llm", settings)
        return float(value.get("gpu_memory_utilization", fallback))
    except (UsageError, TypeError, ValueError):
        return fallback


@dataclass(frozen=True)
class Limits:
    """What the peaks may reach on this card, in GiB; None = not asserted."""

    profile_peak_gib: float | None
    peak_gib: float | None


def limits_for(thresholds: dict, card, settings: dict, profile_peak: float | None, model=None,
               vllm_version: str | None = None) -> Limits:
    """(profile-phase limit, overall limit) for one combination on `card`; `thresholds` is the matrix's per-card
    table; without gpu_memory_utilization in the settings, vLLM's default for model/card/version applies."""
    own = thresholds.get(card.name, {})
    profile_limit = own.get("profile_peak_gib")
    peak_limit = own.get("peak_gib")
    if card.is_cpu:
        return Limits(profile_limit, peak_limit)
    if profile_limit is None and card.profile_threshold_gib > 0:
        profile_limit = card.profile_threshold_gib
    if peak_limit is None:
        kv_bytes = settings.get("kv_cache_memory_bytes")
        if kv_bytes:
            base = profile_peak if profile_peak is not None else profile_limit
            peak_limit = None if base is None else base + kv_bytes / GiB + card.headroom_gib
        else:
            util = settings.get("gpu_memory_utilization")
            if util is None:
                util = default_utilization(model, card, vllm_version, settings)
            peak_limit = util * card.total_gib + card.headroom_gib
    return Limits(profile_limit, peak_limit)


def profile_peak_of(result) -> float | None:
    """The profile-phase peak (GiB): the launcher's max over init/weights/profile; None when the log marked no
    KV cache phase (then those phases may hold the KV cache, and no peak is "before" it)."""
    return result.before_kv_peak_gib


@dataclass
class Verdict:
    """What the test makes of one start; renders its own failure text and numbers section."""

    combination_id: str
    card: Card
    outcome: str
    phase: str
    expectation: Expectation
    limits: Limits
    profile_peak_gib: float | None
    explanation: Explanation | None
    error_line: str | None
    log_path: str
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.reasons

    @property
    def status(self) -> str:
        """"failed" | "xfail" (the expected failure happened) | "recorded" (nothing asserted) | "passed"."""
        expected = self.expectation.outcome
        if not self.passed:
            return "failed"
        if expected is not None and expected != "ok":
            return "xfail"
        return "recorded" if expected is None else "passed"

    def failure_text(self) -> str:
        """The diagnosis in one paragraph: what happened, what failed, why, the culprits, the log."""
        phase = f" in the {self.phase} phase" if self.phase != "unknown" else ""
        parts = [f"{self.combination_id} on {self.card.name}: {self.outcome}{phase}."]
        if self.reasons:
            parts.append("Failed: " + "; ".join(self.reasons) + ".")
        explanation = self.explanation
        if explanation and explanation.summary:
            parts.append(explanation.summary.rstrip(".") + ".")
        culprits = explanation.culprits if explanation else []
        if culprits:
            parts.append("Culprits: " + ", ".join(f"{c.setting}={json.dumps(c.value)} (-> {json.dumps(c.suggested)})"
                                                  for c in culprits) + ".")
        elif self.error_line and self.outcome != "ok":
            parts.append(f"vLLM said: {self.error_line.strip()[:300]}")
        parts.append(f"Log: {self.log_path}")
        return " ".join(parts)

    def numbers_text(self, record: dict) -> str:
        """The test report's "vllm-memcheck" section: the figures of the results.jsonl record."""
        expected = self.expectation
        return "\n".join([
            f"combination      {self.combination_id}  settings {json.dumps(record['settings'], sort_keys=True)}",
            f"card             {self.card.name} ({self.card.label})  total {fmt_gib(record['card']['total_gib'])}",
            f"outcome          {self.outcome} (phase {self.phase}); expected {expected.outcome or '-'} "
            f"[{expected.basis}]",
            f"peak device      {fmt_gib(record['peak_device_gib'])}   baseline "
            f"{fmt_gib(record.get('baseline_device_gib'))}   peak process {fmt_gib(record['peak_process_gib'])}",
            f"profile peak     {fmt_gib(self.profile_peak_gib)}   limit {fmt_gib(self.limits.profile_peak_gib)}",
            f"overall limit    {fmt_gib(self.limits.peak_gib)}",
            f"KV cache         {fmt_gib(record['kv_cache_gib'])}   tokens {record['kv_cache_tokens'] or '-'}",
            f"start-up         {_seconds(record['startup_s'])}   wall {_seconds(record['wall_s'])}",
            f"log              {self.log_path}",
        ])


def _seconds(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f} s"


def _check_outcome(verdict: Verdict) -> None:
    """Reasons / notes from the outcome against the expectation."""
    expected, basis, outcome = verdict.expectation.outcome, verdict.expectation.basis, verdict.outcome
    if expected is not None and not matches(expected, outcome, basis):
        verdict.reasons.append(f"expected {expected} ({basis}), got {outcome} in the {verdict.phase} phase")
    elif expected is None and outcome in MEMORY_FAILURES:
        verdict.notes.append(f"{outcome} recorded, {basis}")
    elif expected is None and outcome != "ok":
        # an error, crash, timeout or unreadable log measured nothing about memory: never a pass
        verdict.reasons.append(f"the start did not come up and not for memory: {outcome}"
                               + (f" ({verdict.error_line.strip()[:300]})" if verdict.error_line else ""))


def own_increase(result, card) -> tuple[str, float | None]:
    """(label, GiB) of what the overall limit gates: on a GPU the start's own increase, peak - baseline (other
    processes, the driver and whatever ran before stay apart); the absolute peak where no baseline was read; on
    the cpu card the process tree's RSS peak."""
    if card.is_cpu:
        return "overall peak", result.peak_process_gib
    peak, baseline = result.peak_device_gib, result.baseline_device_gib
    if peak is None or baseline is None:
        return "overall peak", peak
    return f"overall peak above the baseline ({peak:.2f} - {baseline:.2f} GiB)", round(peak - baseline, 4)


def _check_sampler(verdict: Verdict, result) -> None:
    """A GPU start measured by a sampler that failed or read far too rarely measured nothing: a reason."""
    sampler = result.sampler or {}
    if verdict.card.is_cpu or not sampler:
        return
    if sampler.get("error"):
        verdict.reasons.append(f"memory not measured: the sampler stopped ({sampler['error']})")
        return
    interval, wall = sampler.get("interval_s"), result.wall_s
    if not interval or not wall:
        return
    expected = wall / interval
    if expected >= 20 and sampler.get("readings", 0) < MIN_READINGS_SHARE * expected:
        verdict.reasons.append(f"memory not measured at its rate: {sampler.get('readings', 0)} readings in "
                               f"{wall:.1f} s (every {interval * 1000:.0f} ms would give {expected:.0f})")


def _check_peaks(verdict: Verdict, peak: tuple[str, float | None]) -> None:
    """Reasons from the peaks against the limits (only when the engine came up); a limit without its figure is
    a reason too: a start that was not measured does not pass."""
    overall_label, overall = peak
    for label, value, limit in (("profile-phase peak", verdict.profile_peak_gib, verdict.limits.profile_peak_gib),
                                (overall_label, overall, verdict.limits.peak_gib)):
        if limit is None:
            continue
        if value is None and label == "profile-phase peak":
            verdict.notes.append(f"{label} not known: the log marks no KV cache phase (limit {limit:.2f} GiB)")
        elif value is None:
            verdict.reasons.append(f"{label} not measured (limit {limit:.2f} GiB)")
        elif value > limit:
            verdict.reasons.append(f"{label} {value:.2f} GiB > {limit:.2f} GiB allowed on {verdict.card.name}")


def judge(combination_id: str, card, result, log, expectation: Expectation, limits: Limits,
          explanation=None, timeout_s: float | None = None) -> Verdict:
    """The verdict on one start: `result` is the launcher's StartResult, `log` its LogRecord (outcome, phase,
    error_line), `card` a diagnostics.cards.Card, `timeout_s` the --engine-timeout it ran under. Peaks are the
    device's on a GPU, the process tree's on cpu."""
    if result.timed_out:
        explanation = None  # the log was cut off by the kill: what it shows so far is no diagnosis
    verdict = Verdict(combination_id, card, classify(result, log), log.phase, expectation, limits,
                      profile_peak_of(result), explanation, log.error_line, str(result.log_path))
    if result.timed_out:
        where = f"its log stops in the {log.phase} phase" if log.phase != "unknown" else "its log shows no phase"
        limit = f"--engine-timeout={timeout_s:g} s" if timeout_s else "--engine-timeout"
        verdict.reasons.append(f"the start did not come up within {limit} and was killed ({where}); raise "
                               "--engine-timeout if it is only slow (0: no limit)")
        return verdict
    _check_outcome(verdict)
    _check_sampler(verdict, result)
    if verdict.outcome == "ok":
        _check_peaks(verdict, own_increase(result, card))
    return verdict


class Measurement:
    """What one start produced (the results.jsonl record) and what the test makes of it (the Verdict)."""

    def __init__(self, combination, record: dict, verdict: Verdict):
        self.combination, self.record, self.verdict = combination, record, verdict
        self.status = verdict.status  # "passed" | "failed" | "xfail" | "recorded"
        self.diagnosis = verdict.failure_text()
        self.numbers = verdict.numbers_text(record)
        self.notes = verdict.notes
