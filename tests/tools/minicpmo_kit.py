"""Write a real-size MiniCPM-o-2_6 directory vLLM 0.32's MiniCPMO accepts without the model hub (no weights).

It is the real-size MiniCPM-V-2_6 kit (diagnostics.kit.build_minicpmv26) with the stored MiniCPM-o config.json
(diagnostics/data/models/minicpm-o-2_6), a config class that turns `audio_config` into transformers'
WhisperConfig (vLLM's MiniCPMWhisperEncoder reads it as an object), and a preprocessor_config.json that names
vLLM's vendored MiniCPMOProcessor and carries WhisperFeatureExtractor's fields (30 s, 16 kHz, hop 160, 80 mel
bins: openai/whisper-medium's). Then tests/tools/vlm_vllm_check.py OUT_DIR ROWS_JSON --meta gives vLLM's figures.

usage: PYTHONPATH=. python tests/tools/minicpmo_kit.py OUT_DIR
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from diagnostics.kit.minicpmv26 import build_minicpmv26

STORED = Path(__file__).resolve().parents[2] / "diagnostics" / "data" / "models" / "minicpm-o-2_6"
WHISPER_FEATURES = {"feature_extractor_type": "WhisperFeatureExtractor", "feature_size": 80, "sampling_rate": 16000,
                    "hop_length": 160, "chunk_length": 30, "n_fft": 400, "n_samples": 480000, "nb_max_frames": 3000,
                    "padding_side": "right", "padding_value": 0.0, "return_attention_mask": False}
CONFIG_CLASS = '''

from transformers import WhisperConfig


class MiniCPMOConfig(MiniCPMVConfig):
    """MiniCPM-o-2_6 (written by tests/tools/minicpmo_kit.py): MiniCPM-V-2_6 plus a Whisper audio_config."""

    model_type = "minicpmo"

    def __init__(self, audio_config=None, audio_pool_step=2, audio_chunk_length=1.0, **kwargs):
        self.audio_config = WhisperConfig(**audio_config) if isinstance(audio_config, dict) else (
            audio_config or WhisperConfig())
        self.audio_pool_step = audio_pool_step
        self.audio_chunk_length = audio_chunk_length
        super().__init__(**kwargs)
'''


def build(out_dir) -> Path:
    out = build_minicpmv26(out_dir, size="real", force=True)
    shutil.copyfile(STORED / "config.json", out / "config.json")
    with open(out / "configuration_minicpm.py", "a") as f:
        f.write(CONFIG_CLASS)
    kit_pre = json.loads((out / "preprocessor_config.json").read_text())
    pre = json.loads((STORED / "preprocessor_config.json").read_text())
    pre["auto_map"] = {"AutoImageProcessor": kit_pre["auto_map"]["AutoImageProcessor"]}
    (out / "preprocessor_config.json").write_text(json.dumps({**pre, **WHISPER_FEATURES}, indent=2) + "\n")
    return out


if __name__ == "__main__":
    print(build(sys.argv[1]))
