"""Deciding outcome and phase: the first decisive error line in line order wins; its phase comes from the
traceback frames above it (the deepest telling frame, vllm-memory.md §2.6), else from which markers the log
printed before it. Missing evidence leaves "unknown": never guess."""

from __future__ import annotations

import re

from diagnostics.logs import patterns as P
from diagnostics.logs.lines import Line
from diagnostics.logs.record import LogRecord
from diagnostics.versions import read_version

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

# Root-cause lines in the order they are tried: (patterns, outcome, phase; "?" = read the phase from context).
DECISIVE = (
    ((P.FREE_LESS, P.FREE_LESS_EXTERNAL, P.NODE_LESS), "insufficient_free_memory", "startup_check"),
    ((P.NODE_KV_ALLOC,), "oom_kv_alloc", "kv_cache"),
    ((P.NO_KV,), "no_kv_cache", "kv_cache"),
    ((P.KV_TOO_SMALL_ANY, P.KV_TOO_SMALL_V0), "kv_too_small", "kv_cache"),
)
MARKERS = (("weights_start", P.START_LOAD), ("weights_done", P.WEIGHTS_OLD), ("weights_done", P.WEIGHTS_NEW),
           ("graphs_done", P.GRAPHS_DONE))
CUDA_HINT = re.compile(r"CUDA out of memory|# CUDA blocks|cuda:\d")


def can_fail(line: Line) -> bool:
    """Lines logged at INFO/DEBUG/WARNING never decide a failure; unleveled lines (stderr, tracebacks) may."""
    return line.level not in ("INFO", "DEBUG", "WARNING", "WARN")


def decisive(line: Line) -> tuple[str, str] | None:
    """(outcome, phase-or-"?") when this line is a root-cause error; "?" = read the phase from context."""
    b = line.body
    if not can_fail(line) or b.startswith(("  ", "\t")):
        return None  # info lines and traceback code lines (`    raise VLLMValidationError(`) never decide
    for patterns, outcome, phase in DECISIVE:
        if any(p.search(b) for p in patterns):
            return outcome, phase
    if P.OOM.search(b):
        return "oom", "request" if P.REQUEST_ERROR.search(b) else "?"
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
    if P.NOISE.search(b):
        return None
    m = P.EXCEPTION.search(b)
    if m and not b.startswith((" ", "\t")) and "Warning" not in m.group("cls"):
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
    """Function names of the traceback that ends at line `index` (outermost first)."""
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
            names.append(m.group("func"))
        elif m := P.WORKER_METHOD.search(b):
            names.append(m.group("method"))
        elif b.startswith((" ", "\t")):
            names.extend(c.group("func") for c in P.CALL.finditer(b))
    return names


def phase_from_frames(names: list[str]) -> str | None:
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


def marker_lines(lines: list[Line]) -> dict[str, int]:
    """First line index of each start-up marker (weights_start, weights_done, graphs_done)."""
    markers: dict[str, int] = {}
    for line in lines:
        for name, pat in MARKERS:
            if pat.search(line.body) and name not in markers:
                markers[name] = line.index
    return markers


class Decider:
    """Outcome and phase for a scanned log; `ready_at` / `request_at` are the first ready / request line indexes."""

    def __init__(self, lines: list[Line], rec: LogRecord, ready_at: int | None, request_at: int | None):
        self.lines, self.rec, self.ready_at, self.request_at = lines, rec, ready_at, request_at

    def _after_ready(self, index: int) -> bool:
        return self.ready_at is not None and self.ready_at < index

    def _has(self, *patterns) -> bool:
        return any(p.search(ln.body) for ln in self.lines for p in patterns)

    def phase_from_order(self, index: int) -> str | None:
        """Phase implied by which markers the log printed before line `index`."""
        if self._after_ready(index) or (self.request_at is not None and self.request_at < index):
            return "request"
        ts = marker_lines(self.lines)
        if "graphs_done" in ts and ts["graphs_done"] < index:
            return "warmup"
        if "weights_start" in ts and ts["weights_start"] < index and not ("weights_done" in ts and
                                                                           ts["weights_done"] < index):
            return "weights"
        return None

    def classify(self) -> None:
        """Set rec.outcome/phase/error_line/evidence from the first root-cause line, else from what is there."""
        for line in self.lines:
            decided = decisive(line)
            if decided is None:
                continue
            if decided[0] == "error" and decided[1] == "?" and self.ready_at is not None and self.ready_at > line.index:
                continue  # a logged exception the start-up survived: the engine came up after it
            self._root_cause(line, *decided)
            return
        self._no_root_cause()

    def _root_cause(self, line: Line, outcome: str, phase: str) -> None:
        rec = self.rec
        frames = frames_before(self.lines, line.index)
        after_ready = self._after_ready(line.index) or (self.request_at is not None and self.request_at < line.index)
        if phase == "?":
            if after_ready:  # the engine was up: whatever failed now failed serving a request
                phase = "request"
            else:
                phase = phase_from_frames(frames) or self.phase_from_order(line.index) or "unknown"
        if outcome == "oom":
            outcome = OOM_OUTCOME.get(phase, "oom_unknown")
        if phase == "profile":
            phase = "unknown"  # the profile run, but which part of it the log does not say
        rec.outcome, rec.phase = outcome, phase
        rec.error_line = line.raw.strip()
        rec.evidence.append(line.raw.strip())
        if frames:
            rec.evidence.append("frames: " + " > ".join(dict.fromkeys(frames)))

    def _no_root_cause(self) -> None:
        """A clean start, a start that failed without its cause, or a bare fragment."""
        rec = self.rec
        failed = next((ln for ln in self.lines if P.START_FAILED.search(ln.body) or (
            P.TRACEBACK.search(ln.body) and not self._after_ready(ln.index))), None)
        frames = frame_names([ln for ln in self.lines if can_fail(ln)])
        frame_phase = phase_from_frames(frames)
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


def recognised(lines: list[Line], hits: int) -> bool:
    """Any vLLM line (`hits` from the scan), error, traceback, or an indented call of a vLLM start-up method."""
    return bool(hits) or any(
        decisive(ln) or P.FRAME_FILE.search(ln.body) or P.START_FAILED.search(ln.body)
        or P.TRACEBACK.search(ln.body) or set(frame_names([ln])) & KNOWN_FRAMES for ln in lines)


def decide_engine(rec: LogRecord, lines: list[Line], v0_marks: int, v1_marks: int) -> None:
    """rec.engine from the version (>= 0.11 V1 only, < 0.7 V0 only), else from which engine's marks dominate;
    rec.platform from CUDA hints or the echoed device when no line named it."""
    v = read_version(rec.vllm_version)
    if rec.engine is None:
        if v is not None and v >= (0, 11, 0):
            rec.engine = "V1"
        elif v is not None and v < (0, 7, 0):
            rec.engine = "V0"
        elif v1_marks > v0_marks:
            rec.engine = "V1"
        elif v0_marks > v1_marks:
            rec.engine = "V0"
    if rec.platform is None and any(CUDA_HINT.search(ln.body) for ln in lines):
        rec.platform = "cuda"
    if rec.platform is None and isinstance(rec.settings.get("device"), str):
        rec.platform = rec.settings["device"] if rec.settings["device"] in ("cuda", "cpu") else None
