"""Check or regenerate the message catalogue (diagnostics/data/log_messages.toml) from vLLM's source.

    PYTHONPATH=$PWD .venv/bin/python tests/tools/log_catalogue.py [--src /tmp/vllm-src] [--check | --write]
    PYTHONPATH=$PWD .venv/bin/python tests/tools/log_catalogue.py --unlisted 0.34.0
    PYTHONPATH=$PWD .venv/bin/python tests/tools/log_catalogue.py --counts

`--src` holds one directory per release with vLLM's Python source under it (`/tmp/vllm-src/0.34.0/vllm/...`: a
wheel from `pip download vllm==X --no-deps` unzipped, see BRIEF). For every `source = "vllm"` row, each sampled
release is searched for the row's `anchors` (literal pieces of the format string, each on one source line, all
within WINDOW lines of the first in one file); the releases that print it become `versions` (ranges over the
catalogue's `sampled` list) and the first and last file:line become `where`.

--check (default): print every row whose versions/where differ from the source, and rows no sampled release
    prints; exit 1 when any differ.
--write: rewrite those two fields in place (the rest of the file is left as it is).
--unlisted VERSION: log and raise lines of that release that mention memory, KV cache, CUDA graphs, profiling or
    readiness and that no row anchors — candidates for new rows.
--counts: per section, how many messages and how many have a reader rule.
--only ID...: check or write only these rows.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = ROOT / "diagnostics" / "data" / "log_messages.toml"
WINDOW = 40
CANDIDATE = re.compile(r"logger\.(?:info|warning|error|exception|debug)|raise \w+(?:Error|Exception)\(")
TOPIC = re.compile(r"memory|KV cache|kv cache|GiB|CUDA graph|cudagraph|profil|out of memory|blocks|warm", re.I)


def load() -> dict:
    return tomllib.loads(CATALOGUE.read_text())


def version_key(v: str) -> tuple:
    return tuple(int(x) for x in re.findall(r"\d+", v))


def _files(tree: Path) -> dict[Path, list[str]]:
    return {p: p.read_text(errors="replace").splitlines() for p in sorted((tree / "vllm").rglob("*.py"))}


def find(files: dict[Path, list[str]], anchors: list[str], tree: Path) -> str | None:
    """`vllm/path.py:line` of the first place all anchors sit within WINDOW lines of each other, else None."""
    first, rest = anchors[0], anchors[1:]
    for path, lines in files.items():
        for i, line in enumerate(lines):
            if first in line:
                window = "\n".join(lines[max(0, i - WINDOW):i + WINDOW])
                if all(a in window for a in rest):
                    return f"{path.relative_to(tree)}:{i + 1}"
    return None


def ranges(found: list[str], sampled: list[str]) -> str:
    """"0.8.0-0.27.0, 0.33.0": runs of consecutive sampled releases."""
    runs: list[list[str]] = []
    for v in sampled:
        if v in found:
            if runs and sampled.index(runs[-1][-1]) == sampled.index(v) - 1:
                runs[-1].append(v)
            else:
                runs.append([v])
    return ", ".join(r[0] if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


def scan(src: Path, cat: dict, only: list[str] | None = None) -> dict[str, tuple[str, str]]:
    """{row id: (versions, where)} for every vllm row with anchors (or those in `only`), from the releases under
    `src`."""
    sampled = [v for v in cat["sampled"] if (src / v / "vllm").is_dir()]
    missing = [v for v in cat["sampled"] if v not in sampled]
    if missing:
        print(f"note: not under {src}: {', '.join(missing)} (left out of versions)", file=sys.stderr)
    rows = [m for m in cat["message"] if m["source"] == "vllm" and m.get("anchors")
            and (not only or m["id"] in only)]
    hits: dict[str, dict[str, str]] = {m["id"]: {} for m in rows}
    for v in sampled:
        tree = src / v
        files = _files(tree)
        for m in rows:
            at = find(files, m["anchors"], tree)
            if at is not None:
                hits[m["id"]][v] = at
    out = {}
    for m in rows:
        found = hits[m["id"]]
        if not found:
            out[m["id"]] = ("", "")
            continue
        order = [v for v in sampled if v in found]
        where = f"{order[0]} {found[order[0]]}" + (f"; {order[-1]} {found[order[-1]]}" if len(order) > 1 else "")
        out[m["id"]] = (ranges(order, sampled), where)
    return out


def write(result: dict[str, tuple[str, str]]) -> None:
    """Set `versions`/`where` of each scanned row in the TOML text (inserted after `rule` when absent)."""
    blocks = re.split(r"(?m)^(?=\[\[message\]\])", CATALOGUE.read_text())
    out = []
    for block in blocks:
        m = re.search(r'(?m)^id = "([^"]+)"', block)
        if m and m.group(1) in result:
            versions, where = result[m.group(1)]
            fields = f'versions = "{versions}"\nwhere = "{where}"\n'
            block = re.sub(r'(?m)^(versions|where) = .*\n', "", block)
            at = re.search(r"(?m)^rule = .*\n", block)
            block = block[:at.end()] + fields + block[at.end():]
        out.append(block)
    CATALOGUE.write_text("".join(out))


def unlisted(src: Path, version: str, cat: dict) -> list[str]:
    anchors = [a for m in cat["message"] for a in m.get("anchors") or []]
    tree = src / version
    out = []
    for path, lines in _files(tree).items():
        for i, line in enumerate(lines):
            if not CANDIDATE.search(line):
                continue
            text = " ".join(lines[i:i + 6])
            if TOPIC.search(text) and not any(a in text for a in anchors):
                out.append(f"{path.relative_to(tree)}:{i + 1}: {line.strip()[:140]}")
    return out


def counts(cat: dict) -> dict[str, tuple[int, int]]:
    from diagnostics.logs import patterns as P

    total, ruled = Counter(), Counter()
    for m in cat["message"]:
        total[m["section"]] += 1
        ruled[m["section"]] += bool(m.get("rule")) and isinstance(getattr(P, m["rule"], None), re.Pattern)
    return {s: (total[s], ruled[s]) for s in total}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", default="/tmp/vllm-src", type=Path)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--check", action="store_true")
    group.add_argument("--write", action="store_true")
    group.add_argument("--unlisted", metavar="VERSION")
    group.add_argument("--counts", action="store_true")
    parser.add_argument("--only", nargs="+", metavar="ID", help="check/write only these rows")
    args = parser.parse_args(argv)
    cat = load()
    if args.counts:
        for section, (n, r) in counts(cat).items():
            print(f"{section:12s} {n:3d} messages, {r:3d} with a rule")
        return 0
    if args.unlisted:
        for line in unlisted(args.src, args.unlisted, cat):
            print(line)
        return 0
    result = scan(args.src, cat, args.only)
    if args.write:
        write(result)
    rows = {m["id"]: m for m in cat["message"]}
    differ = 0
    for rid, (versions, where) in result.items():
        if not versions:
            print(f"{rid}: no sampled release prints it (anchors {rows[rid]['anchors']})")
            differ += 1
        elif not args.write and (rows[rid].get("versions"), rows[rid].get("where")) != (versions, where):
            print(f"{rid}: catalogue says {rows[rid].get('versions')!r}, source says {versions!r} ({where})")
            differ += 1
    return 1 if differ and not args.write else 0


if __name__ == "__main__":
    sys.exit(main())
