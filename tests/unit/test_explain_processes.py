"""Other processes on the device: blamed exactly when they hold at least the memory the allocation lacked."""

from __future__ import annotations

from diagnostics.explain import explain_record
from diagnostics.logs.reader import read_log

KV_FRAMES = ("ERROR 05-21 13:04:20 engine.py:389]   File \"/x/vllm/worker/cache_engine.py\", line 103, in "
             "_allocate_kv_cache\n")


def oom(others: str, this: str = "18.90 GiB") -> str:
    return (KV_FRAMES + "ERROR 05-21 13:04:20 engine.py:389] torch.OutOfMemoryError: CUDA out of memory. Tried to "
            "allocate 1.00 GiB. GPU 0 has a total capacity of 23.69 GiB of which 200.00 MiB is free. " + others
            + f"Including non-PyTorch memory, this process has {this} memory in use.")


def test_others_holding_the_shortfall_are_the_culprit_with_a_utilization_that_leaves_them_room():
    rec = read_log(oom("Process 11 has 3.00 GiB memory in use. ") + "\nvllm==0.6.3")
    exp = explain_record(rec)
    assert exp.culprits[0].term == "other_processes" and exp.culprits[0].setting == "gpu_memory_utilization"
    assert exp.culprits[0].suggested == 0.87  # floor((23.69 - 3.00 - 0.05) / 23.69, 2)
    assert exp.fix == {"gpu_memory_utilization": 0.87} and "pid 11" in exp.summary


def test_others_holding_less_than_the_shortfall_are_not_blamed():
    exp = explain_record(read_log(oom("Process 11 has 500.00 MiB memory in use. ")))
    assert not any(c.term == "other_processes" for c in exp.culprits)


def test_no_other_process_listed_blames_none():
    exp = explain_record(read_log(oom("")))
    assert not any(c.term == "other_processes" for c in exp.culprits)
