"""Every estimated coefficient of the start-up arithmetic, in one place, and calibrations that replace them.

The exact terms (weights, KV bytes per token, dummy-item counts) follow vLLM's code and have no coefficient. What
is estimated — the CUDA context, non-torch memory, the scale of the activation terms (encoder bytes per vision token
for each attention kind, language-model bytes per batched token), the sampler's bytes per logit and CUDA-graph
memory — is a field of `Coefficients`, so a calibration (issue #13, `predict.calibrate`) replaces one object and the
term functions in `predict.terms` read nothing else. Units: GiB for memory figures, bytes for per-element sizes,
plain factors for scales and ranges (low, high) around a value.

Sources (vllm-memory.md §1, the field cases): non-torch 0.11 GiB (4090), 0.30 (L40S, TP 2), 0.34-0.43 (A100, TP 4);
V0 logs warn "CUDA graphs ... 1~3 GiB"; the CUDA context is taken before vLLM's baseline and visible to NVML.

A calibration TOML (`python -m diagnostics calibrate`, shipped: `diagnostics/data/calibration.toml`):

    [calibration]
    name = "field-cases"            # what it was fitted on
    inputs = ["vllm#15815 ...", ...] # one line per fitted figure
    [coefficients]                  # any field of Coefficients; the rest keep their defaults
    non_torch_gib = [0.3, 0.1, 0.45]
    [groups."ampere/v0-merged".coefficients]   # per card architecture / vLLM family where the data allow
    llm_activation_scale = 1.2
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from diagnostics.errors import UsageError


@dataclass(frozen=True)
class Coefficients:
    """The estimate coefficients (defaults: hand-fitted on the field cases of round 1)."""

    # (value, low, high) in GiB: not counted by vLLM (taken before its baseline), visible to NVML
    cuda_context_gib: tuple[float, float, float] = (0.3, 0.25, 0.5)
    # (value, low, high) in GiB: cuBLAS/cuBLASLt workspaces, NCCL buffers
    non_torch_gib: tuple[float, float, float] = (0.3, 0.1, 0.6)
    nccl_extra_gib: float = 0.15  # per start with tensor_parallel_size > 1
    # fp32 logits + probs + sorted values + int64 indices (top-p/top-k dummy sampling), bytes per logit
    sampler_bytes_per_logit: float = 24
    # factors on the shape-derived bytes per vision token (terms.encoder_bytes) for each attention kind
    encoder_scale_linear: float = 1.0  # memory-efficient attention (xformers/SDPA/flash)
    encoder_scale_eager: float = 1.0  # eager attention (L^2 scores)
    # factor on the language-model pass's shape-derived bytes per batched token (terms.llm_pass_bytes)
    llm_activation_scale: float = 1.0
    encoder_range_linear: tuple[float, float] = (0.7, 1.4)  # memory-efficient attention: linear-in-tokens estimate
    encoder_range_eager: tuple[float, float] = (0.9, 1.3)  # eager attention: L^2 scores exact, the rest estimated
    llm_range: tuple[float, float] = (0.7, 1.3)  # language-model pass + sampler
    # CUDA graphs: base + slope x largest captured batch / batch cap, GiB; range factors around it
    cuda_graph_v0: tuple[float, float, int] = (0.2, 0.8, 256)
    cuda_graph_v1: tuple[float, float, int] = (0.2, 0.6, 512)
    cuda_graph_range: tuple[float, float] = (0.5, 2.0)
    # under tensor parallelism each captured graph also holds its all-reduce buffers (custom all-reduce registers
    # every graph's inputs): the high bound is multiplied by this; issue #20 quotes a 0.5.x report of ~2.4 GiB per
    # GPU under TP where the single-GPU rule gives 1.0 (one report: a range, not a fitted value)
    cuda_graph_tp_high: float = 2.5
    # VLM families' vision tower (diagnostics.families): bytes per ViT patch = (a x vision hidden + b x vision MLP)
    # x dtype bytes, not sharded by TP. Fitted on Qwen2.5-VL field logs: vllm#16570 (72B, TP 4, one 65,536-patch
    # dummy image: activation peak 2.51 GiB printed) and vllm#18124 (3B at 24 GB: the 458,752-patch dummy video
    # leaves no KV cache), both ~40 KB per patch.
    vlm_tower_per_patch: tuple[int, int] = (8, 3)
    name: str = "built-in"  # which calibration these are

    def replace(self, **changes) -> Coefficients:
        return dataclasses.replace(self, **changes)


DEFAULT = Coefficients()
FIELDS = tuple(f.name for f in dataclasses.fields(Coefficients) if f.name != "name")


@dataclass(frozen=True)
class Calibration:
    """Fitted coefficients: pooled, plus per "arch/family" groups where a group had enough figures of its own."""

    coefficients: Coefficients = DEFAULT
    groups: dict = field(default_factory=dict)  # "ampere/v0-merged" -> Coefficients
    inputs: tuple = ()
    path: str | None = None

    def for_group(self, arch: str, family: str) -> Coefficients:
        """The group's coefficients for a card architecture and vLLM family, else the pooled ones."""
        return self.groups.get(f"{arch}/{family}", self.coefficients)


MAX_COEFFICIENT = 1e6  # larger (or inf, nan) overflows the estimator's arithmetic; no fitted value comes near


def _usable(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and abs(x) <= MAX_COEFFICIENT


def _coerce(where: str, name: str, value):
    default = getattr(DEFAULT, name)
    if isinstance(default, tuple):
        if not isinstance(value, list) or len(value) != len(default) or not all(_usable(x) for x in value):
            raise UsageError(f"{where}: {name} must be a list of {len(default)} finite numbers (|x| <= "
                             f"{MAX_COEFFICIENT:g}), got {value!r}")
        return tuple(type(d)(x) for d, x in zip(default, value))
    if not _usable(value):
        raise UsageError(f"{where}: {name} must be a finite number (|x| <= {MAX_COEFFICIENT:g}), got {value!r}")
    return float(value)


GRAPH_RULES = ("cuda_graph_v0", "cuda_graph_v1")  # (base GiB, slope GiB, batch cap): a line, not three sizes


def _check_sign(where: str, name: str, value) -> None:
    """Every coefficient is a memory size, a factor or bytes: none may be negative (a negative one would plan
    negative memory). A CUDA-graph rule (base, slope, cap) is a fitted line (predict.calibrate.fit_graphs): its
    intercept or slope may be negative as long as the figure base + slope x batch / cap is >= 0 over captured
    batches 1..cap, and cap is >= 1. UsageError naming the file and the coefficient otherwise."""
    if name in GRAPH_RULES:
        base, slope, cap = value
        if cap < 1 or min(base + slope / cap, base + slope) < 0:
            raise UsageError(f"{where}: {name} = {list(value)} gives a negative CUDA-graph figure (base + slope x "
                             "batch / cap); accepted: cap >= 1 and base + slope / cap >= 0 and base + slope >= 0")
        return
    numbers = value if isinstance(value, tuple) else (value,)
    if any(x < 0 for x in numbers):
        raise UsageError(f"{where}: {name} = {list(value) if isinstance(value, tuple) else value} is negative; "
                         "accepted: numbers >= 0 (memory sizes, factors and bytes cannot be negative)")


def coefficients_from(table: dict, where: str, base: Coefficients = DEFAULT, name: str = "") -> Coefficients:
    """A Coefficients from a TOML table {field: value}; UsageError naming the file for unknown fields, bad values or
    negative ones (_check_sign)."""
    unknown = sorted(set(table) - set(FIELDS))
    if unknown:
        raise UsageError(f"{where}: unknown coefficient {unknown[0]!r}; accepted: {', '.join(FIELDS)}")
    changes = {k: _coerce(where, k, v) for k, v in table.items()}
    for k, v in changes.items():
        _check_sign(where, k, v)
    return dataclasses.replace(base, name=name or base.name, **changes)


def load_calibration(path: str | Path) -> Calibration:
    """Read a calibration TOML (format in the module docstring). UsageError: missing file, bad TOML, bad field."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"calibration file {path}: cannot read it ({exc.strerror}); accepted: a TOML file "
                         "written by `python -m diagnostics calibrate`") from None
    except UnicodeDecodeError:
        raise UsageError(f"calibration file {path}: not UTF-8 text; accepted: a TOML file written by "
                         "`python -m diagnostics calibrate`") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"calibration file {path}: not TOML ({exc})") from None
    if not any(isinstance(data.get(k), dict) for k in ("calibration", "coefficients", "groups")):
        raise UsageError(f"calibration file {path}: no [calibration] or [coefficients] table"
                         + (f" (it has {', '.join(f'[{k}]' for k in data)})" if data else " (it is empty)")
                         + "; accepted: a TOML file written by `python -m diagnostics calibrate`")
    meta = data.get("calibration") or {}
    name = str(meta.get("name") or path.stem)
    pooled = coefficients_from(data.get("coefficients") or {}, str(path), DEFAULT, name)
    groups = {}
    for key, table in (data.get("groups") or {}).items():
        groups[key] = coefficients_from((table or {}).get("coefficients") or {}, f"{path} [groups.{key}]", pooled,
                                        f"{name} ({key})")
    return Calibration(pooled, groups, tuple(meta.get("inputs") or ()), str(path))


SHIPPED = Path(__file__).resolve().parents[1] / "data" / "calibration.toml"


def load_calibration_arg(text: str) -> Calibration:
    """A `--calibration` value: "shipped" (the calibration fitted on the field cases) or a TOML file's path."""
    return load_calibration(SHIPPED if text.strip().lower() == "shipped" else Path(text).expanduser())


def _toml_value(value) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:.6g}" if "." in f"{value:.6g}" or "e" in f"{value:.6g}" else f"{value:.6g}.0"
    if isinstance(value, int):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def calibration_toml(cal: Calibration, header: list[str] | None = None) -> str:
    """The TOML text of a calibration: only the fields that differ from the built-in defaults are written."""
    lines = [f"# {h}" for h in header or []]
    lines += ["[calibration]", f"name = {_toml_value(cal.coefficients.name)}", "inputs = ["]
    lines += [f"  {_toml_value(i)}," for i in cal.inputs] + ["]", "", "[coefficients]"]
    lines += [f"{k} = {_toml_value(getattr(cal.coefficients, k))}" for k in FIELDS
              if getattr(cal.coefficients, k) != getattr(DEFAULT, k)]
    for key, coef in sorted(cal.groups.items()):
        lines += ["", f'[groups."{key}".coefficients]']
        lines += [f"{k} = {_toml_value(getattr(coef, k))}" for k in FIELDS
                  if getattr(coef, k) != getattr(cal.coefficients, k)]
    return "\n".join(lines) + "\n"
