"""The MiniCPM-V-2_6 kit directory: files, config fields, tokenizer, placeholders, image processor outputs, weights.

The generated image processor and config classes are loaded from the written files with importlib (what
transformers' dynamic-module loader does), so these tests check the files vLLM would read.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from diagnostics.families import minicpmv_slicing as slicing
from diagnostics.cli import main as cli_main
from diagnostics.errors import UsageError
from diagnostics.kit import CPU_SHIM_DIR, IMAGE_PROMPT, KIT_FILES, build_minicpmv26, kit_marker
from diagnostics.kit.minicpmv26 import SPECIAL_TOKENS
from diagnostics.kit.weights import checkpoint_layout, parameter_count

pytest.importorskip("tokenizers")
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build_minicpmv26(tmp_path_factory.mktemp("kit") / "tiny", size="tiny", weights="random")


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> Path:
    return build_minicpmv26(tmp_path_factory.mktemp("kit") / "real", size="real", weights="none")


def _config(path: Path) -> dict:
    return json.loads((path / "config.json").read_text())


def _load_module(path: Path):
    name = f"kit_{path.stem}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses in the embedded slicing rule look their module up here
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def image_processor(real):
    module = _load_module(real / "image_processing_minicpmv.py")
    settings = json.loads((real / "preprocessor_config.json").read_text())
    settings = {k: v for k, v in settings.items() if k not in ("auto_map", "processor_class", "image_processor_type")}
    return module.MiniCPMVImageProcessor(**settings)


@pytest.fixture(scope="module")
def tokenizer(real):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(str(real))


# -- files and config ----------------------------------------------------------------------------------------

def test_files_written(tiny, real):
    for name in KIT_FILES:
        assert (tiny / name).is_file() and (real / name).is_file(), name
    assert (tiny / "model.safetensors").is_file()
    assert not (real / "model.safetensors").exists()


def test_kit_marker(tiny, real, tmp_path):
    assert kit_marker(tiny) == {"size": "tiny", "weights": "random"}
    assert kit_marker(real) == {"size": "real", "weights": "none"}
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["MiniCPMV"]}))
    assert kit_marker(tmp_path) is None and kit_marker(tmp_path / "missing") is None


def test_image_processor_embeds_the_one_slicing_rule(real):
    text = (real / "image_processing_minicpmv.py").read_text()
    assert text.startswith(Path(slicing.__file__).read_text())
    assert text.count("def get_refine_size(") == 1


@pytest.mark.parametrize("size,hidden,layers,heads,kv,inter,vocab,vhidden,vlayers,vheads,vmlp,dtype", [
    ("real", 3584, 28, 28, 4, 18944, 151666, 1152, 27, 16, 4304, "bfloat16"),
    ("tiny", 128, 2, 2, 1, 256, 512, 64, 2, 2, 128, "float32"),
])
def test_config_fields(tiny, real, size, hidden, layers, heads, kv, inter, vocab, vhidden, vlayers, vheads, vmlp, dtype):
    c = _config(real if size == "real" else tiny)
    assert c["architectures"] == ["MiniCPMV"] and c["model_type"] == "minicpmv"
    assert c["auto_map"]["AutoConfig"] == "configuration_minicpm.MiniCPMVConfig"
    assert (c["version"], c["query_num"], c["image_size"], c["max_slice_num"]) == (2.6, 64, 448, 9)
    assert c["drop_vision_last_layer"] is False and c["tie_word_embeddings"] is False
    assert (c["hidden_size"], c["num_hidden_layers"], c["num_attention_heads"], c["num_key_value_heads"],
            c["intermediate_size"], c["vocab_size"]) == (hidden, layers, heads, kv, inter, vocab)
    assert c["max_position_embeddings"] == 32768 and c["rope_theta"] == 1e6 and c["rms_norm_eps"] == 1e-6
    v = c["vision_config"]
    assert (v["hidden_size"], v["num_hidden_layers"], v["num_attention_heads"], v["intermediate_size"]) == (
        vhidden, vlayers, vheads, vmlp)
    assert (v["patch_size"], v["image_size"]) == (14, 980)
    assert c["torch_dtype"] == dtype
    assert c["_memcheck_kit"] == {"size": size, "weights": "none" if size == "real" else "random"}
    assert c["hidden_size"] // 128 >= 1  # resampler heads
    head_dim = c.get("head_dim") or hidden // heads
    assert head_dim in (32, 64, 80, 96, 112, 128)


def test_config_class_from_the_written_file(real):
    sys.path.insert(0, str(real))
    try:
        module = _load_module(real / "configuration_minicpm.py")
    finally:
        sys.path.remove(str(real))
    config = module.MiniCPMVConfig(**_config(real))
    assert type(config.vision_config).__name__ == "SiglipVisionConfig"
    assert config.vision_config.hidden_size == 1152 and config.vision_config.num_hidden_layers == 27
    assert config.get_text_config() is config
    assert (config.hidden_size, config.num_key_value_heads, config.version) == (3584, 4, 2.6)
    bare = module.MiniCPMVConfig()
    assert bare.version == 2.6 and bare.drop_vision_last_layer is False and bare.query_num == 64


def test_preprocessor_config(real):
    p = json.loads((real / "preprocessor_config.json").read_text())
    assert p["auto_map"]["AutoImageProcessor"] == "image_processing_minicpmv.MiniCPMVImageProcessor"
    assert p["processor_class"] == "MiniCPMVProcessor"
    assert (p["image_feature_size"], p["max_slice_nums"], p["scale_resolution"], p["patch_size"]) == (64, 9, 448, 14)
    assert (p["im_id_start"], p["im_id_end"], p["unk"]) == ("<image_id>", "</image_id>", "<unk>")


# -- tokenizer -----------------------------------------------------------------------------------------------

def test_tokenizer_special_tokens_and_bos(tokenizer, real):
    vocab = tokenizer.get_vocab()
    for token in SPECIAL_TOKENS:
        ids = tokenizer.encode(token, add_special_tokens=False)
        assert ids == [vocab[token]], token
    assert tokenizer.bos_token == "<|im_start|>" and tokenizer.bos_token_id == vocab["<|im_start|>"]
    assert tokenizer.unk_token == "<unk>"
    assert getattr(tokenizer, "image_token", "<unk>") == "<unk>"
    assert len(tokenizer) <= _config(real)["vocab_size"] and len(tokenizer) <= 512


@pytest.mark.parametrize("text", ["(<image>./</image>)", IMAGE_PROMPT, "Hello, world! 448x4032 slices ..."])
def test_tokenizer_round_trip(tokenizer, text):
    assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text


def test_image_pattern_tokenizes_around_special_tokens(tokenizer):
    ids = tokenizer.encode("(<image>./</image>)", add_special_tokens=False)
    vocab = tokenizer.get_vocab()
    assert vocab["<image>"] in ids and vocab["</image>"] in ids
    assert ids.index(vocab["<image>"]) < ids.index(vocab["</image>"])


# -- placeholders and pixels ---------------------------------------------------------------------------------

@pytest.mark.parametrize("w,h,max_slices", [(448, 4032, None), (448, 4032, 4), (1000, 700, None), (64, 64, None),
                                            (640, 480, None), (2000, 1500, None)])
def test_placeholder_has_one_unk_per_embedding(image_processor, tokenizer, w, h, max_slices):
    grid = image_processor.get_sliced_grid((w, h), max_slice_nums=max_slices or 9)
    assert grid == slicing.get_sliced_grid((w, h), max_slices or 9)
    cols, rows = grid or (0, 0)
    text = image_processor.get_slice_image_placeholder((w, h), image_idx=3, max_slice_nums=max_slices)
    ids = tokenizer.encode(text, add_special_tokens=False)
    unk = tokenizer.convert_tokens_to_ids("<unk>")
    assert ids.count(unk) == (cols * rows + 1) * 64
    assert text.startswith("<image_id>3</image_id><image>")
    assert text.count("<slice>") == cols * rows and text.count("\n") == max(rows - 1, 0)


def test_video_frame_placeholder_has_no_image_id(image_processor):
    text = image_processor.get_slice_image_placeholder((448, 448), image_idx=0, max_slice_nums=1, use_image_id=False)
    assert text == "<image>" + "<unk>" * 64 + "</image>"


def test_grid_accepts_vllm_image_size_and_tensor(image_processor):
    torch = pytest.importorskip("torch")
    from collections import namedtuple

    image_size = namedtuple("ImageSize", "width height")
    assert image_processor.get_sliced_grid(image_size(448, 4032), max_slice_nums=9) == (1, 9)
    assert image_processor.get_sliced_grid(torch.tensor([1000, 700])) == (2, 2)


def test_image_processor_outputs(image_processor):
    pytest.importorskip("torch")
    from PIL import Image

    images = [[Image.new("RGB", (1000, 700))], [Image.new("RGB", (64, 64)), Image.new("RGB", (448, 4032))]]
    out = image_processor(images, do_pad=True, return_tensors="pt")
    pv, sizes, tgt = out["pixel_values"], out["image_sizes"], out["tgt_sizes"]
    assert isinstance(pv, list) and all(isinstance(p, list) for p in pv)
    assert [len(p) for p in pv] == [5, 1 + 10]
    assert [s.tolist() for s in sizes[1]] == [[64, 64], [448, 4032]]
    assert [tuple(t.shape) for t in tgt] == [(5, 2), (11, 2)]
    for strips, targets in zip(pv, tgt):
        for strip, (rows, cols) in zip(strips, targets.tolist()):
            assert tuple(strip.shape) == (3, 14, rows * cols * 14)
    assert tgt[1].tolist()[1] == [96, 11]  # the 448x4032 overview (154x1344) follows the 64x64 image
    assert sum(int(r * c) for r, c in tgt[1].tolist()[1:]) == slicing.slice_image(448, 4032).patches
    assert sum(int(r * c) for r, c in tgt[0].tolist()) == slicing.slice_image(1000, 700).patches


def test_video_kwarg_max_slice_nums_one(image_processor):
    pytest.importorskip("torch")
    from PIL import Image

    out = image_processor([[Image.new("RGB", (448, 4032))]], max_slice_nums=1, return_tensors="pt")
    assert len(out["pixel_values"][0]) == 1


def test_video_frames_array_is_one_prompt(image_processor):
    pytest.importorskip("torch")
    import numpy as np

    frames = np.full((4, 448, 448, 3), 255, dtype=np.uint8)  # how vLLM hands a dummy video to the processor
    out = image_processor([frames], max_slice_nums=1, return_tensors="pt")
    assert len(out["pixel_values"]) == 1 and len(out["pixel_values"][0]) == 4
    assert out["tgt_sizes"][0].tolist() == [[32, 32]] * 4
    assert float(out["pixel_values"][0][0].max()) == pytest.approx(1.0)


def test_patch_strip_is_row_major_over_the_patch_grid(image_processor):
    import numpy as np
    from PIL import Image

    # 2 rows x 3 cols of 14-px patches, patch (i, j) filled with red = 10 * (3 * i + j)
    array = np.zeros((28, 42, 3), dtype=np.uint8)
    for i in range(2):
        for j in range(3):
            array[i * 14:(i + 1) * 14, j * 14:(j + 1) * 14, 0] = 10 * (3 * i + j)
    strip, grid = image_processor.to_patch_strip(Image.fromarray(array))
    assert grid == (2, 3) and strip.shape == (3, 14, 6 * 14)
    for index in range(6):
        expected = (10 * index / 255.0 - 0.5) / 0.5
        assert np.allclose(strip[0, :, index * 14:(index + 1) * 14], expected, atol=1e-6)


def test_remote_processor_expands_the_image_pattern(real, image_processor, tokenizer):
    pytest.importorskip("torch")
    from PIL import Image

    module = _load_module(real / "processing_minicpmv.py")
    processor = module.MiniCPMVProcessor(image_processor=image_processor, tokenizer=tokenizer)
    out = processor([IMAGE_PROMPT], images=[[Image.new("RGB", (1000, 700))]], return_tensors="pt")
    ids = out["input_ids"][0].tolist()
    assert ids[0] == tokenizer.bos_token_id
    assert ids.count(tokenizer.convert_tokens_to_ids("<unk>")) == 5 * 64
    assert len(out["pixel_values"][0]) == 5


# -- weights -------------------------------------------------------------------------------------------------

def test_checkpoint_layout_counts(tiny, real):
    tiny_layout, real_layout = checkpoint_layout(_config(tiny)), checkpoint_layout(_config(real))
    assert (len(tiny_layout), parameter_count(_config(tiny))) == (77, 945_088)
    assert (len(real_layout), parameter_count(_config(real))) == (789, 8_099_175_152)
    assert real_layout["resampler.kv_proj.weight"] == (3584, 1152)
    assert real_layout["vpm.embeddings.position_embedding.weight"] == (4900, 1152)
    assert real_layout["llm.model.layers.27.self_attn.k_proj.weight"] == (512, 3584)
    assert "resampler.pos_embed" not in real_layout


def test_random_weights_match_the_layout(tiny):
    from safetensors import safe_open

    layout = checkpoint_layout(_config(tiny))
    with safe_open(str(tiny / "model.safetensors"), framework="numpy") as f:
        assert set(f.keys()) == set(layout)
        for name in ("llm.model.embed_tokens.weight", "resampler.query", "vpm.post_layernorm.weight"):
            tensor = f.get_tensor(name)
            assert tuple(tensor.shape) == layout[name] and str(tensor.dtype) == "float32"
        assert (f.get_tensor("vpm.post_layernorm.weight") == 1).all()
        assert f.get_tensor("llm.lm_head.weight").std() > 0


def test_a_4_5_kit_is_minicpm_v_4_5_with_qwen3_weights_and_the_stored_models_count(tmp_path):
    """version 4.5: config.json version 4.5 (vLLM's MiniCPMV4_5), a Qwen3 LLM (q/k norms, no qkv bias); plan reads
    the kit as MiniCPM-V-4.5, the real-size kit has the stored openbmb/MiniCPM-V-4_5's parameter count."""
    from safetensors import safe_open

    from diagnostics.models import get_model

    tiny45 = build_minicpmv26(tmp_path / "tiny45", size="tiny", weights="random", version="4.5")
    cfg = _config(tiny45)
    assert cfg["version"] == 4.5 and cfg["_memcheck_kit"]["version"] == "4.5" and cfg["attention_bias"] is False
    layout = checkpoint_layout(cfg)
    assert layout["llm.model.layers.0.self_attn.q_norm.weight"] == (64,)
    assert "llm.model.layers.0.self_attn.q_proj.bias" not in layout
    with safe_open(str(tiny45 / "model.safetensors"), framework="numpy") as f:
        assert set(f.keys()) == set(layout)
    model = get_model(str(tiny45))
    assert model.family.variant == "minicpm-v-4_5" and model.params == parameter_count(cfg)
    real45 = build_minicpmv26(tmp_path / "real45", size="real", version="4.5")
    assert get_model(str(real45)).params == get_model("minicpm-v-4_5").params == 8_696_386_800
    assert cli_main(["model-kit", "openbmb/MiniCPM-V-4_5", str(tmp_path / "cli45"), "--size", "tiny"]) == 0
    assert _config(tmp_path / "cli45")["version"] == 4.5


# -- command line and API errors -----------------------------------------------------------------------------

def test_cli_writes_and_refuses(tmp_path, capsys):
    out = tmp_path / "kit"
    assert cli_main(["model-kit", "minicpm-v-2_6", str(out), "--size", "tiny"]) == 0
    assert _config(out)["_memcheck_kit"] == {"size": "tiny", "weights": "none"}
    assert cli_main(["model-kit", "minicpm-v-2_6", str(out), "--size", "tiny"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert cli_main(["model-kit", "minicpm-v-2_6", str(out), "--size", "real", "--force"]) == 0
    assert _config(out)["hidden_size"] == 3584
    assert cli_main(["model-kit", "minicpm-v-2_6", str(tmp_path / "x"), "--size", "real", "--weights", "random"]) == 2
    err = capsys.readouterr().err
    assert "16 GB" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
    assert cli_main(["model-kit", "llava", str(tmp_path / "y")]) == 2
    assert "minicpm-v-2_6" in capsys.readouterr().err
    file_path = tmp_path / "file"
    file_path.write_text("x")
    assert cli_main(["model-kit", "minicpm-v-2_6", str(file_path)]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_api_rejects_bad_choices(tmp_path):
    with pytest.raises(UsageError, match="accepted: 2.6, 4.5"):
        build_minicpmv26(tmp_path / "a", version="4.0")
    with pytest.raises(UsageError, match="accepted: real, tiny"):
        build_minicpmv26(tmp_path / "a", size="small")
    with pytest.raises(UsageError, match="accepted: none, random"):
        build_minicpmv26(tmp_path / "a", weights="zeros")


# -- CPU shim ------------------------------------------------------------------------------------------------

def test_cpu_shim_patches_stream_capturing_after_a_find_spec_probe():
    pytest.importorskip("torch")
    code = ("import importlib.util; importlib.util.find_spec('torch'); import torch; "
            "print(torch.cuda.is_available() or torch.cuda.is_current_stream_capturing())")
    env = dict(os.environ, PYTHONPATH=CPU_SHIM_DIR)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() in ("False", "True")  # True only where a GPU makes the shim a no-op


def test_vlm_kit_writes_the_stored_configs_a_tokenizer_and_points_token_ids_at_it(tmp_path):
    import json

    from diagnostics.kit.vlm import build_vlm_kit, image_prompt, kit_families

    out = build_vlm_kit("llava-1.5-7b", tmp_path / "llava")
    config = json.loads((out / "config.json").read_text())
    vocab = json.loads((out / "tokenizer.json").read_text())["added_tokens"]
    assert config["image_token_index"] == next(t["id"] for t in vocab if t["content"] == "<image>")
    assert config["_memcheck_kit"]["source"] == "llava-1.5-7b" and config["vision_config"]["image_size"] == 336
    pre = json.loads((out / "preprocessor_config.json").read_text())
    assert pre["auto_map"]["AutoImageProcessor"] == "image_processing_kit.KitImageProcessor"
    assert "llama-3.2-11b-vision" not in kit_families() and "qwen2.5-vl-7b" in kit_families()
    assert "<|image_pad|>" in image_prompt("qwen2.5-vl") and "<image>" in image_prompt("llava")
    with pytest.raises(UsageError, match="not empty"):
        build_vlm_kit("llava-1.5-7b", out)


def test_vlm_kit_points_the_token_ids_a_family_names_in_its_kit(tmp_path):
    """GLM-4.1V: vLLM's dummy text decodes config.json's image_token_id / video_*_token_id (glm4_1v.py
    get_dummy_text); the family's Kit.config_tokens points them at the kit tokenizer (ids absent from it: empty text)."""
    import json

    from diagnostics.kit.vlm import build_vlm_kit

    out = build_vlm_kit("glm-4.1v-9b-thinking", tmp_path / "glm")
    config = json.loads((out / "config.json").read_text())
    ids = {t["content"]: t["id"] for t in json.loads((out / "tokenizer.json").read_text())["added_tokens"]}
    assert config["image_token_id"] == ids["<|image|>"] and config["video_start_token_id"] == ids["<|begin_of_video|>"]
    assert config["text_config"]["vocab_size"] == 151552  # shapes untouched


def test_image_processor_loads_without_trust_after_the_trusted_load(real):              # compat review item 4
    """vLLM 0.5.5/0.6.3 load the image processor without trust_remote_code; the kit's class registers itself as
    openbmb's does, so the untrusted load after the trusted one finds it (without: ValueError, custom code)."""
    from transformers import AutoImageProcessor

    trusted = AutoImageProcessor.from_pretrained(str(real), trust_remote_code=True)
    untrusted = AutoImageProcessor.from_pretrained(str(real))
    assert type(untrusted).__name__ == type(trusted).__name__ == "MiniCPMVImageProcessor"
    assert untrusted.max_slice_nums == 9
