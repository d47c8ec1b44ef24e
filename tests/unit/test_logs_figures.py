"""diagnostics.logs.figures: numbers as vLLM and PyTorch print them, and the figures inside error texts."""

from __future__ import annotations

import pytest

from diagnostics.versions import read_version
from diagnostics.logs.figures import error_figures, literal, number, reserved_tokens, size_gib
from diagnostics.logs.reader import read_log

OOM_TEXT = (
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has a total capacity of "
    "23.69 GiB of which 5.06 MiB is free. Including non-PyTorch memory, this process has 23.67 GiB memory in use. "
    "Of the allocated memory 22.90 GiB is allocated by PyTorch, and 310.51 MiB is reserved by PyTorch but "
    "unallocated."
)


def test_number_literal_size_and_version_parsing():
    assert (number("65,536"), number("15.9524"), number("-0.23")) == (65536, 15.9524, -0.23)
    assert isinstance(number("65,536"), int) and isinstance(number("1.0"), float)
    assert (literal("True"), literal("None"), literal("'m'"), literal("4096")) == (True, None, "m", 4096)
    assert size_gib("512.00 KiB") == pytest.approx(0.5 / 1024) and size_gib("1.25 GiB") == 1.25
    assert read_version("v0.6.3.post1") == (0, 6, 3) and read_version("0.8") == (0, 8, 0)
    assert read_version("dev") is None
    assert reserved_tokens("{'image': 2048, 'video': 4096}") == {"image": 2048, "video": 4096}
    assert reserved_tokens("2048") == 2048 and reserved_tokens("{'image': 20") is None


def test_error_figures_in_order_with_settings_and_cpu_flag():
    found = error_figures("ValueError: Available memory on node 0 (9.99/11.34 GiB) on startup is less than desired "
                          "CPU memory utilization (0.95, 10.77 GiB).")
    assert found.cpu and found.numbers == [("free_gib", 9.99), ("gpu_total_gib", 11.34),
                                           ("gpu_memory_utilization", 0.95), ("requested_gib", 10.77)]
    assert found.settings == [("gpu_memory_utilization", 0.95)]
    oom = dict(error_figures(OOM_TEXT).numbers)
    assert oom["oom_tried_gib"] == pytest.approx(20 / 1024) and oom["oom_total_gib"] == 23.69
    assert oom["oom_reserved_unallocated_gib"] == pytest.approx(310.51 / 1024)


@pytest.mark.parametrize(
    "size, gib",
    [("20.00 MiB", 20 / 1024), ("1.25 GiB", 1.25), ("0 bytes", 0.0), ("512.00 KiB", 0.5 / 1024)],
)
def test_oom_size_units(size, gib):
    text = OOM_TEXT.replace("Tried to allocate 20.00 MiB", f"Tried to allocate {size}")
    assert read_log(text).numbers["oom_tried_gib"] == pytest.approx(gib)


def test_old_torch_oom_with_capacty_typo():
    rec = read_log("torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.53 GiB (GPU 0; 22.19 GiB "
                   "total capacity; ...)\nRuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 1 has a "
                   "total capacty of 79.15 GiB of which 1.02 GiB is free.")
    assert rec.outcome == "oom_unknown" and rec.numbers["oom_tried_gib"] == 1.53
    assert rec.numbers["oom_total_gib"] == 79.15 and rec.numbers["oom_gpu_index"] == 1


def test_torch_before_2_1_oom_format():
    rec = read_log("RuntimeError: CUDA out of memory. Tried to allocate 1.53 GiB (GPU 0; 22.19 GiB total capacity; "
                   "20.87 GiB already allocated; 1.06 GiB free; 21.13 GiB reserved in total by PyTorch) If reserved "
                   "memory is >> allocated memory try setting max_split_size_mb to avoid fragmentation.")
    n = rec.numbers
    assert (n["oom_tried_gib"], n["oom_total_gib"], n["oom_free_gib"]) == (1.53, 22.19, 1.06)
    assert (n["oom_allocated_by_pytorch_gib"], n["oom_reserved_by_pytorch_gib"]) == (20.87, 21.13)
