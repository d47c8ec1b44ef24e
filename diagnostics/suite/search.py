"""Find a card's real limit of one setting with few engine starts (`pytest -m gpu --search max_model_len`). Pure.

The candidates are the multiples of `step` (the resolution: the KV block size for max_model_len, 1 for
max_num_seqs, or --search-resolution) from `lo` to `hi`: a grid of N values. What is known is kept as a bracket,
`good` (largest value seen to start, or lo - step: none yet) and `bad` (smallest seen to fail, or hi + step), and
the answer is in [good, bad - step]. The probes:

1. the seed: the limit `plan --fit` predicts (rounded to the grid, clamped); without one, the middle;
2. while the prediction stands (good <= seed < bad), the probe that would confirm it: seed + step after the seed
   started (seed - step after it failed): two starts settle an exact prediction;
3. once the prediction is refuted, plain bisection of the bracket.

Budget: at most ceil(log2(N)) + 1 starts, whatever the seed. Each probe is moved toward the middle just as far
as needed for both of its outcomes to stay resolvable in the starts that are left (a bracket of c candidates
with `left` starts to go must keep c <= 2**left), so a good seed saves starts and a bad one costs none beyond
the bound. A start is a "fit" when its outcome is "ok"; any other memory failure is a "no".
The search assumes a start that fails at v also fails above v (vLLM's checks grow with both settings); a
measured ok above a measured failure is reported (`Search.contradictions`), not hidden.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from diagnostics.errors import UsageError, one_of
from diagnostics.predict.mm_fit import KNOB_NAMES

SEARCHABLE = ("max_model_len", "max_num_seqs") + KNOB_NAMES  # engine settings, then multimodal knobs (issue 23)


@dataclass
class Search:
    """The state of one limit search. Values are ints on the grid lo, lo + step, ..., hi."""

    setting: str
    lo: int
    hi: int
    step: int
    seed: int | None = None
    probes: list = field(default_factory=list)  # [(value, fits: bool)] in the order started
    good: int = 0
    bad: int = 0

    def __post_init__(self):
        if self.setting not in SEARCHABLE:
            raise one_of("--search setting", self.setting, SEARCHABLE)
        if self.step < 1 or self.lo < 1 or self.hi < self.lo:
            raise UsageError(f"--search range {self.lo}:{self.hi} with resolution {self.step} is empty; accepted: "
                             "LO:HI with 1 <= LO <= HI and a positive resolution")
        self.lo = -(-self.lo // self.step) * self.step  # onto the grid
        self.hi = self.hi // self.step * self.step
        if self.hi < self.lo:
            raise UsageError(f"--search range has no multiple of the resolution {self.step}")
        self.good, self.bad = self.lo - self.step, self.hi + self.step
        if self.seed is not None:
            self.seed = min(max(self.seed // self.step * self.step, self.lo), self.hi)

    @property
    def grid(self) -> int:
        """N: how many candidate values a full sweep would start."""
        return (self.hi - self.lo) // self.step + 1

    @property
    def max_starts(self) -> int:
        """The bound this search keeps: ceil(log2(N)) + 1."""
        return math.ceil(math.log2(self.grid)) + 1 if self.grid > 1 else 1

    @property
    def candidates(self) -> int:
        return (self.bad - self.good) // self.step

    @property
    def done(self) -> bool:
        return self.candidates <= 1

    @property
    def limit(self) -> int | None:
        """The largest value that started (None: nothing in the range did); final once `done`."""
        return self.good if self.good >= self.lo else None

    @property
    def contradictions(self) -> list[tuple[int, int]]:
        """(failed value, started value above it) pairs: the measurement was not monotone there."""
        fails = [v for v, ok in self.probes if not ok]
        oks = [v for v, ok in self.probes if ok]
        return [(f, o) for f in fails for o in oks if o > f]

    def next_probe(self) -> int | None:
        """The value to start next, or None when the bracket is down to one candidate.

        While the prediction stands (good <= seed < bad), the probe is the one that would confirm it (the seed
        itself, then its neighbour across the boundary); once refuted, or without a seed, the middle. Either is
        moved just far enough toward the middle that both outcomes stay resolvable within the budget: a probe k
        steps above `good` leaves k candidates on a failure and c - k on a start, each must be <= 2**(left-1).
        """
        if self.done:
            return None
        c, left = self.candidates, max(self.max_starts - len(self.probes), 1)
        half = 2 ** (left - 1)
        k = c // 2
        if self.seed is not None and self.good <= self.seed <= self.bad:
            # the seed itself; after it started, the value above it; after it failed, the value below it
            k = {self.good: 1, self.bad: c - 1}.get(self.seed, (self.seed - self.good) // self.step)
        k = min(max(k, c - half, 1), half, c - 1)
        return self.good + k * self.step

    def record(self, value: int, fits: bool) -> None:
        """One start's answer: it came up (fits) or failed for memory."""
        self.probes.append((value, fits))
        if fits:
            self.good = max(self.good, value)
        else:
            self.bad = min(self.bad, value)
        if self.good >= self.bad:  # an ok above a failure: trust the failure, keep searching below it
            self.good = max([v for v, ok in self.probes if ok and v < self.bad], default=self.lo - self.step)

    def to_json(self) -> dict:
        return {"setting": self.setting, "lo": self.lo, "hi": self.hi, "resolution": self.step, "grid": self.grid,
                "max_starts": self.max_starts, "seed": self.seed, "starts": len(self.probes),
                "probes": [{"value": v, "fits": ok} for v, ok in self.probes], "limit": self.limit,
                "done": self.done, "contradictions": [list(p) for p in self.contradictions]}


def parse_range(text: str | None) -> tuple[int, int] | None:
    """`"512:4096"` -> (512, 4096); None when not given. UsageError otherwise."""
    if not text:
        return None
    lo, sep, hi = str(text).partition(":")
    try:
        if not sep:
            raise ValueError
        bounds = int(lo), int(hi)
    except ValueError:
        raise UsageError(f"bad --search-range {text!r}; accepted: LO:HI, two integers (e.g. 512:32768)") from None
    if not 1 <= bounds[0] < bounds[1]:
        raise UsageError(f"bad --search-range {text!r}; accepted: LO:HI with 1 <= LO < HI (e.g. 512:32768)")
    return bounds


def default_range(setting: str, step: int, derived_max_model_len: int, knob=None) -> tuple[int, int]:
    """max_model_len: step .. the model's derived max_model_len (models.ModelSpec); max_num_seqs: 1 .. 1024;
    a multimodal knob (predict.mm_fit.Knob): its domain (raw units)."""
    if knob is not None:
        return knob.lo, knob.hi
    if setting == "max_model_len":
        return step, derived_max_model_len
    return 1, 1024
