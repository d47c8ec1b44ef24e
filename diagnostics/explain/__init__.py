"""Which setting caused a start-up failure, found by counterfactual, said in one sentence with numbers.

`explain_plan(plan)` (search) re-runs the estimator with one setting moved along a ladder and keeps the smallest
change that turns the verdict to "ok"; `explain_record(record)` (from_log) does the same from a log, with
vLLM's printed figures setting the level. Both answer an Explanation (model); `Explanation.to_json()` is the one
JSON shape of culprits and fix.
"""

from diagnostics.explain.from_log import explain_record
from diagnostics.explain.model import Culprit, Explanation
from diagnostics.explain.search import explain_plan

__all__ = ["Culprit", "Explanation", "explain_plan", "explain_record"]
