"""MiniCPM-V-2_6 model kit: a checkpoint directory vLLM accepts, written offline (real shapes or tiny).

build_minicpmv26(out_dir, size="tiny"|"real", weights="none"|"random", force=False) -> Path
kit_marker(model_dir) -> {"size", "weights"} | None: says a directory is a kit (weights were dummy/random).
IMAGE_PROMPT: one image request in MiniCPM-V's chat format (pass the image as multi_modal_data={"image": img}).
CPU_SHIM_DIR: put it on PYTHONPATH for vLLM CPU-backend runs (patches torch.cuda.is_current_stream_capturing).
"""

from __future__ import annotations

from pathlib import Path

from diagnostics.kit.minicpmv26 import IMAGE_PROMPT, KIT_FILES, build_minicpmv26, kit_marker

CPU_SHIM_DIR = str(Path(__file__).with_name("cpu_shim"))

__all__ = ["CPU_SHIM_DIR", "IMAGE_PROMPT", "KIT_FILES", "build_minicpmv26", "kit_marker"]
