"""Wall time of one CPU-backend engine start through the harness (run_start) against the same start without it.

    .venv/bin/python tests/tools/harness_overhead.py [--runs 3] [--model DIR]

Same tiny text model and settings both ways (eager, float32, 64 MiB KV, one 8-token request); the runs alternate
so drift in machine load hits both sides alike. "bare" is a plain `python script.py` that builds vllm.LLM and
generates once; "harness" is diagnostics.engine.launch.run_start with sampling, phase marking and clean-up.
Both hold the engine lock, and the time waiting for it is not counted. Prints every run and the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETTINGS = {"enforce_eager": True, "dtype": "float32", "kv_cache_memory_bytes": 64 << 20, "max_model_len": 512,
            "max_num_seqs": 4}

BARE = """
import json, sys
from vllm import LLM, SamplingParams

if __name__ == "__main__":
    llm = LLM(model=sys.argv[1], **json.loads(sys.argv[2]))
    out = llm.generate(["Hello, my name is"], SamplingParams(max_tokens=8, temperature=0))
    print("output ids", list(out[0].outputs[0].token_ids))
"""


def bare_start(model: Path, work: Path) -> float:
    from diagnostics.engine.launch import BASE_ENV, engine_lock

    script = work / "bare.py"
    script.write_text(BARE)
    with engine_lock():
        t0 = time.monotonic()
        subprocess.run([sys.executable, str(script), str(model), json.dumps(SETTINGS)], check=True,
                       env={**os.environ, **BASE_ENV}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       start_new_session=True)
        return time.monotonic() - t0


def harness_start(model: Path, work: Path, i: int) -> float:
    from diagnostics.engine.launch import StartSpec, run_start

    spec = StartSpec(model=str(model), settings=dict(SETTINGS), card="cpu", load_format="auto", timeout_s=300,
                     request=True, image_size=(64, 64), env={}, log_path=work / f"h{i}.log",
                     timeline_path=work / f"h{i}.csv", image=False)
    t0 = time.monotonic()
    result = run_start(spec)
    if result.returncode != 0:
        raise SystemExit(f"harness start {i} failed (exit {result.returncode}); see {spec.log_path}")
    return time.monotonic() - t0 - result.lock_wait_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--model", type=Path, help="a tiny text model directory (default: build one)")
    args = parser.parse_args()
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    work = Path(tempfile.mkdtemp(prefix="harness-overhead-"))
    model = args.model
    if model is None:
        from diagnostics.kit.tiny_text import build_tiny_text

        model = build_tiny_text(work / "tiny-text")
    bare, harness = [], []
    for i in range(args.runs):
        harness.append(harness_start(model, work, i))
        bare.append(bare_start(model, work))
        print(f"run {i + 1}: harness {harness[-1]:.1f} s, bare {bare[-1]:.1f} s", flush=True)
    print(f"median of {args.runs}: harness {statistics.median(harness):.1f} s, bare {statistics.median(bare):.1f} s "
          f"(load average {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
