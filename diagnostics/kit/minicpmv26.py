"""Write a MiniCPM-V-2_6 (or 4.5) checkpoint directory vLLM accepts with trust_remote_code=True, without the hub.

`real` has the real shapes (Qwen2-7B + SigLIP-400M; use it with load_format="dummy" on a GPU); `tiny` has the
smallest shapes vLLM's CPU backend accepts but the real token arithmetic (64 queries per 448-px slice, up to
9 slices + overview), so the encoder-profile item counts equal the real model's. version "4.5" writes config.json
`version` 4.5, which makes vLLM pick MiniCPMV4_5 (0.32 minicpmv.py get_version_by_config, _SUPPORT_VERSION): a
Qwen3 LLM (no qkv bias, q/k RMSNorm; real: the stored openbmb/MiniCPM-V-4_5 config's shapes) and Resampler4_5;
its processor and dummy items are 2.6's (MiniCPMVProcessingInfo counts both alike).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from diagnostics.families import minicpmv, minicpmv_slicing as slicing
from diagnostics.errors import UsageError, one_of

TEMPLATES = Path(__file__).with_name("templates")
SIZES = ("real", "tiny")
WEIGHTS = ("none", "random")
VERSIONS = ("2.6", "4.5")

SPECIAL_TOKENS = list(minicpmv.SPECIAL_TOKENS)
BOS, EOS, UNK = "<|im_start|>", minicpmv.KIT.eos, "<unk>"

# One image request in the MiniCPM-V chat format; (<image>./</image>) is where vLLM puts the slices.
IMAGE_PROMPT = minicpmv.IMAGE_PROMPT

LLM_SHAPES = {
    "real": dict(hidden_size=3584, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                 intermediate_size=18944, vocab_size=151666, max_position_embeddings=32768),
    "tiny": dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                 head_dim=64, intermediate_size=256, vocab_size=512, max_position_embeddings=32768),
}
# MiniCPM-V-4_5's Qwen3-8B (diagnostics/data/models/minicpm-v-4_5/config.json); tiny 4.5 keeps LLM_SHAPES["tiny"]
LLM_SHAPES_4_5_REAL = dict(hidden_size=4096, num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8,
                           head_dim=128, intermediate_size=12288, vocab_size=151748, max_position_embeddings=40960)
VISION_SHAPES = {
    "real": dict(hidden_size=1152, num_hidden_layers=27, num_attention_heads=16, intermediate_size=4304),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128),
}
QUERY_NUM, SLICE_EDGE, MAX_SLICE_NUM, PATCH, TOWER_IMAGE_SIZE = 64, 448, 9, 14, 980
KIT_FILES = (
    "config.json", "configuration_minicpm.py", "preprocessor_config.json", "image_processing_minicpmv.py",
    "processing_minicpmv.py", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "generation_config.json", "chat_template.jinja",
)


def make_config(size: str, weights: str, special_ids: dict[str, int], version: str = "2.6") -> dict:
    """config.json for `size`: Qwen2 (4.5: Qwen3) fields at the top level, a SigLIP vision_config, MiniCPM-V fields."""
    llm = LLM_SHAPES_4_5_REAL if (size, version) == ("real", "4.5") else LLM_SHAPES[size]
    vision = dict(VISION_SHAPES[size], model_type="siglip_vision_model", num_channels=3, patch_size=PATCH,
                  image_size=TOWER_IMAGE_SIZE, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6,
                  attention_dropout=0.0)
    return {
        "architectures": ["MiniCPMV"],
        "model_type": "minicpmv",
        "auto_map": {"AutoConfig": "configuration_minicpm.MiniCPMVConfig"},
        "version": float(version),
        **llm,
        **({"attention_bias": False} if version == "4.5" else {}),
        "hidden_act": "silu",
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "tie_word_embeddings": False,
        "use_sliding_window": False,
        "sliding_window": 131072,
        "max_window_layers": llm["num_hidden_layers"],
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "use_cache": True,
        "bos_token_id": special_ids[BOS],
        "eos_token_id": special_ids[EOS],
        "torch_dtype": "bfloat16" if size == "real" else "float32",
        "query_num": QUERY_NUM,
        "image_size": SLICE_EDGE,
        "max_slice_num": MAX_SLICE_NUM,
        "slice_config": {"max_slice_nums": MAX_SLICE_NUM, "patch_size": PATCH, "scale_resolution": SLICE_EDGE,
                         "model_type": "minicpmv"},
        "slice_mode": True,
        "use_image_id": True,
        "batch_vision_input": True,
        "vision_batch_size": 16,
        "drop_vision_last_layer": False,
        "vision_config": vision,
        "_memcheck_kit": {"size": size, "weights": weights, **({"version": version} if version != "2.6" else {})},
    }


def make_preprocessor_config(version: str = "2.6") -> dict:
    return {
        "image_processor_type": "MiniCPMVImageProcessor",
        "auto_map": {
            "AutoImageProcessor": "image_processing_minicpmv.MiniCPMVImageProcessor",
            "AutoProcessor": "processing_minicpmv.MiniCPMVProcessor",
        },
        "processor_class": "MiniCPMVProcessor",
        "max_slice_nums": MAX_SLICE_NUM,
        "scale_resolution": SLICE_EDGE,
        "patch_size": PATCH,
        "image_feature_size": QUERY_NUM,
        "use_image_id": True,
        "slice_mode": True,
        "norm_mean": [0.5, 0.5, 0.5],
        "norm_std": [0.5, 0.5, 0.5],
        "im_start": "<image>",
        "im_end": "</image>",
        "slice_start": "<slice>",
        "slice_end": "</slice>",
        "unk": UNK,
        "im_id_start": "<image_id>",
        "im_id_end": "</image_id>",
        "version": float(version),
    }


def image_processor_source() -> str:
    """diagnostics/families/minicpmv_slicing.py (the one slicing rule) followed by the image processor class."""
    return Path(slicing.__file__).read_text() + (TEMPLATES / "image_processing_minicpmv.py").read_text()


def _check_out_dir(out_dir: Path, force: bool) -> None:
    try:
        _check_out_path(out_dir, force)
    except OSError as exc:  # a name too long for the file system, a symlink loop: one line naming OUT_DIR
        raise UsageError(f"cannot use OUT_DIR {str(out_dir)[:80]!r}: {exc.strerror or exc}; accepted: a "
                         "directory path this user can create") from None


def _check_out_path(out_dir: Path, force: bool) -> None:
    if out_dir.is_symlink() and not out_dir.exists():
        raise UsageError(f"OUT_DIR {str(out_dir)!r} is a symlink that leads nowhere (or to itself); accepted: a "
                         "directory path")
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"OUT_DIR {str(out_dir)!r} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise UsageError(f"OUT_DIR {str(out_dir)!r} is not empty; pass --force to overwrite the kit files in it")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create OUT_DIR {str(out_dir)!r}: {exc.strerror}") from None


def build_minicpmv26(out_dir, size: str = "tiny", weights: str = "none", force: bool = False,
                     version: str = "2.6") -> Path:
    """Write the MiniCPM-V-2_6 kit directory (version "4.5": MiniCPM-V-4_5's) and return its path.

    size: "real" | "tiny"; weights: "none" (use load_format="dummy") | "random" (tiny only: model.safetensors).
    A non-empty out_dir needs force=True (kit files are overwritten, a stale model.safetensors removed).
    UsageError naming the accepted values for a bad size, weights or version.
    """
    if size not in SIZES:
        raise one_of("kit size", size, SIZES)
    if weights not in WEIGHTS:
        raise one_of("kit weights", weights, WEIGHTS)
    if version not in VERSIONS:
        raise one_of("kit version", version, VERSIONS)
    if size == "real" and weights == "random":
        raise UsageError("--size real --weights random would write 16 GB of random weights; "
                         "use --weights none with load_format=dummy")
    out_dir = Path(out_dir)
    _check_out_dir(out_dir, force)

    from diagnostics.kit.tokenizer import TokenizerSpec, build_tokenizer
    from diagnostics.kit.weights import write_random_weights

    chat_template = (TEMPLATES / "chat_template.jinja").read_text()
    tok = build_tokenizer(out_dir, TokenizerSpec(tuple(SPECIAL_TOKENS), bos=BOS, eos=EOS, unk=UNK,
                                                 vocab_size=LLM_SHAPES["tiny"]["vocab_size"],
                                                 chat_template=chat_template))
    config = make_config(size, weights, tok.special_ids, version)
    _write_json(out_dir / "config.json", config)
    _write_json(out_dir / "preprocessor_config.json", make_preprocessor_config(version))
    _write_json(out_dir / "generation_config.json", {
        "bos_token_id": tok.special_ids[BOS], "eos_token_id": [tok.special_ids[EOS], tok.special_ids["<|endoftext|>"]],
        "pad_token_id": tok.special_ids["<|endoftext|>"], "do_sample": False,
    })
    shutil.copyfile(TEMPLATES / "configuration_minicpm.py", out_dir / "configuration_minicpm.py")
    shutil.copyfile(TEMPLATES / "processing_minicpmv.py", out_dir / "processing_minicpmv.py")
    shutil.copyfile(TEMPLATES / "chat_template.jinja", out_dir / "chat_template.jinja")
    (out_dir / "image_processing_minicpmv.py").write_text(image_processor_source())

    safetensors = out_dir / "model.safetensors"
    if weights == "random":
        write_random_weights(out_dir, config)
    elif safetensors.exists():
        safetensors.unlink()
    return out_dir


def kit_marker(model_dir) -> dict | None:
    """The `_memcheck_kit` entry of a directory's config.json ({"size", "weights"}), or None for a real checkpoint."""
    try:
        config = json.loads((Path(model_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    marker = config.get("_memcheck_kit")
    return dict(marker) if isinstance(marker, dict) else None


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")
