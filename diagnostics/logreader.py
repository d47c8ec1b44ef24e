"""read_log(text) -> LogRecord: what a vLLM start-up log (whole file or pasted fragment) says happened.

Numbers are only what the log printed (GiB floats, counts ints). The outcome is decided by the first decisive
error in line order; shutdown noise after it, or after a clean start, never changes it. Where the deciding line is
missing (a traceback without its exception line) the outcome stays "unknown": never guess.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

from diagnostics import log_patterns as P

GIB_PER_UNIT = {"bytes": 1 / (1 << 30), "B": 1 / (1 << 30), "KiB": 1 / (1 << 20), "MiB": 1 / 1024, "GiB": 1.0,
                "TiB": 1024.0}

# Traceback frame names -> the phase they prove (vllm-memory.md §2.6). The deepest telling frame wins.
WEIGHT_FRAMES = {"load_model", "load_weights", "_load_weights", "load_model_weights"}
VISION_FRAMES = {"get_multimodal_embeddings", "embed_multimodal", "get_vision_hidden_states", "vpm", "resampler",
                 "_execute_mm_encoder", "get_image_features", "vision_model", "visual", "vision_tower",
                 "get_vision_embedding", "_process_image_input", "_process_video_input", "encode_images"}
LANGUAGE_FRAMES = {"llm", "language_model"}
SAMPLER_FRAMES = {"_dummy_sampler_run", "sampler", "sample", "compute_logits"}
KV_FRAMES = {"initialize_cache", "_init_cache_engine", "initialize_from_config", "initialize_kv_cache",
             "_allocate_kv_cache", "_allocate_kv_cache_tensors", "initialize_kv_cache_tensors", "CacheEngine"}
GRAPH_FRAMES = {"capture_model", "profile_cudagraph_memory", "_capture_cudagraphs", "_warm_up_model"}
WARMUP_FRAMES = {"compile_or_warm_up_model", "_warmup_and_capture"}
REQUEST_FRAMES = {"generate", "add_request", "_run_engine", "chat", "create_chat_completion", "create_completion"}
PROFILE_FRAMES = {"profile_run", "determine_num_available_blocks", "determine_available_memory", "warming_up_model"}
LM_PASS_FRAMES = {"_dummy_run", "execute_model"}
KNOWN_FRAMES = set().union(WEIGHT_FRAMES, VISION_FRAMES, SAMPLER_FRAMES, KV_FRAMES, GRAPH_FRAMES, WARMUP_FRAMES,
                           PROFILE_FRAMES, LM_PASS_FRAMES, {"_initialize_kv_caches", "_init_engine"})

STRONG = [(WEIGHT_FRAMES, "weights"), (VISION_FRAMES, "vision_encoder"), (LANGUAGE_FRAMES, "language_model"),
          (SAMPLER_FRAMES, "sampler"), (KV_FRAMES, "kv_cache"), (GRAPH_FRAMES, "cuda_graph"),
          (REQUEST_FRAMES, "request")]

OOM_OUTCOME = {"weights": "oom_weights", "vision_encoder": "oom_profile", "language_model": "oom_profile",
               "sampler": "oom_profile", "profile": "oom_profile", "kv_cache": "oom_kv_alloc",
               "cuda_graph": "oom_cuda_graph", "warmup": "oom_warmup", "request": "oom_request"}

# Config-line keys (`max_seq_len=32768, enforce_eager=False, ...`) -> setting names.
CONFIG_KEYS = {"model": "model", "max_seq_len": "max_model_len", "enforce_eager": "enforce_eager", "dtype": "dtype",
               "tensor_parallel_size": "tensor_parallel_size", "pipeline_parallel_size": "pipeline_parallel_size",
               "load_format": "load_format", "kv_cache_dtype": "kv_cache_dtype", "quantization": "quantization",
               "trust_remote_code": "trust_remote_code", "enable_chunked_prefill": "enable_chunked_prefill",
               "enable_prefix_caching": "enable_prefix_caching", "seed": "seed", "device_config": "device",
               "max_num_seqs": "max_num_seqs", "max_num_batched_tokens": "max_num_batched_tokens",
               "gpu_memory_utilization": "gpu_memory_utilization", "block_size": "block_size"}


@dataclass
class LogRecord:
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

    def to_json(self) -> dict:
        return {"outcome": self.outcome, "phase": self.phase, "vllm_version": self.vllm_version,
                "engine": self.engine, "platform": self.platform, "settings": dict(self.settings),
                "numbers": dict(self.numbers), "error_line": self.error_line, "evidence": list(self.evidence),
                "timestamps": dict(self.timestamps)}


@dataclass
class Line:
    """One physical log line (tqdm `\\r` segments split apart) with its prefix removed."""

    index: int
    raw: str
    body: str
    level: str | None
    ts: str | None
    process: str | None


# -- small helpers -------------------------------------------------------------------------------------------------
def number(text: str) -> float | int:
    """`65,536` -> 65536, `15.9524` -> 15.9524, `-0.23` -> -0.23 (int when printed without a decimal point)."""
    clean = text.replace(",", "").strip()
    return float(clean) if "." in clean else int(clean)


def size_gib(text: str) -> float:
    """PyTorch format_size text (`142.04 MiB`, `0 bytes`) -> GiB."""
    m = re.match(rf"({P.NUM})\s*(\w+)", text.strip())
    return float(m.group(1).replace(",", "")) * GIB_PER_UNIT[m.group(2)]


def version_tuple(text: str | None) -> tuple[int, int, int] | None:
    m = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)) if m else None


def _literal(text: str):
    value = text.strip().strip("'\"")
    if value in ("True", "False"):
        return value == "True"
    if value == "None":
        return None
    try:
        return number(value)
    except (ValueError, AttributeError):
        return value


def split_lines(text: str) -> list[Line]:
    """Physical lines; tqdm `\\r` pieces become lines; prefixes and the level/time header are removed."""
    out: list[Line] = []
    last_ts: str | None = None
    for physical in P.ANSI.sub("", text).split("\n"):
        for piece in physical.split("\r"):
            if not piece.strip() or (piece.startswith("#") and not P.GPU_BLOCKS.match(piece)):
                continue  # blank, or a comment (fixtures, annotated pastes); vLLM's only `#` line is `# GPU blocks`
            rest, process = piece, None
            tag = P.PROCESS_TAG.search(rest)
            if tag and tag.start() < 60:
                process = f"{tag.group('name')} pid={tag.group('pid')}"
                rest = rest[tag.end():]
            rank = P.RANK_TAG.search(rest)
            if rank and rank.start() < 40:
                process = process or f"rank{rank.group('rank')}"
                rest = rest[rank.end():]
            if process and rest.startswith(" ") and not rest.startswith("  "):
                rest = rest[1:]  # the space after a `(Name pid=N)` / `[rank0]:` tag; frame indents stay
            header = P.HEADER.search(rest)
            level = None
            if header and header.start() < 120:
                level, last_ts = header.group("level"), header.group("ts") or last_ts
                rest = rest[header.end():]
            out.append(Line(len(out), piece, rest.rstrip(), level, last_ts, process))
    return out


def looks_like_vllm_log(text: str) -> bool:
    """True when the text has any vLLM line, error or traceback frame the reader knows."""
    return _Reader(text).recognised()


def read_log(text: str) -> LogRecord:
    """Read a start-up log; never raises on odd text (unrecognisable -> outcome "unknown")."""
    if not isinstance(text, str):
        text = text.decode("utf-8", "replace") if isinstance(text, (bytes, bytearray)) else str(text)
    return _Reader(text).record()


# -- the reader ----------------------------------------------------------------------------------------------------
class _Reader:
    def __init__(self, text: str):
        self.lines = split_lines(text)
        self.rec = LogRecord()
        self.seen: dict[str, list] = {}
        self.hits = 0
        self.v0_marks = 0
        self.v1_marks = 0
        self.ready_at: int | None = None
        self.request_at: int | None = None
        self.failure_marker: Line | None = None
        for line in self.lines:
            self._scan(line)

    # numbers -------------------------------------------------------------------------------------------------
    def _num(self, key: str, value) -> None:
        if value is None:
            return
        values = self.seen.setdefault(key, [])
        if value not in values:
            values.append(value)

    def _setting(self, key: str, value) -> None:
        if value is not None:
            self.rec.settings.setdefault(key, value)

    def _mark(self, name: str, line: Line) -> None:
        if line.ts and name not in self.rec.timestamps:
            self.rec.timestamps[name] = line.ts

    def _version(self, text: str) -> None:
        if self.rec.vllm_version is None:
            self.rec.vllm_version = text.lstrip("v")

    def _scan(self, line: Line) -> None:  # noqa: C901 - one flat table of line kinds reads best
        b = line.body
        found = True
        if line.process and "EngineCore" in line.process:
            self.v1_marks += 1
        if line.process and "VllmWorkerProcess" in line.process:
            self.v0_marks += 1
        if m := P.BANNER_V1.search(b):
            self._version(m.group("version"))
            self.rec.engine = "V1"
            self._config(m.group("config"))
        elif m := P.BANNER_V0.search(b):
            self._version(m.group("version"))
            self.v0_marks += 2
            self._config(m.group("config"))
        elif m := P.API_VERSION.search(b):
            self._version(m.group("version"))
        elif m := P.PLATFORM.search(b):
            self.rec.platform = m.group("platform")
        elif m := P.NON_DEFAULT_ARGS.search(b):
            self._non_default(m.group("args"))
        elif m := P.MAX_NUM_SEQS_WARNING.search(b):
            self._setting("max_num_seqs", int(m.group("seqs")))
            self._setting("max_num_batched_tokens", int(m.group("mbt")))
            self._num("mm_tokens_worst_case", int(m.group("mm")))
            self.v0_marks += 1
        elif P.START_LOAD.search(b):
            self._mark("weights_start", line)
        elif m := (P.WEIGHTS_OLD.search(b) or P.WEIGHTS_NEW.search(b)):
            self._num("weights_gib", number(m.group("w")))
            self._mark("weights_done", line)
            if "gpu_model_runner" in line.raw:
                self.v1_marks += 1
        elif m := P.PROFILE_064.search(b):
            self.v0_marks += 1
            self._mark("profile_done", line)
            for key, group in (("gpu_total_gib", "total"), ("initial_memory_gib", "init"),
                               ("peak_torch_gib", "peak"), ("memory_usage_post_profile_gib", "post"),
                               ("non_torch_gib", "nt"), ("kv_cache_gib", "kv"), ("gpu_memory_utilization", "util")):
                if m.group(group) is not None:
                    self._num(key, float(number(m.group(group))))
            if m.group("util"):
                self._setting("gpu_memory_utilization", float(number(m.group("util"))))
        elif P.PROFILE_TAKES.search(b) or P.PROFILE_BUDGET.search(b) or P.PROFILE_SPLIT.search(b):
            self._v0_profile_block(line)
        elif m := P.AVAILABLE_KV.search(b):
            self.v1_marks += 1
            self._mark("profile_done", line)
            self._num("kv_cache_gib", float(number(m.group("kv"))))
        elif m := P.BREAKDOWN.search(b):
            self._breakdown(b, m)
        elif m := P.KV_TOKENS.search(b):
            self.v1_marks += 1
            self._mark("kv_done", line)
            self._num("kv_cache_tokens", int(number(m.group("tokens"))))
            if m.group("dev") == "CPU":
                self.rec.platform = self.rec.platform or "cpu"
            self._concurrency(b)
        elif m := P.GPU_BLOCKS.search(b):
            self._mark("kv_done", line)
            self._num("gpu_blocks", int(m.group("gpu")))
            if m.group("cpu") is not None:
                self.v0_marks += 1
                self._num("cpu_blocks", int(m.group("cpu")))
        elif P.CONCURRENCY.search(b):
            self._concurrency(b)
        elif m := P.GRAPHS_DONE.search(b):
            self._mark("graphs_done", line)
            if m.group("g") is not None:
                self._num("cuda_graph_gib", float(number(m.group("g"))))
        elif m := P.GRAPH_POOL.search(b):
            self._num("cuda_graph_gib", float(number(m.group("actual"))))
            self._num("cuda_graph_estimated_gib", float(number(m.group("est"))))
        elif m := P.GRAPH_ESTIMATE.search(b):
            self._num("cuda_graph_estimated_gib", float(number(m.group("g"))))
        elif P.GRAPH_PROFILING_RAISE.search(b) or P.GRAPH_PROFILING_UTIL.search(b):
            if m := P.GRAPH_PROFILING_UTIL.search(b):
                self._setting("gpu_memory_utilization", float(number(m.group("cur"))))
                self._num("gpu_memory_utilization_without_graph_profiling", float(number(m.group("eq"))))
            if m := P.GRAPH_PROFILING_RAISE.search(b):
                if m.group("cur"):
                    self._setting("gpu_memory_utilization", float(number(m.group("cur"))))
                self._num("gpu_memory_utilization_same_kv", float(number(m.group("to"))))
        elif m := P.ENCODER_BUDGET.search(b):
            self.v1_marks += 1
            self._mark("profile_start", line)
            self._num("encoder_budget_tokens", int(number(m.group("n"))))
            self._num("encoder_items", int(number(m.group("m"))))
            self._num("encoder_modality", m.group("modality"))
        elif P.ENCODER_SKIP.search(b):
            self._mark("profile_start", line)
            self._setting("skip_mm_profiling", True)
        elif m := P.PROFILE_SEQ_WARNING.search(b):
            self._profile_seq(m)
        elif m := P.CPU_KV_AUTO.search(b):
            self._cpu_kv(line, m)
            self._num("requested_gib", float(number(m.group("req"))))
            self._num("non_kv_gib", float(number(m.group("nonkv"))))
        elif m := P.CPU_KV_EXPLICIT.search(b):
            self._cpu_kv(line, m)
        elif m := P.INIT_ENGINE.search(b):
            self._mark("ready", line)
            self.ready_at = self.ready_at if self.ready_at is not None else line.index
        elif P.APP_STARTUP.search(b):
            self._mark("ready", line)
            self.ready_at = self.ready_at if self.ready_at is not None else line.index
        elif "Processed prompts:" in b or "Adding requests" in b:
            self.request_at = self.request_at if self.request_at is not None else line.index
            if P.GENERATE_DONE.search(b):
                self.ready_at = self.ready_at if self.ready_at is not None else line.index
        elif "Starting profile run" in b:
            self._mark("profile_start", line)
        else:
            found = False
        self._error_numbers(line)
        if found:
            self.hits += 1

    def _v0_profile_block(self, line: Line) -> None:
        """V0 0.6.5-0.10.2's three-line message; a paste may join its lines, so each part is looked for."""
        b = line.body
        self._mark("profile_done", line)
        if m := P.PROFILE_TAKES.search(b):
            self.v0_marks += 1
            self._num("profile_time_s", float(number(m.group("s"))))
        if m := P.PROFILE_BUDGET.search(b):
            self._num("gpu_total_gib", float(number(m.group("total"))))
            self._num("gpu_memory_utilization", float(number(m.group("util"))))
            self._num("budget_gib", float(number(m.group("budget"))))
            self._setting("gpu_memory_utilization", float(number(m.group("util"))))
        if m := P.PROFILE_SPLIT.search(b):
            for key, group in (("weights_gib", "w"), ("non_torch_gib", "nt"), ("activation_peak_gib", "act"),
                               ("kv_cache_gib", "kv")):
                self._num(key, float(number(m.group(group))))

    def _config(self, config: str) -> None:
        for m in P.CONFIG_ITEM.finditer(config):
            name = CONFIG_KEYS.get(m.group("key"))
            if name and name not in self.rec.settings:
                self.rec.settings[name] = _literal(m.group("value"))
        for key, prefix in (("dtype", "torch."), ("load_format", "LoadFormat.")):
            value = self.rec.settings.get(key)
            if isinstance(value, str) and value.startswith(prefix):  # `torch.bfloat16` -> `bfloat16`
                self.rec.settings[key] = value[len(prefix):].lower()
        if isinstance(self.rec.settings.get("max_model_len"), int):
            self._num("max_model_len", self.rec.settings["max_model_len"])

    def _non_default(self, text: str) -> None:
        try:
            args = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return
        if isinstance(args, dict):
            for key, value in args.items():
                if isinstance(key, str):
                    self._setting(key, value)

    def _concurrency(self, body: str) -> None:
        if m := P.CONCURRENCY.search(body):
            mml = int(number(m.group("mml")))
            self._num("max_model_len", mml)
            self._setting("max_model_len", mml)
            self._num("max_concurrency", float(number(m.group("x"))))

    def _breakdown(self, body: str, m: re.Match) -> None:
        self._num("free_gib", float(number(m.group("free"))))
        self._num("gpu_total_gib", float(number(m.group("total"))))
        self._num("gpu_memory_utilization", float(number(m.group("util"))))
        self._num("requested_gib", float(number(m.group("req"))))
        self._setting("gpu_memory_utilization", float(number(m.group("util"))))
        if u := P.BREAKDOWN_OLD_USAGE.search(body):
            self._num("weights_gib", float(number(u.group("w"))))
            self._num("non_torch_gib", float(number(u.group("nt"))))
        elif u := P.BREAKDOWN_NEW_USAGE.search(body):
            self._num("consumed_gib", float(number(u.group("consumed"))))
        if u:
            self._num("activation_peak_gib", float(number(u.group("act"))))
            self._num("cuda_graph_gib", float(number(u.group("cg"))))
        if s := P.KV_SUGGEST.search(body):
            self._num("kv_cache_memory_suggest_bytes", int(s.group("a")))
            self._num("kv_cache_memory_full_bytes", int(s.group("b")))
        if k := P.KV_IN_USE.search(body):
            value = float(number(k.group("kv")))
            self._num("kv_cache_gib", value if k.group("unit") == "GiB" else value / (1 << 30))

    def _profile_seq(self, m: re.Match) -> None:
        if m.group("seq"):
            self._num("profiling_seq_len", int(m.group("seq")))
        if m.group("ctx"):
            self._num("max_model_len", int(m.group("ctx")))
            self._setting("max_model_len", int(m.group("ctx")))
        self._num("mm_tokens_worst_case", int(m.group("total")))
        reserved = m.group("reserved")
        if reserved.startswith("{"):
            try:
                for modality, tokens in ast.literal_eval(reserved).items():
                    self._num(f"mm_tokens_reserved_{modality}", int(tokens))
            except (ValueError, SyntaxError, AttributeError):
                pass  # a truncated dict in a paste: the total above is still exact
        else:
            self._num("mm_tokens_reserved", int(reserved))

    def _cpu_kv(self, line: Line, m: re.Match) -> None:
        self.rec.platform = "cpu"
        self.v1_marks += 1
        self._mark("profile_done", line)
        self._num("kv_cache_gib", float(number(m.group("kv"))))
        self._num("gpu_total_gib", float(number(m.group("total"))))

    def _error_numbers(self, line: Line) -> None:
        """Figures inside error texts; read wherever they appear (a wrapper may repeat them)."""
        b = line.body
        if P.NODE_LESS.search(b):
            self.rec.platform = "cpu"
        if m := (P.FREE_LESS.search(b) or P.NODE_LESS.search(b)):
            self._num("free_gib", float(number(m.group("free"))))
            self._num("gpu_total_gib", float(number(m.group("total"))))
            self._num("gpu_memory_utilization", float(number(m.group("util"))))
            self._num("requested_gib", float(number(m.group("req"))))
            self._setting("gpu_memory_utilization", float(number(m.group("util"))))
        if m := P.NODE_KV_ALLOC.search(b):
            self.rec.platform = "cpu"
            self._num("free_gib", float(number(m.group("free"))))
            self._num("gpu_total_gib", float(number(m.group("total"))))
            self._num("kv_cache_gib", float(number(m.group("kv"))))
            if m.group("req"):
                self._num("requested_gib", float(number(m.group("req"))))
        if m := P.KV_TOO_SMALL_V1.search(b):
            self._num("max_model_len", int(m.group("mml")))
            self._setting("max_model_len", int(m.group("mml")))
            self._num("kv_needed_gib", float(number(m.group("need"))))
            self._num("kv_cache_gib", float(number(m.group("avail"))))
        if m := P.ESTIMATED_MML.search(b):
            self._num("estimated_max_model_len", int(m.group("n")))
        if m := P.KV_TOO_SMALL_V0.search(b):
            self._num("max_model_len", int(m.group("mml")))
            self._setting("max_model_len", int(m.group("mml")))
            self._num("kv_cache_tokens", int(m.group("cap")))
        if P.OOM.search(b):
            if m := P.OOM_TRIED.search(b):
                self._num("oom_tried_gib", size_gib(m.group("size")))
            if m := P.OOM_GPU.search(b):
                self._num("oom_gpu_index", int(m.group("i")))
                self._num("oom_total_gib", size_gib(m.group("total")))
                self._num("oom_free_gib", size_gib(m.group("free")))
            if m := P.OOM_GPU_OLD.search(b):
                self._num("oom_gpu_index", int(m.group("i")))
                self._num("oom_total_gib", size_gib(m.group("total")))
                self._num("oom_free_gib", size_gib(m.group("free")))
                self._num("oom_allocated_by_pytorch_gib", size_gib(m.group("alloc")))
                if m.group("res"):
                    self._num("oom_reserved_by_pytorch_gib", size_gib(m.group("res")))
            if m := P.OOM_IN_USE.search(b):
                self._num("oom_process_in_use_gib", size_gib(m.group("size")))
            if m := P.OOM_ALLOCATED.search(b):
                self._num("oom_allocated_by_pytorch_gib", size_gib(m.group("alloc")))
                self._num("oom_reserved_unallocated_gib", size_gib(m.group("res")))
        if m := P.MM_ITEM_TOO_LARGE.search(b):
            self._num("max_tokens_per_mm_item", int(m.group("n")))
            self._setting("max_num_batched_tokens", int(m.group("m")))

    # outcome ---------------------------------------------------------------------------------------------------
    def _can_fail(self, line: Line) -> bool:
        return line.level not in ("INFO", "DEBUG", "WARNING", "WARN")

    def _decisive(self, line: Line) -> tuple[str, str] | None:
        """(outcome, phase-or-"?") when this line is a root-cause error; "?" = read the phase from context."""
        b = line.body
        if not self._can_fail(line) or b.startswith(("  ", "\t")):
            return None  # info lines and traceback code lines (`    raise VLLMValidationError(`) never decide
        if P.FREE_LESS.search(b) or P.FREE_LESS_EXTERNAL.search(b) or P.NODE_LESS.search(b):
            return "insufficient_free_memory", "startup_check"
        if P.NODE_KV_ALLOC.search(b):
            return "oom_kv_alloc", "kv_cache"
        if P.NO_KV.search(b):
            return "no_kv_cache", "kv_cache"
        if P.KV_TOO_SMALL_ANY.search(b) or P.KV_TOO_SMALL_V0.search(b):
            return "kv_too_small", "kv_cache"
        if P.OOM.search(b):
            return "oom", "request" if P.REQUEST_ERROR.search(b) else "?"
        if P.VALIDATION.search(b):
            return "error", "request"
        if P.REQUEST_ERROR.search(b):
            return "error", "request"
        if P.CRASH.search(b):
            return "crash", "?"
        if P.TIMEOUT.search(b) and not P.NOISE.search(b):
            return "timeout", "?"
        if P.PROFILE_SANITY.search(b) or P.MM_ITEM_TOO_LARGE.search(b):
            return "error", "unknown"
        if P.CAPTURE_ERROR.search(b):
            return "error", "cuda_graph"
        if P.NOISE.search(b):
            return None
        m = P.EXCEPTION.search(b)
        if m and not b.startswith((" ", "\t")) and "Warning" not in m.group("cls"):
            return "error", "?"
        if b.startswith("CUDA error:"):
            return "error", "?"
        return None

    def _frames_before(self, index: int) -> list[str]:
        """Function names of the traceback that ends at line `index` (outermost first)."""
        start = index
        for j in range(index - 1, max(-1, index - 600), -1):
            body = self.lines[j].body
            frameish = (body.startswith((" ", "\t", "^", "~")) or P.FRAME_FILE.search(body)
                        or P.TRACEBACK.search(body) or "above exception" in body or "During handling" in body
                        or P.START_FAILED.search(body) or (P.EXCEPTION.search(body) and self._can_fail(self.lines[j])))
            if not frameish:
                break
            start = j
        return self._frame_names(self.lines[start:index])

    @staticmethod
    def _frame_names(lines: list[Line]) -> list[str]:
        names: list[str] = []
        for line in lines:
            b = line.body
            if m := P.FRAME_FILE.search(b):
                names.append(m.group("func"))
            elif m := P.WORKER_METHOD.search(b):
                names.append(m.group("method"))
            elif b.startswith((" ", "\t")):
                names.extend(c.group("func") for c in P.CALL.finditer(b))
        return names

    @staticmethod
    def _phase_from_frames(names: list[str]) -> str | None:
        """Deepest telling frame -> phase; "profile" when only the profile run is named."""
        strong = [phase for name in names for frames, phase in STRONG if name in frames]
        has = set(names)
        warm = has & WARMUP_FRAMES
        if strong:
            phase = strong[-1]
            if warm and phase in ("sampler", "language_model"):
                return "warmup"
            return phase
        if has & PROFILE_FRAMES:
            return "language_model" if has & LM_PASS_FRAMES and "profile_run" in has else "profile"
        if warm:
            return "warmup"
        return None

    def _phase_from_order(self, index: int) -> str | None:
        """Phase implied by which markers the log printed before line `index`."""
        if self.ready_at is not None and self.ready_at < index:
            return "request"
        if self.request_at is not None and self.request_at < index:
            return "request"
        ts = self._marker_lines()
        if "graphs_done" in ts and ts["graphs_done"] < index:
            return "warmup"
        if "weights_start" in ts and ts["weights_start"] < index and not ("weights_done" in ts and
                                                                           ts["weights_done"] < index):
            return "weights"
        return None

    def _marker_lines(self) -> dict[str, int]:
        if not hasattr(self, "_markers"):
            self._markers: dict[str, int] = {}
            for line in self.lines:
                b = line.body
                for name, pat in (("weights_start", P.START_LOAD), ("weights_done", P.WEIGHTS_OLD),
                                  ("weights_done", P.WEIGHTS_NEW), ("graphs_done", P.GRAPHS_DONE)):
                    if pat.search(b) and name not in self._markers:
                        self._markers[name] = line.index
        return self._markers

    def _classify(self) -> None:
        rec = self.rec
        for line in self.lines:
            decided = self._decisive(line)
            if decided is None:
                continue
            outcome, phase = decided
            if outcome == "error" and phase == "?" and self.ready_at is not None and self.ready_at > line.index:
                continue  # a logged exception the start-up survived: the engine came up after it
            frames = self._frames_before(line.index)
            after_ready = (self.ready_at is not None and self.ready_at < line.index) or (
                self.request_at is not None and self.request_at < line.index)
            if phase == "?":
                if after_ready:  # the engine was up: whatever failed now failed serving a request
                    phase = "request"
                else:
                    phase = self._phase_from_frames(frames) or self._phase_from_order(line.index) or "unknown"
            if outcome == "oom":
                outcome = OOM_OUTCOME.get(phase, "oom_unknown")
            if phase == "profile":
                phase = "unknown"  # the profile run, but which part of it the log does not say
            rec.outcome, rec.phase = outcome, phase
            rec.error_line = line.raw.strip()
            rec.evidence.append(line.raw.strip())
            if frames:
                rec.evidence.append("frames: " + " > ".join(dict.fromkeys(frames)))
            return
        # No root-cause line. A clean start, a start that failed without its cause, or a bare fragment.
        failed = next((ln for ln in self.lines if P.START_FAILED.search(ln.body) or (
            P.TRACEBACK.search(ln.body) and not self._after_ready(ln.index))), None)
        frames = self._frame_names([ln for ln in self.lines if self._can_fail(ln)])
        frame_phase = self._phase_from_frames(frames)
        if self.ready_at is not None:  # the engine came up; tracebacks before it were survived
            rec.outcome = "ok"
            rec.evidence.append(self.lines[self.ready_at].raw.strip())
            return
        if failed is None and frame_phase is None and ("kv_done" in rec.timestamps or "graphs_done" in rec.timestamps
                                                        or self._has(P.KV_TOKENS, P.GPU_BLOCKS, P.GRAPHS_DONE)):
            rec.outcome = "ok"
            last = next(ln for ln in reversed(self.lines)
                        if P.KV_TOKENS.search(ln.body) or P.GPU_BLOCKS.search(ln.body) or P.GRAPHS_DONE.search(ln.body))
            rec.evidence.append(last.raw.strip())
            return
        if frame_phase is not None:
            rec.phase = "unknown" if frame_phase == "profile" else frame_phase
        if frames:
            rec.evidence.append("traceback without its exception line; frames: " + " > ".join(dict.fromkeys(frames)))
        if failed is not None:
            rec.evidence.append("start failed, root cause not in the text: " + failed.raw.strip())

    def _after_ready(self, index: int) -> bool:
        return self.ready_at is not None and self.ready_at < index

    def _has(self, *patterns) -> bool:
        return any(p.search(ln.body) for ln in self.lines for p in patterns)

    def _engine(self) -> None:
        rec = self.rec
        v = version_tuple(rec.vllm_version)
        if rec.engine is None:
            if v is not None and v >= (0, 11, 0):
                rec.engine = "V1"
            elif v is not None and v < (0, 7, 0):
                rec.engine = "V0"
            elif self.v1_marks > self.v0_marks:
                rec.engine = "V1"
            elif self.v0_marks > self.v1_marks:
                rec.engine = "V0"
        if rec.platform is None and (self._has(re.compile(r"CUDA out of memory|# CUDA blocks|cuda:\d"))):
            rec.platform = "cuda"
        if rec.platform is None and isinstance(rec.settings.get("device"), str):
            rec.platform = rec.settings["device"] if rec.settings["device"] in ("cuda", "cpu") else None

    def recognised(self) -> bool:
        """Any vLLM line, error, traceback, or an indented call of a vLLM start-up method."""
        return bool(self.hits) or any(
            self._decisive(ln) or P.FRAME_FILE.search(ln.body) or P.START_FAILED.search(ln.body)
            or P.TRACEBACK.search(ln.body) or set(self._frame_names([ln])) & KNOWN_FRAMES for ln in self.lines)

    def record(self) -> LogRecord:
        rec = self.rec
        for key, values in self.seen.items():
            rec.numbers[key] = values[0]
            if len(values) > 1:
                rec.numbers[f"{key}_all"] = list(values)
        if self.recognised():
            self._classify()
        self._engine()
        return rec
