"""Regexes for every vLLM start-up log line the reader understands (vllm-memory.md §2, cpu-vllm.md §3-§4).

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
# ANSI colour codes, also when a copy lost their escape byte (`[32mINFO[0m`).
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|\[(?:\d{1,3};)*\d{1,3}m")
# `(EngineCore_DP0 pid=N)`, `(VllmWorker rank=1 pid=N)`, `(VllmWorker TP0 pid=N)`, Ray's `(pid=N)` and
# `(RayWorkerWrapper pid=N, ip=10.0.0.2)`.
_tag = r"(?:(?P<name>[A-Za-z_][\w.\-]*(?: (?:rank=\d+|[A-Z]{2}\d+))?) )?pid=(?P<pid>\d+)(?:, ip=[\w.:\-]+)?\)"
PROCESS_TAG = re.compile(r"\(" + _tag)
PROCESS_TAG_BARE = re.compile(r"^(?=[A-Za-z_])" + _tag)  # lost its `(`

# -- how a log reaches us: prefixes that are not vLLM's (taken off before anything else) -------------------------
# Container runtimes (`2025-03-01T10:00:00.123456789Z stdout F ` CRI, `...Z ` docker --timestamps), journald
# (`Mar 01 10:00:00 host vllm[2231]: `), docker compose (`vllm-1  | `).
CONTAINER = re.compile(
    r"^(?:\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?\s(?:(?:stdout|stderr) (?P<cri>[FP]) ?)?"
    r"|[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \S+ [\w.\-/@]+(?:\[\d+\])?: "
    r"|[\w.\-]+ +\| "
    r"|bk;t=\d+ |\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z?\] )"  # Buildkite's `bk;t=NNN ` / `[2026-04-13T03:34:55Z] `
)
QUOTE = re.compile(r"^(?: {0,3}(?:>|\u258e|\||\u2502) ?)+")  # `> `, GitHub's rendered quote bar `▎ `, `| `
FENCE = re.compile(r"^\s*(?:```|~~~)")
RANK_TAG = re.compile(r"\[rank(?P<rank>\d+)\]:")
# Several engines in one log: vllm-omni's `[Stage-0]` / `[Stage-1]` tags, a data-parallel rank in a process name
# (`EngineCore_DP1`, `Worker_DP6_EP6`).
STAGE_TAG = re.compile(r"\[Stage-(?P<stage>\d+)\]")
ENGINE_DP = re.compile(r"_DP(?P<dp>\d+)(?!\d)")
# A paste that lost its line ends: another vLLM header further along the same line starts a new line there.
EMBEDDED_HEADER = re.compile(r" +(?=(?:\([\w .=\-]*pid=\d+[^)]*\) )?(?:DEBUG|INFO|WARNING|ERROR|CRITICAL) "
                             r"\d\d-\d\d \d\d:\d\d:\d\d)")
# `INFO 08-21 07:23:34 llm_engine.py:174] msg` (0.5-0.7), `INFO 04-15 00:05:37 [model_runner.py:1146] msg`;
# `INFO ... [file:N]` is how the shared docs quote a line with its time elided.
HEADER = re.compile(
    r"(?P<level>DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL)\s+(?:(?P<ts>\d\d-\d\d \d\d:\d\d:\d\d)(?:[.,]\d+)?|\.\.\.)\s+"
    r"(?:\[(?P<file1>[^\]\s]+)\]|(?P<file2>[\w./\-]+:\d+)\])\s?"
)

# -- version, engine, platform, settings --------------------------------------------------------------------------
BANNER_V0 = re.compile(r"Initializing an? (?:V0 )?LLM engine \(v?(?P<version>[\w.+\-]+)\) with config: (?P<config>.*)")  # "a V0 LLM engine": 0.7.1-0.10.x
BANNER_V1 = re.compile(r"Initializing a V1 LLM engine \(v?(?P<version>[\w.+\-]+)\) with config: (?P<config>.*)")
API_VERSION = re.compile(r"vLLM (?:API )?server version (?P<version>v?\d+\.\d+[\w.+\-]*)")
ASCII_VERSION = re.compile(r"\u2588\s+version\s+(?P<version>v?\d+\.\d+[\w.+\-]*)")  # 0.28+ banner art
ENV_VERSION = re.compile(r"(?i:vllm[ _\-]?version)\s*[:=]?\s*(?P<version>v?\d+\.\d+[\w.+\-]*)")  # collect_env
# pip freeze / collect_env (`vllm==0.6.3`), pip list / conda list (`vllm   0.6.3   pypi_0   pypi`)
PIP_VERSION = re.compile(r"(?:^|[\s\]])vllm(?:-cpu)?==(?P<version>\d+\.\d+[\w.+\-]*)"
                         r"|^vllm(?:-cpu)?\s+(?P<listed>\d+\.\d+[\w.+\-]*)(?:\s|$)")
DOCKER_VERSION = re.compile(r"vllm/vllm-openai:(?P<version>v?\d+\.\d+[\w.+\-]*)")
PLATFORM = re.compile(r"Automatically detected platform (?P<platform>\w+)\.")
NON_DEFAULT_ARGS = re.compile(r"non-default args: (?P<args>\{.*\})")
CONFIG_ITEM = re.compile(r"(?:^|, )(?P<key>\w+)=(?P<value>[^,]*)")
MAX_NUM_SEQS_WARNING = re.compile(
    r"Computed max_num_seqs \(min\((?P<seqs>\d+), (?P<mbt>\d+) // (?P<mm>\d+)\)\) to be less than 1"
)

# -- memory figures --------------------------------------------------------------------------------------------
START_LOAD = re.compile(r"Starting to load model")
WEIGHTS_OLD = re.compile(rf"Loading model weights took (?P<w>{NUM}) GB")
WEIGHTS_MB = re.compile(rf"Loading model weights took (?P<w>{NUM}) MB")  # 0.5.3 and before: MiB
WEIGHTS_NEW = re.compile(rf"Model loading took (?P<w>{NUM}) Gi?B(?: memory)? and (?P<s>{NUM}) s")
# 0.6.4-0.6.5: one line of `key=value` pairs (`total_gpu_memory=23.58GiB initial_memory_usage=...`, spaces or
# commas between them, a `duration=N seconds` first in some builds); read pair by pair so a cut line still counts.
PROFILE_064 = re.compile(r"Memory profiling results:\s*(?:duration=|total_gpu_memory=)")
PROFILE_PAIR = re.compile(rf"\b(?P<key>[a-z_]+)=(?P<v>{NUM})")
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
# "# GPU blocks: N, # CPU blocks: M" (V0 executors; V1 0.7-0.8 without the CPU half). Another accelerator's name
# stands for GPU (NPU, XPU, HPU), never CPU: a quoted line that lost its leading "# " would otherwise be read from its
# CPU half (vllm#10517), so "GPU blocks:" is also read without the "# ".
GPU_BLOCKS = re.compile(r"(?:(?:# )?(?:GPU|CUDA|cuda)|# (?!CPU\b)\w+) blocks: (?P<gpu>\d+)(?:, # CPU blocks: (?P<cpu>\d+))?")
KV_TOKENS = re.compile(rf"\b(?P<dev>GPU \+ host|GPU|CPU|\w+) KV cache size: (?P<tokens>{NUM}) tokens")
CONCURRENCY = re.compile(rf"Maximum concurrency for (?P<mml>{NUM}) tokens per request: (?P<x>{NUM})x")
# V0-only start-up lines around graph capture (0.5-0.6: "Capturing the model for CUDA graphs", "CUDA graphs can take
# additional 1~3 GiB"; 0.8 V0: "Capturing cudagraphs for decoding").
V0_GRAPH_LINES = re.compile(r"Capturing the model for CUDA graphs|CUDA graphs can take additional|Capturing cudagraphs for decoding")
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
# 0.34: the profile run saw free memory grow (another process let go) and sized the KV cache from torch's reserve.
FREE_GREW = re.compile(
    rf"Free memory grew by (?P<grew>{NUM}) GiB during profiling \(initial (?P<init>{NUM}) GiB, current (?P<cur>{NUM}) "
    rf"GiB\)\. Sizing the KV cache from the (?P<res>{NUM}) GiB torch reserved"
)
GRAPH_PROFILING_DISABLED = re.compile(r"CUDA graph memory profiling is disabled")
# 0.33+: weights held by another process (a weight server) count against the budget.
EXTERNAL_WEIGHTS = re.compile(
    rf"Weights are held outside this process: of the (?P<req>{NUM}) GiB utilization budget, (?P<ext>{NUM}) GiB is "
    rf"externally held and (?P<eng>{NUM}) GiB remains"
)
EXTERNAL_WEIGHTS_EXCEED = re.compile(
    rf"Externally held weights on device(?: \S+)? \((?P<ext>{NUM})/(?P<total>{NUM}) GiB\) exceed the desired GPU memory "
    rf"utilization \((?P<util>{NUM}), (?P<req>{NUM}) GiB\)"
)
BUDGET_UPDATED = re.compile(rf"Updated engine memory budget after disk fallback: (?P<req>{NUM}) GiB")
# 0.34 extensible KV cache (v1/worker/extensible_kv_cache.py): the pool sized from memory measured after warmup and
# graph capture, the blocks finally committed, and a gpu_memory_utilization below 1.0 that withholds free memory.
EXTENSIBLE_MEASURED = re.compile(
    rf"Memory after warmup: (?P<free>{NUM}) GiB free, (?P<committed>{NUM}) GiB committed to the KV cache, "
    rf"(?P<kept>{NUM}) GiB kept for transient activations \((?P<peak>{NUM}) GiB allocated at peak, (?P<growth>{NUM}) "
    rf"GiB of torch reservation growth\); (?P<blocks>\d+) KV cache blocks \((?P<kv>{NUM}) GiB\) fit within the "
    rf"requested (?P<req>{NUM}) GiB"
)
EXTENSIBLE_EXTENDED = re.compile(rf"Extended KV cache to (?P<blocks>\d+) blocks \((?P<kv>{NUM}) GiB\)")
EXTENSIBLE_UTIL_CAP = re.compile(
    rf"gpu_memory_utilization=(?P<util>{NUM}) caps this instance at (?P<req>{NUM}) GiB, keeping (?P<held>{NUM}) GiB "
    rf"of free device memory out of the KV cache"
)
# 0.20+ max_model_len auto-fit: "reduced from %d to %d to fit in available KV cache memory (%s GiB GPU)", "full model
# context length %d fits", "using max_model_len=%d, which fits".
AUTO_FIT = re.compile(
    rf"Auto-fit max_model_len: (?:reduced from (?P<orig>\d+) to (?P<fit>\d+)|full model context length (?P<full>\d+) "
    rf"fits|using max_model_len=(?P<using>\d+))[^(]*\((?P<kv>{NUM}) GiB"
)
NUM_GPU_BLOCKS_OVERRIDE = re.compile(r"Overriding num_gpu_blocks=(?P<n>\d+) with num_gpu_blocks_override=(?P<o>\d+)")
GRAPH_CAPTURE_SKIPPED = re.compile(r"Skipping (?:encoder and decoder )?CUDA graph capture")
ENCODER_BUDGET = re.compile(
    rf"Encoder cache will be initialized with a budget of (?P<n>{NUM}) tokens, "
    rf"and profiled with (?P<m>{NUM}) (?P<modality>\w+) items"
)
ENCODER_SKIP = re.compile(r"Skipping (?:memory profiling for multimodal encoder|encoder profiling for embedding-only)")
# 0.20+: the profile run estimates the CUDA-graph pool: "Profiling CUDA graph memory: FULL=35 (largest=512), ..."
GRAPH_PROFILING_START = re.compile(r"Profiling CUDA graph memory: (?P<modes>.*)")
PROFILE_SEQ_WARNING = re.compile(
    r"(?:sequence length used for profiling \(max_num_batched_tokens / max_num_seqs = (?P<seq>\d+)\)"
    r"|context length \((?P<ctx>\d+)\) of the model) is too short to hold the multi-modal embeddings in the "
    r"worst case \((?P<total>\d+) tokens in total, out of which (?P<reserved>\{[^}]*\}|\d+) are reserved"
)
CPU_KV_AUTO = re.compile(
    rf"Auto set \((?P<kv>{NUM})/(?P<total>{NUM})\) GiB for KV cache on node \d+, with (?P<req>{NUM}) GiB "
    rf"requested memory for the worker\. (?P<nonkv>{NUM}) GiB memory was consumed by non-kv usages"
)
CPU_KV_EXPLICIT = re.compile(rf"Explicitly set \((?P<kv>{NUM})/(?P<total>{NUM})\) GiB for KV cache on node \d+")
CONFIG_KV_BYTES = re.compile(r"kv_cache_memory_bytes=(?P<b>\d+)")
INIT_ENGINE = re.compile(
    rf"init engine \(profile, create kv cache, warmup model\) took (?P<s>{NUM}) s(?:econds)?"
    rf"(?: \(compilation: (?P<c>{NUM}) s(?: \W+ language_model: (?P<lm>{NUM}) s, encoder: (?P<enc>{NUM}) s)?\))?"
)
APP_STARTUP = re.compile(r"Application startup complete")
# Ready markers (besides INIT_ENGINE and APP_STARTUP): the API server or uvicorn listening, the engine serving,
# the LLM class adding/rendering/processing prompts.
SERVING = re.compile(r"Starting vLLM API server|Uvicorn running on|Started server process|Avg prompt throughput:")
REQUESTS = re.compile(r"Processed prompts:|Adding requests|Rendering prompts")
# The sampler (0.8+) / pooler (0.10+) warm-up's own OOM text: "CUDA out of memory occurred when warming up sampler
# with N dummy requests. Please try lowering `max_num_seqs` ..." (it names the phase and the setting).
SAMPLER_WARMUP = re.compile(r"[Ww]arming up (?:sampler|pooler)(?: \([^)]*\))? with (?P<n>\d+) dummy requests")
PROFILE_START = re.compile(r"Starting profile run")
# V0's "Memory profiling results:" block with one figure per line, and V1's DEBUG profiling summary.
PROFILE_RESULTS = re.compile(r"Memory profiling results:\s*$")
PROFILE_ITEM = re.compile(
    r"^\s*(?P<key>total_gpu_memory|gpu_memory_utilization|model weights take|weights_memory|non_torch_memory"
    r"|PyTorch activation peak memory|torch_peak_increase|available_kv_cache_memory|kv_cache_size"
    r"|initial_memory_usage|peak_torch_memory|memory_usage_post_profile)\s*[:=]?\s+(?P<v>-?\d+(?:\.\d+)?)\s*"
    r"(?:GiB|GB|Gib)?\.?\s*$"
)
PROFILE_DEBUG = re.compile(
    rf"Memory profiling takes (?P<s>{NUM}) seconds\. Total non KV cache memory: (?P<nonkv>{NUM}) ?GiB; torch peak "
    rf"memory increase: (?P<act>{NUM}) ?GiB; (?:non-torch forward increase memory: (?P<nt>{NUM}) ?GiB|total consumed "
    rf"\(from mem_get_info\): (?P<consumed>{NUM}) ?GiB); weights memory: (?P<w>{NUM}) ?GiB"
)
KV_RESERVED = re.compile(
    rf"(?:Initial free memory (?P<free>{NUM}) ?GiB, )?reserved (?P<kv>{NUM}) ?GiB memory for KV Cache as specified "
    rf"by kv_cache_memory_bytes"
)

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
    rf"To serve at least one request with the models?'?s? max seq len \((?P<mml>\d+)\),?\s*\(?(?P<need>{NUM}) ?Gi?B "
    rf"KV cache is needed, which is larger than the available KV cache memory \((?P<avail>{NUM}) ?Gi?B\)"
)
KV_TOO_SMALL_ANY = re.compile(r"To serve at least one request with the models?'?s? max seq len")
ESTIMATED_MML = re.compile(r"estimated maximum model length is (?P<n>\d+)")
KV_TOO_SMALL_V0 = re.compile(
    r"The model's max seq len \((?P<mml>\d+)\) is larger than the maximum number of tokens that can be stored in "
    r"KV cache \((?P<cap>\d+)\)"
)
# Case-sensitive on purpose: V0's "If you are running out of memory, consider ..." hint is not a failure.
OOM = re.compile(
    r"(?:CUDA|XPU|HIP|NPU|MPS) out of memory|MPS backend out of memory|CUDA (?:driver )?error: out of memory|OutOfMemoryError"
    r"|CUBLAS_STATUS_ALLOC_FAILED|cudaErrorMemoryAllocation|CUDA_ERROR_OUT_OF_MEMORY|Cuda failure 'out of memory'"
    r"|(?:CUDA|HIP) out of(?: m\w*)?\s*$"  # a message cut in the paste: `RuntimeError: CUDA out of`
    r"|DefaultCPUAllocator: can't allocate memory"  # torch's CPU allocator (c10/core/impl/alloc_cpu.cpp)
)
OOM_TRIED = re.compile(rf"Tried to allocate (?P<size>{SIZE})")
OOM_GPU = re.compile(  # "capacty": the typo of older torch releases
    rf"GPU (?P<i>\d+) has a total capac(?:i)?ty of (?P<total>{SIZE}) of which (?P<free>{SIZE}) is free"
)
# torch < 2.1: `(GPU 0; 22.19 GiB total capacity; 20.87 GiB already allocated; 1.06 GiB free; 21.13 GiB reserved ...)`
# torch_npu (Ascend) keeps this form with `current active`: `(NPU 0; 60.96 GiB total capacity; 55.91 GiB already
# allocated; 55.91 GiB current active; 1.80 GiB free; 58.73 GiB reserved in total by PyTorch)`.
OOM_GPU_OLD = re.compile(
    rf"\((?:GPU|NPU|XPU|MLU) (?P<i>\d+); (?P<total>{SIZE}) total capacity; (?P<alloc>{SIZE}) already allocated; "
    rf"(?:(?P<active>{SIZE}) current active; )?(?P<free>{SIZE}) free"
    rf"(?:; (?:(?P<limit>{SIZE}) allowed; )?(?P<res>{SIZE}) reserved in total by PyTorch)?"
)
# torch 2.5-2.6 XPU: `XPU out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 23.86 GiB. Of the
# allocated memory ...` (no free figure).
OOM_XPU = re.compile(rf"GPU (?P<i>\d+) has a total capacity of (?P<total>{SIZE})\. Of the allocated memory")
# Every process NVML lists on the device: `Process 1111 has 730.00 MiB memory in use.` (pid None = "this process")
OOM_PROCESS = re.compile(rf"(?:Process (?P<pid>\d+)|(?P<this>this process)) has (?P<size>{SIZE}) memory in use")
OOM_ALLOWED = re.compile(rf"memory in use\. (?P<size>{SIZE}) allowed;")
# torch 2.4+ adds `, with X allocated in private pools (e.g., CUDA Graphs),` when graph pools hold memory.
OOM_ALLOCATED = re.compile(
    rf"Of the allocated memory (?P<alloc>{SIZE}) is allocated by PyTorch, (?:with (?P<pools>{SIZE}) allocated in "
    rf"private pools \(e\.g\., CUDA Graphs\), )?and (?P<res>{SIZE}) is reserved"
)
# PyTorch's C++ warning when cudaMalloc fails (the OutOfMemoryError text follows unless the allocator recovers):
# `[W830 12:05:56.43 CUDACachingAllocator.cpp:3933] memory allocation failed with OOM on device 0 while trying to
# allocate 272629760 bytes (free: 125304832, total: 85017624576)`. Figures only; it decides nothing by itself.
OOM_ALLOC_WARNING = re.compile(
    r"memory allocation failed with OOM on device (?P<i>\d+) while trying to allocate (?P<tried>\d+) bytes "
    r"\(free: (?P<free>\d+), total: (?P<total>\d+)\)"
)
PROFILE_SANITY = re.compile(r"Error in memory profiling\. Initial free memory")
MM_ITEM_TOO_LARGE = re.compile(
    r"max_tokens_per_mm_item \((?P<n>\d+)\) is larger than max_num_batched_tokens \((?P<m>\d+)\)"
)
VALIDATION = re.compile(r"VLLMValidationError|maximum context length is \d+ tokens")
REQUEST_ERROR = re.compile(r"Error in model execution")
# The serving loop failed (V1 AsyncLLM, V0 async_llm_engine): whatever error follows failed a request.
SERVING_FAILED = re.compile(r"AsyncLLM output_handler failed|Engine background task failed")
# 0.11: `Failed to create unquantized linear weights: <error>` (linear.py), creating a weight ran out of memory.
WEIGHT_CREATE_FAILED = re.compile(r"Failed to create unquantized linear weights")
CRASH = re.compile(
    r"\bdied\b|Fatal Python error|Illegal instruction|SIGILL|SIGSEGV|SIGKILL|Segmentation fault"
    r"|core dumped|^Killed$|exited with code -?\d+|terminated by signal"
)
TIMEOUT = re.compile(r"[Tt]imed out waiting for|TimeoutError")
CAPTURE_ERROR = re.compile(r"during capture|operation not permitted when stream is capturing", re.IGNORECASE)
# `torch.OutOfMemoryError: ...`, `ValueError: ...`, `RuntimeError: ...`; the class name ends in Error/Exception.
# A bare class name (no message) only where a traceback's last line puts it, at the start or after `: `; a word
# that merely ends in Error at the end of a line (`Authorization: Bearer Ab12Error`, a token) is not an exception.
_exc_name = r"(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception)"
EXCEPTION = re.compile(rf"(?:^|\s|:\s)(?P<cls>{_exc_name}):\s*(?P<msg>.*)|(?:^\s*|:\s)(?P<bare>{_exc_name})\s*$")
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
# A linker failure (Triton/Inductor building a helper): the `ld:` line names the cause, collect2 repeats it.
LINKER = re.compile(r"\bld(?:\.\w+)?: (?:cannot find|error:|undefined reference)|collect2: error: ld returned \d+ exit")
# Request-logger and access lines repeat user text (a prompt may quote an error); they never carry a failure.
NEVER_FAILS = re.compile(r"Received request \S+: |\] Added request |HTTP/\d(?:\.\d)?\" \d{3} ")
CALL = re.compile(r"(?:\.|\b)(?P<func>[A-Za-z_]\w*)\(")

# Regexes of this module that read a line's shape (prefixes, tracebacks, generic failure words), not one message
# of vLLM or PyTorch; every other regex here reads a message of diagnostics/data/log_messages.toml
# (tests/unit/test_logs_catalogue.py checks both ways).
STRUCTURE = frozenset({
    "ANSI", "PROCESS_TAG", "PROCESS_TAG_BARE", "CONTAINER", "QUOTE", "FENCE", "RANK_TAG", "STAGE_TAG",
    "EMBEDDED_HEADER", "HEADER", "CONFIG_ITEM", "PROFILE_PAIR", "CRASH", "TIMEOUT", "EXCEPTION", "NOISE", "TRACEBACK",
    "FRAME_FILE", "LINKER", "NEVER_FAILS", "CALL", "VALIDATION", "CONFIG_KV_BYTES", "ENGINE_DP",
    "BREAKDOWN_OLD_USAGE", "BREAKDOWN_NEW_USAGE", "KV_SUGGEST", "KV_IN_USE", "ESTIMATED_MML",
})
