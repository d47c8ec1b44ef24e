"""Scan: versions by the most trusted source, the phase reached, lines whose figures decide a failure, joined
continuation lines (the reader's RULES drive it; these tests feed it lines directly)."""

from __future__ import annotations

from diagnostics.logs.lines import split_lines
from diagnostics.logs.reader import RULES
from diagnostics.logs.scan import Scan


def scan(text: str) -> Scan:
    s = Scan(RULES)
    for line in split_lines(text):
        s.add(line)
    return s


def test_the_engine_banner_outranks_pip_and_docker_whatever_the_order():
    s = scan("docker run vllm/vllm-openai:v0.8.5\nvllm==0.8.4\n"
             "INFO 04-15 00:05:37 [llm_engine.py:1] Initializing a V1 LLM engine (v0.8.3) with config: model='m'\n"
             "vllm==0.9.0")
    assert s.rec.vllm_version == "0.8.3"
    assert scan("vllm==0.8.4\ndocker run vllm/vllm-openai:v0.8.5").rec.vllm_version == "0.8.4"


def test_reached_is_the_latest_timeline_phase_begun():
    s = scan("INFO 01-01 00:00:01 model_runner.py:1] Starting to load model m...\n"
             "INFO 01-01 00:00:02 model_runner.py:1] Loading model weights took 15.9524 GB")
    assert s.reached == 2  # TIMELINE_PHASES[2] == "profile": the profile run begins when the weights are in
    assert s.record().reached == "profile"


def test_figures_that_decide_a_failure_are_kept_by_line():
    s = scan("INFO 01-01 00:00:01 gpu_executor.py:1] # GPU blocks: 0, # CPU blocks: 10\n"
             "INFO 01-01 00:00:01 gpu_worker.py:1] Available KV cache memory: 0.0 GiB\n"
             "INFO 01-01 00:00:01 gpu_worker.py:1] Available KV cache memory: -0.01 GiB")
    assert s.fails == {0: ("no_kv_cache", "kv_cache"), 2: ("no_kv_cache", "kv_cache")}  # 0.0 decides nothing


def test_a_wrapped_message_is_also_read_joined():
    s = scan("(EngineCore pid=1) INFO 01-01 00:00:01 [gpu_worker.py:1] Available KV cache\nmemory: 59.82 GiB")
    assert s.seen["kv_cache_gib"] == [59.82] and "profile_done" in s.rec.timestamps
