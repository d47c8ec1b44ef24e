"""Regexes for every vLLM start-up log line the reader understands (vllm-memory.md §2, cpu-vllm README §3-§4).

Every pattern matches a message body anywhere in a line (unanchored): prefixes such as `(EngineCore pid=N)`,
`[rank0]:`, VLLM_LOGGING_PREFIX or a tqdm bar sharing the line must not matter.
"""

from __future__ import annotations

import re

# A number as vLLM prints it: fixed decimals, format_gib's variable decimals, thousands separators, a sign.
NUM = r"-?\d[\d,]*(?:\.\d+)?"
# A PyTorch format_size value: "20.00 MiB", "1.25 GiB", "0 bytes", "512.00 KiB".
SIZE = rf"{NUM}\s*(?:bytes|B|KiB|MiB|GiB|TiB)"

# -- line structure ----------------------------------------------------------------------------------------------
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
PROCESS_TAG = re.compile(r"\((?P<name>[A-Za-z_][\w.\-]*(?: rank=\d+)?) pid=(?P<pid>\d+)\)")
RANK_TAG = re.compile(r"\[rank(?P<rank>\d+)\]:")
# `INFO 08-21 07:23:34 llm_engine.py:174] msg` (0.5-0.7), `INFO 04-15 00:05:37 [model_runner.py:1146] msg`;
# `INFO ... [file:N]` is how the shared docs quote a line with its time elided.
HEADER = re.compile(
    r"(?P<level>DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL)\s+(?:(?P<ts>\d\d-\d\d \d\d:\d\d:\d\d)(?:[.,]\d+)?|\.\.\.)\s+"
    r"(?:\[(?P<file1>[^\]\s]+)\]|(?P<file2>[\w./\-]+:\d+)\])\s?"
)

# -- version, engine, platform, settings --------------------------------------------------------------------------
BANNER_V0 = re.compile(r"Initializing an LLM engine \(v?(?P<version>[\w.+\-]+)\) with config: (?P<config>.*)")
BANNER_V1 = re.compile(r"Initializing a V1 LLM engine \(v?(?P<version>[\w.+\-]+)\) with config: (?P<config>.*)")
API_VERSION = re.compile(r"vLLM (?:API )?server version (?P<version>v?\d+\.\d+[\w.+\-]*)")
PLATFORM = re.compile(r"Automatically detected platform (?P<platform>\w+)\.")
NON_DEFAULT_ARGS = re.compile(r"non-default args: (?P<args>\{.*\})")
CONFIG_ITEM = re.compile(r"(?:^|, )(?P<key>\w+)=(?P<value>[^,]*)")
MAX_NUM_SEQS_WARNING = re.compile(
    r"Computed max_num_seqs \(min\((?P<seqs>\d+), (?P<mbt>\d+) // (?P<mm>\d+)\)\) to be less than 1"
)

# -- memory figures --------------------------------------------------------------------------------------------
START_LOAD = re.compile(r"Starting to load model")
WEIGHTS_OLD = re.compile(rf"Loading model weights took (?P<w>{NUM}) GB")
WEIGHTS_NEW = re.compile(rf"Model loading took (?P<w>{NUM}) Gi?B(?: memory)? and (?P<s>{NUM}) s")
PROFILE_064 = re.compile(
    rf"Memory profiling results: total_gpu_memory=(?P<total>{NUM})GiB\s+initial_memory_usage=(?P<init>{NUM})GiB"
    rf"\s+peak_torch_memory=(?P<peak>{NUM})GiB(?:\s+memory_usage_post_profile=(?P<post>{NUM})Gi[bB]"
    rf"\s+non_torch_memory=(?P<nt>{NUM})GiB\s+kv_cache_size=(?P<kv>{NUM})GiB"
    rf"\s+gpu_memory_utilization=(?P<util>{NUM}))?"
)
PROFILE_TAKES = re.compile(rf"Memory profiling takes (?P<s>{NUM}) seconds")
PROFILE_BUDGET = re.compile(
    rf"total_gpu_memory \((?P<total>{NUM}) ?GiB\) x gpu_memory_utilization \((?P<util>{NUM})\) = (?P<budget>{NUM}) ?GiB"
)
PROFILE_SPLIT = re.compile(
    rf"model weights take (?P<w>{NUM}) ?GiB; non_torch_memory takes (?P<nt>{NUM}) ?GiB; "
    rf"PyTorch activation peak memory takes (?P<act>{NUM}) ?GiB; "
    rf"the rest of the memory reserved for KV Cache is (?P<kv>{NUM}) ?GiB"
)
AVAILABLE_KV = re.compile(rf"Available KV cache memory: (?P<kv>{NUM}) GiB")
# The breakdown line (0.10.2+), both wordings; later parts are optional so a truncated paste still yields numbers.
BREAKDOWN = re.compile(
    rf"Free memory on device(?: \S+)? \((?P<free>{NUM})/(?P<total>{NUM}) GiB\) on startup\. "
    rf"Desired GPU memory utilization is \((?P<util>{NUM}), (?P<req>{NUM}) GiB\)\."
)
BREAKDOWN_OLD_USAGE = re.compile(
    rf"Actual usage is (?P<w>{NUM}) GiB for weight, (?P<act>{NUM}) GiB for peak activation, "
    rf"(?P<nt>{NUM}) GiB for non-torch memory, and (?P<cg>{NUM}) GiB for CUDAGraph memory"
)
BREAKDOWN_NEW_USAGE = re.compile(
    rf"Actual usage is (?P<consumed>{NUM}) GiB for consumed memory \(weights \+ non-torch\), "
    rf"(?P<act>{NUM}) GiB for peak activation, and (?P<cg>{NUM}) GiB for CUDAGraph memory"
)
KV_SUGGEST = re.compile(
    rf"`--kv-cache-memory=(?P<a>\d+)`(?: \((?P<a_gib>{NUM}) GiB\))? to fit into requested memory, "
    rf"or `--kv-cache-memory=(?P<b>\d+)`(?: \((?P<b_gib>{NUM}) GiB\))? to fully utilize gpu memory"
)
KV_IN_USE = re.compile(rf"Current kv cache memory in use is (?P<kv>{NUM}) (?P<unit>GiB|bytes)")
GPU_BLOCKS = re.compile(rf"# (?:GPU|CUDA|cuda|\w+) blocks: (?P<gpu>\d+)(?:, # CPU blocks: (?P<cpu>\d+))?")
KV_TOKENS = re.compile(rf"\b(?P<dev>GPU \+ host|GPU|CPU|\w+) KV cache size: (?P<tokens>{NUM}) tokens")
CONCURRENCY = re.compile(rf"Maximum concurrency for (?P<mml>{NUM}) tokens per request: (?P<x>{NUM})x")
GRAPHS_DONE = re.compile(rf"Graph capturing finished in (?P<s>{NUM}) secs?(?:, took (?P<g>{NUM}) GiB)?")
GRAPH_POOL = re.compile(rf"CUDA graph pool memory: (?P<actual>{NUM}) GiB \(actual\), (?P<est>{NUM}) GiB \(estimated\)")
GRAPH_ESTIMATE = re.compile(rf"Estimated CUDA graph memory: (?P<g>{NUM}) GiB total")
# 0.18+: "The current --gpu-memory-utilization=0.9000 is equivalent to --gpu-memory-utilization=0.8800 without CUDA
# graph memory profiling. ... increase --gpu-memory-utilization to 0.9200" / "... from 0.9000 to 0.9200".
GRAPH_PROFILING_UTIL = re.compile(
    rf"current --gpu-memory-utilization=(?P<cur>{NUM}) is equivalent to --gpu-memory-utilization=(?P<eq>{NUM})"
)
GRAPH_PROFILING_RAISE = re.compile(
    rf"CUDA graph memory profiling.*increas(?:e|ing) (?:the )?--gpu-memory-utilization (?:from (?P<cur>{NUM}) )?to "
    rf"(?P<to>{NUM})"
)
ENCODER_BUDGET = re.compile(
    rf"Encoder cache will be initialized with a budget of (?P<n>{NUM}) tokens, "
    rf"and profiled with (?P<m>{NUM}) (?P<modality>\w+) items"
)
ENCODER_SKIP = re.compile(r"Skipping memory profiling for multimodal encoder")
PROFILE_SEQ_WARNING = re.compile(
    rf"(?:sequence length used for profiling \(max_num_batched_tokens / max_num_seqs = (?P<seq>\d+)\)"
    rf"|context length \((?P<ctx>\d+)\) of the model) is too short to hold the multi-modal embeddings in the "
    rf"worst case \((?P<total>\d+) tokens in total, out of which (?P<reserved>\{{[^}}]*\}}|\d+) are reserved"
)
CPU_KV_AUTO = re.compile(
    rf"Auto set \((?P<kv>{NUM})/(?P<total>{NUM})\) GiB for KV cache on node \d+, with (?P<req>{NUM}) GiB "
    rf"requested memory for the worker\. (?P<nonkv>{NUM}) GiB memory was consumed by non-kv usages"
)
CPU_KV_EXPLICIT = re.compile(rf"Explicitly set \((?P<kv>{NUM})/(?P<total>{NUM})\) GiB for KV cache on node \d+")
CONFIG_KV_BYTES = re.compile(r"kv_cache_memory_bytes=(?P<b>\d+)")
INIT_ENGINE = re.compile(rf"init engine \(profile, create kv cache, warmup model\) took (?P<s>{NUM}) s")
APP_STARTUP = re.compile(r"Application startup complete")
GENERATE_DONE = re.compile(r"Processed prompts: 100%")

# -- errors -------------------------------------------------------------------------------------------------------
FREE_LESS = re.compile(
    rf"Free memory on device(?: \S+)? \((?P<free>{NUM})/(?P<total>{NUM}) GiB\) on startup is less than "
    rf"desired GPU memory utilization \((?P<util>{NUM}), (?P<req>{NUM}) GiB\)"
)
FREE_LESS_EXTERNAL = re.compile(r"Free memory on device.*on startup is less than the engine's budget")
NODE_LESS = re.compile(
    rf"Available memory on node \d+ \((?P<free>{NUM})/(?P<total>{NUM}) GiB\) on startup is less than desired "
    rf"CPU memory utilization \((?P<util>{NUM}), (?P<req>{NUM}) GiB\)"
)
NODE_KV_ALLOC = re.compile(
    rf"Available memory on node \d+ \((?P<free>{NUM})/(?P<total>{NUM}) GiB\) on kv cache allocation is less than "
    rf"requested memory for kv \((?P<kv>{NUM})(?:/(?P<req>{NUM}))? GiB\)"
)
NO_KV = re.compile(r"No available memory for the cache blocks")
KV_TOO_SMALL_V1 = re.compile(
    rf"To serve at least one request with the models?'?s? max seq len \((?P<mml>\d+)\),? ?\((?P<need>{NUM}) ?Gi?B "
    rf"KV cache is needed, which is larger than the available KV cache memory \((?P<avail>{NUM}) ?Gi?B\)"
)
KV_TOO_SMALL_ANY = re.compile(r"To serve at least one request with the models?'?s? max seq len")
ESTIMATED_MML = re.compile(r"estimated maximum model length is (?P<n>\d+)")
KV_TOO_SMALL_V0 = re.compile(
    r"The model's max seq len \((?P<mml>\d+)\) is larger than the maximum number of tokens that can be stored in "
    r"KV cache \((?P<cap>\d+)\)"
)
# Case-sensitive on purpose: V0's "If you are running out of memory, consider ..." hint is not a failure.
OOM = re.compile(r"(?:CUDA|XPU|HIP|NPU|MPS) out of memory|CUDA error: out of memory|OutOfMemoryError")
OOM_TRIED = re.compile(rf"Tried to allocate (?P<size>{SIZE})")
OOM_GPU = re.compile(  # "capacty": the typo of older torch releases
    rf"GPU (?P<i>\d+) has a total capac(?:i)?ty of (?P<total>{SIZE}) of which (?P<free>{SIZE}) is free"
)
# torch < 2.1: `(GPU 0; 22.19 GiB total capacity; 20.87 GiB already allocated; 1.06 GiB free; 21.13 GiB reserved ...)`
OOM_GPU_OLD = re.compile(
    rf"\(GPU (?P<i>\d+); (?P<total>{SIZE}) total capacity; (?P<alloc>{SIZE}) already allocated; (?P<free>{SIZE}) free"
    rf"(?:; (?:(?P<limit>{SIZE}) allowed; )?(?P<res>{SIZE}) reserved in total by PyTorch)?"
)
OOM_IN_USE = re.compile(rf"(?:Process \d+ has|this process has) (?P<size>{SIZE}) memory in use")
OOM_ALLOCATED = re.compile(
    rf"Of the allocated memory (?P<alloc>{SIZE}) is allocated by PyTorch, and (?P<res>{SIZE}) is reserved"
)
PROFILE_SANITY = re.compile(r"Error in memory profiling\. Initial free memory")
MM_ITEM_TOO_LARGE = re.compile(
    r"max_tokens_per_mm_item \((?P<n>\d+)\) is larger than max_num_batched_tokens \((?P<m>\d+)\)"
)
VALIDATION = re.compile(r"VLLMValidationError|maximum context length is \d+ tokens")
REQUEST_ERROR = re.compile(r"Error in model execution")
CRASH = re.compile(
    r"\bdied\b|Fatal Python error|Illegal instruction|SIGILL|SIGSEGV|SIGKILL|Segmentation fault"
    r"|core dumped|^Killed$|exited with code -?\d+|terminated by signal"
)
TIMEOUT = re.compile(r"[Tt]imed out waiting for|TimeoutError")
CAPTURE_ERROR = re.compile(r"during capture|operation not permitted when stream is capturing", re.IGNORECASE)
# `torch.OutOfMemoryError: ...`, `ValueError: ...`, `RuntimeError: ...`; the class name ends in Error/Exception.
EXCEPTION = re.compile(r"(?:^|\s|:\s)(?P<cls>(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception))(?::\s*(?P<msg>.*)|$)")
# Lines that follow a failure or a shutdown and never name a root cause.
NOISE = re.compile(
    r"EngineDeadError|Engine core initialization failed|See root cause above|See stack trace \(above\)"
    r"|leaked shared_memory|RuntimeError: cancelled|CancelledError|KeyboardInterrupt|SystemExit"
    r"|Failed core proc|EngineCore failed to start|EngineCore hit an exception|Exception in worker"
    r"|BrokenPipeError|please check the stack trace above"
)
START_FAILED = re.compile(
    r"EngineCore failed to start|Engine core initialization failed|EngineCore hit an exception"
    r"|Exception in worker \S+ while processing method"
)
WORKER_METHOD = re.compile(r"while processing method (?P<method>\w+)")
TRACEBACK = re.compile(r"Traceback \(most recent call last\)")
FRAME_FILE = re.compile(r'File "[^"]*", line \d+, in (?P<func>\w+)')
CALL = re.compile(r"(?:\.|\b)(?P<func>[A-Za-z_]\w*)\(")
