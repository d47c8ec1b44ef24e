"""plan's verdict and KV pool against every recorded real start-up report it can be planned for (issue 20).

Run: VLLM_MEMCHECK_VLLM_EXACT=off .venv/bin/python tests/tools/plan_accuracy.py [--json | --markdown | --write-docs]

Reads every record of tests/data/field_cases/*.jsonl (real logs from public threads) and plans the ones that
tests/data/field_cases/plan-inputs.toml gives plan's inputs for (model config, card, vLLM version, entry point,
settings: what the thread says, with the reading written down in `note`). Pure rules only: the vLLM-exact path is
turned off (the held-back reports are planned for many versions, and the installed vLLM is only one of them).

Per case: plan's verdict against the outcomes the evidence allows (the record's `accept`, else its outcome, or the
input file's `accept` where the record is ambiguous), and the KV pool vLLM printed against plan's: tokens where the
log prints them ("GPU KV cache size: N tokens", or "# GPU blocks: N" x block size), else GiB ("Available KV cache
memory: X GiB", the V0 breakdown's kv_cache_size). Printed figures are taken from the record's numbers (what the
collector read off the thread), else read from the log excerpt by diagnostics.logs.reader. Every other record gets a
one-line reason why it is not scored.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ["VLLM_MEMCHECK_VLLM_EXACT"] = "off"  # pure rules: plan() itself takes no exact terms unless handed them

from diagnostics.cards import Card, get_card
from diagnostics.logs.reader import read_log
from diagnostics.models import ALIASES, stored_name
from diagnostics.predict.estimator import plan

FIELD = ROOT / "tests" / "data" / "field_cases"
INPUTS = FIELD / "plan-inputs.toml"
KV_BOUND = 0.10  # the target: the KV pool within 10 %
# A record's outcome in the collectors' words -> plan's verdict vocabulary (diagnostics/outcomes.py)
OUTCOME_ALIASES = {"kv_too_small_for_max_len": "kv_too_small"}


@dataclass
class Score:
    file: str
    id: str
    url: str = ""
    model: str = ""
    card: str = ""
    vllm: str = ""
    accept: list = field(default_factory=list)
    verdict: str | None = None
    verdict_right: bool | None = None
    kv_unit: str | None = None  # "tokens" | "GiB"
    kv_printed: float | None = None
    kv_planned: float | None = None
    kv_source: str = ""
    note: str = ""
    skipped: str | None = None  # the reason, for a record that is not scored

    @property
    def kv_error(self) -> float | None:
        if self.kv_printed is None or self.kv_planned is None or not self.kv_printed:
            return None
        return self.kv_planned / self.kv_printed - 1

    def to_json(self) -> dict:
        d = {k: v for k, v in self.__dict__.items()}
        d["kv_error"] = None if self.kv_error is None else round(self.kv_error, 4)
        return d


def records() -> list[tuple[str, str, dict]]:
    """(file name, record id, record) for every field case, in file order."""
    out = []
    for path in sorted(FIELD.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                out.append((path.name, rec.get("id") or rec.get("source"), rec))
    return out


def load_inputs(path: Path = INPUTS) -> dict[tuple[str, str], dict]:
    """plan-inputs.toml's [[case]] tables by (file, id)."""
    cases = tomllib.loads(path.read_text()).get("case", [])
    return {(c["file"], c["id"]): c for c in cases}


def _number(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def printed_kv(rec: dict, block_size: int) -> tuple[str, float, str] | None:
    """(unit, value, where from): the KV pool vLLM printed for this record, tokens first, else GiB."""
    log = rec.get("log") or rec.get("log_excerpt") or ""
    nums = dict(read_log(log).numbers) if log else {}
    stated = rec.get("numbers") or rec.get("reported_numbers") or {}
    order = (("record", stated), ("log", nums))  # the collector's reading first: the reader is not scored here
    for source, table in order:
        if _number(table.get("kv_cache_tokens")):
            return "tokens", _number(table["kv_cache_tokens"]), f"{source}: GPU KV cache size (tokens)"
        if _number(table.get("gpu_blocks")):
            return ("tokens", _number(table["gpu_blocks"]) * block_size,
                    f"{source}: # GPU blocks x {block_size}")
    for source, table in order:
        if _number(table.get("kv_cache_gib")):
            return "GiB", _number(table["kv_cache_gib"]), f"{source}: KV cache GiB"
    return None


def accepted(rec: dict, inputs: dict) -> list[str]:
    """The outcomes the evidence allows: the input file's list, else the record's `accept`, else its outcome."""
    if inputs.get("accept"):
        return list(inputs["accept"])
    if rec.get("accept"):
        return list(rec["accept"])
    out = rec.get("outcome") or rec.get("truth_outcome") or ""
    out = OUTCOME_ALIASES.get(out, out)
    return [out] if out and out not in ("other", "unknown") else []


def _model_path(name: str) -> str:
    p = ROOT / name
    return str(p) if p.is_dir() else name


def card_of(inputs: dict) -> Card:
    """The named card, or (card_total_gib given: the total a log printed, for a card the product does not list) the
    named card's architecture with that total and the built-in profile margin and headroom (diagnostics/cards.py)."""
    base = get_card(inputs["card"])
    total = inputs.get("card_total_gib")
    if total is None:
        return base
    return Card(f"{base.name}@{total}", f"{base.label} ({total} GiB printed)", float(total),
                round(total - (base.total_gib - base.profile_threshold_gib), 2), base.headroom_gib, (), base.arch)


def score(file: str, rid: str, rec: dict, inputs: dict | None) -> Score:
    s = Score(file, rid, url=rec.get("url") or rec.get("source") or "")
    if inputs is None:
        s.skipped = _default_reason(rec)
        return s
    s.model, s.card, s.vllm, s.note = (inputs.get("model", ""), inputs.get("card", ""), inputs.get("vllm", ""),
                                       inputs.get("note", ""))
    if inputs.get("skip"):
        s.skipped = inputs["skip"]
        return s
    p = plan(_model_path(s.model), card_of(inputs), s.vllm, inputs.get("entrypoint", "serve"),
             dict(inputs.get("settings", {})))
    s.verdict = p.verdict
    s.accept = accepted(rec, inputs)
    s.verdict_right = (p.verdict in s.accept) if s.accept else None
    if not inputs.get("no_kv"):
        got = printed_kv(rec, int(inputs.get("block_size", p.settings.get("block_size") or 16)))
        if got is not None and got[1] <= 0:  # a negative "Available KV cache memory": the verdict scores it
            s.kv_source = f"printed pool {got[1]:g} {got[0]} (none left): verdict only"
        elif got is not None:
            s.kv_unit, s.kv_printed, s.kv_source = got
            s.kv_planned = (p.kv_cache_tokens if s.kv_unit == "tokens" else p.components["kv_cache"].value_gib)
    return s


QUANTIZED = re.compile(r"awq|gptq|bnb|int4|int8|w4a16|w8a8|fp8|nvfp4|autoround|gguf", re.I)
NOT_CUDA = re.compile(r"rocm|amd|gfx\d|mi50|mi300|xpu|intel|arc pro|npu|ascend|atlas|windows", re.I)


def _default_reason(rec: dict) -> str:
    """Why a record without plan inputs is not scored, from what it lacks (one line)."""
    model, gpu = str(rec.get("model") or ""), str(rec.get("gpu") or "")
    gaps = []
    if NOT_CUDA.search(gpu + " " + str(rec.get("vllm_version") or "")):
        gaps.append(f"not an NVIDIA CUDA card ({gpu[:40]})")
    if not rec.get("vllm_version"):
        gaps.append("vLLM version not stated")
    if not gpu or gpu.lower().startswith(("none", "not named", "not in")) or "truncated" in gpu:
        gaps.append("card not named")
    out = rec.get("outcome") or rec.get("truth_outcome") or ""
    if out in ("other", "unknown", ""):
        gaps.append(f"outcome {out or 'not stated'}")
    first = model.split(" ")[0] if model else ""
    if QUANTIZED.search(model):
        gaps.append(f"quantized checkpoint {first[:50]!r} (no stored config of it)")
    elif not first or first.lower().startswith(("not", "vlm")):
        gaps.append("model not named")
    elif stored_name(first, paths=True) is None and first.lower() not in ALIASES:
        gaps.append(f"no config plan reads for {first[:50]!r}")
    else:
        gaps.append(f"{first[:50]!r} is known but the report does not give enough to plan it (settings)")
    return "; ".join(gaps)


def run(inputs: dict | None = None) -> list[Score]:
    inputs = load_inputs() if inputs is None else inputs
    return [score(f, rid, rec, inputs.get((f, rid))) for f, rid, rec in records()]


def totals(scores: list[Score]) -> dict:
    judged = [s for s in scores if s.verdict_right is not None]
    errs = [abs(s.kv_error) for s in scores if s.kv_error is not None]
    return {
        "scored": sum(1 for s in scores if s.skipped is None),
        "skipped": sum(1 for s in scores if s.skipped is not None),
        "verdict_right": sum(1 for s in judged if s.verdict_right),
        "verdict_judged": len(judged),
        "kv_n": len(errs),
        "kv_median_abs_error": round(statistics.median(errs), 4) if errs else None,
        "kv_worst_abs_error": round(max(errs), 4) if errs else None,
        "kv_within_10pct": sum(1 for e in errs if e <= KV_BOUND + 1e-12),
    }


def _fmt_kv(s: Score, v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if s.kv_unit == "tokens" else f"{v:,.2f} GiB"


def markdown(scores: list[Score]) -> str:
    """The generated section of docs/accuracy.md (tests/unit/test_tools_plan_accuracy.py keeps them in step)."""
    t = totals(scores)
    lines = [
        "| case | model | card | vLLM | verdict (accepted) | right | KV printed | KV plan | error |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in scores:
        if s.skipped is not None:
            continue
        right = "-" if s.verdict_right is None else ("yes" if s.verdict_right else "**no**")
        err = "-" if s.kv_error is None else f"{100 * s.kv_error:+.1f}%"
        lines.append(f"| {s.id} | {Path(s.model).name} | {s.card} | {s.vllm} | {s.verdict} ({', '.join(s.accept)})"
                     f" | {right} | {_fmt_kv(s, s.kv_printed)} | {_fmt_kv(s, s.kv_planned)} | {err} |")
    med = "-" if t["kv_median_abs_error"] is None else f"{100 * t['kv_median_abs_error']:.1f} %"
    worst = "-" if t["kv_worst_abs_error"] is None else f"{100 * t['kv_worst_abs_error']:.1f} %"
    lines += [
        "",
        f"Totals: verdict right on {t['verdict_right']} of {t['verdict_judged']}; KV pool on {t['kv_n']} cases: "
        f"median abs error {med}, worst {worst}, within 10 % on {t['kv_within_10pct']} of {t['kv_n']}. "
        f"{t['scored']} records scored, {t['skipped']} not (reasons: `python tests/tools/plan_accuracy.py`).",
    ]
    return "\n".join(lines)


def text(scores: list[Score]) -> str:
    out = []
    for s in scores:
        if s.skipped is not None:
            out.append(f"SKIP {s.file}:{s.id}: {s.skipped}")
            continue
        right = "?" if s.verdict_right is None else ("right" if s.verdict_right else "WRONG")
        err = "-" if s.kv_error is None else f"{100 * s.kv_error:+.1f}%"
        out.append(f"{s.file}:{s.id} [{Path(s.model).name} {s.card} {s.vllm}] verdict {s.verdict} vs "
                   f"{'/'.join(s.accept) or '-'}: {right}; KV printed {_fmt_kv(s, s.kv_printed)} plan "
                   f"{_fmt_kv(s, s.kv_planned)} ({err}) {s.kv_source}")
    out.append("totals: " + json.dumps(totals(scores)))
    return "\n".join(out)


DOCS = ROOT / "docs" / "accuracy.md"
BEGIN, END = "<!-- plan_accuracy:begin -->", "<!-- plan_accuracy:end -->"


def write_docs(scores: list[Score], path: Path = DOCS) -> None:
    """Put markdown(scores) between docs/accuracy.md's plan_accuracy markers (raises ValueError without them)."""
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise ValueError(f"{path}: no {BEGIN} ... {END} markers")
    head, rest = text.split(BEGIN, 1)
    path.write_text(head + BEGIN + "\n" + markdown(scores) + "\n" + END + rest.split(END, 1)[1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true", help="one JSON object: cases and totals")
    g.add_argument("--markdown", action="store_true", help="the docs/accuracy.md section's table and totals")
    g.add_argument("--write-docs", action="store_true", help="rewrite that section of docs/accuracy.md in place")
    a = ap.parse_args(argv)
    scores = run()
    if a.write_docs:
        write_docs(scores)
    elif a.json:
        print(json.dumps({"cases": [s.to_json() for s in scores], "totals": totals(scores)}, indent=1))
    elif a.markdown:
        print(markdown(scores))
    else:
        print(text(scores))
    return 0


if __name__ == "__main__":
    sys.exit(main())
