"""Fit the estimate coefficients to printed and measured figures (issue #13). Pure: no file or engine access.

A `Sample` is one start whose settings `plan` can re-plan (model, card, vLLM version, settings) and the figures
vLLM printed for it (`LogRecord.numbers` keys, plus `peak_torch_gib` = weights + activation peak as 0.6.4 prints
it). The exact terms (weights, KV bytes per token, the dummy items) are held fixed; what is fitted:

* non-torch: least squares of `non_torch_gib` on [1, tensor_parallel_size > 1] (value, NCCL extra);
* the activation peak, max(s_enc x E, O + max(s_llm x L, Hs + k x R)) with E, L, O, Hs, R the shape-derived parts
  of `Plan.profile["parts"]`: each sample is assigned to the branch that decides its peak and that branch's
  coefficient (encoder_scale_eager/_linear, llm_activation_scale, sampler_bytes_per_logit) is the through-origin
  least-squares slope of its residual figure; assignment and fit alternate until stable;
* CUDA graphs: least squares of `cuda_graph_gib` on [1, largest captured batch / cap], per engine.

Per "arch/family" group (card architecture / vLLM family) a term is refitted only with >= GROUP_MIN figures of
its own. `leave_one_out` refits without each sample and predicts it: the error on cases not fitted on.
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass, field

from diagnostics.predict.accuracy import compare, predicted_figures
from diagnostics.predict.coefficients import DEFAULT, Calibration, Coefficients
from diagnostics.predict.estimator import plan
from diagnostics.predict.terms import non_torch_term
from diagnostics.units import GiB
from diagnostics.versions import family, parse_version

GROUP_MIN = 3
ACTIVATION_FIGURES = ("activation_peak_gib", "peak_torch_gib")
EVALUATED = ("weights_gib", "non_torch_gib", "activation_peak_gib", "peak_torch_gib", "kv_cache_gib",
             "kv_cache_tokens", "cuda_graph_gib", "encoder_items")


@dataclass(frozen=True)
class Sample:
    """One start: plan's inputs and the figures printed for it. `model` None: only non-torch can be used."""

    label: str
    card: object  # cards.Card
    version: str
    settings: dict
    printed: dict
    model: object = None  # models.ModelSpec
    entrypoint: str = "llm"
    note: str = ""

    @property
    def group(self) -> str:
        return f"{self.card.arch}/{family(parse_version(self.version), self.settings.get('use_v1'))}"


@dataclass
class Fit:
    """The fitted coefficients and, per coefficient, the figures it rests on: {name: [sample labels]}."""

    coefficients: Coefficients
    used: dict = field(default_factory=dict)
    groups: dict = field(default_factory=dict)


def replan(sample: Sample, coef: Coefficients):
    return plan(sample.model, sample.card, sample.version, sample.entrypoint, sample.settings, coef)


def predicted(sample: Sample, coef: Coefficients) -> dict:
    """plan's figures for a sample (only non-torch for a sample without a model)."""
    if sample.model is None:
        return {"non_torch_gib": non_torch_term(sample.settings, coef).value_gib}
    return predicted_figures(replan(sample, coef))


def _tp(sample: Sample) -> int:
    return int(sample.settings.get("tensor_parallel_size", 1))


def fit_non_torch(samples: list[Sample], coef: Coefficients, used: dict) -> Coefficients:
    """Least squares on [1, TP > 1]: the mean of single-GPU figures, the TP>1 mean minus it as the NCCL extra."""
    rows = [(s, s.printed["non_torch_gib"]) for s in samples if _num(s.printed.get("non_torch_gib"))]
    if not rows:
        return coef
    single = [y for s, y in rows if _tp(s) == 1]
    multi = [y for s, y in rows if _tp(s) > 1]
    extra = statistics.fmean(multi) - statistics.fmean(single) if single and multi else coef.nccl_extra_gib
    value = statistics.fmean(single) if single else statistics.fmean(multi) - extra
    resid = [abs(y - value - (extra if _tp(s) > 1 else 0.0)) for s, y in rows]
    spread = max(resid + [0.05])
    used["non_torch_gib"] = [s.label for s, _ in rows]
    return coef.replace(non_torch_gib=(value, max(value - spread, 0.0), value + spread),
                        nccl_extra_gib=max(extra, 0.0))


def _activation_rows(samples: list[Sample]) -> list[tuple[Sample, float, dict]]:
    """(sample, activation figure in bytes, parts) for every sample that printed an activation figure."""
    rows = []
    for s in samples:
        if s.model is None:
            continue
        p = replan(s, DEFAULT)
        parts = p.profile["parts"]
        if _num(s.printed.get("activation_peak_gib")):
            rows.append((s, s.printed["activation_peak_gib"] * GiB, parts))
        elif _num(s.printed.get("peak_torch_gib")):
            rows.append((s, (s.printed["peak_torch_gib"] - p.components["weights"].value_gib) * GiB, parts))
    return rows


def _branch(parts: dict, coef: Coefficients) -> tuple[str, float, float]:
    """(coefficient deciding the peak, its shape-derived x, the offset beside it) under `coef`."""
    enc_name = "encoder_scale_eager" if parts["eager"] else "encoder_scale_linear"
    enc = getattr(coef, enc_name) * parts["encoder_raw_bytes"]
    llm = coef.llm_activation_scale * parts["llm_pass_raw_bytes"]
    samp = parts["hidden_bytes"] + coef.sampler_bytes_per_logit * parts["sampler_logits"]
    out = parts["encoder_outputs_bytes"]
    if enc >= out + max(llm, samp):
        return enc_name, parts["encoder_raw_bytes"], 0.0
    if llm >= samp:
        return "llm_activation_scale", parts["llm_pass_raw_bytes"], out
    return "sampler_bytes_per_logit", parts["sampler_logits"], out + parts["hidden_bytes"]


def fit_activation(samples: list[Sample], coef: Coefficients, used: dict) -> Coefficients:
    """Alternate branch assignment and through-origin least squares per branch coefficient (5 rounds at most)."""
    rows = _activation_rows(samples)
    for _ in range(5):
        sums: dict[str, list] = {}
        for s, y, parts in rows:
            name, x, offset = _branch(parts, coef)
            if x > 0:
                sums.setdefault(name, []).append((s.label, x, y - offset))
        new = {name: max(sum(x * t for _, x, t in v) / sum(x * x for _, x, t in v), 0.0) for name, v in sums.items()}
        changed = coef.replace(**new)
        for name, v in sums.items():
            used[name] = [label for label, _, _ in v]
        if changed == coef:
            break
        coef = changed
    return coef


def fit_graphs(samples: list[Sample], coef: Coefficients, used: dict) -> Coefficients:
    """cuda_graph_gib = base + slope x batch / cap per engine; slope only with >= 2 distinct batches."""
    for engine_name, attr in (("V0", "cuda_graph_v0"), ("V1", "cuda_graph_v1")):
        rows = []
        for s in samples:
            if s.model is None or not _num(s.printed.get("cuda_graph_gib")):
                continue
            p = replan(s, coef)
            if p.engine == engine_name and p.profile["parts"]["graph_batch"]:
                rows.append((s.label, p.profile["parts"]["graph_batch"] / p.profile["parts"]["graph_cap"],
                             s.printed["cuda_graph_gib"]))
        if not rows:
            continue
        base, slope, cap = getattr(coef, attr)
        xs, ys = [x for _, x, _ in rows], [y for _, _, y in rows]
        if len(set(xs)) >= 2:
            mx, my = statistics.fmean(xs), statistics.fmean(ys)
            slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
            base = my - slope * mx
        else:
            base = statistics.fmean(y - slope * x for x, y in zip(xs, ys))
        used[attr] = [label for label, _, _ in rows]
        coef = coef.replace(**{attr: (base, slope, cap)})
    return coef


def fit(samples: list[Sample], base: Coefficients = DEFAULT, name: str = "fitted") -> Fit:
    """Fit every estimate coefficient the samples have figures for; the rest keep `base`'s values."""
    used: dict = {}
    coef = base.replace(name=name)
    coef = fit_non_torch(samples, coef, used)
    coef = fit_activation(samples, coef, used)
    coef = fit_graphs(samples, coef, used)
    result = Fit(coef, used)
    for group in sorted({s.group for s in samples}):
        members = [s for s in samples if s.group == group]
        own: dict = {}
        g = fit_activation(members, fit_non_torch(members, coef, own), own)
        keep = {k: getattr(g, k) for k, labels in own.items() if len(labels) >= GROUP_MIN}
        if keep:
            result.groups[group] = coef.replace(name=f"{name} ({group})", **keep)
    return result


def calibration_of(result: Fit, inputs: list[str]) -> Calibration:
    return Calibration(result.coefficients, dict(result.groups), tuple(inputs))


@dataclass(frozen=True)
class Row:
    """One figure of one sample: printed, predicted before (built-in), in-sample and leave-one-out."""

    sample: str
    figure: str
    printed: float
    before: float | None
    fitted: float | None
    loo: float | None

    def error(self, which: str) -> float | None:
        value = getattr(self, which)
        return None if value is None or not self.printed else (value - self.printed) / abs(self.printed)


def _for(sample: Sample, coef) -> Coefficients:
    return coef.for_group(sample.card.arch, sample.group.split("/", 1)[1]) if isinstance(coef, Calibration) else coef


def evaluate(samples: list[Sample], result: Fit, base: Coefficients = DEFAULT) -> list[Row]:
    """Every printed figure plan predicts: before calibration, fitted on all samples, and leave-one-out."""
    cal = calibration_of(result, [])
    rows = []
    for i, s in enumerate(samples):
        rest = samples[:i] + samples[i + 1:]
        loo_fit = fit(rest, base, "loo")
        got = {name: {c.figure: c.predicted for c in compare(predicted(s, coef), s.printed)}
               for name, coef in (("before", base), ("fitted", _for(s, cal)),
                                  ("loo", _for(s, calibration_of(loo_fit, []))))}
        for figure in EVALUATED:
            if figure in got["before"] or figure in got["fitted"]:
                rows.append(Row(s.label, figure, float(s.printed[figure]), got["before"].get(figure),
                                got["fitted"].get(figure), got["loo"].get(figure)))
    return rows


def loo_spread(samples: list[Sample], base: Coefficients = DEFAULT) -> dict:
    """{coefficient: (min, max)} of its value over the leave-one-out refits (the fit's sensitivity to one case)."""
    values: dict[str, list] = {}
    for i in range(len(samples)):
        coef = fit(samples[:i] + samples[i + 1:], base, "loo").coefficients
        for f in dataclasses.fields(coef):
            v = getattr(coef, f.name)
            if isinstance(v, tuple):
                v = v[0]
            if _num(v):
                values.setdefault(f.name, []).append(float(v))
    return {k: (min(v), max(v)) for k, v in values.items()}


def term_summary(rows: list[Row]) -> list[dict]:
    """Per figure: n, and median / worst |error| before, in-sample and leave-one-out (fractions)."""
    out = []
    for figure in EVALUATED:
        mine = [r for r in rows if r.figure == figure]
        if not mine:
            continue
        entry = {"figure": figure, "n": len(mine)}
        for which in ("before", "fitted", "loo"):
            errs = [abs(e) for e in (r.error(which) for r in mine) if e is not None]
            entry[which] = (statistics.median(errs), max(errs)) if errs else (None, None)
        out.append(entry)
    return out


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)
