"""`plan`'s figures beside what a start measured and what vLLM printed, with the error (issue #13).

One vocabulary for the suite's records, the reports, `explain` and `calibrate`: the keys are the log reader's
(`LogRecord.numbers`), so a printed figure and a predicted one meet under the same name.

    predicted_figures(plan) -> {"weights_gib", "non_torch_gib", "activation_peak_gib", "kv_cache_gib",
                                "kv_cache_tokens", "cuda_graph_gib", "encoder_items", "peak_gib"}
    prediction_record(plan) -> the `prediction` block of a results.jsonl record
    compare(predicted, printed, measured) -> [Comparison]   (error = (predicted - actual) / actual)
"""

from __future__ import annotations

from dataclasses import dataclass

# (figure key, label, unit): the figures vLLM prints that plan predicts, in start-up order
FIGURES = (
    ("weights_gib", "weights", "GiB"),
    ("non_torch_gib", "non-torch", "GiB"),
    ("activation_peak_gib", "activation peak", "GiB"),
    ("kv_cache_gib", "KV cache", "GiB"),
    ("kv_cache_tokens", "KV tokens", "tokens"),
    ("cuda_graph_gib", "CUDA graphs", "GiB"),
    ("encoder_items", "encoder items", "count"),
)
LABELS = {key: label for key, label, _ in FIGURES} | {"peak_gib": "device peak", "peak_torch_gib": "torch peak"}
UNITS = {key: unit for key, _, unit in FIGURES} | {"peak_gib": "GiB", "peak_torch_gib": "GiB"}


def predicted_figures(plan) -> dict:
    """The plan's figures under the log reader's keys (GiB, tokens, counts). `peak_torch_gib` is weights +
    activation peak (what vLLM 0.6.4 prints as peak_torch_memory); `peak_gib` includes the CUDA context."""
    c = plan.components
    return {
        "weights_gib": c["weights"].value_gib,
        "non_torch_gib": c["non_torch"].value_gib,
        "activation_peak_gib": c["activation_peak"].value_gib,
        "kv_cache_gib": c["kv_cache"].value_gib,
        "kv_cache_tokens": plan.kv_cache_tokens,
        "cuda_graph_gib": c["cuda_graph"].value_gib,
        "encoder_items": plan.profile.get("encoder_items"),
        "peak_gib": plan.peak_gib,
        "peak_torch_gib": c["weights"].value_gib + c["activation_peak"].value_gib,
    }


def prediction_record(plan) -> dict:
    """What results.jsonl stores of `plan` for the settings a start used: verdict, the figures (rounded to
    1e-4 GiB), the coefficients' name, and the shape-derived parts `calibrate` fits against."""
    figures = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in predicted_figures(plan).items()}
    return {"verdict": plan.verdict, "phase": plan.failing_phase, "vllm_version": plan.vllm_version,
            "engine": plan.engine, "family": plan.family, "coefficients": plan.coefficients.name,
            **figures, "parts": dict(plan.profile.get("parts") or {})}


@dataclass(frozen=True)
class Comparison:
    """One figure: plan's value, the actual one, where the actual came from ("vllm" printed it, or "measured")."""

    figure: str
    predicted: float | int
    actual: float | int
    source: str

    @property
    def error(self) -> float | None:
        """(predicted - actual) / |actual|; None when the actual is 0 (no relative error to speak of)."""
        return (self.predicted - self.actual) / abs(self.actual) if self.actual else None

    def to_json(self) -> dict:
        err = self.error
        return {"figure": self.figure, "predicted": _round(self.predicted), "actual": _round(self.actual),
                "source": self.source, "error": None if err is None else round(err, 4)}


def _round(v):
    return round(v, 4) if isinstance(v, float) else v


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def compare(predicted: dict, printed: dict, measured: dict | None = None) -> list[Comparison]:
    """Every figure both sides have: printed (vLLM's log, LogRecord.numbers keys) first, then measured
    ({"peak_gib": NVML device peak}). Values that are not numbers (a log's "418.00 MiB" text) are left out."""
    out = []
    for key in [k for k, _, _ in FIGURES] + ["peak_torch_gib"]:
        p, a = predicted.get(key), printed.get(key)
        if _number(p) and _number(a):
            out.append(Comparison(key, p, a, "vllm"))
    for key, a in (measured or {}).items():
        p = predicted.get(key)
        if _number(p) and _number(a):
            out.append(Comparison(key, p, a, "measured"))
    return out


def verdict_right(plan_verdict: str | None, outcome: str | None) -> bool | None:
    """Did plan call the start's outcome? None when either side is unknown."""
    if not plan_verdict or not outcome or "unknown" in (plan_verdict, outcome):
        return None
    return plan_verdict == outcome
