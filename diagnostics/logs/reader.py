"""read_log(text) -> LogRecord: what a vLLM start-up log (whole file or pasted fragment) says happened.

Numbers are only what the log printed (GiB floats, counts ints). The outcome is decided by the first decisive
error in line order (diagnostics.logs.outcome); shutdown noise after it, or after a clean start, never changes it.
Where the deciding line is missing (a traceback without its exception line) the outcome stays "unknown".

Each line is matched against RULES, an ordered table of (pattern, handler): the first pattern that matches wins
and its handler reads the line's figures; every line is then also searched for figures inside error texts. A line
that may continue a wrapped message (lines.Line.cont) is also read joined to the line before it.

`ok` needs a ready marker (the engine or the server says it is up, or the LLM class starts on prompts; V0's last
start-up step, graph capture, counts for a V0 engine); without one the outcome stays `unknown` and `reached` says
how far the start-up got. Figures that can only end in a failure decide it even when the exception line was not
pasted: a KV budget below 0 GiB (no_kv_cache; a printed 0.0 may be a few MiB rounded down, so it decides
nothing), `# GPU blocks: 0` (no_kv_cache), V0's concurrency below 1x (kv_too_small).

read_log takes a text; read_log_stream a binary file: every line while the engine starts, then only the lines
stream.ChunkReader's pre-filter picks, up to the first failure after the engine came up.
"""

from __future__ import annotations

import re
import textwrap
from collections import deque
from collections.abc import Callable
from typing import BinaryIO

from diagnostics.logs import patterns as P
from diagnostics.logs.figures import gib, non_default_args, number, reserved_tokens
from diagnostics.logs.handlers import (auto_fit, blocks_override, budget_updated, extensible_extended,
                                       extensible_measured, extensible_util_cap, external_weights, free_grew,
                                       graph_capture_skipped, graph_profiling_disabled, graph_profiling_start,
                                       init_engine, serving_failed, weight_create_failed)
from diagnostics.logs.lines import Line, LineSplitter
from diagnostics.logs.outcome import decisive, recognised
from diagnostics.logs.record import LogRecord
from diagnostics.logs.scan import Scan
from diagnostics.logs.stream import ChunkReader

# Where the version comes from, most trusted first: the engine's banner, the server/art banner, collect_env, a pip
# line, a docker image tag.
FULL_LINES = 200_000  # lines read whole before a log that never came up is read through the pre-filter only
FRAMES_ABOVE = 600  # lines above a failure read with it (outcome.frames_before looks as far)


# -- handlers: (scan, line, match) -> None ------------------------------------------------------------------------
def _banner_v1(s: Scan, line: Line, m: re.Match) -> None:
    s.restart()  # a start-up begins here: one after an earlier start came up is a restart
    s.version(m.group("version"))
    s.rec.engine = "V1"
    s.config(m.group("config"))


def _banner_v0(s: Scan, line: Line, m: re.Match) -> None:
    s.restart()
    s.version(m.group("version"))
    s.v0_marks += 2
    s.config(m.group("config"))


def _api_version(s: Scan, line: Line, m: re.Match) -> None:
    s.restart()  # a server's banner after an earlier start came up: a restart, even when no engine banner follows
    s.version(m.group("version"), "server")


def _env_version(s: Scan, line: Line, m: re.Match) -> None:
    s.version(m.group("version"), "collect_env")


def _pip_version(s: Scan, line: Line, m: re.Match) -> None:
    s.version(m.group("version") or m.group("listed"), "pip")


def _docker_version(s: Scan, line: Line, m: re.Match) -> None:
    s.version(m.group("version"), "docker")


def _platform(s: Scan, line: Line, m: re.Match) -> None:
    s.rec.platform = m.group("platform")


def _non_default(s: Scan, line: Line, m: re.Match) -> None:
    s.reach("init")
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
    if "s" in m.re.groupindex:
        s.num("weights_load_s", gib(m.group("s")))
    if "gpu_model_runner" in line.raw:
        s.v1_marks += 1


def _weights_mb(s: Scan, line: Line, m: re.Match) -> None:
    s.num("weights_gib", gib(m.group("w")) / 1024)  # 0.5.3 and before print MiB as "MB"
    s.mark("weights_done", line)


PROFILE_064_KEYS = {"total_gpu_memory": "gpu_total_gib", "initial_memory_usage": "initial_memory_gib",
                    "peak_torch_memory": "peak_torch_gib", "memory_usage_post_profile": "memory_usage_post_profile_gib",
                    "non_torch_memory": "non_torch_gib", "gpu_memory_utilization": "gpu_memory_utilization",
                    "duration": "profile_time_s"}


def _profile_064(s: Scan, line: Line, m: re.Match) -> None:
    s.v0_marks += 1
    s.mark("profile_done", line)
    for pair in P.PROFILE_PAIR.finditer(line.body):
        key, value = pair.group("key"), gib(pair.group("v"))
        if key == "kv_cache_size":
            s.kv_budget(line, value)
        elif key in PROFILE_064_KEYS:
            s.num(PROFILE_064_KEYS[key], value)
        if key == "gpu_memory_utilization":
            s.setting(key, value)


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
        for key, group in (("weights_gib", "w"), ("non_torch_gib", "nt"), ("activation_peak_gib", "act")):
            s.num(key, gib(m.group(group)))
        s.kv_budget(line, gib(m.group("kv")))


PROFILE_ITEM_KEYS = {"total_gpu_memory": "gpu_total_gib", "gpu_memory_utilization": "gpu_memory_utilization",
                     "model weights take": "weights_gib", "weights_memory": "weights_gib",
                     "non_torch_memory": "non_torch_gib", "PyTorch activation peak memory": "activation_peak_gib",
                     "torch_peak_increase": "activation_peak_gib", "initial_memory_usage": "initial_memory_gib",
                     "peak_torch_memory": "peak_torch_gib", "memory_usage_post_profile": "memory_usage_post_profile_gib"}


def _profile_results(s: Scan, line: Line, m: re.Match) -> None:
    s.v0_marks += 1
    s.mark("profile_done", line)


def _profile_item(s: Scan, line: Line, m: re.Match) -> None:
    """One figure per line under "Memory profiling results:" (`total_gpu_memory     79.22GiB`)."""
    value = gib(m.group("v"))
    if m.group("key") in ("available_kv_cache_memory", "kv_cache_size"):
        s.kv_budget(line, value)
        return
    key = PROFILE_ITEM_KEYS[m.group("key")]
    s.num(key, value)
    if key == "gpu_memory_utilization":
        s.setting(key, value)


def _profile_debug(s: Scan, line: Line, m: re.Match) -> None:
    """V1's DEBUG summary: profile time, non-KV total, torch peak increase, non-torch increase or consumed, weights."""
    s.mark("profile_done", line)
    for key, group in (("profile_time_s", "s"), ("non_kv_cache_gib", "nonkv"), ("activation_peak_gib", "act"),
                       ("non_torch_increase_gib", "nt"), ("consumed_gib", "consumed"), ("weights_gib", "w")):
        if m.group(group) is not None:
            s.num(key, gib(m.group(group)))


def _kv_reserved(s: Scan, line: Line, m: re.Match) -> None:
    """kv_cache_memory_bytes set: vLLM skips the profile run and reserves exactly that (GiB)."""
    if m.group("free") is not None:
        s.num("initial_free_gib", gib(m.group("free")))
    s.kv_budget(line, gib(m.group("kv")))


def _available_kv(s: Scan, line: Line, m: re.Match) -> None:
    s.v1_marks += 1
    s.kv_budget(line, gib(m.group("kv")))


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
        s.num("activation_peak_gib", _activation(s, gib(u.group("act")), u.re is P.BREAKDOWN_NEW_USAGE))
        s.num("cuda_graph_gib", gib(u.group("cg")))
    if u and u.re is P.BREAKDOWN_NEW_USAGE:  # 0.27+: the printed peak activation holds the CUDA-graph estimate
        s.num("activation_peak_without_cuda_graph_gib", round(gib(u.group("act")) - gib(u.group("cg")), 4))
    if k := P.KV_SUGGEST.search(body):
        s.num("kv_cache_memory_suggest_bytes", int(k.group("a")))
        s.num("kv_cache_memory_full_bytes", int(k.group("b")))
    if k := P.KV_IN_USE.search(body):
        value = gib(k.group("kv"))
        s.num("kv_cache_gib", value if k.group("unit") == "GiB" else value / (1 << 30))


def _activation(s: Scan, printed: float | None, new_form: bool) -> float | None:
    """The activation peak without CUDA graphs. 0.27+ prints "peak activation" = transient headroom + the CUDA-graph
    estimate it subtracted (0.27 gpu_worker.py:527-529; VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS defaults to 1 from
    0.20): the estimate printed earlier ("Estimated CUDA graph memory") comes off it (audit c2, ranked 9)."""
    estimates = s.seen.get("cuda_graph_estimated_gib") or []
    if printed is None or not new_form or not estimates:
        return printed
    s.num("activation_printed_gib", printed)
    return round(max(printed - estimates[-1], 0.0), 2)


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
    if int(m.group("gpu")) == 0:
        s.fail(line, "no_kv_cache")
    if m.group("cpu") is not None:
        s.v0_marks += 1
        s.num("cpu_blocks", int(m.group("cpu")))


def _concurrency(s: Scan, line: Line, m: re.Match) -> None:
    """V0 prints the block count, then this; below 1x the blocks cannot hold one max_model_len request."""
    s.concurrency(line.body)
    if "gpu_blocks" in s.seen and gib(m.group("x")) < 1:
        s.fail(line, "kv_too_small")


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
    s.at.setdefault("profile_seq_warning", line.index)  # the profile run follows (multimodal/profiling.py)
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
    """The LLM class adding, rendering or processing prompts: the engine is up."""
    s.request_at = s.request_at if s.request_at is not None else line.index
    s.ready(line)


def _sampler_warmup(s: Scan, line: Line, m: re.Match) -> None:
    s.reach("warmup")
    s.at.setdefault("sampler_warmup", line.index)
    s.num("sampler_warmup_requests", int(m.group("n")))


def _profile_start(s: Scan, line: Line, m: re.Match) -> None:
    s.mark("profile_start", line)


# The line kinds in the order they are tried: the first pattern that matches a line's body decides its handler.
RULES: tuple[tuple[re.Pattern, Callable[[Scan, Line, re.Match], None]], ...] = (
    (P.BANNER_V1, _banner_v1),
    (P.BANNER_V0, _banner_v0),
    (P.API_VERSION, _api_version),
    (P.ASCII_VERSION, _api_version),
    (P.ENV_VERSION, _env_version),
    (P.PIP_VERSION, _pip_version),
    (P.DOCKER_VERSION, _docker_version),
    (P.PLATFORM, _platform),
    (P.NON_DEFAULT_ARGS, _non_default),
    (P.MAX_NUM_SEQS_WARNING, _max_num_seqs_warning),
    (P.START_LOAD, _start_load),
    (P.WEIGHTS_OLD, _weights),
    (P.WEIGHTS_MB, _weights_mb),
    (P.WEIGHTS_NEW, _weights),
    (P.PROFILE_064, _profile_064),
    (P.PROFILE_RESULTS, _profile_results),
    (P.PROFILE_ITEM, _profile_item),
    (P.PROFILE_DEBUG, _profile_debug),
    (P.KV_RESERVED, _kv_reserved),
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
    (P.NUM_GPU_BLOCKS_OVERRIDE, blocks_override),
    (P.GRAPH_CAPTURE_SKIPPED, graph_capture_skipped),
    (P.FREE_GREW, free_grew),
    (P.GRAPH_PROFILING_DISABLED, graph_profiling_disabled),
    (P.EXTERNAL_WEIGHTS, external_weights),
    (P.BUDGET_UPDATED, budget_updated),
    (P.EXTENSIBLE_MEASURED, extensible_measured),
    (P.EXTENSIBLE_EXTENDED, extensible_extended),
    (P.EXTENSIBLE_UTIL_CAP, extensible_util_cap),
    (P.AUTO_FIT, auto_fit),
    (P.ENCODER_BUDGET, _encoder_budget),
    (P.ENCODER_SKIP, _encoder_skip),
    (P.GRAPH_PROFILING_START, graph_profiling_start),
    (P.PROFILE_SEQ_WARNING, _profile_seq),
    (P.CPU_KV_AUTO, _cpu_kv_auto),
    (P.CPU_KV_EXPLICIT, _cpu_kv_explicit),
    (P.INIT_ENGINE, init_engine),
    (P.APP_STARTUP, _ready),
    (P.SERVING, _ready),
    (P.REQUESTS, _requests),
    (P.SAMPLER_WARMUP, _sampler_warmup),
    (P.PROFILE_START, _profile_start),
    (P.SERVING_FAILED, serving_failed),
    (P.WEIGHT_CREATE_FAILED, weight_create_failed),
)


def _text(text) -> str:
    """The text as str; a paste indented as a code block loses the indentation common to all its lines when that
    leaves a traceback, an exception or a vLLM header at the margin (bare indented code lines stay as they are)."""
    if not isinstance(text, str):
        text = text.decode("utf-8", "replace") if isinstance(text, (bytes, bytearray)) else str(text)
    if text[:1] not in (" ", "\t"):
        return text
    dedented = textwrap.dedent(text)
    starts = (ln for ln in dedented.splitlines()[:500] if ln[:1] not in ("", " ", "\t"))
    if any(ln.startswith("Traceback") or P.HEADER.match(ln) or P.EXCEPTION.match(ln) for ln in starts):
        return dedented
    return text


def _scan(text) -> Scan:
    s, splitter = Scan(RULES), LineSplitter()
    for physical in _text(text).split("\n"):
        for line in splitter.feed(physical):
            s.add(line)
    return s


def _serving_failure(s: Scan, splitter: LineSplitter, reader: ChunkReader) -> None:
    """After the engine came up: only lines holding a failure key are read (with the lines above them, a
    traceback's frames), up to the first that decides a failure; the rest of the log cannot change the outcome."""
    recent: deque[bytes] = deque(maxlen=FRAMES_ABOVE + 1)  # what was read since, in order (frames across hits)
    while (found := reader.candidate(above=FRAMES_ABOVE)) is not None:
        above, hit = found
        recent.extend(above)
        recent.append(hit)
        if not any(decisive(ln) for ln in LineSplitter().feed(hit.decode("utf-8", "replace"))):
            continue
        for raw in recent:
            for line in splitter.feed(raw.decode("utf-8", "replace")):
                s.add(line)
        return


def looks_like_vllm_log(text: str) -> bool:
    """True when the text has any vLLM line, error or traceback frame the reader knows."""
    s = _scan(text)
    return recognised(s.lines, s.hits)


def read_log(text: str) -> LogRecord:
    """Read a start-up log (str, or bytes decoded as UTF-8 with replacement) into a LogRecord.

    Never raises on odd text: unrecognisable text is outcome "unknown". Patterns follow vLLM's own log lines
    (vllm-memory.md §2: worker/gpu_worker.py, v1/core/kv_cache_utils.py, the CPU worker; cpu-vllm.md §3-§4)."""
    return _scan(text).engine_records()


def read_log_stream(fh: BinaryIO) -> LogRecord:
    """Read a log from a binary stream (a file, stdin) in bounded memory: every line until the engine is up (at
    most FULL_LINES), then the pre-filtered failure lines (stream.ChunkReader). Same record as read_log on a
    start-up log; on a day of serving it answers in seconds (tests/tools/bench_explain.py)."""
    s, splitter, reader = Scan(RULES), LineSplitter(), ChunkReader(fh)
    count = 0
    while s.ready_at is None and count < FULL_LINES and (raw := reader.line()) is not None:
        count += 1
        for line in splitter.feed(raw.decode("utf-8", "replace")):
            s.add(line)
    if s.ready_at is None or not any(decisive(ln) for ln in s.lines if ln.index > s.ready_at):
        _serving_failure(s, splitter, reader)
    return s.engine_records()
