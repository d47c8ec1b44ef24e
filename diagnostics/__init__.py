"""vllm-memcheck: read, predict and measure the memory vLLM takes at start-up.

The core (settings, cards, versions, models, estimator, log reader, explainer) is pure Python: it imports
neither torch nor vllm. The edges (engine launch, NVML sampling, the pytest plugin, reports, the CLI) are thin
and call into the core.
"""

__version__ = "0.1.0"
