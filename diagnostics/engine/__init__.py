"""One engine start, measured: child.py runs vllm.LLM, launch.py spawns and measures it, sampler.py reads memory.

Nothing here imports torch or vLLM at import time; only the child process does.
"""

from diagnostics.engine.launch import DeviceNotClean, StartResult, StartSpec, outcome_of, run_start
from diagnostics.engine.sampler import NoGPU

__all__ = ["DeviceNotClean", "NoGPU", "StartResult", "StartSpec", "outcome_of", "run_start"]
