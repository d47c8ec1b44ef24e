"""Culprit and Explanation: the one shape of an answer, and its one JSON form (used by `plan --json`,
`explain --json` and the pytest plugin's results.jsonl `diagnosis`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Culprit:
    """One setting to change: its current value, the suggested one, the memory term it moves, and why.

    `suggested` is None where the figures cannot size the change; `effect_gib` is how far the change moves the
    failing quantity (GiB; positive = towards "ok"); `steps` counts ladder steps from the current value."""

    setting: str
    value: object
    suggested: object
    term: str
    why: str
    fixes_alone: bool = True  # False: helps, but the verdict stays a failure without other changes
    effect_gib: float = 0.0
    steps: int = 1

    def to_json(self) -> dict:
        return {"setting": self.setting, "value": self.value, "suggested": self.suggested, "term": self.term,
                "why": self.why, "fixes_alone": self.fixes_alone, "effect_gib": round(self.effect_gib, 3)}


@dataclass
class Trial:
    """One counterfactual: `setting` moved to `value` (`steps` along its ladder) gives `plan`; `ok` when that plan
    passes, `effect` how far it moved the failing margin (GiB, positive = towards "ok")."""

    setting: str
    value: object
    steps: int
    plan: object
    ok: bool
    effect: float


@dataclass
class Explanation:
    """Why a start fails or failed: culprits (best first), a summary sentence and the smallest combined fix
    ({setting: value}, what `plan --set` takes). basis: "estimate" (a plan), "log" (vLLM's figures),
    "log+estimate", "rules" (no figures)."""

    outcome: str
    phase: str
    culprits: list[Culprit]
    summary: str
    fix: dict
    basis: str = "estimate"
    notes: list[str] = field(default_factory=list)
    # the Plan this explanation was worked out with (explain_record: the log's settings, model, card and the
    # coefficients asked for), so the Markdown report and plan's figures reuse it instead of planning again
    plan: object | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict:
        """{"outcome", "phase", "culprits": [Culprit.to_json()...], "summary", "fix", "basis"}."""
        return {"outcome": self.outcome, "phase": self.phase, "culprits": [c.to_json() for c in self.culprits],
                "summary": self.summary, "fix": dict(self.fix), "basis": self.basis}
