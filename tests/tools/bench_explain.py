"""Speed and peak memory of `vllm-memcheck explain` on a big server log (issue #10: 1 GB in < 10 s, < 200 MB).

    PYTHONPATH=$PWD python tests/tools/bench_explain.py [--mb 1024] [--keep] [--log FILE] [--tail oom|none]

Builds a log of --mb MiB in a temporary directory (unless --log names one): a real start-up (the fixture
tests/data/logs/gpu_v1_new_breakdown_ok.log), then a day of serving as vLLM's API server prints it (uvicorn access
lines, the engine's throughput lines, request-logger lines with user prompts, the odd warning), and with
--tail oom (the default) a request-time OOM traceback at the very end, so the reader must look at the whole file
to answer `oom_request`. Then runs `python -m diagnostics explain FILE --json` in a fresh process and prints the
wall and CPU time, MB/s and the child's peak RSS (getrusage ru_maxrss; the machine may be shared, so the
CPU figure is printed too). Exit 0 when both targets are met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STARTUP = ROOT / "tests" / "data" / "logs" / "gpu_v1_new_breakdown_ok.log"
TARGET_S, TARGET_MB = 10.0, 200.0

SERVING = [
    '(APIServer pid=100) INFO:     10.0.{a}.{b}:{port} - "POST /v1/chat/completions HTTP/1.1" 200 OK',
    "(APIServer pid=100) INFO {ts} [loggers.py:123] Engine 000: Avg prompt throughput: {a}.3 tokens/s, Avg "
    "generation throughput: {b}.1 tokens/s, Running: 3 reqs, Waiting: 0 reqs, GPU KV cache usage: 2.{b}%, Prefix "
    "cache hit rate: 40.2%",
    "(APIServer pid=100) INFO {ts} [logger.py:39] Received request chatcmpl-{port}{a}: prompt: '<|im_start|>user\\n"
    "Why would my training job print CUDA out of memory, and what is a Traceback? Image {a} of {b}<|im_end|>', "
    "params: SamplingParams(n=1, temperature=0.7, top_p=0.8, max_tokens=512), prompt_token_ids: None",
    "(APIServer pid=100) INFO {ts} [engine.py:310] Added request chatcmpl-{port}{a}.",
    '(APIServer pid=100) INFO:     10.0.{a}.{b}:{port} - "GET /metrics HTTP/1.1" 200 OK',
]
RARE = "(APIServer pid=100) WARNING {ts} [protocol.py:60] The following fields were present in the request but " \
       "ignored: {{'top_k'}}"
OOM_TAIL = """(EngineCore pid=200) ERROR 11-25 09:59:59 [core.py:700] EngineCore encountered a fatal error.
(EngineCore pid=200) ERROR 11-25 09:59:59 [core.py:700] Traceback (most recent call last):
(EngineCore pid=200) ERROR 11-25 09:59:59 [core.py:700]   File "/usr/lib/python3/site-packages/vllm/v1/engine/core.py", line 690, in run_engine_core
(EngineCore pid=200) ERROR 11-25 09:59:59 [core.py:700]     engine_core.run_busy_loop()
(EngineCore pid=200) ERROR 11-25 09:59:59 [core.py:700]   File "/usr/lib/python3/site-packages/vllm/v1/worker/gpu_model_runner.py", line 1500, in execute_model
(EngineCore pid=200) ERROR 11-25 09:59:59 [core.py:700]     model_output = self.model(
(EngineCore pid=200) ERROR 11-25 09:59:59 [core.py:700] torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 23.56 GiB of which 1.10 GiB is free. Including non-PyTorch memory, this process has 22.40 GiB memory in use. Of the allocated memory 21.00 GiB is allocated by PyTorch, and 300.00 MiB is reserved by PyTorch but unallocated.
"""


def build_log(path: Path, mib: int, tail: str) -> int:
    """Write the benchmark log; returns its size in bytes."""
    target = mib << 20
    with path.open("w", encoding="utf-8", newline="\n") as out:
        out.write(STARTUP.read_text())
        block = []
        for i in range(2000):
            ts = f"11-24 {10 + i // 3600 % 14:02d}:{i // 60 % 60:02d}:{i % 60:02d}"
            line = SERVING[i % len(SERVING)] if i % 997 else RARE
            block.append(line.format(ts=ts, a=i % 251, b=i % 97, port=30000 + i % 20000))
        chunk = "\n".join(block) + "\n"
        written = out.tell()
        while written < target:
            out.write(chunk)
            written += len(chunk.encode())
        if tail == "oom":
            out.write(OOM_TAIL)
    return path.stat().st_size


def run(log: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "diagnostics", "explain", str(log), "--json"], env=env,
                          capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime - usage0.ru_utime - usage0.ru_stime
    if proc.returncode != 0:
        raise SystemExit(f"explain failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    result = json.loads(proc.stdout)
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": usage.ru_maxrss / 1024,
            "outcome": result["outcome"], "phase": result["phase"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=1024, help="size of the generated log in MiB (default 1024)")
    parser.add_argument("--log", type=Path, default=None, help="time this log instead of a generated one")
    parser.add_argument("--tail", choices=("oom", "none"), default="oom",
                        help="end the generated log with a request-time OOM (default) or not")
    parser.add_argument("--keep", action="store_true", help="keep the generated log and print its path")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="explain-bench-") as tmp:
        log = args.log or Path(tmp) / "server.log"
        size = log.stat().st_size if args.log else build_log(log, args.mb, args.tail)
        r = run(log)
        if args.keep and not args.log:
            kept = Path(tempfile.gettempdir()) / "explain-bench.log"
            os.replace(log, kept)
            print(f"log kept: {kept}")
    mb = size / 1e6
    ok = r["wall_s"] < TARGET_S * size / 1e9 and r["peak_rss_mb"] < TARGET_MB
    print(f"explain on {mb:,.0f} MB: {r['wall_s']:.2f} s wall = {mb / r['wall_s']:,.0f} MB/s ({r['cpu_s']:.2f} s CPU "
          f"= {mb / max(r['cpu_s'], 1e-9):,.0f} MB/s); peak RSS "
          f"{r['peak_rss_mb']:.0f} MB; outcome {r['outcome']} ({r['phase']}); target < {TARGET_S * size / 1e9:.1f} s "
          f"and < {TARGET_MB:.0f} MB: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
