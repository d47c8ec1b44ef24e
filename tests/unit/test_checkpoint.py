"""diagnostics/checkpoint.py: safetensors headers read in pure Python, checked against the real safetensors and
huggingface_hub packages (files written by `safetensors.numpy.save_file`, metadata objects of huggingface_hub)."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from diagnostics.checkpoint import DTYPE_BITS, INDEX_FILE, TensorInfo, TensorTable, missing_parts, read_header, \
    read_hub, read_hub_config, read_local, table_from_hub_metadata
from diagnostics.errors import UsageError


def _write(path, tensors: dict):
    save_file(tensors, str(path))
    return path


def test_header_matches_the_safetensors_package(tmp_path):
    f = _write(tmp_path / "model.safetensors", {
        "model.embed_tokens.weight": np.zeros((10, 8), np.float16),
        "model.layers.0.self_attn.qkv_proj.qweight": np.zeros((4, 24), np.int32),
        "model.norm.weight": np.zeros((8,), np.float32),
        "scalar": np.zeros((), np.float32)})
    ours = {t.name: t for t in read_header(f)}
    with safe_open(str(f), "np") as fh:
        for name in fh.keys():
            arr = fh.get_tensor(name)
            assert ours[name].shape == tuple(arr.shape)
            assert ours[name].nbytes == arr.nbytes  # bytes from data_offsets = what the package reads back
    assert ours["model.embed_tokens.weight"].dtype == "F16" and ours["scalar"].numel == 1


def test_a_directory_with_an_index_reads_every_shard_and_counts_bytes_per_dtype(tmp_path):
    _write(tmp_path / "model-00001-of-00002.safetensors", {"a.weight": np.zeros((4, 4), np.float16)})
    _write(tmp_path / "model-00002-of-00002.safetensors", {"b.qweight": np.zeros((2, 8), np.int32),
                                                           "c.weight": np.zeros((3,), np.uint8)})
    (tmp_path / INDEX_FILE).write_text(json.dumps({"metadata": {"total_size": 99}, "weight_map": {
        "a.weight": "model-00001-of-00002.safetensors", "b.qweight": "model-00002-of-00002.safetensors",
        "c.weight": "model-00002-of-00002.safetensors"}}))
    table = read_local(tmp_path)
    assert table.names() == {"a.weight", "b.qweight", "c.weight"}
    assert table.bytes_by_dtype() == {"I32": 64, "F16": 32, "U8": 3}
    assert table.total_bytes() == 99 and "2 safetensors files" in table.source


def test_a_directory_without_safetensors_is_none(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert read_local(tmp_path) is None


@pytest.mark.parametrize("content, fragment", [
    (b"abc", "shorter than a safetensors header"),
    (struct.pack("<Q", 0), "header length 0"),
    (struct.pack("<Q", 50) + b"{}", "truncated safetensors header"),
    (struct.pack("<Q", 5) + b"nope!", "not JSON"),
    (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
    (struct.pack("<Q", 13) + b'{"x": {"a":1}}'[:13], "not JSON"),
])
def test_broken_files_are_one_line_usage_errors(tmp_path, content, fragment):
    f = tmp_path / "model.safetensors"
    f.write_bytes(content)
    with pytest.raises(UsageError, match=fragment) as exc:
        read_header(f)
    assert "\n" not in str(exc.value)


def test_an_entry_without_offsets_and_an_index_naming_a_missing_shard_are_usage_errors(tmp_path):
    header = json.dumps({"x": {"dtype": "F16", "shape": [2]}}).encode()
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(UsageError, match="has no dtype/shape/data_offsets"):
        read_local(tmp_path)
    (tmp_path / INDEX_FILE).write_text(json.dumps({"weight_map": {"x": "gone.safetensors"}}))
    with pytest.raises(UsageError, match="not in the directory, e.g. gone.safetensors"):
        read_local(tmp_path)


def _raw_header(path, entry: dict):
    raw = json.dumps({"model.embed_tokens.weight": entry}).encode()
    data = b"\0" * max(0, entry["data_offsets"][1])  # the data too: safe_open checks it is covered exactly
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


@pytest.mark.parametrize("entry, fragment", [
    ({"dtype": "Q9", "shape": [10, 10], "data_offsets": [0, 200]}, "dtype 'Q9'; accepted: the safetensors dtypes"),
    ({"dtype": "BF16", "shape": [-10, 10], "data_offsets": [0, 200]}, "shape \\[-10, 10\\]; accepted: a list of non-neg"),
    ({"dtype": "BF16", "shape": [2.5, 4], "data_offsets": [0, 20]}, "accepted: a list of non-negative integers"),
    ({"dtype": "BF16", "shape": [10, 10], "data_offsets": [0, 2]}, "spans 2 bytes but shape \\[10, 10\\] of BF16 takes 200"),
    ({"dtype": "F4", "shape": [3], "data_offsets": [0, 1]}, "F4 takes 1.5"),
    ({"dtype": "U8", "shape": [4], "data_offsets": [-4, 0]}, "data_offsets \\[-4, 0\\]; accepted"),
])
def test_header_values_the_safetensors_reader_refuses_are_one_line_usage_errors(tmp_path, entry, fragment):
    f = _raw_header(tmp_path / "model.safetensors", entry)
    with pytest.raises(SafetensorError):  # the real reader refuses the same header
        safe_open(str(f), "np")
    with pytest.raises(UsageError, match=fragment) as exc:
        read_header(f)
    assert "\n" not in str(exc.value) and "model.embed_tokens.weight" in str(exc.value)


@pytest.mark.parametrize("dtype", sorted(DTYPE_BITS))
def test_every_safetensors_dtype_with_a_consistent_span_is_read_as_the_package_reads_it(tmp_path, dtype):
    f = _raw_header(tmp_path / "model.safetensors", {"dtype": dtype, "shape": [2, 4],
                                                        "data_offsets": [0, DTYPE_BITS[dtype]]})
    with safe_open(str(f), "np"):  # accepted by the real reader (its dtype list and size rule are DTYPE_BITS)
        pass
    assert read_header(f)[0].nbytes == DTYPE_BITS[dtype]


def test_an_index_less_shard_set_must_hold_every_shard_its_names_promise(tmp_path):
    _write(tmp_path / "model-00001-of-00003.safetensors", {"a.weight": np.zeros((4, 4), np.float16)})
    _write(tmp_path / "model-00003-of-00003.safetensors", {"c.weight": np.zeros((4, 4), np.float16)})
    with pytest.raises(UsageError, match="one of 3 shards and 1 are missing \\(e.g. model-00002-of-00003.safetensors"
                                         "\\), with no model.safetensors.index.json") as exc:
        read_local(tmp_path)
    assert "\n" not in str(exc.value)
    _write(tmp_path / "model-00002-of-00003.safetensors", {"b.weight": np.zeros((4, 4), np.float16)})
    assert read_local(tmp_path).names() == {"a.weight", "b.weight", "c.weight"}


def _table(names):
    return TensorTable(tuple(TensorInfo(n, "BF16", (2,), 4) for n in names), "test")


def test_missing_parts_names_the_layers_embedding_and_head_a_checkpoint_lacks():
    layers = [f"model.layers.{i}.input_layernorm.weight" for i in (0, 1, 2, 5)]
    full = ["model.embed_tokens.weight", "lm_head.weight"] + [f"model.layers.{i}.mlp.up_proj.weight" for i in range(6)]
    assert missing_parts(_table(full), 6, tied=False) == []
    assert missing_parts(_table(["model.embed_tokens.weight"] + layers), 6, tied=False) == [
        "decoder layers 3-4 of num_hidden_layers=6", "lm_head (tie_word_embeddings is false)"]
    assert missing_parts(_table(layers), 3, tied=True) == ["the input embedding (embed_tokens)"]
    assert missing_parts(_table(layers), 8, tied=None) == ["decoder layers 3-4, 6-7 of num_hidden_layers=8"]
    # names this reader does not know as decoder layers (llm.model.layers.N, vision towers): nothing to compare
    assert missing_parts(_table(["llm.model.layers.0.x.weight", "vpm.encoder.layers.0.y.weight"]), 28, False) == []


def test_hub_metadata_objects_give_the_same_table_as_the_local_header(tmp_path):
    """huggingface_hub's own dataclasses (what get_safetensors_metadata returns), built from a real header."""
    from huggingface_hub.utils import SafetensorsFileMetadata, SafetensorsRepoMetadata, TensorInfo

    f = _write(tmp_path / "model.safetensors", {"w": np.zeros((3, 5), np.float16), "s": np.zeros((5,), np.float32)})
    n = struct.unpack("<Q", f.read_bytes()[:8])[0]
    raw = json.loads(f.read_bytes()[8:8 + n])
    tensors = {k: TensorInfo(dtype=v["dtype"], shape=v["shape"], data_offsets=tuple(v["data_offsets"]))
               for k, v in raw.items() if k != "__metadata__"}
    meta = SafetensorsRepoMetadata(metadata=None, sharded=False, weight_map={k: "model.safetensors" for k in tensors},
                                   files_metadata={"model.safetensors": SafetensorsFileMetadata(
                                       metadata={}, tensors=tensors)})
    hub = table_from_hub_metadata(meta, "org/tiny")
    assert sorted(hub.tensors, key=lambda t: t.name) == sorted(read_local(tmp_path).tensors, key=lambda t: t.name)
    assert hub.source.startswith("hub:org/tiny")


def test_offline_hub_reads_are_one_line_errors(monkeypatch):
    """The real huggingface_hub code path with HF_HUB_OFFLINE=1 (no network here): one line, no traceback."""
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    for call in (read_hub, read_hub_config):
        with pytest.raises(UsageError) as exc:
            call("Qwen/Qwen3-30B-A3B")
        text = str(exc.value)
        assert "\n" not in text and "Qwen/Qwen3-30B-A3B" in text and "local checkpoint directory" in text


def test_an_unresolvable_hub_fails_at_once_in_one_line(monkeypatch):
    """Without network the hub's host does not resolve: one line at once, not huggingface_hub's five retries."""
    import socket

    import huggingface_hub.constants as c

    def no_dns(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    with pytest.raises(UsageError, match=r"cannot be resolved \(offline\?\)") as exc:
        read_hub("deepseek-ai/DeepSeek-V2-Lite")
    assert "\n" not in str(exc.value)


def test_plan_reads_a_hub_id_through_huggingface_hubs_functions(tmp_path, monkeypatch):
    """model_from_hub end to end with huggingface_hub's two calls replaced by local answers of the real types
    (the replacements' parameters are checked against the real functions')."""
    import inspect
    import socket

    import huggingface_hub
    from huggingface_hub.utils import SafetensorsFileMetadata, SafetensorsRepoMetadata, TensorInfo

    from diagnostics.models import get_model
    from diagnostics.predict.estimator import plan

    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "num_hidden_layers": 1,
           "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 1024, "max_position_embeddings": 2048}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    tensors = {"model.embed_tokens.weight": TensorInfo("BF16", [1024, 64], (0, 131072)),
               "lm_head.weight": TensorInfo("BF16", [1024, 64], (131072, 262144))}
    meta = SafetensorsRepoMetadata(None, False, {k: "model.safetensors" for k in tensors},
                                   {"model.safetensors": SafetensorsFileMetadata({}, tensors)})

    def fake_metadata(repo_id, *, revision=None, **kw):
        return meta

    def fake_download(repo_id, filename, *, revision=None, **kw):
        return str(tmp_path / filename)

    for fake, real in ((fake_metadata, huggingface_hub.get_safetensors_metadata),
                       (fake_download, huggingface_hub.hf_hub_download)):
        params = list(inspect.signature(real).parameters)
        assert all(p in params for p in list(inspect.signature(fake).parameters)[:-1]), (real, params)
    monkeypatch.setattr(huggingface_hub, "get_safetensors_metadata", fake_metadata)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: [])
    with pytest.raises(UsageError, match="is not a stored model and this command reads no config from the hub"):
        get_model("org/tiny-llama")  # without hub=True an id is not looked up
    m = get_model("org/tiny-llama", hub=True)
    assert m.checkpoint.source.startswith("hub:org/tiny-llama") and m.checkpoint.total_bytes() == 262144
    w = plan(m, "a10", "0.32.0", "serve", {"max_model_len": 2048}).components["weights"]
    # the header's bytes as stored + vLLM's rotary cache (2,048 positions x head_dim 16 in bf16): derived
    assert w.basis.startswith("derived: hub:org/tiny-llama") and "loaded as stored" in w.basis
    assert w.value_gib * 2**30 == 262144 + 2048 * 16 * 2
