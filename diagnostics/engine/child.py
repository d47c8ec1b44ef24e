"""One engine start in its own process: `python -m diagnostics.engine.child SPEC.json`.

Builds the real `vllm.LLM(model=..., **settings)`, optionally serves one request (with a PIL image when the
spec asks for one) and then the worst-case request (spec["worst_case"], diagnostics/suite/worst_case.py;
`serve_worst_case`), and writes a JSON result file (spec["result_path"]): timestamps, the request's outcome and
torch's own peak statistics. The launcher runs this in a new process group and sends stdout+stderr to the log.

torch's statistics are those of *this* process. On vLLM V1 the model lives in the EngineCore / Worker
processes unless VLLM_ENABLE_V1_MULTIPROCESSING=0, and this process never initialises CUDA: then the figures
are unknown (None), not 0. Where the engine ran here (V0, or V1 in-process) they are the engine's, as "peak
since vLLM's last torch.cuda.reset_peak_memory_stats" (vLLM resets them before its profile run). They are
collected when the start fails too (num_ooms). `engine` records which engine class ran ("V0" / "V1"), whatever
VLLM_USE_V1 asked for (0.5/0.6 ignore it; 0.12+ removed it).

Exit codes: 0 started (and the requests, if any, succeeded); 1 the engine did not start; 3 the engine started
but a request failed. On errors the traceback goes to stderr, i.e. into the log the log reader reads.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
import traceback

from diagnostics.units import utc_now

EXIT_START_FAILED = 1
EXIT_REQUEST_FAILED = 3
TEXT_PROMPT = "The quick brown fox jumps over the lazy dog."
# settings that are environment variables, not LLM(...) arguments: use_v1 (VLLM_USE_V1) and every VLLM_* setting
# (VLLM_PP_LAYER_PARTITION, read by get_pp_indices, distributed/utils.py:142; VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS,
# read by gpu_worker.py through vllm/envs.py)
NOT_ENGINE_KWARGS = ("use_v1",)


def is_env_setting(key: str) -> bool:
    return key in NOT_ENGINE_KWARGS or key.startswith("VLLM_")


def engine_kwargs(spec: dict) -> dict:
    """LLM(...) keyword arguments from the spec's settings (None means: leave vLLM's default)."""
    kwargs = {k: v for k, v in spec.get("settings", {}).items() if v is not None and not is_env_setting(k)}
    if spec.get("load_format"):
        kwargs["load_format"] = spec["load_format"]
    return kwargs


def apply_env_settings(settings: dict) -> None:
    """Export the settings that are environment variables (vllm/envs.py reads them when vLLM asks): booleans as
    vLLM's "1"/"0"."""
    if settings.get("use_v1") is not None:
        os.environ["VLLM_USE_V1"] = "1" if settings["use_v1"] else "0"
    for key, value in settings.items():
        if key.startswith("VLLM_") and value is not None:
            os.environ[key] = ("1" if value else "0") if isinstance(value, bool) else str(value)


def make_image(size):
    """A deterministic RGB test picture of size (width, height): a gradient, so it is not one flat colour."""
    from PIL import Image

    size = (int(size[0]), int(size[1]))
    ramp = Image.linear_gradient("L")
    return Image.merge("RGB", (ramp.resize(size), ramp.rotate(90).resize(size), Image.new("L", size, 128)))


def torch_stats() -> dict:
    """This process's torch CUDA peaks (bytes), labelled with their scope; {"cuda_available": False} on CPU.
    Without CUDA initialised here (the V1 engine in its own processes) the peaks are None: unknown, not 0."""
    import torch

    if not torch.cuda.is_available():
        return {"cuda_available": False}
    if not torch.cuda.is_initialized():
        return {"cuda_available": True, "cuda_initialized": False, "max_memory_allocated": None,
                "max_memory_reserved": None, "num_ooms": None,
                "scope": "unknown: CUDA never initialised in the child's main process (the engine ran in "
                         "its EngineCore/Worker processes)"}
    stats = torch.cuda.memory_stats()
    return {
        "cuda_available": True,
        "cuda_initialized": True,
        "scope": "the engine in this process, since vLLM's last reset_peak_memory_stats",
        "max_memory_allocated": torch.cuda.max_memory_allocated(),
        "max_memory_reserved": torch.cuda.max_memory_reserved(),
        "allocated_bytes.all.peak": stats.get("allocated_bytes.all.peak"),
        "reserved_bytes.all.peak": stats.get("reserved_bytes.all.peak"),
        "num_ooms": stats.get("num_ooms"),
        "num_alloc_retries": stats.get("num_alloc_retries"),
    }


def safe_torch_stats() -> dict:
    try:
        return torch_stats()
    except Exception as exc:  # the stats are a bonus; never turn a good start into a failure
        return {"error": f"{type(exc).__name__}: {exc}"}


def engine_of(llm) -> str:
    """"V1" or "V0": the engine class that actually runs (vllm.v1.engine.llm_engine.LLMEngine is V1's)."""
    return "V1" if type(llm.llm_engine).__module__.startswith("vllm.v1.") else "V0"


def serve_one(llm, spec: dict) -> dict:
    from vllm import SamplingParams

    prompt = spec.get("prompt") or TEXT_PROMPT
    request = {"prompt": prompt}
    if spec.get("image"):
        request["multi_modal_data"] = {"image": make_image(spec.get("image_size") or (448, 448))}
    params = SamplingParams(max_tokens=int(spec.get("max_tokens", 8)), temperature=0.0, seed=spec.get("seed", 0))
    out = llm.generate([request], params, use_tqdm=False)[0]
    return {
        "ok": True,
        "image": bool(spec.get("image")),
        "prompt_tokens": len(out.prompt_token_ids or []),
        "output_ids": list(out.outputs[0].token_ids),
        "output_text": out.outputs[0].text,
        "error": None,
    }


LENGTH_IN_ERROR = re.compile(r"prompt \(length (\d+)\)|contains at least (\d+) input tokens")
FILLER = " a"  # one token per repetition in the kits' tokenizers; checked against the tokenizer before use
WORST_CASE_TRIES = 3
OVERSHOOT = 32


def plant_budget(budget_bytes: int) -> list[dict]:
    """A planted small memory budget (tests on the CPU backend): cap each engine process below this one (EngineCore,
    workers) at its current data segment plus `budget_bytes` (RLIMIT_DATA: heap and private writable mappings), so
    what a request allocates beyond the budget fails as it would on a full GPU (torch: "DefaultCPUAllocator: can't
    allocate memory"). Returns what was capped: pid, name, data MiB before."""
    import psutil

    capped = []
    for proc in psutil.Process().children(recursive=True):
        try:
            with open(f"/proc/{proc.pid}/status", encoding="utf-8") as f:
                data = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmData:"))
            proc.rlimit(psutil.RLIMIT_DATA, (data + budget_bytes, data + budget_bytes))
            capped.append({"pid": proc.pid, "name": proc.name(), "data_mib": round(data / 2**20, 1)})
        except (OSError, StopIteration, psutil.Error):
            continue
    return capped


def plant_with_control(llm, budget_bytes: int) -> dict:
    """plant_budget, then a small text control request under it (the budget admits an ordinary request):
    {"bytes", "capped", "control_ok"}."""
    from vllm import SamplingParams

    planted = {"bytes": budget_bytes, "capped": plant_budget(budget_bytes)}
    control = llm.generate([TEXT_PROMPT], SamplingParams(max_tokens=4, temperature=0.0), use_tqdm=False)
    planted["control_ok"] = bool(control and control[0].outputs)
    return planted


def _mm_data(case: dict) -> dict:
    data = {}
    for item in case.get("items") or []:
        size = (item["width"], item["height"])
        if item["modality"] == "image":
            images = [make_image(size) for _ in range(item["count"])]
            data["image"] = images[0] if len(images) == 1 else images
        elif item["modality"] == "video":
            import numpy as np

            frame = np.asarray(make_image(size))
            data["video"] = np.stack([frame] * int(item["frames"]))
    return data


def _filler_ids(tokenizer, n: int) -> list[int]:
    ids = tokenizer.encode(FILLER * 8, add_special_tokens=False)
    return (ids * (n // max(len(ids), 1) + 1))[:max(n, 0)]


def worst_case_prompt(tokenizer, case: dict, prompt: str | None, filler: int):
    """The request dict: a token prompt of exactly `filler` tokens without items, else the family's prompt with its
    placeholder repeated per item and `filler` filler words after them."""
    if not case.get("items"):
        return {"prompt_token_ids": _filler_ids(tokenizer, filler)}
    image_ph, video_ph = case["placeholders"]
    counts = {i["modality"]: i["count"] for i in case["items"]}
    marks = image_ph * counts.get("image", 0) + (video_ph or "") * counts.get("video", 0)
    text = (prompt or image_ph).replace(image_ph, marks + FILLER * filler, 1)
    return {"prompt": text, "multi_modal_data": _mm_data(case)}


def serve_worst_case(llm, spec: dict, sent: dict) -> dict:
    """Send the worst-case request (diagnostics/suite/worst_case.py): `batch` prompts of max_model_len - max_tokens
    tokens with the most and largest items, sampled with top_p/top_k/logprobs/penalties, in one generate. For a
    multimodal prompt the filler is first estimated from plan's item tokens; a prompt vLLM refuses as too long
    (its validation error names the length) is shortened by the excess and sent again (at most WORST_CASE_TRIES).
    `sent` ({"worst_case": ...}) collects what was sent (tries, the planted budget), also when the request fails."""
    from vllm import SamplingParams

    case = spec["worst_case"]
    tokenizer = llm.get_tokenizer()
    target = int(case["prompt_tokens"])
    fixed = sum(i["count"] * i["tokens"] for i in case.get("items") or [])
    # a multimodal prompt aims OVERSHOOT tokens long on purpose: vLLM's refusal then names its exact length
    filler = target if not case.get("items") else (
        target - fixed - len(tokenizer.encode(case.get("prompt") or "")) + OVERSHOOT)
    sent["tries"] = []
    budget = spec.get("planted_budget_bytes")
    if budget:
        sent["planted_budget"] = plant_with_control(llm, int(budget))
    params = SamplingParams(max_tokens=int(case["max_tokens"]), **case["sampling"])
    for _ in range(WORST_CASE_TRIES):
        request = worst_case_prompt(tokenizer, case, case.get("prompt"), filler)
        attempt = {"filler": filler}  # recorded before it is sent: a request that kills the engine is in it too
        sent["tries"].append(attempt)
        try:
            outs = llm.generate([request] * int(case["batch"]), params, use_tqdm=False)
        except BaseException as exc:
            found = LENGTH_IN_ERROR.search(str(exc))
            # vLLM 0.32's VLLMValidationError (a ValueError in older releases): the prompt is too long
            if found and (isinstance(exc, ValueError) or type(exc).__name__ == "VLLMValidationError"):
                length = int(found.group(1) or found.group(2))
                attempt.update(prompt_tokens=length, refused=str(exc)[:200])
                filler -= max(length - target, 1)
                continue
            raise
        lengths = [len(o.prompt_token_ids or []) for o in outs]
        attempt["prompt_tokens"] = max(lengths)
        return {"ok": True, "prompt_tokens": max(lengths), "batch": len(outs),
                "output_tokens": [len(o.outputs[0].token_ids) for o in outs], "sent": sent, "error": None}
    raise RuntimeError(f"the worst-case prompt stayed too long after {WORST_CASE_TRIES} tries: {sent['tries']}")


def run(spec: dict) -> int:
    result = {"started_at": utc_now("milliseconds"), "pid": os.getpid(), "engine_ready": False, "request": None}
    t_start = time.time()

    def write() -> None:
        result["finished_at"] = utc_now("milliseconds")
        tmp = spec["result_path"] + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
        os.replace(tmp, spec["result_path"])

    apply_env_settings(spec.get("settings", {}))
    try:
        from vllm import LLM

        result["import_s"] = round(time.time() - t_start, 3)
        llm = LLM(model=spec["model"], **engine_kwargs(spec))
    except BaseException as exc:
        traceback.print_exc()
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["torch"] = safe_torch_stats()
        write()
        return EXIT_START_FAILED
    result["engine_ready"] = True
    result["engine"] = engine_of(llm)
    result["engine_ready_wall"] = time.time()
    result["startup_s"] = round(result["engine_ready_wall"] - t_start, 3)
    code = 0
    if spec.get("request"):
        # a planted budget without a worst case caps the one request (the --search probes on the cpu card);
        # with a worst case it caps that one (serve_worst_case), after this request ran unbudgeted
        planted = {}
        try:
            if spec.get("planted_budget_bytes") and not spec.get("worst_case"):
                planted["planted_budget"] = plant_with_control(llm, int(spec["planted_budget_bytes"]))
            result["request"] = {**serve_one(llm, spec), **planted}
        except BaseException as exc:
            traceback.print_exc()
            result["request"] = {"ok": False, "image": bool(spec.get("image")), "prompt_tokens": None,
                                 "output_ids": [], "error": f"{type(exc).__name__}: {exc}", **planted}
            code = EXIT_REQUEST_FAILED
    if spec.get("worst_case") and code == 0:
        sent = {"worst_case": spec["worst_case"]}
        try:
            result["worst_case"] = serve_worst_case(llm, spec, sent)
        except BaseException as exc:
            traceback.print_exc()
            result["worst_case"] = {"ok": False, "prompt_tokens": None, "sent": sent,
                                    "error": f"{type(exc).__name__}: {exc}"}
            code = EXIT_REQUEST_FAILED
    result["torch"] = safe_torch_stats()
    write()
    sys.stdout.flush()
    return code


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PARENT_DIED = signal.SIGUSR2  # sent by the kernel when the launcher dies; vLLM does not use it


def die_with_parent() -> bool:
    """Linux: when the launcher (pytest) dies, even by SIGKILL, the kernel signals this process
    (prctl(PR_SET_PDEATHSIG), man 2 prctl), and the handler kills this start's whole process group (the engine,
    vLLM's EngineCore and worker processes: the launcher started it with start_new_session=True), so no orphan
    keeps device memory while the next run measures. False where prctl is not available (the launcher's own
    SIGINT/SIGTERM handling still kills the group then)."""
    def kill_group(signum, frame):
        try:
            os.killpg(os.getpgid(0), signal.SIGKILL)
        finally:
            os._exit(128 + signum)

    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(PARENT_DIED), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    signal.signal(PARENT_DIED, kill_group)
    if os.getppid() == 1:  # the launcher died before prctl took effect
        kill_group(int(PARENT_DIED), None)
    return True


def main(argv: list[str]) -> int:
    die_with_parent()
    if len(argv) != 1:
        print("usage: python -m diagnostics.engine.child SPEC.json", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        spec = json.load(f)
    return run(spec)


if __name__ == "__main__":  # vLLM's CPU backend spawns EngineCore/Worker processes that re-import __main__
    sys.exit(main(sys.argv[1:]))
