"""Phi-4-multimodal configuration, written by vllm-memcheck's model kit (no hub download).

Phi3Config's fields (the LLM: vLLM's phi4mm.py builds a LlamaModel from them) plus the sections vLLM 0.32's
phi4mm.py / phi4mm_audio.py read as attributes: embd_layer, audio_processor, img_processor, and the LoRA settings.
"""

from transformers import Phi3Config


class Phi4MMConfig(Phi3Config):
    model_type = "phi4mm"

    def __init__(self, embd_layer=None, audio_processor=None, img_processor=None, vision_lora=None, speech_lora=None,
                 **kwargs):
        self.embd_layer = embd_layer or {}
        self.audio_processor = audio_processor or {}
        self.img_processor = img_processor
        self.vision_lora = vision_lora
        self.speech_lora = speech_lora
        super().__init__(**kwargs)
