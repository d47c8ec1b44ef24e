"""The house rules of docs/architecture.md, checked on the code itself (issue #8):

* the pure rooms (`predict/`, `logs/`, `explain/`, `suite/judge`, `report/content` and the shared vocabulary)
  import with torch, vllm, pynvml and matplotlib blocked, and pull none of them in; so does `vllm_exact`, the
  optional vLLM-backed path `plan` imports (vLLM and torch live in `vllm_exact.child` / `vllm_exact.activation`,
  run in a subprocess);
* no module over 500 lines (kit templates aside), no function over 60 lines, none with more than 8 parameters;
* no import cycle between modules of the package.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "diagnostics"
BLOCKED = ("torch", "vllm", "pynvml", "matplotlib")
VOCABULARY = ("errors", "units", "outcomes", "versions", "cards", "settings", "models", "redact", "quantization",
              "checkpoint", "decoder")
PURE_ROOMS = ("predict", "logs", "explain", "families")
PURE_MODULES = ("suite.judge", "report.content", "report.single", "suite.search", "report.crosscard",
                "vllm_exact",  # the optional vLLM-backed path's front: vLLM and torch only in its child process
                "suite.family_matrix")


def _modules() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if "templates" not in p.parts and "cpu_shim" not in p.parts)


def _dotted(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def pure_module_names() -> list[str]:
    names = [f"diagnostics.{m}" for m in VOCABULARY + PURE_MODULES]
    for room in PURE_ROOMS:
        names += [_dotted(p) for p in sorted((PKG / room).glob("*.py"))]
    return names


BLOCKER = """
import importlib.abc, sys
BLOCKED = {blocked!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"blocked in a pure module: {{name}}")
        return None
sys.meta_path.insert(0, Block())
import importlib
for name in {names!r}:
    importlib.import_module(name)
leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
assert not leaked, leaked
print("imported", len({names!r}))
"""


def test_pure_rooms_import_with_heavy_libraries_blocked():
    names = pure_module_names()
    assert len(names) >= 15, names  # the rooms exist and hold modules
    code = BLOCKER.format(blocked=BLOCKED, names=names)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"imported {len(names)}" in done.stdout


def test_the_blocker_would_catch_a_heavy_import(tmp_path):
    """The check above can fail: a module importing matplotlib is refused by the same blocker."""
    (tmp_path / "heavy_mod.py").write_text("import matplotlib\n")
    code = f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n" + BLOCKER.format(blocked=BLOCKED, names=["heavy_mod"])
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "blocked in a pure module: matplotlib" in done.stderr


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def _param_count(fn: ast.FunctionDef) -> int:
    a = fn.args
    names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
    return len([n for n in names if n not in ("self", "cls")])


def test_size_limits():
    too_long, too_big, too_many = [], [], []
    for path in _modules():
        src = path.read_text()
        rel = path.relative_to(ROOT)
        if len(src.splitlines()) > 500:
            too_big.append(f"{rel}: {len(src.splitlines())} lines")
        for fn in _functions(ast.parse(src)):
            if fn.end_lineno - fn.lineno + 1 > 60:
                too_long.append(f"{rel}:{fn.lineno} {fn.name}: {fn.end_lineno - fn.lineno + 1} lines")
            if _param_count(fn) > 8:
                too_many.append(f"{rel}:{fn.lineno} {fn.name}: {_param_count(fn)} parameters")
    assert not too_big, too_big
    assert not too_long, too_long
    assert not too_many, too_many


def _imports_of(path: Path, modules: set[str]) -> set[str]:
    """The package modules `path` imports; `from pkg import mod` counts as `pkg.mod`, not as `pkg`."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("diagnostics"):
            subs = {f"{node.module}.{a.name}" for a in node.names} & modules
            found |= subs or {node.module}
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("diagnostics"))
    return found & modules


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports (module level or inside functions)."""
    mods = {_dotted(p): p for p in _modules()}
    return {name: _imports_of(path, set(mods)) - {name} for name, path in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None."""
    colour: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> list[str] | None:
        colour[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if colour.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in colour and (found := visit(nxt, stack + [nxt])):
                return found
        colour[node] = 2
        return None

    for node in sorted(graph):
        if node not in colour and (found := visit(node, [node])):
            return found
    return None


def test_no_import_cycles():
    # a package's __init__ re-exports its own modules; those edges are the package's face, not a cycle
    graph = {k: {m for m in v if not m.startswith(k + ".")} for k, v in import_graph().items()}
    assert find_cycle(graph) is None, find_cycle(graph)


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("room", PURE_ROOMS + ("suite", "report", "engine"))
def test_rooms_exist(room):
    assert (PKG / room / "__init__.py").exists(), f"diagnostics/{room}/ is a package"


# Files the product writes (named in docstrings as outputs, not as sources).
WRITTEN_FILES = {"report.md", "report-full.md", "search.md", "cross-card.md"}


def test_every_document_the_code_cites_is_in_the_repository():
    """A docstring that cites `vllm-memory.md §3` or `the version audit` must point at a file a reader of this
    repository can open (docs/ or docs/sources/), not at the team's shared folder beside the clone."""
    docs = {p.name for p in (ROOT / "docs").rglob("*.md")} | {"README.md"}
    missing = set()
    package = set(_modules())
    for path in [*package, *sorted((ROOT / "tests").rglob("*.py"))]:
        text = path.read_text(errors="replace")
        if "../shared/" in text and path.name != "test_layout.py":
            missing.add(f"{path.relative_to(ROOT)}: cites ../shared/")
        if path not in package:  # tests name files they write (a.md, plan.md)
            continue
        for name in re.findall(r"(?<![\w./-])([a-z][a-z0-9-]*(?:-[0-9]+)?\.md)\b", text):
            if name not in docs and name not in WRITTEN_FILES:
                missing.add(f"{path.relative_to(ROOT)}: {name}")
        if re.search(r"\baudit [a-z]\d", text) and "vllm-version-audit.md" not in docs:
            missing.add(f"{path.relative_to(ROOT)}: audit rows without docs/sources/vllm-version-audit.md")
    assert not missing, sorted(missing)


def test_no_two_test_files_share_a_name():
    """tests/ has no __init__.py files, so pytest imports each test file by its base name: two files of one name
    (tests/unit/x.py and tests/cpu_backend/x.py) stop the whole run at collection ("import file mismatch")."""
    seen: dict[str, str] = {}
    clashes = []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        rel = str(path.relative_to(ROOT))
        if path.name in seen:
            clashes.append(f"{seen[path.name]} and {rel}")
        seen.setdefault(path.name, rel)
    assert not clashes, clashes
