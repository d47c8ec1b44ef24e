"""One engine start, measured: child.py runs vllm.LLM in its own process; launch.py spawns and measures it
(run_start -> StartResult, which carries the LogRecord of its log); sampler.py reads memory (NVML / RSS);
nvml.py opens the device; timeline.py maps the log's phases onto the samples; machine.py describes the machine.

Nothing here imports torch or vLLM at import time; only the child process does.
"""
