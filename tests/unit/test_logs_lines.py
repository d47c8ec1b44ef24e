"""diagnostics.logs.lines: prefixes, VLLM_LOGGING_PREFIX, tqdm carriage returns and long lines do not hide a line."""

from __future__ import annotations

from pathlib import Path

from diagnostics.logs.lines import split_lines
from diagnostics.logs.reader import read_log
from diagnostics.logs.record import LogRecord

LOGS = Path(__file__).resolve().parents[1] / "data" / "logs"


def log(name: str) -> LogRecord:
    return read_log((LOGS / name).read_text())


def test_split_lines_takes_off_tags_and_header_and_splits_tqdm_pieces():
    lines = split_lines("(EngineCore_DP0 pid=9) INFO 09-30 08:02:32 [core.py:1] hello\n\n# a comment\n"
                        "[rank0]: RuntimeError: boom\rProcessed prompts: 100%\n# GPU blocks: 12, # CPU blocks: 3")
    assert [ln.body for ln in lines] == ["hello", "RuntimeError: boom", "Processed prompts: 100%",
                                         "# GPU blocks: 12, # CPU blocks: 3"]
    assert (lines[0].process, lines[0].level, lines[0].ts) == ("EngineCore_DP0 pid=9", "INFO", "09-30 08:02:32")
    assert (lines[1].process, lines[1].level, lines[1].ts) == ("rank0", None, "09-30 08:02:32")
    assert [ln.index for ln in lines] == [0, 1, 2, 3]


def test_kit_lines_without_any_prefix():
    rec = log("kit_tiny_ok.log")
    # The kit doc's excerpt stops at the KV size: no ready marker, so not "ok" (issue #10), but how far it got.
    assert (rec.outcome, rec.reached) == ("unknown", "kv_cache")
    assert rec.numbers["kv_cache_tokens"] == 65_536 and rec.numbers["max_model_len"] == 4096
    assert rec.numbers["gpu_total_gib"] == 20.71


def test_prefixes_logging_prefix_and_tqdm_carriage_returns():
    text = (  # the server's banner first, as a server prints it (after served prompts it would begin a restart)
        "(APIServer pid=9) INFO 01-01 00:00:00 [api_server.py:1] vLLM API server version 0.8.5\n"
        "[myapp] INFO 01-01 00:00:01 [gpu_model_runner.py:1] Model loading took 15.1 GiB memory and 1.0 seconds\n"
        "(VllmWorkerProcess pid=7) INFO 01-01 00:00:02 worker.py:1] Memory profiling takes 5.00 seconds\n"
        "Processed prompts:   0%|          | 0/1 [00:00<?, ?it/s]\r(Worker pid=8) INFO 01-01 00:00:03 "
        "[kv_cache_utils.py:1] GPU KV cache size: 65,536 tokens\r"
        "Processed prompts: 100%|##########| 1/1 [00:01<00:00,  1.00it/s]\n"
    )
    rec = read_log(text)
    assert rec.numbers["weights_gib"] == 15.1 and rec.numbers["kv_cache_tokens"] == 65536
    assert rec.numbers["profile_time_s"] == 5.0 and rec.vllm_version == "0.8.5"
    assert rec.timestamps["kv_done"] == "01-01 00:00:03"


def test_pathological_long_lines_are_read():
    lines = ["a" * 20000, "x." * 5000 + "Foo", "1," * 8000, "(" * 8000, " " * 20000 + "x(", "a.b" * 6000 + ":"]
    assert read_log("\n".join(lines)).outcome == "unknown"
