"""Phi-4-multimodal's tokens per dummy item as vLLM 0.32's own phi4mm.py computes them, without its processor.

vLLM's multimodal budget for Phi4MMForCausalLM runs the hub's remote-code Phi4MMProcessor, which the kit cannot
provide; the arithmetic behind the placeholders is vLLM's Phi4MMProcessingInfo, whose methods need only the hf config
for the dummy items (the dummy image fits 1 x dynamic_hd crops, so _find_target_aspect_ratio never asks the
processor). This calls those methods on the kit's config: _compute_num_image_tokens for the dummy image of
get_image_size_with_most_features (448 x 448*dynamic_hd) and get_audio_num_frames + _compute_audio_embed_size for the
dummy audio of _AUDIO_MAX_SOUNDFILE_SIZE samples at 16 kHz. Prints one JSON object.

usage: python tests/tools/phi4mm_vllm_tokens.py KIT_DIR   (diagnostics.kit.vlm.build_vlm_kit(NAME, meta_only=True))
"""

from __future__ import annotations

import json
import sys


def main(kit_dir: str) -> int:
    from transformers import AutoConfig
    from vllm.model_executor.models import phi4mm

    config = AutoConfig.from_pretrained(kit_dir, trust_remote_code=True)
    info = object.__new__(phi4mm.Phi4MMProcessingInfo)
    info.get_hf_config = lambda: config  # the only context these methods read
    pre = phi4mm.VISION_ENCODER_TO_PROCESSING_CONFIG[phi4mm.SIGLIP_NAME]
    image = {}
    for hd in (1, 4, 16, 36):
        image[hd] = info._compute_num_image_tokens(pre["vit_image_size"], pre["vit_image_size"] * hd, hd,
                                                   pre["vit_image_size"], pre["vit_patch_size"],
                                                   pre["token_compression_factor"])
    frames = info.get_audio_num_frames(phi4mm._AUDIO_MAX_SOUNDFILE_SIZE, 16000)
    print(json.dumps({"image_tokens_by_dynamic_hd": image, "audio_frames": frames,
                      "audio_tokens": info._compute_audio_embed_size(frames)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
