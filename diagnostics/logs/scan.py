"""Scan: the state one pass over a log's lines builds (the record, every value seen per number key, engine marks,
start-up markers, the phase reached, lines whose figures decide a failure), fed one line at a time by the reader.
Which line kind is which, and what is read from it, is the reader's RULES table (passed in)."""

from __future__ import annotations

import re
from collections.abc import Callable

from diagnostics.logs import patterns as P
from diagnostics.logs.figures import DERIVED_NUMBERS, config_settings, error_figures, gib, number
from diagnostics.logs.lines import Line
from diagnostics.logs.outcome import Decider, decide_engine, recognised
from diagnostics.logs.record import LogRecord
from diagnostics.outcomes import MARKER_PHASES, TIMELINE_PHASES

# Where the version comes from, most trusted first: the engine's banner, the server/art banner, collect_env, a pip
# line, a docker image tag.
RULE_NAMES = {id(v): k for k, v in vars(P).items() if isinstance(v, re.Pattern)}
VERSION_RANK = {"banner": 0, "server": 1, "collect_env": 2, "pip": 3, "docker": 4}
MARKER_PHASE = dict(MARKER_PHASES)


def wrap_joins(head: str, tail: str) -> tuple[str, ...]:
    """How to re-join a message the paste wrapped: with a space, and, when the cut falls between two letters or
    digits (`CUDA Gra` / `phs`, `is reser` / `ved`), also without one, tried first (the wrong join reads nothing)."""
    if head[-1:].isalnum() and tail[:1].isalnum():
        return ("", " ")
    return (" ",)


class Scan:
    """The state one pass over the lines builds: the record, every value seen per number key, engine marks."""

    def __init__(self, rules: tuple[tuple[re.Pattern, Callable], ...]):
        self.rules = rules
        self.lines: list[Line] = []
        self.rec = LogRecord()
        self.seen: dict[str, list] = {}
        self.hits = 0
        self.v0_marks = 0
        self.v1_marks = 0
        self.ready_at: int | None = None
        self.request_at: int | None = None
        self.at: dict[str, int] = {}  # other first-line indexes the outcome needs ("sampler_warmup")
        self.version_rank = len(VERSION_RANK)
        self.reached = -1
        self.fails: dict[int, tuple[str, str]] = {}  # line index -> (outcome, phase) its figures decide
        self.current: tuple[Line, str | None] | None = None  # the line being read and its rule's name
        self.origin: dict[str, tuple[Line, str | None]] = {}  # "figure:KEY"/"setting:KEY" -> first line, rule

    def restart(self) -> None:
        """An engine banner after an earlier start came up (ready, or requests served): a restart in a day of
        server log begins a new start-up, so nothing the earlier one printed (its ready and metrics lines, its
        figures, its markers) may decide this one. The scan starts afresh; line indexes go on."""
        if self.ready_at is None and self.request_at is None:
            return
        self.__init__(self.rules)

    def num(self, key: str, value) -> None:
        if value is None:
            return
        values = self.seen.setdefault(key, [])
        if value not in values:
            values.append(value)
        if self.current is not None:
            self.origin.setdefault(f"figure:{key}", self.current)

    def setting(self, key: str, value) -> None:
        if value is not None:
            self.rec.settings.setdefault(key, value)
            if self.current is not None:
                self.origin.setdefault(f"setting:{key}", self.current)

    def mark(self, name: str, line: Line) -> None:
        self.reach(MARKER_PHASE[name])
        if line.ts and name not in self.rec.timestamps:
            self.rec.timestamps[name] = line.ts

    def reach(self, phase: str) -> None:
        self.reached = max(self.reached, TIMELINE_PHASES.index(phase))

    def fail(self, line: Line, outcome: str) -> None:
        """This line's figures can only end in `outcome` (a KV cache that cannot exist or cannot hold one request)."""
        self.fails.setdefault(line.index, (outcome, "kv_cache"))

    def version(self, text: str, source: str = "banner") -> None:
        """The version the most trusted source shows (VERSION_RANK), the first such line if several."""
        rank = VERSION_RANK[source]
        if rank < self.version_rank:
            self.rec.vllm_version, self.version_rank = text.lstrip("v"), rank
        self.reach("init")

    def ready(self, line: Line) -> None:
        self.mark("ready", line)
        self.ready_at = self.ready_at if self.ready_at is not None else line.index

    def config(self, config: str) -> None:
        for name, value in config_settings(config).items():
            self.rec.settings.setdefault(name, value)
        for key, prefix in (("dtype", "torch."), ("load_format", "LoadFormat.")):
            value = self.rec.settings.get(key)
            if isinstance(value, str) and value.startswith(prefix):  # `torch.bfloat16` -> `bfloat16`
                self.rec.settings[key] = value[len(prefix):].lower()
        if isinstance(self.rec.settings.get("max_model_len"), int):
            self.num("max_model_len", self.rec.settings["max_model_len"])

    def concurrency(self, body: str) -> None:
        if m := P.CONCURRENCY.search(body):
            mml = int(number(m.group("mml")))
            self.num("max_model_len", mml)
            self.setting("max_model_len", mml)
            self.num("max_concurrency", gib(m.group("x")))

    def cpu_kv(self, line: Line, m: re.Match) -> None:
        self.rec.platform = "cpu"
        self.v1_marks += 1
        self.mark("profile_done", line)
        self.num("kv_cache_gib", gib(m.group("kv")))
        self.num("gpu_total_gib", gib(m.group("total")))

    def kv_budget(self, line: Line, value: float) -> None:
        """A KV budget the profile run left (GiB): below 0 no cache block can exist. A printed 0.0 decides nothing:
        it may be a few MiB rounded down (then one request does not fit: kv_too_small, not no_kv_cache)."""
        self.num("kv_cache_gib", value)
        self.mark("profile_done", line)
        if value < 0:
            self.fail(line, "no_kv_cache")

    def error_numbers(self, line: Line) -> None:
        found = error_figures(line.body)
        if self.rec.platform is None and "CUDA out of memory" in line.body and not P.NEVER_FAILS.search(line.body):
            self.rec.platform = "cuda"
        if found.cpu:
            self.rec.platform = "cpu"
        for key, value in found.numbers:
            self.num(key, value)
        for key, value in found.settings:
            self.setting(key, value)
        if len(found.processes) > len(self.rec.gpu_processes):  # the whole list (a wrapped message: joined)
            self.rec.gpu_processes = found.processes

    def add(self, line: Line) -> None:
        """Read one line (and, when it may continue the line before, the two joined)."""
        if line.cont and self.lines:
            prev = self.lines[-1]
            for sep in wrap_joins(prev.body, line.body):
                self.scan(Line(prev.index, f"{prev.raw}{sep}{line.body}", f"{prev.body}{sep}{line.body}", prev.level,
                               prev.ts, prev.process, engine=prev.engine))
        self.lines.append(line)
        self.scan(line)

    def scan(self, line: Line) -> None:
        if line.process and "EngineCore" in line.process:
            self.v1_marks += 1
        if line.process and "VllmWorkerProcess" in line.process:
            self.v0_marks += 1
        if P.V0_GRAPH_LINES.search(line.body):
            self.v0_marks += 1
        if 'File "' in line.body:  # V1's modules live under vllm/v1/, V0's worker under vllm/worker/
            self.v1_marks += "/vllm/v1/" in line.body
            self.v0_marks += "/vllm/worker/" in line.body
        rule = next(((pat, handler) for pat, handler in self.rules if pat.search(line.body)), None)
        if rule is not None:
            self.current = (line, RULE_NAMES.get(id(rule[0])))
            rule[1](self, line, rule[0].search(line.body))
        self.current = (line, None)
        self.error_numbers(line)
        self.current = None
        if rule is not None:
            self.hits += 1

    def record(self) -> LogRecord:
        rec = self.rec
        for key, values in self.seen.items():
            rec.numbers[key] = values[0]
            if len(values) > 1:
                rec.numbers[f"{key}_all"] = list(values)
        if rec.gpu_processes:  # PyTorch's OOM message: this process's use and what the others hold
            rec.numbers["oom_process_in_use_gib"] = next(p["gib"] for p in rec.gpu_processes if p["this_process"])
            rec.numbers["other_processes_gib"] = sum(p["gib"] for p in rec.gpu_processes if not p["this_process"])
            source = self.origin.get("figure:oom_gpu_index") or self.origin.get("figure:oom_tried_gib")
            for key in ("oom_process_in_use_gib", "other_processes_gib"):
                how = f"derived: {DERIVED_NUMBERS[key]}" if key in DERIVED_NUMBERS else \
                    "from the process list of the OOM message"
                rec.provenance[f"figure:{key}"] = {"how": how, "line": source[0].index if source else None}
        decide_engine(rec, self.lines, self.v0_marks, self.v1_marks)
        for key, (line, rule) in self.origin.items():
            rec.provenance.setdefault(key, {"how": "read from this line", "line": line.index, "rule": rule})
        if recognised(self.lines, self.hits) or self.fails:
            at = {**self.at, "ready": self.ready_at, "request": self.request_at}
            decider = Decider(self.lines, rec, {k: v for k, v in at.items() if v is not None}, self.fails)
            decider.classify()
            self.reached = max(self.reached, decider.reached)
        if self.reached >= 0:
            rec.reached = TIMELINE_PHASES[self.reached]
        rec.provenance["lines"] = {ln.index: ln.raw for ln in self.lines}
        return rec

    def engine_records(self) -> LogRecord:
        """The record, read apart per engine when the log holds several (vllm-omni `[Stage-N]`, DP ranks, two API
        servers): each engine's record from its own lines and the unlabelled ones; the returned record is the
        failing engine's (the one whose line decided the outcome), with every engine's summary in `engines`."""
        whole = self.record()
        labels = list(dict.fromkeys(ln.engine for ln in self.lines if ln.engine))
        engines = [x for x in labels if not x.startswith("APIServer")] or labels  # an API server tag is an engine
        if len(engines) < 2:                                                    # only where nothing finer is
            return whole
        parts = {}
        for label in engines:
            sub = Scan(self.rules)
            for line in self.lines:
                if line.engine == label or line.engine not in engines:  # its own lines and the shared ones
                    sub.add(line)
            parts[label] = sub.record()
        failed = next((ln.engine for ln in self.lines if ln.engine in engines and whole.error_line
                       and ln.raw.strip() == whole.error_line), None)
        if failed is None:
            failed = next((label for label, r in parts.items() if r.outcome not in ("ok", "unknown")), None)
        rec = parts[failed] if failed is not None else whole
        rec.engines = [{"engine": label, "outcome": r.outcome, "phase": r.phase,
                        "numbers": {k: v for k, v in r.numbers.items() if not k.endswith("_all")}}
                       for label, r in parts.items()]
        rec.failed_engine = failed
        if failed is not None:
            rec.provenance["failed_engine"] = {"how": f"the root-cause line carries the `{failed}` tag",
                                               "line": next((ln.index for ln in self.lines if ln.engine == failed
                                                             and ln.raw.strip() == rec.error_line), None)}
        return rec
