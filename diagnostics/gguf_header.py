"""A GGUF file's tensor table, read from its header in pure Python (no weights read), as vLLM holds the tensors.

Layout (GGUF v2/v3, little-endian; https://github.com/ggml-org/ggml/blob/master/docs/gguf.md): magic `GGUF`, u32
version, u64 tensor count, u64 metadata count; each metadata entry a string key (u64 length + UTF-8), a u32 value
type and the value (arrays: u32 element type, u64 count, elements); then per tensor its name, u32 n_dims, u64 dims
(innermost first), u32 ggml type and u64 offset; the data starts at the next multiple of `general.alignment`
(default 32). A tensor's bytes are n_elements / block_size x type_size (gguf-py constants.py GGML_QUANT_SIZES).

How vLLM holds them (model_executor/layers/quantization/gguf.py, 0.23.0; GGUF support is in 0.6.0 - 0.23.x and gone
from 0.24.0; a split `-NNNNN-of-MMMMM.gguf` set loads from 0.20.0): linear, embedding and MoE weights keep their GGUF blocks as stored (GGUFLinearMethod.create_weights
:440-486, GGUFEmbeddingMethod :671, GGUFMoEMethod :562), dequantized per call, never at load; the supported types
are F32/F16/BF16 and the standard, K- and I-matrix quants (:164-194; others raise "Unsupported GGUF quantization
type", :488-492); a merged layer (qkv, gate_up) whose shards have different types is padded to the widest row
(`_create_padded_weight_param`, :496-529). Norms and biases are ordinary parameters in the run's dtype.

The table's names are mapped to Hugging Face names (blk.N.attn_q -> model.layers.N.self_attn.q_proj, ...) so that
predict.shards' TP rules and predict.pipeline's stages apply; dtypes are "GGUF_<type>" for what vLLM keeps as stored
and "F32"/"F16"/"BF16" for 1-D tensors it casts.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

from diagnostics.checkpoint import TensorInfo, TensorTable
from diagnostics.errors import UsageError
from diagnostics.versions import Version

MAGIC = b"GGUF"
GGUF_SINCE = Version(0, 6, 0)  # quantization/gguf.py first in 0.6.0 (not in 0.5.4; 0.5.5 not checked)
GGUF_UNTIL = Version(0, 24, 0)  # gone from 0.24.0 (quantization/gguf.py and model_loader/gguf_loader.py)
GGUF_SPLIT_SINCE = Version(0, 20, 0)  # split `-NNNNN-of-MMMMM.gguf` sets: gguf_loader.py 0.20.0:79-100 (0.19.0: one file)
QK_K = 256
# ggml type id -> (name, block size, type size): gguf-py constants.py GGML_QUANT_SIZES
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 2 + 16), 3: ("Q4_1", 32, 2 + 2 + 16),
    6: ("Q5_0", 32, 2 + 4 + 16), 7: ("Q5_1", 32, 2 + 2 + 4 + 16), 8: ("Q8_0", 32, 2 + 32),
    9: ("Q8_1", 32, 4 + 4 + 32), 10: ("Q2_K", 256, 2 + 2 + QK_K // 16 + QK_K // 4),
    11: ("Q3_K", 256, 2 + QK_K // 4 + QK_K // 8 + 12), 12: ("Q4_K", 256, 2 + 2 + QK_K // 2 + 12),
    13: ("Q5_K", 256, 2 + 2 + QK_K // 2 + QK_K // 8 + 12), 14: ("Q6_K", 256, 2 + QK_K // 2 + QK_K // 4 + QK_K // 16),
    15: ("Q8_K", 256, 4 + QK_K + QK_K // 8), 16: ("IQ2_XXS", 256, 2 + QK_K // 4),
    17: ("IQ2_XS", 256, 2 + QK_K // 4 + QK_K // 32), 18: ("IQ3_XXS", 256, 2 + QK_K // 4 + QK_K // 8),
    19: ("IQ1_S", 256, 2 + QK_K // 8 + QK_K // 16), 20: ("IQ4_NL", 32, 2 + 16),
    21: ("IQ3_S", 256, 2 + QK_K // 4 + QK_K // 8 + QK_K // 32 + 4), 22: ("IQ2_S", 256, 2 + QK_K // 4 + QK_K // 16),
    23: ("IQ4_XS", 256, 2 + 2 + QK_K // 2 + QK_K // 64), 24: ("I8", 1, 1), 25: ("I16", 1, 2), 26: ("I32", 1, 4),
    27: ("I64", 1, 8), 28: ("F64", 1, 8), 29: ("IQ1_M", 256, QK_K // 8 + QK_K // 16 + QK_K // 32),
    30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 2 + 4 * 13), 35: ("TQ2_0", 256, 2 + 64),
}
# what vLLM's GGUF layers accept (gguf.py 0.23.0:164-194): UNQUANTIZED_TYPES | DEQUANT_TYPES
VLLM_TYPES = frozenset({"F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K", "Q3_K", "Q4_K",
                        "Q5_K", "Q6_K", "IQ1_M", "IQ1_S", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ4_XS",
                        "IQ4_NL"})
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
STRING, ARRAY = 8, 9
MAX_COUNT = 10**7  # more tensors or metadata entries than any real file: a corrupt header
# llama.cpp tensor names (gguf-py tensor_mapping.py) -> Hugging Face module names
LAYER_NAMES = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_qkv": "self_attn.qkv_proj", "attn_output": "self_attn.o_proj", "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm", "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm",
    "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj", "ffn_gate_inp": "mlp.gate",
    "ffn_gate_exps": "mlp.experts.gate_proj", "ffn_up_exps": "mlp.experts.up_proj",
    "ffn_down_exps": "mlp.experts.down_proj", "ffn_gate_shexp": "mlp.shared_expert.gate_proj",
    "ffn_up_shexp": "mlp.shared_expert.up_proj", "ffn_down_shexp": "mlp.shared_expert.down_proj",
    "ffn_gate_inp_shexp": "mlp.shared_expert_gate"}
GLOBAL_NAMES = {"token_embd": "model.embed_tokens", "output": "lm_head", "output_norm": "model.norm",
                "rope_freqs": "model.rotary_emb.inv_freq"}
MERGED = {"q_proj": "qkv", "k_proj": "qkv", "v_proj": "qkv", "gate_proj": "gate_up", "up_proj": "gate_up"}
_BLK = re.compile(r"^blk\.(\d+)\.(.+?)(\.(weight|bias))?$")


class _Reader:
    """Sequential little-endian reads of a header; a short read is one UsageError naming the file."""

    def __init__(self, fh, where: str):
        self.fh, self.where = fh, where

    def take(self, n: int) -> bytes:
        raw = self.fh.read(n)
        if len(raw) < n:
            raise UsageError(f"{self.where}: truncated GGUF header (ends inside the tensor table or metadata)")
        return raw

    def unpack(self, fmt: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        n = self.unpack("<Q")
        if n > 1 << 31:
            raise UsageError(f"{self.where}: a GGUF string of {n} bytes; not a GGUF header")
        return self.take(n).decode("utf-8", errors="replace")

    def value(self, vtype: int):
        if vtype == STRING:
            return self.string()
        if vtype == ARRAY:
            etype, n = self.unpack("<I"), self.unpack("<Q")
            if etype in _SCALAR:  # skipped: only scalars are read (tokenizer arrays can hold 150k entries)
                self.take(n * struct.calcsize(_SCALAR[etype]))
                return None
            for _ in range(n):
                self.value(etype)
            return None
        if vtype not in _SCALAR:
            raise UsageError(f"{self.where}: GGUF metadata value type {vtype} is not one of 0-12; not a GGUF header")
        return self.unpack(_SCALAR[vtype])


def _hf_name(name: str) -> str:
    m = _BLK.match(name)
    if m:
        leaf = m.group(4) or "weight"
        return f"model.layers.{m.group(1)}.{LAYER_NAMES.get(m.group(2), m.group(2))}.{leaf}"
    base, _, leaf = name.rpartition(".")
    return f"{GLOBAL_NAMES.get(base, base)}.{leaf}" if base else GLOBAL_NAMES.get(name, name)


def read_gguf(path) -> TensorTable:
    """The tensor table of one `.gguf` file from its header, names mapped to Hugging Face's, bytes as vLLM holds
    each tensor (stored blocks; merged-layer padding). UsageError (one line naming the file) for a file that is not
    GGUF v2/v3, a truncated header or data section, a tensor whose width is not whole blocks, or a weight of a type
    vLLM's GGUF layers refuse (accepted: VLLM_TYPES)."""
    path, where = Path(path), str(path)
    try:
        with path.open("rb") as fh:
            r = _Reader(fh, where)
            if r.take(4) != MAGIC:
                raise UsageError(f"{where}: not a GGUF file (no 'GGUF' magic); accepted: a GGUF v2 or v3 file")
            version = r.unpack("<I")
            if version not in (2, 3):
                raise UsageError(f"{where}: GGUF version {version} is not supported; accepted: GGUF v2 or v3")
            n_tensors, n_kv = r.unpack("<Q"), r.unpack("<Q")
            if n_tensors > MAX_COUNT or n_kv > MAX_COUNT:
                raise UsageError(f"{where}: {n_tensors} tensors / {n_kv} metadata entries; not a GGUF header")
            meta = {}
            for _ in range(n_kv):
                key = r.string()
                meta[key] = r.value(r.unpack("<I"))
            infos = [_tensor(r) for _ in range(n_tensors)]
            header_end = fh.tell()
        size = path.stat().st_size
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    align = meta.get("general.alignment") or 32
    data_start = -(-header_end // align) * align
    tensors = [_info(where, name, dims, gtype) for name, dims, gtype, _ in infos]
    end = max((off + t.nbytes for (_, _, _, off), t in zip(infos, tensors)), default=0)
    if data_start + end > size:
        raise UsageError(f"{where}: truncated GGUF file ({size} bytes; its tensor table needs {data_start + end})")
    padded = _pad_merged(tensors)
    return TensorTable(tuple(padded), f"{path} (1 GGUF file)", fmt="gguf", adjusted=padded != tensors)


_SHARD = re.compile(r"-(\d+)-of-(\d+)\.gguf$")


def shard_files(path) -> list[Path]:
    """The files vLLM loads for a GGUF path: every existing `-NNNNN-of-MMMMM.gguf` shard of its set, else the file
    itself (`GGUFModelLoader._get_all_gguf_files`, model_loader/gguf_loader.py 0.20.0:79-100)."""
    path = Path(path)
    m = _SHARD.search(path.name)
    if not m:
        return [path]
    width, total = len(m.group(1)), int(m.group(2))
    stem = path.name[:m.start(1)]
    found = [path.parent / f"{stem}{i:0{width}d}-of-{total:0{width}d}.gguf" for i in range(1, total + 1)]
    return [f for f in found if f.is_file()] or [path]


def read_gguf_files(path) -> TensorTable:
    """The tensor table of a GGUF file, or of its whole shard set when it is one shard (vLLM >= 0.20.0 loads split
    GGUF; the table's `files` says how many, and predict refuses a set on older versions)."""
    files = shard_files(path)
    if len(files) == 1:
        return read_gguf(files[0])
    tables = [read_gguf(f) for f in files]
    return TensorTable(tuple(t for tab in tables for t in tab.tensors), f"{path} ({len(files)} GGUF files)",
                       fmt="gguf", adjusted=any(tab.adjusted for tab in tables), files=len(files))


def read_local_gguf(directory) -> TensorTable | None:
    """The GGUF weights of a checkpoint directory (None: no `.gguf` file): one file, or the shards of one split
    set. Other mixes (e.g. a Q4_K_M and a Q8_0 file) are refused in one line: pass the file."""
    ggufs = sorted(Path(directory).glob("*.gguf"))
    if not ggufs:
        return None
    if len(ggufs) > 1 and set(shard_files(ggufs[0])) != set(ggufs):
        raise UsageError(f"{directory} holds {len(ggufs)} GGUF files that are not one split set ({ggufs[0].name}, "
                         "...); accepted: --model naming the .gguf file to plan")
    return read_gguf_files(ggufs[0])


def _tensor(r: _Reader) -> tuple[str, tuple[int, ...], int, int]:
    name = r.string()
    n_dims = r.unpack("<I")
    if not 1 <= n_dims <= 4:
        raise UsageError(f"{r.where}: tensor {name!r} has {n_dims} dimensions; not a GGUF header (1-4)")
    dims = tuple(r.unpack("<Q") for _ in range(n_dims))
    return name, dims, r.unpack("<I"), r.unpack("<Q")


def _info(where: str, name: str, dims: tuple[int, ...], gtype: int) -> TensorInfo:
    if gtype not in GGML_TYPES:
        raise UsageError(f"{where}: tensor {name!r} has ggml type {gtype}, unknown; accepted: "
                         f"{', '.join(sorted(VLLM_TYPES))}")
    tname, block, size = GGML_TYPES[gtype]
    if dims[0] % block:
        raise UsageError(f"{where}: tensor {name!r} ({tname}) has {dims[0]} columns, not whole blocks of {block}")
    n = 1
    for d in dims:
        n *= d
    if len(dims) > 1 and tname not in VLLM_TYPES:
        raise UsageError(f"{where}: tensor {name!r} is {tname}, which vLLM's GGUF layers refuse (Unsupported GGUF "
                         f"quantization type); accepted: {', '.join(sorted(VLLM_TYPES))}")
    dtype = tname if len(dims) == 1 and tname in ("F32", "F16", "BF16") else f"GGUF_{tname}"
    return TensorInfo(_hf_name(name), dtype, tuple(reversed(dims)), n // block * size)


def _pad_merged(tensors: list[TensorInfo]) -> list[TensorInfo]:
    """vLLM pads the shards of a merged layer (q/k/v, gate/up) to the widest row when their types differ
    (gguf.py 0.23.0:496-529): each shard then holds rows x the widest row's bytes."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i, t in enumerate(tensors):
        parts = t.name.split(".")
        if len(parts) >= 3 and parts[-1] == "weight" and parts[-2] in MERGED and ".experts." not in t.name:
            groups.setdefault((".".join(parts[:-3]), MERGED[parts[-2]]), []).append(i)
    out = list(tensors)
    for members in groups.values():
        widest = max(tensors[i].nbytes // max(1, tensors[i].shape[0]) for i in members)
        for i in members:
            t = tensors[i]
            out[i] = TensorInfo(t.name, t.dtype, t.shape, t.shape[0] * widest)
    return out


def gguf_version_check(name: str, table: TensorTable, version) -> None:
    """UsageError (one line) when vLLM `version` does not load this GGUF checkpoint: before GGUF_SINCE, from
    GGUF_UNTIL, or a split set before GGUF_SPLIT_SINCE."""
    if not GGUF_SINCE <= version < GGUF_UNTIL:
        raise UsageError(f"model {name}: a GGUF checkpoint loads in vLLM {GGUF_SINCE} to {GGUF_UNTIL} (exclusive), "
                         f"not {version}; accepted: --vllm in that range, or a safetensors checkpoint")
    if table.files > 1 and version < GGUF_SPLIT_SINCE:
        raise UsageError(f"model {name}: a split GGUF ({table.files} files) loads from vLLM {GGUF_SPLIT_SINCE}, "
                         f"not {version}; accepted: a newer --vllm, or one merged .gguf file")
