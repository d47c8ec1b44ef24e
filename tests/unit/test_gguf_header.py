"""diagnostics.gguf_header: a real (tiny) GGUF file written by the documented binary layout, read back, sized as vLLM
holds it (quantized blocks as stored, merged shards padded, norms in the run's dtype), and bad files refused in one
line. When the `gguf` package is importable the writer is checked against its GGUFReader."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from diagnostics.errors import UsageError
from diagnostics.gguf_header import read_gguf
from diagnostics.models import get_model
from diagnostics.predict.estimator import plan
from header_kit import H, INTER, V, llama_gguf, write_gguf

ROOT = Path(__file__).resolve().parents[2]


def test_the_header_is_read_names_mapped_and_blocks_sized(tmp_path):
    table = read_gguf(llama_gguf(tmp_path, v_type="Q4_K"))
    by = {t.name: t for t in table.tensors}
    assert table.fmt == "gguf" and len(table.tensors) == 21 and not table.adjusted
    q = by["model.layers.0.self_attn.q_proj.weight"]
    assert (q.dtype, q.shape, q.nbytes) == ("GGUF_Q4_K", (H, H), H * H // 256 * 144)
    assert by["lm_head.weight"].nbytes == V * H // 256 * 210  # Q6_K: 210 bytes per 256 values
    assert by["model.norm.weight"].dtype == "F32" and by["model.norm.weight"].nbytes == 4 * H
    assert by["model.layers.1.mlp.down_proj.weight"].shape == (H, INTER)  # rows x columns, as torch


def test_merged_shards_of_different_types_are_padded_as_vllm_does(tmp_path):
    table = read_gguf(llama_gguf(tmp_path, v_type="Q6_K"))
    by = {t.name: t for t in table.tensors}
    assert table.adjusted
    # q (256 rows) and k (64 rows) are Q4_K (144 B per block); v is Q6_K (210 B): every shard gets 210 B rows
    assert by["model.layers.0.self_attn.q_proj.weight"].nbytes == H * 210
    assert by["model.layers.0.self_attn.k_proj.weight"].nbytes == 64 * 210
    assert by["model.layers.0.mlp.gate_proj.weight"].nbytes == INTER * 144  # gate/up both Q4_K: no padding


def test_plan_sizes_weights_from_the_gguf_header(tmp_path):
    llama_gguf(tmp_path, v_type="Q4_K")
    model = get_model(tmp_path)
    w = plan(model, "a10", "0.10.0", "llm", {"max_model_len": 2048}).components["weights"]
    emb = V * H // 256 * 144
    head = V * H // 256 * 210
    layer = (2 * H * H + 2 * 64 * H + 3 * H * INTER) // 256 * 144 + 2 * H * 2  # norms cast to bf16
    rope = 2048 * (H // 4) * 2  # vLLM's rotary cache: max_position_embeddings x head_dim in bf16
    assert w.value_gib * 2**30 == pytest.approx(emb + head + 2 * layer + H * 2 + rope)
    assert w.basis.startswith("derived") and "GGUF" in w.basis


def test_vllm_versions_without_gguf_are_refused(tmp_path):
    llama_gguf(tmp_path)
    for version in ("0.5.4", "0.24.0", "0.32.0"):
        with pytest.raises(UsageError, match="GGUF checkpoint loads in vLLM 0.6.0 to 0.24.0"):
            plan(get_model(tmp_path), "a10", version, "llm", {"max_model_len": 2048})


@pytest.mark.parametrize("kind, match", [
    ("magic", "not a GGUF file"), ("version", "GGUF version 1 is not supported"),
    ("cut", "truncated GGUF file"), ("type", "TQ1_0, which vLLM's GGUF layers refuse"),
    ("blocks", "not whole blocks of 256"),
])
def test_bad_files_are_one_usage_line(tmp_path, kind, match):
    t = [("blk.0.attn_q.weight", (H, H), "TQ1_0" if kind == "type" else "Q4_K")]
    if kind == "blocks":
        t = [("blk.0.attn_q.weight", (100, H), "Q4_K")]
    path = write_gguf(tmp_path / "m.gguf", t, version=1 if kind == "version" else 3, cut=7 if kind == "cut" else 0,
                      magic=b"GGUX" if kind == "magic" else b"GGUF")
    with pytest.raises(UsageError, match=match) as err:
        read_gguf(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_a_truncated_header_and_split_files_are_refused(tmp_path):
    path = write_gguf(tmp_path / "m.gguf", [("blk.0.attn_q.weight", (H, H), "Q4_K")])
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(UsageError, match="truncated GGUF header"):
        read_gguf(path)
    llama_gguf(tmp_path)
    write_gguf(tmp_path / "model-00002-of-00002.gguf", [("output.weight", (H, V), "Q6_K")])
    with pytest.raises(UsageError, match="GGUF files"):
        get_model(tmp_path)


def test_the_cli_says_one_line_and_exits_2(tmp_path):
    llama_gguf(tmp_path)
    (tmp_path / "model-Q4_K_M.gguf").write_bytes(b"GGUF\x03\0\0\0")
    out = subprocess.run([sys.executable, "-m", "diagnostics", "plan", "--model", str(tmp_path), "--card", "a10",
                          "--vllm", "0.10.0", "--no-vllm-exact"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and "truncated GGUF header" in out.stderr and "Traceback" not in out.stderr


def test_the_writer_against_the_gguf_package(tmp_path):
    gguf = pytest.importorskip("gguf")
    path = llama_gguf(tmp_path, v_type="Q4_K")
    reader = gguf.GGUFReader(str(path))
    ours = {t.name: t.nbytes for t in read_gguf(path).tensors}
    theirs = {t.name: int(t.n_bytes) for t in reader.tensors}
    assert sorted(theirs.values()) == sorted(ours.values()) and len(theirs) == 21
    assert str(reader.fields["general.architecture"].contents()) == "llama"


def test_a_gguf_file_path_is_its_directorys_config_and_that_file(tmp_path):
    path = llama_gguf(tmp_path)
    write_gguf(tmp_path / "other-Q8_0.gguf", [("output.weight", (H, V), "Q8_0")])  # a second file: not read
    model = get_model(path)
    assert model.is_gguf and len(model.checkpoint.tensors) == 21 and model.checkpoint.source.startswith(str(path))
    (tmp_path / "config.json").unlink()
    with pytest.raises(UsageError, match="config.json"):
        get_model(path)


def test_a_split_set_is_read_whole_and_needs_0_20(tmp_path):
    llama_gguf(tmp_path).unlink()  # its config.json stays; the weights come as a set of two shards
    write_gguf(tmp_path / "m-00001-of-00002.gguf", [("token_embd.weight", (H, V), "Q4_K")])
    write_gguf(tmp_path / "m-00002-of-00002.gguf", [("output.weight", (H, V), "Q6_K")])
    table = get_model(tmp_path / "m-00002-of-00002.gguf").checkpoint
    assert table.files == 2 and {t.name for t in table.tensors} == {"model.embed_tokens.weight", "lm_head.weight"}
    assert get_model(tmp_path).checkpoint.files == 2
    plan(get_model(tmp_path), "a10", "0.20.0", "llm", {"max_model_len": 2048})
    with pytest.raises(UsageError, match="split GGUF \\(2 files\\) loads from vLLM 0.20.0"):
        plan(get_model(tmp_path), "a10", "0.19.0", "llm", {"max_model_len": 2048})
