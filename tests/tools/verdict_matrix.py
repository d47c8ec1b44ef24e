"""`plan`'s verdict for every built-in card x known vLLM version x entry point at defaults, as JSON; with two saved
matrices, the cells that differ.

usage: python tests/tools/verdict_matrix.py [--model minicpm-v-2_6] > matrix.json
       python tests/tools/verdict_matrix.py --diff before.json after.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def _plan():
    try:
        from diagnostics.predict.estimator import plan
    except ImportError:  # the layout before the restructure of issue #8
        from diagnostics.estimator import plan
    return plan


def matrix(model: str) -> dict:
    from diagnostics.cards import list_cards
    from diagnostics.errors import UsageError
    from diagnostics.versions import KNOWN_VERSIONS

    plan = _plan()
    out = {}
    for card in list_cards():
        if card.is_cpu:
            continue
        for version in KNOWN_VERSIONS:
            for entrypoint in ("llm", "serve"):
                key = f"{card.name}/{version}/{entrypoint}"
                try:
                    p = plan(model, card.name, version, entrypoint)
                    out[key] = {"verdict": p.verdict, "engine": p.engine, "phase": p.failing_phase,
                                "kv_tokens": p.kv_cache_tokens, "items": p.profile["encoder_items"]}
                except UsageError as exc:
                    out[key] = {"verdict": f"usage error: {exc}"}
    return out


def diff(before: dict, after: dict) -> list[str]:
    lines = []
    for key in sorted(set(before) | set(after)):
        b, a = before.get(key, {}), after.get(key, {})
        if b.get("verdict") != a.get("verdict"):
            lines.append(f"{key}: {b.get('verdict', '-')} ({b.get('engine', '-')}) -> {a.get('verdict', '-')} "
                         f"({a.get('engine', '-')}, phase {a.get('phase')}, items {a.get('items')})")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="minicpm-v-2_6")
    ap.add_argument("--diff", nargs=2, metavar=("BEFORE", "AFTER"))
    args = ap.parse_args(argv)
    if args.diff:
        before, after = (json.loads(Path(p).read_text()) for p in args.diff)
        changed = diff(before, after)
        print("\n".join(changed) or "no verdict changed")
        print(f"{len(changed)} of {len(after)} cells changed verdict")
        return 0
    print(json.dumps(matrix(args.model), indent=0, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
