"""`calibrate SOURCE... [--model M] [--card C] [--vllm V] [--out FILE] [--markdown FILE] [--name NAME]`: fit plan's
estimate coefficients to what vLLM printed (diagnostics.predict.calibrate) and say how well they predict.

SOURCE is a run directory (or its results.jsonl: every record with a `prediction` and printed figures), a log
file with a printed breakdown (plan's inputs from --model/--card/--vllm, the version from the log when it prints
one), or a fit-inputs TOML ([[sample]] tables naming a field case, as tests/data/calibration/field-inputs.toml).
Prints each coefficient (built-in, fitted, its spread over the leave-one-out refits, the figures it rests on) and
per figure the median and worst error before calibration, in-sample and leave-one-out; --out writes the
calibration TOML (`plan --calibration FILE`), --markdown the accuracy document (docs/accuracy.md).
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from diagnostics.cards import get_card
from diagnostics.errors import UsageError
from diagnostics.logs.reader import read_log
from diagnostics.models import get_model
from diagnostics.predict.estimator import plan
from diagnostics.predict.fit import refusal
from diagnostics.predict import calibrate as cal
from diagnostics.predict.coefficients import DEFAULT, calibration_toml
from diagnostics.report import check_writable, emit
from diagnostics.report.accuracy import markdown, text
from diagnostics.settings import KNOWN_SETTINGS
from diagnostics.suite.results import RESULTS_FILE, load_results
from diagnostics.suite.run import ModelDir

HELP = "fit plan's estimate coefficients to printed figures (run directories, logs, field-case inputs)"
ACCEPTED = "a run directory or results.jsonl, a vLLM log file, or a fit-inputs TOML ([[sample]] tables)"


def add_arguments(parser) -> None:
    parser.add_argument("sources", nargs="+", metavar="SOURCE", help=ACCEPTED)
    parser.add_argument("--model", default=None, help="the model of log-file sources (name or directory)")
    parser.add_argument("--card", default=None, help="the card of log-file sources (short name)")
    parser.add_argument("--vllm", default=None, metavar="VERSION", help="vLLM version of log files that print none")
    parser.add_argument("--name", default="fitted", help="the calibration's name (default: fitted)")
    parser.add_argument("--out", default=None, metavar="FILE", help="write the calibration TOML here")
    parser.add_argument("--markdown", default=None, metavar="FILE", help="write the accuracy document here")


def run(args) -> int:
    check_writable(args.out, "--out")  # before the fit, not a traceback after it
    check_writable(args.markdown, "--markdown")
    samples, skipped = [], []
    seen = {}
    for source in args.sources:  # one source twice would count each sample twice (and survive leave-one-out)
        key = Path(source).resolve()
        if key in seen:
            raise UsageError(f"calibrate: {source} is {seen[key]} again; accepted: each source once")
        seen[key] = source
    for source in args.sources:
        got, why = load_source(Path(source), args)
        samples += got
        skipped += why
    if not samples:
        raise UsageError(f"no figure to fit in {', '.join(args.sources)}; accepted: {ACCEPTED} with a printed "
                         "breakdown (weights, non-torch, activation peak, KV cache)")
    fit = cal.fit(samples, DEFAULT, args.name)
    rows = cal.evaluate(samples, fit)
    spread = cal.loo_spread(samples)
    inputs = [f"{s.label}: " + ", ".join(f"{k}={v}" for k, v in sorted(s.printed.items())) for s in samples]
    calibration = cal.calibration_of(fit, inputs)
    print(text(samples, fit, rows, spread, skipped))
    command = " ".join(["python -m diagnostics calibrate", *args.sources, "--name", args.name]
                       + (["--out", args.out] if args.out else []) + (["--markdown", args.markdown] if args.markdown
                                                                        else []))
    if args.out:
        emit(calibration_toml(calibration, [f"written by: {command}"]), args.out)  # a full device: one line
        print(f"calibration: {args.out}")
    if args.markdown:
        emit(markdown(samples, fit, rows, spread, skipped, command), args.markdown)
        print(f"accuracy document: {args.markdown}")
    return 0


def load_source(path: Path, args) -> tuple[list, list[str]]:
    """(samples, skipped-with-reason lines) of one SOURCE."""
    if path.is_dir() or path.name == RESULTS_FILE or path.suffix == ".jsonl":  # a results file by any name
        return samples_from_run(path)
    if not path.is_file():
        raise UsageError(f"calibrate: {path} does not exist; accepted: {ACCEPTED}")
    if path.suffix == ".toml":
        return samples_from_inputs(path)
    return samples_from_log(path, args)


FIT_KEYS = ("weights_gib", "non_torch_gib", "activation_peak_gib", "kv_cache_gib", "kv_cache_tokens",
            "cuda_graph_gib", "peak_torch_gib", "encoder_items")


def _printed(numbers: dict, settings: dict, wanted=FIT_KEYS) -> dict:
    out = {k: numbers[k] for k in wanted if isinstance(numbers.get(k), (int, float)) and k in numbers}
    if "kv_cache_tokens" in wanted and "kv_cache_tokens" not in out and numbers.get("gpu_blocks"):
        out["kv_cache_tokens"] = int(numbers["gpu_blocks"]) * int(settings.get("block_size", 16))
    return out


def _run_model(record: dict, kits: dict):
    """The ModelSpec of a record's model: its path if still there, a built-in name, or a kit:* model rebuilt
    (shapes only) into a temporary directory; None when none of these works."""
    for name in (record.get("model_path"), record.get("model")):
        try:
            return get_model(name) if name else None
        except UsageError:
            continue
    model = str(record.get("model") or "")
    if model.startswith("kit:"):
        if model not in kits:
            kits[model] = ModelDir(model)
        return get_model(kits[model].path([]))
    return None


def samples_from_run(path: Path) -> tuple[list, list[str]]:
    if not (path / RESULTS_FILE if path.is_dir() else path).is_file():
        raise UsageError(f"calibrate: {path} has no {RESULTS_FILE}; accepted: {ACCEPTED}")
    samples, skipped, kits = [], [], {}
    try:
        for r in load_results(path):
            sample = _run_sample(r, kits)
            if isinstance(sample, str):
                skipped.append(sample)
            else:
                samples.append(sample)
    finally:
        for kit in kits.values():
            kit.cleanup()
    return samples, skipped


def _run_sample(r: dict, kits: dict):
    """One results.jsonl record as a Sample, or the reason it is skipped."""
    label = f"{r.get('run')}/{r.get('id')}"
    model = _run_model(r, kits)
    if model is None:
        return f"{label}: model {r.get('model')!r} cannot be re-planned here"
    card = get_card(r["card"]["name"])
    printed = _printed(r.get("vllm_numbers") or {}, r.get("settings") or {})
    version = (r.get("machine_info") or {}).get("vllm") or (r.get("prediction") or {}).get("vllm_version")
    if not printed or not version:
        return f"{label}: " + ("vLLM printed no figure plan predicts" if version else "no vLLM version recorded")
    return cal.Sample(label, card, version, dict(r.get("settings") or {}), printed, model)


def samples_from_log(path: Path, args) -> tuple[list, list[str]]:
    record = read_log(path.read_text(encoding="utf-8", errors="replace"))
    version = record.vllm_version or args.vllm
    if not (args.model and args.card and version):
        raise UsageError(f"calibrate: log file {path} needs --model and --card"
                         + ("" if version else " and --vllm (the log prints no version)"))
    settings = {k: v for k, v in record.settings.items() if k in KNOWN_SETTINGS}
    printed = _printed(record.numbers, settings)
    if not printed:
        return [], [f"{path}: the log prints no figure plan predicts"]
    model, card = get_model(args.model), get_card(args.card)
    try:
        planned = plan(model, card, version, "llm", settings)
    except UsageError:
        planned = None
    why = refusal(planned) if planned is not None else None
    if why:  # e.g. max_model_len=131072 for a 32K model: the log is not of --model, and would fit nonsense
        raise UsageError(f"calibrate: {path}'s settings are ones vLLM refuses for {model.name}: {why} Is the log "
                         f"of --model {args.model}? accepted: a log of that model")
    return [cal.Sample(path.name, card, version, settings, printed, model)], []


def samples_from_inputs(path: Path) -> tuple[list, list[str]]:
    """[[sample]] tables: each names a field case (cases, source), plan's inputs and the figures to take."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"calibrate: {path} is not TOML ({exc})") from None
    cases_dir = path.parent.parent / "field_cases"
    samples = []
    for i, entry in enumerate(data.get("sample") or [], start=1):
        where = f"{path} [[sample]] #{i}"
        try:
            case = _case(cases_dir / entry["cases"], entry["source"])
            model = _inputs_model(path.parent, entry.get("model"))
            numbers = dict(read_log(case.get("log_excerpt") or case.get("log") or "").numbers)
            rep = case.get("reported_numbers") or {}
            numbers.update({k: rep[v] for k, v in (entry.get("reported") or {}).items()})
            printed = _printed(numbers, entry.get("settings") or {}, tuple(entry["figures"]))
            samples.append(cal.Sample(entry["label"], get_card(entry["card"]), entry["vllm"],
                                      dict(entry.get("settings") or {}), printed, model,
                                      entry.get("entrypoint", "llm"), entry.get("note", "")))
        except KeyError as exc:
            raise UsageError(f"{where}: missing {exc}; a sample needs label, cases, source, card, vllm, figures") \
                from None
    if not samples:
        raise UsageError(f"calibrate: {path} has no [[sample]] table; accepted: {ACCEPTED}")
    return samples, [f"{e.get('what')}: {e.get('why')}" for e in data.get("excluded") or []]


def _inputs_model(base: Path, name: str | None):
    """A sample's model: a directory relative to the inputs file, else a name models.get_model knows."""
    if not name:
        return None
    return get_model(base / name if (base / name).is_dir() else name)


def _case(path: Path, source: str) -> dict:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            case = json.loads(line)
            if str(case.get("source") or case.get("id") or "").startswith(source):
                return case
    raise UsageError(f"calibrate: no case {source!r} in {path}")

