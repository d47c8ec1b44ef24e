"""Prediction: the dummy items of the profile run (`mm_budget`, over diagnostics.families), one function per memory
term (`terms`, coefficients in `coefficients`), the order of vLLM's checks (`verdict`) and `plan()` (`estimator`)."""

from diagnostics.predict.estimator import Plan, plan
from diagnostics.predict.terms import Term

__all__ = ["Plan", "Term", "plan"]
