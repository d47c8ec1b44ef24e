"""`explain LOGFILE|- [--format text|json|md] [--out FILE]`: what a vLLM start-up log says failed, in which phase,
with vLLM's own numbers and the fix; `--format md` is a redacted Markdown report to paste into an issue.

Exit 0 whenever the input was read (an unrecognisable text is outcome `unknown`); exit 2 for a file that cannot
be read or an unknown --model/--card.
"""

from __future__ import annotations

import json
import sys

from diagnostics.cards import get_card
from diagnostics.errors import UsageError
from diagnostics.explain import explain_record
from diagnostics.logs.figures import DERIVED_NUMBERS
from diagnostics.logs.reader import read_log_stream
from diagnostics.logs.record import LogRecord
from diagnostics.logs.source import read_log_input
from diagnostics.logs.trace import trace
from diagnostics.models import get_model
from diagnostics.explain.words import printed_gib
from diagnostics.predict.accuracy import compare, predicted_figures
from diagnostics.predict.coefficients import load_calibration_arg
from diagnostics.report import SINGLE_FORMATS, emit, log_markdown, output_format
from diagnostics.units import fmt_error, fmt_gib, fmt_tokens

HELP = "read a vLLM start-up log (file or -) and say what failed, why, and the smallest fix"

JSON_KEYS = ("outcome", "phase", "reached", "vllm_version", "engine", "error_line", "evidence", "failed_engine",
             "engines", "numbers", "gpu_processes", "settings", "culprits", "summary", "fix", "prediction")
# The figures issue #2 §4 names, in the order a human reads them; other numeric keys follow.
MAIN_NUMBERS = ("weights_gib", "activation_peak_gib", "non_torch_gib", "kv_cache_gib", "kv_cache_tokens",
                "gpu_blocks", "gpu_total_gib", "gpu_memory_utilization", "cuda_graph_gib", "encoder_budget_tokens",
                "encoder_items", "max_model_len", "estimated_max_model_len", "oom_tried_gib", "oom_free_gib",
                "other_processes_gib")

# Settings worth a line in the text answer (--json carries every echoed setting).
TEXT_SETTINGS = ("model", "max_model_len", "max_num_seqs", "max_num_batched_tokens", "gpu_memory_utilization",
                 "limit_mm_per_prompt", "mm_processor_kwargs", "enforce_eager", "skip_mm_profiling",
                 "kv_cache_memory_bytes", "dtype", "tensor_parallel_size", "block_size", "cpu_offload_gb")


def add_arguments(parser) -> None:
    parser.add_argument("--calibration", default=None, metavar="FILE|shipped",
                        help="calibration TOML for plan's figures beside vLLM's (`calibrate --out`; shipped: the "
                             "field-case fit)")
    parser.add_argument("logfile", metavar="LOGFILE|-", help="a vLLM log file, or - to read standard input")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text (= --format json)")
    parser.add_argument("--format", choices=SINGLE_FORMATS, default=None,
                        help="text (default), json, or md: a redacted Markdown report to paste into an issue")
    parser.add_argument("--trace", action="store_true",
                        help="say why: for the outcome, the phase, the engine and each figure, the rule (catalogue "
                             "entry of diagnostics/data/log_messages.toml) and the log line that decided it")
    parser.add_argument("--out", default=None, metavar="FILE", help="write the answer to FILE instead of stdout")
    parser.add_argument("--model", default=None, help="model the log is from (minicpm-v-2_6, a stored VLM "
                                                      "such as qwen2.5-vl-7b, or a directory with config.json); "
                                                      "sharpens the culprits")
    parser.add_argument("--card", default=None, help="card short name (3090, a100-80, cpu, ...) when the log "
                                                     "does not show it")


def read_input(path: str) -> LogRecord:
    """The record of the log at `path` or on standard input (`-`), read as a stream (a day of server log stays out
    of memory: logs.reader.read_log_stream) after logs.source has opened it (UTF-8/UTF-16, gzip/bz2/xz); UsageError
    (exit 2) when it cannot be read or is no log (empty, binary, endless)."""
    return read_log_input(path, read_log_stream)


def json_numbers(numbers: dict) -> dict:
    """Only printed scalars: GiB as floats, counts as ints (per-worker lists and words stay in the record)."""
    out = {}
    for key in list(MAIN_NUMBERS) + sorted(set(numbers) - set(MAIN_NUMBERS)):
        value = numbers.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        out[key] = float(value) if key.endswith("_gib") or key == "gpu_memory_utilization" else value
    return out


def _resolve(model, card):
    """Fail early, with the accepted names, on an unknown --model/--card."""
    if model is not None:
        get_model(model)
    if card is not None:
        get_card(card)


def mismatch_warnings(record, model, card) -> list[str]:
    """What --model / --card say against what the log itself shows (its device total, its platform, the model it
    names): the answer is then for the named ones, and says so instead of mixing them silently."""
    from diagnostics.explain.context import record_model

    out = []
    numbers = record.numbers or {}
    total = numbers.get("gpu_total_gib") or numbers.get("oom_total_gib")
    if card is not None:
        named = get_card(card)
        if named.is_cpu and (record.platform or "") == "cuda":
            out.append(f"--card {named.name} on a log of a CUDA start: the prediction cannot use the log's GPU")
        elif total and not named.is_cpu and abs(named.total_gib - float(total)) > 0.05 * float(total):
            out.append(f"the log shows a {float(total):.2f} GiB device; --card {named.name} is {named.total_gib:.2f} "
                       "GiB: the prediction is for the card you named, not the one the log ran on")
    if model is not None:
        shown = record_model(record, None)
        named_model = get_model(model)
        if shown is not None and shown.name != named_model.name:
            also = "" if named_model.name == model else f" ({named_model.name})"
            out.append(f"the log names {shown.name}; --model {model}{also} is another model: the answer mixes the "
                       "two")
    return out


def _fallback_summary(record) -> str:
    if record.outcome == "ok":
        return "The engine started; the log shows no start-up failure."
    if record.outcome == "unknown":
        return ("The log does not show what happened: no root-cause line (exception text) was found"
                + (f"; {record.evidence[-1]}" if record.evidence else "") + ".")
    where = "" if record.phase == "unknown" else f" in the {record.phase.replace('_', ' ')} phase"
    return f"vLLM stopped with {record.outcome}{where}: {record.error_line}"


def explain(record, model=None, card=None, calibration=None) -> dict:
    """{"culprits": [Culprit.to_json()...], "summary", "fix"} from Explanation.to_json (the `plan --json` shape),
    and "plan": the Plan they were worked out with (`calibration`: --calibration's coefficients), which the
    figures beside vLLM's and the Markdown report reuse (not printed by --json).

    An explainer failure other than a UsageError is reported on stderr and answered with the outcome alone."""
    try:
        exp = explain_record(record, model=model, card=card, coefficients=calibration)
    except UsageError:
        raise
    except Exception as exc:
        print(f"vllm-memcheck explain: warning: explainer failed ({type(exc).__name__}: {exc}); outcome only",
              file=sys.stderr)
        return {"culprits": [], "summary": _fallback_summary(record), "fix": {}, "plan": None}
    doc = exp.to_json()
    return {"culprits": doc["culprits"], "summary": doc["summary"] or _fallback_summary(record), "fix": doc["fix"],
            "plan": exp.plan}


def beside(record, plan) -> list[dict]:
    """plan's figure beside each figure vLLM printed, with the error: `plan` is the one explain() worked out (the
    log's version and echoed settings, the model from --model or the log, the card from --card or the printed
    total, --calibration's coefficients). [] when the log printed no figure, or there is no plan."""
    if not record.numbers or plan is None:
        return []
    return [c.to_json() for c in compare(predicted_figures(plan), record.numbers)]


def as_json(record, answer: dict, with_trace: bool = False) -> dict:
    """The `explain --json` object: JSON_KEYS, the root-cause line and the evidence (docs/architecture.md), the
    engines of a log that holds several, numbers as json_numbers prints them, `answer` from explain(); `trace`
    (logs.trace) with --trace."""
    out = {"outcome": record.outcome, "phase": record.phase, "reached": record.reached,
           "vllm_version": record.vllm_version, "engine": record.engine, "error_line": record.error_line,
           "evidence": list(record.evidence), "failed_engine": record.failed_engine,
           "engines": [dict(e) for e in record.engines], "numbers": json_numbers(record.numbers),
           "gpu_processes": [dict(p) for p in record.gpu_processes], "settings": dict(record.settings),
           "culprits": answer["culprits"], "summary": answer["summary"], "fix": answer["fix"],
           "prediction": answer.get("prediction", [])}
    if with_trace:
        out["trace"] = trace(record)
    return out


def trace_text(record) -> list[str]:
    """`explain --trace` lines: each item, its value, the rule and catalogue row, and the deciding line."""
    lines = ["why (rule, catalogue entry of diagnostics/data/log_messages.toml, the line that decided it):"]
    for t in trace(record):
        rule = " ".join(x for x in (t["rule"] and f"rule {t['rule']}",
                                    t["catalogue"] and f"(catalogue {t['catalogue']})") if x)
        where = f"line {t['line_number']}: {t['line'][:200]}" if t["line"] else ""
        lines.append(f"  {t['item']} = {t['value']}: " + "; ".join(x for x in (t["how"], rule, where) if x))
    return lines


def _fmt(key: str, value) -> str:
    if key.endswith("_gib"):  # as vLLM printed it: a printed 0 is rounding, not an empty pool
        return printed_gib(value) if value == 0 else fmt_gib(value)
    if isinstance(value, int) and abs(value) >= 10000:
        return f"{value:,}"
    return str(value)


def _figure(key: str, value) -> str:
    return fmt_gib(value) if key.endswith("_gib") else fmt_tokens(int(value))


def as_text(record, answer: dict) -> str:
    lines = [f"outcome: {record.outcome}   phase: {record.phase}"
             + (f"   reached: {record.reached}" if record.reached and record.outcome == "unknown" else "")]
    engine = ", ".join(x for x in (record.engine, record.platform) if x)
    lines.append(f"vLLM: {record.vllm_version or 'version not in log'}" + (f" ({engine})" if engine else ""))
    if record.engines:
        others = ", ".join(f"{e['engine']} ({e['outcome']})" for e in record.engines
                           if e["engine"] != record.failed_engine)
        lines.append(f"engines in this log: {len(record.engines)}; explained: "
                     f"{record.failed_engine or 'none failed by its own lines'}"
                     + (f"; the others: {others}" if others else "")
                     + " (each engine's lines read apart; figures below are the explained engine's)")
    if record.error_line:
        cause = record.error_line if len(record.error_line) <= 400 else record.error_line[:397] + "..."
        lines.append(f"root cause: {cause}")
    numbers = json_numbers(record.numbers)
    key_numbers = [k for k in MAIN_NUMBERS if k in numbers and k not in DERIVED_NUMBERS]
    if key_numbers:
        lines.append("numbers printed by vLLM:")
        lines += [f"  {key}: {_fmt(key, numbers[key])}" for key in key_numbers]
    others = [f"{k}={_fmt(k, v)}" for k, v in numbers.items() if k not in MAIN_NUMBERS and k not in DERIVED_NUMBERS]
    if others:
        lines.append("  also: " + ", ".join(others))
    derived = [k for k in DERIVED_NUMBERS if k in numbers]
    if derived:  # computed here from printed figures: a 0 is a true 0, not a print's rounding
        lines.append("derived from them:")
        lines += [f"  {key}: {fmt_gib(numbers[key])} ({DERIVED_NUMBERS[key]})" for key in derived]
    shown = {k: v for k, v in record.settings.items() if k in TEXT_SETTINGS}
    if shown:
        lines.append("settings in the log: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
    if answer["culprits"]:
        lines.append("culprits:")
        for i, c in enumerate(answer["culprits"], 1):
            # values in the form --set accepts (JSON), not Python reprs
            current = "(not in the log)" if c["value"] is None else json.dumps(c["value"])
            target = "" if c["suggested"] is None else f" -> {json.dumps(c['suggested'])}"  # None: nothing to size
            lines.append(f"  {i}. {c['setting']}={current}{target}: {c['why']}")
    if answer.get("prediction"):
        lines.append("vLLM's figure vs plan's:")
        lines += [f"  {c['figure']}: vLLM {_figure(c['figure'], c['actual'])}, plan "
                  f"{_figure(c['figure'], c['predicted'])} ({fmt_error(c['error'])})" for c in answer["prediction"]]
    lines.append(f"summary: {answer['summary']}")
    return "\n".join(lines)


def run(args) -> int:
    for option, value in (("--model", args.model), ("--card", args.card)):
        if value is not None and not value.strip():
            raise UsageError(f"{option} '' names nothing; accepted: leave {option} out, or give a name")
    fmt = output_format(args.json, args.format)
    if fmt == "md" and getattr(args, "trace", False):  # refused, not ignored: the report has no trace section
        raise UsageError("--trace with --format md: the report for a thread has no trace; accepted: --trace with the "
                         "text answer or --json")
    calibration = load_calibration_arg(args.calibration) if args.calibration else None
    record = read_input(args.logfile)
    _resolve(args.model, args.card)
    for line in mismatch_warnings(record, args.model, args.card):
        print(f"vllm-memcheck explain: warning: {line}", file=sys.stderr)
    answer = explain(record, model=args.model, card=args.card, calibration=calibration)
    answer["prediction"] = beside(record, answer["plan"])
    if fmt == "md":
        text = log_markdown(record, answer, model=args.model, card=args.card)
    elif fmt == "json":
        text = json.dumps(as_json(record, answer, getattr(args, "trace", False)), default=str)
    else:
        text = as_text(record, answer)
        if getattr(args, "trace", False):
            text += "\n" + "\n".join(trace_text(record))
    emit(text, args.out)
    return 0

