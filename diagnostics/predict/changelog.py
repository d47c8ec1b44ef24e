"""The start-up memory changelog: release by release, what changes for one model, card and settings
(`plan --vllm 0.20.0..0.34.0`, or a comma list on one card), and the vLLM rule that changed it.

`RULE_CHANGES` is the table of release boundaries at which vLLM changed its start-up arithmetic, each with the
vLLM source it was read from (that release's wheel, file:line) and the plan fields it can move. The code that
applies each rule lives in `settings`, `predict.estimator`, `predict.mm_budget` and `predict.verdict`; this table
only names them for a reader, and `changelog()` lists a rule under a step only when the step crosses its release
and one of its fields moved (or, for `always` rules, whenever the step crosses it). A step whose plan moved with
no rule listed says so ("no rule recorded") rather than inventing a cause. Pure: plan() per version.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from diagnostics.errors import UsageError
from diagnostics.predict.estimator import Plan, plan
from diagnostics.settings import vllm_refusal
from diagnostics.versions import Version, parse_version

# fields of a Step summary a rule can move
VERDICT, PEAK, KV, ITEMS, GRAPHS, SETTINGS = "verdict", "peak", "kv_tokens", "dummy_items", "graph_budget", "settings"
ALL_FIELDS = (VERDICT, PEAK, KV, ITEMS, GRAPHS)


@dataclass(frozen=True)
class RuleChange:
    since: Version
    what: str
    source: str  # vLLM file:line in the release named by `since` unless the text names another
    fields: tuple[str, ...]
    always: bool = False  # list it whenever a step crosses it (defaults a user meets regardless of the numbers)


RULE_CHANGES: tuple[RuleChange, ...] = (
    RuleChange(Version(0, 6, 3), "V0 multimodal max_num_batched_tokens floor 5120 (4096 in 0.6.0-0.6.2)",
               "config.py:999", (PEAK, KV, ITEMS)),
    RuleChange(Version(0, 7, 1), "V0 merged multimodal processor: the dummy sequence carries 1 image + 1 video",
               "multimodal/profiling.py:190-207 (0.7.3)", (PEAK, KV, ITEMS)),
    RuleChange(Version(0, 8, 0), "V1 engine by default (V0 before; MiniCPM-V stays V0 until 0.8.3)",
               "engine/arg_utils.py:1475 (oracle)", ALL_FIELDS),
    RuleChange(Version(0, 8, 3), "MiniCPM-V runs on V1 (SupportsV0Only dropped)", "model_executor/models/minicpmv.py",
               ALL_FIELDS),
    RuleChange(Version(0, 8, 4), "V1 limit_mm_per_prompt default 999 per modality (was 1)", "config.py:2807 (0.8.5)",
               (PEAK, KV, ITEMS)),
    RuleChange(Version(0, 8, 5), "V1 large batch defaults by memory (>= 70 GiB) instead of by H100/H200 name",
               "engine/arg_utils.py:1596-1609", (PEAK, KV, ITEMS, GRAPHS)),
    RuleChange(Version(0, 9, 0), "A100 excluded from the large V1 batch defaults", "engine/arg_utils.py:1629 (0.9.2)",
               (PEAK, KV, ITEMS, GRAPHS)),
    RuleChange(Version(0, 9, 1), "V1 free-memory check at start-up; the KV budget no longer includes the CUDA "
               "context", "v1/worker/gpu_worker.py:143-151 (0.9.2)", (VERDICT, KV)),
    RuleChange(Version(0, 9, 2), "V1 hybrid KV cache manager: sliding-window layers keep only their window (0.9.0 "
               "gave them the whole length)", "v1/core/kv_cache_utils.py:744-786 (0.9.0 :660-693)", (VERDICT, KV)),
    RuleChange(Version(0, 10, 0), "V1 profiled encoder items = floor(encoder budget / item tokens), was ceil",
               "v1/worker/gpu_model_runner.py:2361 (0.9.2 :2221 used cdiv)", (PEAK, KV, ITEMS)),
    RuleChange(Version(0, 10, 1), "multimodal per-item tokens counted with separators (0.10.1-0.12.x)",
               "multimodal/registry.py:144 (0.10.2)", (PEAK, KV, ITEMS)),
    RuleChange(Version(0, 12, 0), "chunked prefill no longer forced on; a defaulted max_num_batched_tokens is "
               "clamped to max_num_seqs x max_model_len", "engine/arg_utils.py:1953-1976 (0.13.0)", (PEAK, KV, ITEMS)),
    RuleChange(Version(0, 13, 0), "multimodal per-item tokens are embeddings only again",
               "multimodal/registry.py:167", (PEAK, KV, ITEMS)),
    RuleChange(Version(0, 18, 0), "CUDA-graph memory estimate available (VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS, "
               "default off)", "v1/worker/gpu_worker.py (0.19.0 :379-403)", (KV, GRAPHS)),
    RuleChange(Version(0, 20, 0), "gpu_memory_utilization default 0.92 (was 0.90)", "config/cache.py:66",
               (VERDICT, KV), always=True),
    RuleChange(Version(0, 20, 0), "CUDA-graph estimate subtracted from the KV budget by default (vLLM's log says "
               "'default since v0.21.0', but 0.20.0 reads \"1\")", "envs.py:1724-1725", (VERDICT, KV, GRAPHS),
               always=True),
    RuleChange(Version(0, 20, 0), "encoder budget tie-break picks video on equal tokens",
               "multimodal/encoder_budget.py:184", (ITEMS,)),
    RuleChange(Version(0, 26, 0), "async scheduling by default: a sliding-window layer holds two in-flight batches "
               "of max_num_batched_tokens (one before)", "config/vllm.py:525-533 (0.20.0 kv_cache_interface.py:435)",
               (VERDICT, KV)),
    RuleChange(Version(0, 27, 0), "non-KV = memory consumed + transient peak headroom",
               "utils/mem_utils.py:317-326", (KV,)),
    RuleChange(Version(0, 28, 0), "cards >= 160 GiB get 16384 batched tokens on both entry points",
               "engine/arg_utils.py:2582", (PEAK, KV, ITEMS, GRAPHS)),
    RuleChange(Version(0, 33, 0), "one null KV block reserved before the one-request check",
               "v1/core/kv_cache_planning.py:170-178", (VERDICT, KV)),
    RuleChange(Version(0, 34, 0), "extensible KV cache (CUDA default): the pool is sized from memory measured after "
               "warmup and CUDA-graph capture, keeping max(1 GiB, 0.75 x peak) and the peak free; "
               "gpu_memory_utilization defaults to 1.0 and the free-memory check is skipped",
               "v1/worker/extensible_kv_cache.py:592-618, config/cache.py:493-501, v1/worker/utils.py:783-788",
               (VERDICT, KV), always=True),
    RuleChange(Version(0, 34, 0), "KV block size default 64 (was 16): KV tokens in multiples of 64",
               "config/cache.py:185", (VERDICT, KV), always=True),
)


@dataclass
class Step:
    """One release of the changelog: its plan's summary, or why it cannot be planned / vLLM refuses."""

    version: str
    plan: Plan | None
    refusal: str | None = None
    changes: dict = field(default_factory=dict)  # field -> (before, after) against the previous planned step
    settings_changed: dict = field(default_factory=dict)  # setting -> (before, after)
    rules: list[RuleChange] = field(default_factory=list)

    def summary(self) -> dict:
        p = self.plan
        if p is None:
            return {}
        return {VERDICT: p.verdict, PEAK: round(p.peak_gib, 2), KV: p.kv_cache_tokens,
                ITEMS: f"{p.profile['encoder_items']} {p.profile.get('modality') or '-'}",
                GRAPHS: round(p.components["cuda_graph"].value_gib, 2) if p.profile.get("cuda_graph_budgeted")
                else "not budgeted"}

    def to_json(self) -> dict:
        return {"vllm_version": self.version, **self.summary(), "refused": self.refusal,
                "changes": {k: list(v) for k, v in self.changes.items()},
                "settings_changed": {k: list(v) for k, v in self.settings_changed.items()},
                "rules": [{"since": str(r.since), "what": r.what, "source": f"vLLM {r.since} {r.source}"}
                          for r in self.rules]}


def _plan_or_refusal(model, card, version: str, entrypoint: str, overrides: dict) -> Step:
    """The same refusals as plain `plan`: settings that version lacks (UsageError) and settings vLLM refuses at
    start-up (settings.vllm_refusal) give a step without a plan."""
    try:
        p = plan(model, card, version, entrypoint, overrides)
    except UsageError as err:
        return Step(version, None, str(err))
    refusal = vllm_refusal(p.settings, p.model)
    if refusal:
        return Step(version, None, f"vLLM {version} refuses these settings at start-up: {refusal}")
    return Step(version, p)


def _crossed(prev: str, cur: str) -> list[RuleChange]:
    a, b = parse_version(prev), parse_version(cur)
    return [r for r in RULE_CHANGES if a < r.since <= b]


def changelog(model, card, versions: list[str], entrypoint: str = "llm", overrides: dict | None = None) -> list[Step]:
    """A Step per version (oldest first as given); each planned step after the first carries what moved against
    the previous planned one and the rules crossed that explain it. UsageError only for a bad model/card."""
    steps = [_plan_or_refusal(model, card, v, entrypoint, dict(overrides or {})) for v in versions]
    prev: Step | None = None
    for step in steps:
        if step.plan is None:
            continue
        if prev is not None:
            a, b = prev.summary(), step.summary()
            step.changes = {k: (a[k], b[k]) for k in a if a[k] != b[k]}
            sa, sb = prev.plan.settings, step.plan.settings
            step.settings_changed = {k: (sa.get(k), sb.get(k)) for k in sorted(set(sa) | set(sb))
                                     if sa.get(k) != sb.get(k) and k != "max_model_len_auto"}
            step.rules = [r for r in _crossed(prev.version, step.version)
                          if r.always or set(r.fields) & set(step.changes)]
        prev = step
    return steps


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _change_lines(step: Step) -> list[str]:
    """What moved at this step and why, one item per line (no bullets: the caller adds its own)."""
    out = []
    if step.changes:
        out.append("plan: " + "; ".join(f"{k} {_cell(a)} -> {_cell(b)}" for k, (a, b) in step.changes.items()))
    if step.settings_changed:
        out.append("defaults: " + "; ".join(f"{k} {_cell(a)} -> {_cell(b)}"
                                             for k, (a, b) in step.settings_changed.items()))
    for r in step.rules:
        out.append(f"rule: {r.what} (vLLM {r.since} {r.source})")
    if step.changes and not step.rules:
        out.append("rule: none recorded in predict.changelog.RULE_CHANGES for this step (report it)")
    return out


def _rows(steps: list[Step]) -> list[list[str]]:
    rows = []
    for s in steps:
        d = s.summary()
        if not d:
            rows.append([s.version, f"n/a: {s.refusal}", "-", "-", "-", "-"])
            continue
        rows.append([s.version, d[VERDICT] + (f" ({s.plan.failing_phase})" if s.plan.failing_phase else ""),
                     f"{d[PEAK]:.2f}", _cell(d[KV]), d[ITEMS], _cell(d[GRAPHS])])
    return rows


HEADERS = ["vLLM", "verdict", "peak GiB", "KV tokens", "dummy items", "CUDA-graph budget GiB"]


def format_text(steps: list[Step], title: str) -> str:
    """The terminal changelog: one table row per release, then the releases where something moved."""
    from tabulate import tabulate

    lines = [title, "", tabulate(_rows(steps), headers=HEADERS, tablefmt="simple"), ""]
    moved = [s for s in steps if _change_lines(s)]
    lines.append("What changes at start-up, release by release:" if moved else
                 "Nothing in the plan changes between these releases.")
    for s in moved:
        lines.append(f"  {s.version}:")
        lines += [f"    {line}" for line in _change_lines(s)]
    return "\n".join(lines) + "\n"


def format_markdown(steps: list[Step], title: str) -> str:
    """`--format md`: the same for an upgrade PR (a table and a list; no host data: the caller redacts)."""
    lines = [f"### {title}", "", "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in _rows(steps)]
    moved = [s for s in steps if _change_lines(s)]
    lines += ["", "**What changes at start-up:**" if moved else "Nothing in the plan changes between these releases.",
              ""]
    for s in moved:
        lines.append(f"- **{s.version}**")
        lines += [f"  - {line}" for line in _change_lines(s)]
    lines += ["", "Derived by `python -m diagnostics plan` from vLLM's start-up rules (no GPU ran); the rule "
              "sources are that release's file:line."]
    return "\n".join(lines) + "\n"


# -- the upgrade gate: which planned term moved the way the measurement did ----------------------------------------
_TERMS = (("weights_gib", "weights", "GiB"), ("non_torch_gib", "non-torch", "GiB"),
          ("activation_peak_gib", "activation peak", "GiB"), ("cuda_graph_gib", "CUDA graphs", "GiB"),
          ("encoder_items", "dummy encoder items", ""), ("kv_cache_gib", "KV cache", "GiB"))


def _moved(a, b) -> bool:
    return isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(b - a) > max(0.01, 0.005 * abs(a))


def regression_cause(old: dict, new: dict) -> str | None:
    """For one combination of a vLLM upgrade (two results.jsonl records, each with plan's "prediction" for its own
    version): which planned term moved the way the measurement did, and the vLLM rules crossed; or that plan
    expected no change. None when both ran the same vLLM version (not an upgrade) or neither has a prediction.

    Measured: KV tokens (`kv_cache_tokens`), peak (`peak_device_gib`, else `peak_process_gib`), outcome."""
    po, pn = old.get("prediction") or {}, new.get("prediction") or {}
    vo, vn = po.get("vllm_version"), pn.get("vllm_version")
    if not po or not pn or not vo or not vn or vo == vn:
        return None
    parts = []
    kv_o, kv_n = old.get("kv_cache_tokens"), new.get("kv_cache_tokens")
    peak_o = old.get("peak_device_gib", old.get("peak_process_gib"))
    peak_n = new.get("peak_device_gib", new.get("peak_process_gib"))
    for label, worse, (mo, mn), (pred_o, pred_n), fields in (
            ("KV tokens", -1, (kv_o, kv_n), (po.get("kv_cache_tokens"), pn.get("kv_cache_tokens")), (KV,)),
            ("peak", +1, (peak_o, peak_n), (po.get("peak_gib"), pn.get("peak_gib")), (PEAK,))):
        if not _moved(mo, mn) or (mn - mo) * worse <= 0:
            continue
        if not _moved(pred_o, pred_n):
            parts.append(f"{label}: plan expected no change from vLLM {vo} to {vn}")
            continue
        same_way = (pred_n - pred_o) * (mn - mo) > 0
        pct = f"{(pred_n - pred_o) / abs(pred_o) * 100:+.0f}%" if pred_o else "from 0"
        terms = [f"{name} {po[k]:.4g} -> {pn[k]:.4g}{(' ' + unit) if unit else ''}" for k, name, unit in _TERMS
                 if _moved(po.get(k), pn.get(k))]
        rules = [f"vLLM {r.since}: {r.what.split(':')[0]} ({r.source})" for r in _crossed(vo, vn)
                 if set(r.fields) & set(fields)]
        parts.append(f"{label} {'also' if same_way else 'the other way'} in plan ({pct})"
                     + (f", moved by {', '.join(terms)}" if terms else "")
                     + (f"; {'; '.join(rules)}" if rules else ""))
    if old.get("outcome") == "ok" and new.get("outcome") not in (None, "ok"):
        parts.append(f"outcome: plan expected {po.get('verdict')} -> {pn.get('verdict')}")
    return " | ".join(parts) or None
