"""LogRecord: what read_log found in one start-up log (the shape `explain --json` and results.jsonl carry)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LogRecord:
    """Outcome/phase (diagnostics.outcomes vocabularies), settings the log echoed, numbers it printed (GiB floats,
    counts ints; a key printed with several values keeps the first and lists all under `<key>_all`).

    `reached`: the last start-up phase the text shows begun (outcomes.TIMELINE_PHASES; None when it shows none).
    `gpu_processes`: every process a PyTorch OOM message lists, `{"pid": int | None, "gib": float,
    "this_process": bool}` (pid None: PyTorch's own "this process" entry).
    `engines`: `{"engine": label, "outcome", "phase", "numbers"}` per engine when the log holds several; the
    record's own fields then describe `failed_engine` (lines of other engines left out)."""

    outcome: str = "unknown"
    phase: str = "unknown"
    vllm_version: str | None = None
    engine: str | None = None
    platform: str | None = None
    settings: dict = field(default_factory=dict)
    numbers: dict = field(default_factory=dict)
    error_line: str | None = None
    evidence: list = field(default_factory=list)
    timestamps: dict = field(default_factory=dict)
    reached: str | None = None
    gpu_processes: list = field(default_factory=list)
    # Several engines in one log (vllm-omni stages, DP ranks, two servers; lines.engine_of): each engine's outcome
    # and figures, and which one the record describes (the one that failed). Empty / None for one engine.
    engines: list = field(default_factory=list)
    failed_engine: str | None = None
    # Which line decided what (diagnostics.logs.trace turns it into `explain --trace`): "outcome"/"phase"/"engine"
    # -> {"how": words, "line": line index or None}; "figure:KEY" / "setting:KEY" -> {"line": index}; "lines":
    # line index -> (raw line, matched rule name or None). Not part of to_json.
    provenance: dict = field(default_factory=dict, repr=False, compare=False)

    def to_json(self) -> dict:
        return {"outcome": self.outcome, "phase": self.phase, "vllm_version": self.vllm_version,
                "engine": self.engine, "platform": self.platform, "settings": dict(self.settings),
                "numbers": dict(self.numbers), "error_line": self.error_line, "evidence": list(self.evidence),
                "timestamps": dict(self.timestamps), "reached": self.reached,
                "gpu_processes": [dict(p) for p in self.gpu_processes],
                "engines": [dict(e) for e in self.engines], "failed_engine": self.failed_engine}
