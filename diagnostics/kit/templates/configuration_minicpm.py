"""MiniCPM-V-2_6 configuration, written by vllm-memcheck's model kit (no hub download).

The LLM (Qwen2) fields sit at the top level, so get_text_config() is the config itself; `vision_config` is a
SigLIP vision config; `version` defaults to 2.6 so vLLM picks its MiniCPMV2_6 class.
"""

from transformers import Qwen2Config

try:
    from transformers import SiglipVisionConfig
except ImportError:  # very old transformers
    from transformers.models.siglip.configuration_siglip import SiglipVisionConfig

DEFAULT_VISION_CONFIG = {
    "hidden_size": 1152,
    "image_size": 980,
    "intermediate_size": 4304,
    "model_type": "siglip_vision_model",
    "num_attention_heads": 16,
    "num_hidden_layers": 27,
    "patch_size": 14,
}


class MiniCPMVConfig(Qwen2Config):
    model_type = "minicpmv"
    keys_to_ignore_at_inference = ["past_key_values"]
    sub_configs = {"vision_config": SiglipVisionConfig}

    def __init__(
        self,
        use_cache=True,
        query_num=64,
        image_size=448,
        drop_vision_last_layer=False,
        batch_vision_input=True,
        slice_config=None,
        vision_config=None,
        use_image_id=True,
        vision_batch_size=16,
        version=2.6,
        max_slice_num=9,
        **kwargs,
    ):
        self.use_cache = use_cache
        self.query_num = query_num
        self.image_size = image_size
        self.drop_vision_last_layer = drop_vision_last_layer
        self.batch_vision_input = batch_vision_input
        self.use_image_id = use_image_id
        self.vision_batch_size = vision_batch_size
        self.version = version
        self.max_slice_num = max_slice_num
        self.slice_config = dict(slice_config) if slice_config else {
            "max_slice_nums": max_slice_num, "patch_size": 14, "scale_resolution": image_size,
        }
        if vision_config is None:
            self.vision_config = SiglipVisionConfig(**DEFAULT_VISION_CONFIG)
        elif isinstance(vision_config, dict):
            self.vision_config = SiglipVisionConfig(**vision_config)
        else:
            self.vision_config = vision_config
        self.patch_size = self.vision_config.patch_size
        super().__init__(use_cache=use_cache, **kwargs)
