"""Deciding outcome and phase: the first decisive error line in line order wins; its phase comes from the
traceback frames above it (the deepest telling frame, vllm-memory.md §2.6), else from which markers the log
printed before it. Missing evidence leaves "unknown": never guess."""

from __future__ import annotations

import re

from diagnostics.logs import patterns as P
from diagnostics.logs.lines import Line
from diagnostics.logs.record import LogRecord
from diagnostics.outcomes import TIMELINE_PHASES
from diagnostics.versions import read_version

# Traceback frame names -> the phase they prove (vllm-memory.md §2.6). The deepest telling frame wins.
WEIGHT_FRAMES = {"load_model", "load_weights", "_load_weights", "load_model_weights", "initialize_model",
                 "create_weights", "process_weights_after_loading", "weight_loader", "load_weights_and_postprocess"}
# Weight creation and quantized-kernel repacking: `*_repack` ops, vLLM's `*Parameter` classes (ModelWeightParameter).
WEIGHT_FRAME_NAME = re.compile(r"repack|Parameter$")
VISION_FRAMES = {"get_multimodal_embeddings", "embed_multimodal", "get_vision_hidden_states", "vpm", "resampler",
                 "_execute_mm_encoder", "get_image_features", "vision_model", "visual", "vision_tower",
                 "get_vision_embedding", "_process_image_input", "_process_video_input", "encode_images"}
LANGUAGE_FRAMES = {"llm", "language_model"}
SAMPLER_FRAMES = {"_dummy_sampler_run", "sampler", "sample", "compute_logits"}
# Frames / phases -> the timeline phase (outcomes.TIMELINE_PHASES) a traceback proves the start-up reached.
PHASE_REACHED = {"weights": "weights", "vision_encoder": "profile", "language_model": "profile", "sampler": "profile",
                 "profile": "profile", "kv_cache": "kv_cache", "cuda_graph": "warmup", "warmup": "warmup",
                 "request": "ready"}
KV_FRAMES = {"initialize_cache", "_init_cache_engine", "initialize_from_config", "initialize_kv_cache",
             "_allocate_kv_cache", "_allocate_kv_cache_tensors", "initialize_kv_cache_tensors", "CacheEngine"}
# Graph capture: vLLM's capture steps, torch.cuda.graph's context manager (`with torch.cuda.graph(...)`,
# `capture_begin`/`capture_end`), V0's CUDAGraphRunner, and frames in a cuda_graph.py / torch/cuda/graphs.py file
# (GRAPH_FILE, read as the name "<cuda_graph file>").
GRAPH_FRAMES = {"capture_model", "profile_cudagraph_memory", "_capture_cudagraphs", "_warm_up_model", "capture",
                "capture_begin", "capture_end", "graph", "CUDAGraphRunner"}
# A frame in vLLM's cuda_graph.py alone is weak: its wrapper also runs (without capturing) inside the profile run's
# forward pass, so it decides only when no other frame tells the phase.
WEAK_GRAPH_FRAME = "<cuda_graph file>"
GRAPH_FILE = re.compile(r"cuda_?graphs?\.py|cudagraph\w*\.py")
# The serving loop (V0 async_llm_engine, V1 AsyncLLM's output handler): a failure under it failed a request, however
# deep the frames below it go.
# (Only these functions: a start-up traceback also runs through async_llm_engine.py, in from_engine_args/_init_engine.)
SERVING_FRAMES = {"run_engine_loop", "engine_step", "step_async", "output_handler", "_run_output_handler",
                  "_log_task_completion"}
# V0 multiprocessing workers name the method that failed (`Exception in worker VllmWorkerProcess while processing
# method load_model`, executor/multiproc_worker_utils.py:231 in 0.6): the method -> the phase it runs.
WORKER_METHOD_PHASE = {"load_model": "weights", "init_device": "startup_check",
                       "determine_num_available_blocks": "profile", "determine_available_memory": "profile",
                       "initialize_cache": "kv_cache", "initialize_from_config": "kv_cache",
                       "capture_model": "cuda_graph", "compile_or_warm_up_model": "warmup",
                       "execute_model": "request", "start_worker_execution_loop": "request"}
WARMUP_FRAMES = {"compile_or_warm_up_model", "_warmup_and_capture"}
REQUEST_FRAMES = {"generate", "add_request", "_run_engine", "chat", "create_chat_completion", "create_completion"}
PROFILE_FRAMES = {"profile_run", "determine_num_available_blocks", "determine_available_memory", "warming_up_model"}
LM_PASS_FRAMES = {"_dummy_run", "execute_model"}
KNOWN_FRAMES = set().union(WEIGHT_FRAMES, VISION_FRAMES, SAMPLER_FRAMES, KV_FRAMES, GRAPH_FRAMES, WARMUP_FRAMES,
                           PROFILE_FRAMES, LM_PASS_FRAMES, {"_initialize_kv_caches", "_init_engine"})
PROFILE_ENTRY_FRAMES = {"_initialize_kv_caches"}  # begins with the profile run: reached, not where it failed

STRONG = [(WEIGHT_FRAMES, "weights"), (VISION_FRAMES, "vision_encoder"), (LANGUAGE_FRAMES, "language_model"),
          (SAMPLER_FRAMES, "sampler"), (KV_FRAMES, "kv_cache"), (GRAPH_FRAMES, "cuda_graph"),
          (REQUEST_FRAMES, "request")]

OOM_OUTCOME = {"weights": "oom_weights", "vision_encoder": "oom_profile", "language_model": "oom_profile",
               "sampler": "oom_profile", "profile": "oom_profile", "kv_cache": "oom_kv_alloc",
               "cuda_graph": "oom_cuda_graph", "warmup": "oom_warmup", "request": "oom_request"}

# Root-cause lines in the order they are tried: (patterns, outcome, phase; "?" = read the phase from context).
DECISIVE = (
    ((P.FREE_LESS, P.FREE_LESS_EXTERNAL, P.NODE_LESS, P.EXTERNAL_WEIGHTS_EXCEED), "insufficient_free_memory",
     "startup_check"),
    ((P.NODE_KV_ALLOC,), "oom_kv_alloc", "kv_cache"),
    ((P.NO_KV,), "no_kv_cache", "kv_cache"),
    ((P.KV_TOO_SMALL_ANY, P.KV_TOO_SMALL_V0), "kv_too_small", "kv_cache"),
)
MARKERS = (("weights_start", P.START_LOAD), ("weights_done", P.WEIGHTS_OLD), ("weights_done", P.WEIGHTS_NEW),
           ("graphs_done", P.GRAPHS_DONE))
CUDA_HINT = re.compile(r"CUDA out of memory|# CUDA blocks|cuda:\d")

# PyTorch's OOM text ends with a link to its docs ("See documentation for Memory Management  (https://pytorch.org/
# docs/stable/notes/cuda.html#environment-variables)"): no fact, and a narrow paste wraps it onto a line of its own,
# so the root-cause line is the same whether or not the link (or the sentence before it) stayed on it.
DOCS_LINK = re.compile(r"\s*(?:See documentation for Memory Management\s*)?(?:\(https://pytorch\.org/docs/[^)\s]*\))?"
                       r"\s*$")


def can_fail(line: Line) -> bool:
    """Lines logged at INFO/DEBUG/WARNING never decide a failure; unleveled lines (stderr, tracebacks) may."""
    return line.level not in ("INFO", "DEBUG", "WARNING", "WARN")


def decisive(line: Line, any_level: bool = False) -> tuple[str, str] | None:
    """(outcome, phase-or-"?") when this line is a root-cause error; "?" = read the phase from context.
    `any_level`: judge the text alone, as if it were not logged at INFO/WARNING."""
    b = line.body
    if not (any_level or can_fail(line)) or b.startswith(("  ", "\t")) or P.NEVER_FAILS.search(b):
        return None  # info lines, traceback code lines (`    raise VLLMValidationError(`), request logs never decide
    for patterns, outcome, phase in DECISIVE:
        if any(p.search(b) for p in patterns):
            return outcome, phase
    if P.OOM.search(b):
        if P.REQUEST_ERROR.search(b):
            return "oom", "request"
        if P.SAMPLER_WARMUP.search(b):
            return "oom", "?sampler"  # the sampler/pooler's own message: warm-up, or the profile run's sampler pass
        if P.WEIGHT_CREATE_FAILED.search(b):
            return "oom", "weights"
        if (m := P.WORKER_METHOD.search(b)) and m.group("method") in WORKER_METHOD_PHASE:
            return "oom", WORKER_METHOD_PHASE[m.group("method")]
        return "oom", "?"
    if P.VALIDATION.search(b) or P.REQUEST_ERROR.search(b):
        return "error", "request"
    if P.CRASH.search(b):
        return "crash", "?"
    if P.TIMEOUT.search(b) and not P.NOISE.search(b):
        return "timeout", "?"
    if P.PROFILE_SANITY.search(b) or P.MM_ITEM_TOO_LARGE.search(b):
        return "error", "unknown"
    if P.CAPTURE_ERROR.search(b):
        return "error", "cuda_graph"
    if P.LINKER.search(b):
        return "error", "?"
    if P.NOISE.search(b):
        return None
    m = P.EXCEPTION.search(b)
    if m and not b.startswith((" ", "\t")) and "Warning" not in (m.group("cls") or m.group("bare")):
        return "error", "?"
    if b.startswith("CUDA error:"):
        return "error", "?"
    return None


def _frameish(line: Line) -> bool:
    body = line.body
    return bool(body.startswith((" ", "\t", "^", "~")) or P.FRAME_FILE.search(body) or P.TRACEBACK.search(body)
                or "above exception" in body or "During handling" in body or P.START_FAILED.search(body)
                or (P.EXCEPTION.search(body) and can_fail(line)))


def frames_before(lines: list[Line], index: int) -> list[str]:
    """Function names of the traceback that ends at list position `index` (outermost first)."""
    start = index
    for j in range(index - 1, max(-1, index - 600), -1):
        if not _frameish(lines[j]):
            break
        start = j
    return frame_names(lines[start:index])


def frame_names(lines: list[Line]) -> list[str]:
    """`File "...", line N, in func` names, worker method names, and calls on indented code lines, in order."""
    names: list[str] = []
    for line in lines:
        b = line.body
        if m := P.FRAME_FILE.search(b):
            if GRAPH_FILE.search(b):
                names.append("<cuda_graph file>")
            names.append(m.group("func"))
        elif m := P.WORKER_METHOD.search(b):
            names.append(m.group("method"))
        elif b.startswith((" ", "\t")):
            names.extend(c.group("func") for c in P.CALL.finditer(b))
            names.extend(w for w in re.findall(r"\b([A-Z]\w*Parameter)\b", b))
    return names


def phase_from_frames(names: list[str]) -> str | None:
    """Deepest telling frame -> phase; "profile" when only the profile run is named."""
    strong = [phase for name in names for frames, phase in STRONG
              if name in frames or (phase == "weights" and WEIGHT_FRAME_NAME.search(name))]
    has = set(names)
    warm = has & WARMUP_FRAMES
    if strong:
        phase = strong[-1]
        if warm and phase in ("sampler", "language_model"):
            return "warmup"
        if phase == "sampler" and "_dummy_sampler_run" in has and not has & PROFILE_FRAMES:
            return "warmup"  # the sampler warm-up (compile_or_warm_up_model) when no profile frame is shown
        return phase
    if has & PROFILE_FRAMES:
        return "language_model" if has & LM_PASS_FRAMES and "profile_run" in has else "profile"
    if warm:
        return "warmup"
    if WEAK_GRAPH_FRAME in has:
        return "cuda_graph"
    return None


def marker_lines(lines: list[Line]) -> dict[str, int]:
    """First line index of each start-up marker (weights_start, weights_done, graphs_done)."""
    markers: dict[str, int] = {}
    for line in lines:
        for name, pat in MARKERS:
            if name not in markers and pat.search(line.body):
                markers[name] = line.index
    return markers


def joined(lines: list[Line], pos: int) -> Line:
    """The line at `pos`, with the lines after it that continue it (a message the paste wrapped) joined on."""
    line = lines[pos]
    rest = []
    for nxt in lines[pos + 1:pos + 4]:
        if not nxt.cont:
            break
        rest.append(nxt.body)
    if not rest:
        return line
    tail = " ".join(rest)
    return Line(line.index, f"{line.raw} {tail}", f"{line.body} {tail}", line.level, line.ts, line.process)


class Decider:
    """Outcome and phase for a scanned log. `at`: first line indexes of "ready", "request", "sampler_warmup";
    `fails`: line index -> (outcome, phase) where the line's figures alone decide a failure."""

    def __init__(self, lines: list[Line], rec: LogRecord, at: dict[str, int], fails: dict[int, tuple[str, str]]):
        self.lines, self.rec, self.at, self.fails = lines, rec, at, fails
        self.ready_at = at.get("ready")
        self.reached = -1  # TIMELINE_PHASES index the frames prove

    def _after(self, key: str, index: int) -> bool:
        return key in self.at and self.at[key] < index

    def _has(self, *patterns) -> bool:
        return any(p.search(ln.body) for ln in self.lines for p in patterns)

    def phase_from_order(self, index: int) -> str | None:
        """Phase implied by which markers the log printed before line `index`."""
        if self._after("ready", index) or self._after("request", index):
            return "request"
        if self._after("sampler_warmup", index):
            return "warmup"
        ts = marker_lines(self.lines)
        if "graphs_done" in ts and ts["graphs_done"] < index:
            return "warmup"
        if "weights_start" in ts and ts["weights_start"] < index and not ("weights_done" in ts and
                                                                           ts["weights_done"] < index):
            return "weights"
        if self._after("graph_profiling", index) and not self._kv_sized_before(index) and not any(
                P.GRAPH_ESTIMATE.search(ln.body) for ln in self.lines if self.at["graph_profiling"] < ln.index < index):
            return "cuda_graph"  # 0.18+ profile_cudagraph_memory captures graphs to estimate their pool
        if self._after("profile_seq_warning", index) and not self._kv_sized_before(index):
            return "profile"  # multimodal/profiling.py warns as it builds the profile run's dummy input
        return None

    def _kv_sized_before(self, index: int) -> bool:
        return any(P.AVAILABLE_KV.search(ln.body) or P.KV_TOKENS.search(ln.body) or P.GPU_BLOCKS.search(ln.body)
                   for ln in self.lines if ln.index < index)

    def classify(self) -> None:
        """Set rec.outcome/phase/error_line/evidence from the first root-cause line, else from what is there."""
        for pos, line in enumerate(self.lines):
            if line.cont and self._continues_an_error(pos):
                continue  # judged with the message it continues (which may have been logged as a warning)
            whole = joined(self.lines, pos)
            decided = decisive(whole) or self.fails.get(line.index)
            if decided is None:
                continue
            if decided[0] == "error" and decided[1] == "?" and self.ready_at is not None and self.ready_at > line.index:
                continue  # a logged exception the start-up survived: the engine came up after it
            if decided == ("error", "?") and self._oom_in_message(pos):
                decided = ("oom", "?")  # e.g. an NCCL error whose "Last error:" is CUDA's out of memory
            self._root_cause(pos, whole, *decided)
            return
        self._no_root_cause()

    def _oom_in_message(self, pos: int) -> bool:
        """Whether the few unleveled lines that follow an error line (its message's tail) say out of memory."""
        for nxt in self.lines[pos + 1:pos + 6]:
            if nxt.level is not None or P.TRACEBACK.search(nxt.body):
                return False
            if P.OOM.search(nxt.body):
                return True
        return False

    def _continues_an_error(self, pos: int) -> bool:
        head = pos
        while head > 0 and self.lines[head].cont:
            head -= 1
        return head < pos and decisive(self.lines[head], any_level=True) is not None

    def _why(self, how: str, index: int | None = None) -> None:
        self.rec.provenance["phase"] = {"how": how, "line": index}

    def _phase(self, pos: int, line: Line, frames: list[str]) -> str:
        """The phase of a failure whose line does not name it: request after the engine came up, else the frames,
        else the order of the start-up markers before it."""
        for key, how in (("ready", "after the ready marker"), ("request", "after the first request"),
                         ("serving_failed", "after the serving loop failed")):
            if self._after(key, line.index):
                self._why(how, self.at[key])
                return "request"  # the engine was up: whatever failed now failed serving a request
        if set(frames) & SERVING_FRAMES:
            self._why("frames: " + ", ".join(sorted(set(frames) & SERVING_FRAMES)))
            return "request"
        phase = phase_from_frames(frames)
        if phase is not None:
            telling = [f for f in frames if phase_from_frames([f]) is not None]
            self._why("frames: " + " > ".join(dict.fromkeys(telling or frames)))
        if phase == "sampler" and (self._after("sampler_warmup", line.index) or self._kv_sized_before(line.index)):
            phase = "warmup"  # the profile run ended before it: this is the sampler warm-up
            self._why("sampler frames after the KV cache was sized")
        if phase is None and (phase := self.phase_from_order(line.index)) is not None:
            self._why("the start-up lines printed before it")
        return phase or "unknown"

    def _root_cause(self, pos: int, line: Line, outcome: str, phase: str) -> None:
        rec = self.rec
        frames = frames_before(self.lines, pos)
        rec.provenance["outcome"] = {"how": "the root-cause line", "line": line.index}
        if phase == "?sampler":
            # _dummy_sampler_run raises this text in compile_or_warm_up_model and at the end of profile_run
            # (v1/worker/gpu_model_runner.py, 0.8-0.33): the profile run only when its frames show it.
            in_profile = bool(set(frames) & PROFILE_FRAMES) and not self._kv_sized_before(line.index)
            phase = "sampler" if in_profile else "warmup"
            self._why("named by the root-cause line" + (" (inside the profile run's frames)" if in_profile else ""),
                      line.index)
        elif phase == "?":
            phase = self._phase(pos, line, frames)
        else:
            self._why("named by the root-cause line", line.index)
        if outcome == "oom":
            outcome = OOM_OUTCOME.get(phase, "oom_unknown")
        self._reach(PHASE_REACHED.get(phase))
        self._reach_frames(frames)
        if phase == "profile":
            phase = "unknown"  # the profile run, but which part of it the log does not say
        rec.outcome, rec.phase = outcome, phase
        rec.error_line = DOCS_LINK.sub("", line.raw).strip()
        rec.evidence.append(line.raw.strip())
        if frames:
            rec.evidence.append("frames: " + " > ".join(dict.fromkeys(frames)))

    def _reach(self, phase: str | None) -> None:
        if phase is not None:
            self.reached = max(self.reached, TIMELINE_PHASES.index(phase))

    def _reach_frames(self, frames: list[str]) -> None:
        self._reach(PHASE_REACHED.get(phase_from_frames(frames) or ""))
        if set(frames) & PROFILE_ENTRY_FRAMES:
            self._reach("profile")

    def _no_root_cause(self) -> None:
        """A clean start (a ready marker), a start that failed without its cause, or a bare fragment: unknown."""
        rec = self.rec
        failed = next((ln for ln in self.lines if P.START_FAILED.search(ln.body) or (
            P.TRACEBACK.search(ln.body) and not self._after("ready", ln.index))), None)
        frames = frame_names([ln for ln in self.lines if can_fail(ln)])
        frame_phase = phase_from_frames(frames)
        self._reach_frames(frames)
        ready = self.ready_at
        if ready is None and rec.engine == "V0" and failed is None and frame_phase is None:
            ready = marker_lines(self.lines).get("graphs_done")  # V0's last start-up step
        if ready is not None:  # the engine came up; tracebacks before it were survived
            rec.outcome = "ok"
            rec.provenance["outcome"] = {"how": "the ready marker, no root-cause line", "line": ready}
            rec.evidence.append(next(ln.raw.strip() for ln in self.lines if ln.index == ready))
            self._reach("ready")
            return
        if frame_phase is not None:
            rec.phase = "unknown" if frame_phase == "profile" else frame_phase
        if frames:
            rec.evidence.append("traceback without its exception line; frames: " + " > ".join(dict.fromkeys(frames)))
        if failed is not None:
            rec.evidence.append("start failed, root cause not in the text: " + failed.raw.strip())


def recognised(lines: list[Line], hits: int) -> bool:
    """Any vLLM line (`hits` from the scan), error, traceback, or an indented call of a vLLM start-up method."""
    return bool(hits) or any(
        decisive(ln) or P.FRAME_FILE.search(ln.body) or P.START_FAILED.search(ln.body)
        or P.TRACEBACK.search(ln.body) or set(frame_names([ln])) & KNOWN_FRAMES for ln in lines)


def decide_engine(rec: LogRecord, lines: list[Line], v0_marks: int, v1_marks: int) -> None:
    """rec.engine from the version (>= 0.11 V1 only, < 0.7 V0 only), else from which engine's marks dominate;
    rec.platform from CUDA hints or the echoed device when no line named it."""
    v = read_version(rec.vllm_version)
    why = None
    if rec.engine is not None:
        banner = next((ln.index for ln in lines if P.BANNER_V1.search(ln.body)), None)
        why = {"how": "the V1 engine banner", "line": banner}
    elif v is not None and v >= (0, 11, 0):
        rec.engine, why = "V1", {"how": f"vLLM {rec.vllm_version}: V1 only from 0.11", "line": None}
    elif v is not None and v < (0, 7, 0):
        rec.engine, why = "V0", {"how": f"vLLM {rec.vllm_version}: V0 only before 0.7", "line": None}
    elif v1_marks != v0_marks:
        rec.engine = "V1" if v1_marks > v0_marks else "V0"
        why = {"how": f"{v1_marks} V1-only lines/tags against {v0_marks} V0-only ones", "line": None}
    if why is not None:
        rec.provenance["engine"] = why
    if rec.platform is None and any(CUDA_HINT.search(ln.body) and not P.NEVER_FAILS.search(ln.body) for ln in lines):
        rec.platform = "cuda"
    if rec.platform is None and isinstance(rec.settings.get("device"), str):
        rec.platform = rec.settings["device"] if rec.settings["device"] in ("cuda", "cpu") else None
