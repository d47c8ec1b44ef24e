"""The basis-label contract of every Term (issue 20): which code paths may call a figure `exact`.

`exact` only for a value read from the checkpoint (its safetensors headers), a zero vLLM's own flow guarantees (no
graphs under enforce_eager), or a figure computed by vLLM's own code (`exact (vLLM X.Y's own code)`, the vLLM-backed
path). A user's setting taken as given (kv_cache_memory_bytes, in GiB) and "no encoder pass" for a model without
one are `derived`, saying so, not `exact`: neither was read from the checkpoint nor computed by vLLM.
`derived` is arithmetic on exact terms by a rule of vLLM's (config arithmetic, TP splits, the KV budget);
`estimate` (with a range) is everything else. `check(term_name, basis)` names the first breach; the unit test
runs it over many plans so that a new code path labelling a rule-based figure `exact` fails there.
"""

from __future__ import annotations

import re

# (pattern of an allowed `exact` basis, the code path that emits it and why it is exact)
EXACT_SOURCES: tuple[tuple[str, str], ...] = (
    (r"exact: .+ headers \(\d+ tensors, loaded as stored\)",
     "predict.shards.rank_weights: stored bytes of every tensor, one rank, nothing cast/padded/split"),
    (r"exact: enforce_eager", "predict.terms.cuda_graph_term: no graphs are captured under enforce_eager"),
    (r"exact \(vLLM \d+\.\d+(\.\d+)?'s own code\).*", "the vLLM-backed path: vLLM's classes on the meta device"),
)
LABELS = ("exact", "derived", "estimate")


def check(term_name: str, basis: str) -> str | None:
    """None when `basis` keeps the contract, else one line saying what breaks it."""
    label = re.split(r"[:( ]", basis, maxsplit=1)[0]
    if label not in LABELS:
        return f"{term_name}: basis {basis!r} is not one of {', '.join(LABELS)}"
    if label == "exact" and not any(re.fullmatch(p, basis) for p, _ in EXACT_SOURCES):
        return f"{term_name}: {basis!r} is labelled exact but no registered exact source emits it"
    return None
