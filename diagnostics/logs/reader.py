"""read_log(text) -> LogRecord: what a vLLM start-up log (whole file or pasted fragment) says happened.

Numbers are only what the log printed (GiB floats, counts ints). The outcome is decided by the first decisive
error in line order (diagnostics.logs.outcome); shutdown noise after it, or after a clean start, never changes it.
Where the deciding line is missing (a traceback without its exception line) the outcome stays "unknown".

Each line is matched against RULES, an ordered table of (pattern, handler): the first pattern that matches wins
and its handler reads the line's figures; every line is then also searched for figures inside error texts.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from diagnostics.logs import patterns as P
from diagnostics.logs.figures import config_settings, error_figures, gib, non_default_args, number, reserved_tokens
from diagnostics.logs.lines import Line, split_lines
from diagnostics.logs.outcome import Decider, decide_engine, recognised
from diagnostics.logs.record import LogRecord


class Scan:
    """The state one pass over the lines builds: the record, every value seen per number key, engine marks."""

    def __init__(self, lines: list[Line]):
        self.lines = lines
        self.rec = LogRecord()
        self.seen: dict[str, list] = {}
        self.hits = 0
        self.v0_marks = 0
        self.v1_marks = 0
        self.ready_at: int | None = None
        self.request_at: int | None = None

    def num(self, key: str, value) -> None:
        if value is None:
            return
        values = self.seen.setdefault(key, [])
        if value not in values:
            values.append(value)

    def setting(self, key: str, value) -> None:
        if value is not None:
            self.rec.settings.setdefault(key, value)

    def mark(self, name: str, line: Line) -> None:
        if line.ts and name not in self.rec.timestamps:
            self.rec.timestamps[name] = line.ts

    def version(self, text: str) -> None:
        if self.rec.vllm_version is None:
            self.rec.vllm_version = text.lstrip("v")

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

    def error_numbers(self, line: Line) -> None:
        found = error_figures(line.body)
        if found.cpu:
            self.rec.platform = "cpu"
        for key, value in found.numbers:
            self.num(key, value)
        for key, value in found.settings:
            self.setting(key, value)

    def scan(self, line: Line) -> None:
        if line.process and "EngineCore" in line.process:
            self.v1_marks += 1
        if line.process and "VllmWorkerProcess" in line.process:
            self.v0_marks += 1
        rule = next(((pat, handler) for pat, handler in RULES if pat.search(line.body)), None)
        if rule is not None:
            rule[1](self, line, rule[0].search(line.body))
        self.error_numbers(line)
        if rule is not None:
            self.hits += 1

    def record(self) -> LogRecord:
        rec = self.rec
        for key, values in self.seen.items():
            rec.numbers[key] = values[0]
            if len(values) > 1:
                rec.numbers[f"{key}_all"] = list(values)
        if recognised(self.lines, self.hits):
            Decider(self.lines, rec, self.ready_at, self.request_at).classify()
        decide_engine(rec, self.lines, self.v0_marks, self.v1_marks)
        return rec


# -- handlers: (scan, line, match) -> None ------------------------------------------------------------------------
def _banner_v1(s: Scan, line: Line, m: re.Match) -> None:
    s.version(m.group("version"))
    s.rec.engine = "V1"
    s.config(m.group("config"))


def _banner_v0(s: Scan, line: Line, m: re.Match) -> None:
    s.version(m.group("version"))
    s.v0_marks += 2
    s.config(m.group("config"))


def _api_version(s: Scan, line: Line, m: re.Match) -> None:
    s.version(m.group("version"))


def _platform(s: Scan, line: Line, m: re.Match) -> None:
    s.rec.platform = m.group("platform")


def _non_default(s: Scan, line: Line, m: re.Match) -> None:
    for key, value in non_default_args(m.group("args")).items():
        s.setting(key, value)


def _max_num_seqs_warning(s: Scan, line: Line, m: re.Match) -> None:
    s.setting("max_num_seqs", int(m.group("seqs")))
    s.setting("max_num_batched_tokens", int(m.group("mbt")))
    s.num("mm_tokens_worst_case", int(m.group("mm")))
    s.v0_marks += 1


def _start_load(s: Scan, line: Line, m: re.Match) -> None:
    s.mark("weights_start", line)


def _weights(s: Scan, line: Line, m: re.Match) -> None:
    s.num("weights_gib", number(m.group("w")))
    s.mark("weights_done", line)
    if "gpu_model_runner" in line.raw:
        s.v1_marks += 1


PROFILE_064_KEYS = (("gpu_total_gib", "total"), ("initial_memory_gib", "init"), ("peak_torch_gib", "peak"),
                    ("memory_usage_post_profile_gib", "post"), ("non_torch_gib", "nt"), ("kv_cache_gib", "kv"),
                    ("gpu_memory_utilization", "util"))


def _profile_064(s: Scan, line: Line, m: re.Match) -> None:
    s.v0_marks += 1
    s.mark("profile_done", line)
    for key, group in PROFILE_064_KEYS:
        if m.group(group) is not None:
            s.num(key, gib(m.group(group)))
    if m.group("util"):
        s.setting("gpu_memory_utilization", gib(m.group("util")))


def _v0_profile_block(s: Scan, line: Line, m: re.Match) -> None:
    """V0 0.6.5-0.10.2's three-line message; a paste may join its lines, so each part is looked for."""
    b = line.body
    s.mark("profile_done", line)
    if m := P.PROFILE_TAKES.search(b):
        s.v0_marks += 1
        s.num("profile_time_s", gib(m.group("s")))
    if m := P.PROFILE_BUDGET.search(b):
        s.num("gpu_total_gib", gib(m.group("total")))
        s.num("gpu_memory_utilization", gib(m.group("util")))
        s.num("budget_gib", gib(m.group("budget")))
        s.setting("gpu_memory_utilization", gib(m.group("util")))
    if m := P.PROFILE_SPLIT.search(b):
        for key, group in (("weights_gib", "w"), ("non_torch_gib", "nt"), ("activation_peak_gib", "act"),
                           ("kv_cache_gib", "kv")):
            s.num(key, gib(m.group(group)))


def _available_kv(s: Scan, line: Line, m: re.Match) -> None:
    s.v1_marks += 1
    s.mark("profile_done", line)
    s.num("kv_cache_gib", gib(m.group("kv")))


def _breakdown(s: Scan, line: Line, m: re.Match) -> None:
    body = line.body
    for key, group in (("free_gib", "free"), ("gpu_total_gib", "total"), ("gpu_memory_utilization", "util"),
                       ("requested_gib", "req")):
        s.num(key, gib(m.group(group)))
    s.setting("gpu_memory_utilization", gib(m.group("util")))
    if u := P.BREAKDOWN_OLD_USAGE.search(body):
        s.num("weights_gib", gib(u.group("w")))
        s.num("non_torch_gib", gib(u.group("nt")))
    elif u := P.BREAKDOWN_NEW_USAGE.search(body):
        s.num("consumed_gib", gib(u.group("consumed")))
    if u:
        s.num("activation_peak_gib", gib(u.group("act")))
        s.num("cuda_graph_gib", gib(u.group("cg")))
    if k := P.KV_SUGGEST.search(body):
        s.num("kv_cache_memory_suggest_bytes", int(k.group("a")))
        s.num("kv_cache_memory_full_bytes", int(k.group("b")))
    if k := P.KV_IN_USE.search(body):
        value = gib(k.group("kv"))
        s.num("kv_cache_gib", value if k.group("unit") == "GiB" else value / (1 << 30))


def _kv_tokens(s: Scan, line: Line, m: re.Match) -> None:
    s.v1_marks += 1
    s.mark("kv_done", line)
    s.num("kv_cache_tokens", int(number(m.group("tokens"))))
    if m.group("dev") == "CPU":
        s.rec.platform = s.rec.platform or "cpu"
    s.concurrency(line.body)


def _gpu_blocks(s: Scan, line: Line, m: re.Match) -> None:
    s.mark("kv_done", line)
    s.num("gpu_blocks", int(m.group("gpu")))
    if m.group("cpu") is not None:
        s.v0_marks += 1
        s.num("cpu_blocks", int(m.group("cpu")))


def _concurrency(s: Scan, line: Line, m: re.Match) -> None:
    s.concurrency(line.body)


def _graphs_done(s: Scan, line: Line, m: re.Match) -> None:
    s.mark("graphs_done", line)
    if m.group("g") is not None:
        s.num("cuda_graph_gib", gib(m.group("g")))


def _graph_pool(s: Scan, line: Line, m: re.Match) -> None:
    s.num("cuda_graph_gib", gib(m.group("actual")))
    s.num("cuda_graph_estimated_gib", gib(m.group("est")))


def _graph_estimate(s: Scan, line: Line, m: re.Match) -> None:
    s.num("cuda_graph_estimated_gib", gib(m.group("g")))


def _graph_profiling(s: Scan, line: Line, m: re.Match) -> None:
    if m := P.GRAPH_PROFILING_UTIL.search(line.body):
        s.setting("gpu_memory_utilization", gib(m.group("cur")))
        s.num("gpu_memory_utilization_without_graph_profiling", gib(m.group("eq")))
    if m := P.GRAPH_PROFILING_RAISE.search(line.body):
        if m.group("cur"):
            s.setting("gpu_memory_utilization", gib(m.group("cur")))
        s.num("gpu_memory_utilization_same_kv", gib(m.group("to")))


def _encoder_budget(s: Scan, line: Line, m: re.Match) -> None:
    s.v1_marks += 1
    s.mark("profile_start", line)
    s.num("encoder_budget_tokens", int(number(m.group("n"))))
    s.num("encoder_items", int(number(m.group("m"))))
    s.num("encoder_modality", m.group("modality"))


def _encoder_skip(s: Scan, line: Line, m: re.Match) -> None:
    s.mark("profile_start", line)
    s.setting("skip_mm_profiling", True)


def _profile_seq(s: Scan, line: Line, m: re.Match) -> None:
    if m.group("seq"):
        s.num("profiling_seq_len", int(m.group("seq")))
    if m.group("ctx"):
        s.num("max_model_len", int(m.group("ctx")))
        s.setting("max_model_len", int(m.group("ctx")))
    s.num("mm_tokens_worst_case", int(m.group("total")))
    reserved = reserved_tokens(m.group("reserved"))
    if isinstance(reserved, dict):
        for modality, tokens in reserved.items():
            s.num(f"mm_tokens_reserved_{modality}", tokens)
    elif reserved is not None:
        s.num("mm_tokens_reserved", reserved)


def _cpu_kv_auto(s: Scan, line: Line, m: re.Match) -> None:
    s.cpu_kv(line, m)
    s.num("requested_gib", gib(m.group("req")))
    s.num("non_kv_gib", gib(m.group("nonkv")))


def _cpu_kv_explicit(s: Scan, line: Line, m: re.Match) -> None:
    s.cpu_kv(line, m)


def _ready(s: Scan, line: Line, m: re.Match) -> None:
    s.ready(line)


def _requests(s: Scan, line: Line, m: re.Match) -> None:
    s.request_at = s.request_at if s.request_at is not None else line.index
    if P.GENERATE_DONE.search(line.body):
        s.ready_at = s.ready_at if s.ready_at is not None else line.index


def _profile_start(s: Scan, line: Line, m: re.Match) -> None:
    s.mark("profile_start", line)


REQUESTS = re.compile(r"Processed prompts:|Adding requests")
PROFILE_START = re.compile(r"Starting profile run")

# The line kinds in the order they are tried: the first pattern that matches a line's body decides its handler.
RULES: tuple[tuple[re.Pattern, Callable[[Scan, Line, re.Match], None]], ...] = (
    (P.BANNER_V1, _banner_v1),
    (P.BANNER_V0, _banner_v0),
    (P.API_VERSION, _api_version),
    (P.PLATFORM, _platform),
    (P.NON_DEFAULT_ARGS, _non_default),
    (P.MAX_NUM_SEQS_WARNING, _max_num_seqs_warning),
    (P.START_LOAD, _start_load),
    (P.WEIGHTS_OLD, _weights),
    (P.WEIGHTS_NEW, _weights),
    (P.PROFILE_064, _profile_064),
    (P.PROFILE_TAKES, _v0_profile_block),
    (P.PROFILE_BUDGET, _v0_profile_block),
    (P.PROFILE_SPLIT, _v0_profile_block),
    (P.AVAILABLE_KV, _available_kv),
    (P.BREAKDOWN, _breakdown),
    (P.KV_TOKENS, _kv_tokens),
    (P.GPU_BLOCKS, _gpu_blocks),
    (P.CONCURRENCY, _concurrency),
    (P.GRAPHS_DONE, _graphs_done),
    (P.GRAPH_POOL, _graph_pool),
    (P.GRAPH_ESTIMATE, _graph_estimate),
    (P.GRAPH_PROFILING_RAISE, _graph_profiling),
    (P.GRAPH_PROFILING_UTIL, _graph_profiling),
    (P.ENCODER_BUDGET, _encoder_budget),
    (P.ENCODER_SKIP, _encoder_skip),
    (P.PROFILE_SEQ_WARNING, _profile_seq),
    (P.CPU_KV_AUTO, _cpu_kv_auto),
    (P.CPU_KV_EXPLICIT, _cpu_kv_explicit),
    (P.INIT_ENGINE, _ready),
    (P.APP_STARTUP, _ready),
    (REQUESTS, _requests),
    (PROFILE_START, _profile_start),
)


def _scan(text) -> Scan:
    if not isinstance(text, str):
        text = text.decode("utf-8", "replace") if isinstance(text, (bytes, bytearray)) else str(text)
    s = Scan(split_lines(text))
    for line in s.lines:
        s.scan(line)
    return s


def looks_like_vllm_log(text: str) -> bool:
    """True when the text has any vLLM line, error or traceback frame the reader knows."""
    s = _scan(text)
    return recognised(s.lines, s.hits)


def read_log(text: str) -> LogRecord:
    """Read a start-up log (str, or bytes decoded as UTF-8 with replacement) into a LogRecord.

    Never raises on odd text: unrecognisable text is outcome "unknown". Patterns follow vLLM's own log lines
    (vllm-memory.md §2: worker/gpu_worker.py, v1/core/kv_cache_utils.py, the CPU worker; cpu-vllm README §3-§4)."""
    return _scan(text).record()
