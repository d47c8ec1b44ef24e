"""A checkpoint's own tensor table: every tensor's name, dtype, shape and stored bytes, read from safetensors headers.

Pure Python, no torch and no weights read: a `.safetensors` file starts with an 8-byte little-endian header length N
and N bytes of JSON, `{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}`
(https://huggingface.co/docs/safetensors/index#format). A tensor's stored bytes are `end - begin`, so packed
formats (GPTQ/AWQ int32 words, fp8, mxfp4 U8 blocks and E8M0 scales, NVFP4 F4 pairs, bitsandbytes U8) are counted
as stored without knowing their dtype's width.

* `read_local(dir)`: `model.safetensors.index.json` (its `weight_map` names the shards) or every `*.safetensors`
  file of the directory (every shard a `-NNNNN-of-NNNNN` name promises must be there); None when the directory has
  none (config arithmetic is then the fallback). Each entry is checked as the safetensors reader checks it
  (`tensor_info`); `missing_parts` names the decoder layers / embedding / lm_head a table lacks.
* `read_hub(repo_id)`: the same headers read remotely by `huggingface_hub.get_safetensors_metadata` (HTTP range
  requests for the headers only, as hf-mem does); one-line UsageError when offline, not found or not safetensors.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import struct
import urllib.parse
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from diagnostics.errors import UsageError

INDEX_FILE = "model.safetensors.index.json"
MAX_HEADER_BYTES = 100 * 2**20  # safetensors' own limit on the JSON header (100 MB)
# element widths of the dtypes that can be converted on load (the rest are kept as stored)
FLOAT_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}
# bits per element of every dtype the safetensors format accepts (safetensors 0.8's Dtype; its reader refuses any
# other name, and a tensor whose data_offsets span is not numel x bits / 8: "invalid shape, data type, or offset")
DTYPE_BITS = {"BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8,
              "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
              "I32": 32, "U32": 32, "F32": 32, "C64": 64, "F64": 64, "I64": 64, "U64": 64}
# the language model's own decoder layers (not a vision tower's): model.layers.N / language_model.model.layers.N
LAYER = re.compile(r"^(?:model\.|language_model\.model\.|model\.language_model\.|transformer\.encoder\.)?"
                   r"layers\.(\d+)\.")
# a shard of an index-less set: model-00001-of-00004.safetensors (huggingface_hub's / transformers' naming)
SHARD_NAME = re.compile(r"^(?P<stem>.+)-(?P<i>\d+)-of-(?P<n>\d+)\.safetensors$")


@dataclass(frozen=True)
class TensorInfo:
    """One stored tensor: dtype as the header writes it ("BF16", "I32", "F8_E4M3", "U8", ...), shape, bytes."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class TensorTable:
    """Every tensor of a checkpoint (all shards), and where the headers were read. fmt: "safetensors" or "gguf"
    (diagnostics.gguf_header); adjusted: some tensor's bytes are vLLM's on-load size, not the stored size."""

    tensors: tuple[TensorInfo, ...]
    source: str
    fmt: str = "safetensors"
    adjusted: bool = False
    files: int = 1  # GGUF: how many files (a split set: vLLM >= 0.20.0)

    def total_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    def bytes_by_dtype(self) -> dict[str, int]:
        """{dtype: stored bytes}, largest first."""
        out: dict[str, int] = defaultdict(int)
        for t in self.tensors:
            out[t.dtype] += t.nbytes
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def names(self) -> set[str]:
        return {t.name for t in self.tensors}


def _is_count(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def tensor_info(name: str, dtype, shape, offsets, where: str) -> TensorInfo:
    """One header entry checked as the safetensors reader checks it: dtype one of DTYPE_BITS, shape and
    data_offsets non-negative integers, end - begin == numel x bits / 8. UsageError (one line) otherwise."""
    if dtype not in DTYPE_BITS:
        raise UsageError(f"{where}: tensor {name!r} has dtype {dtype!r}; accepted: the safetensors dtypes "
                         f"{', '.join(DTYPE_BITS)}")
    if not isinstance(shape, (list, tuple)) or not all(_is_count(d) for d in shape):
        raise UsageError(f"{where}: tensor {name!r} has shape {shape!r}; accepted: a list of non-negative integers")
    if (not isinstance(offsets, (list, tuple)) or len(offsets) != 2 or not all(_is_count(x) for x in offsets)
            or offsets[1] < offsets[0]):
        raise UsageError(f"{where}: tensor {name!r} has data_offsets {offsets!r}; accepted: [begin, end], "
                         "non-negative integers, begin <= end")
    info = TensorInfo(name, dtype, tuple(shape), offsets[1] - offsets[0])
    if info.numel * DTYPE_BITS[dtype] != 8 * info.nbytes:
        raise UsageError(f"{where}: tensor {name!r} spans {info.nbytes} bytes but shape {list(shape)} of {dtype} "
                         f"takes {info.numel * DTYPE_BITS[dtype] / 8:g}; accepted: data_offsets end - begin = "
                         "numel x dtype size")
    return info


def _tensors_of_header(header: dict, where: str) -> list[TensorInfo]:
    out = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= entry.keys():
            raise UsageError(f"{where}: tensor {name!r} has no dtype/shape/data_offsets; not a safetensors header")
        out.append(tensor_info(name, entry["dtype"], entry["shape"], entry["data_offsets"], where))
    return out


def read_header(path) -> list[TensorInfo]:
    """The tensors of one `.safetensors` file from its header (the first 8 + N bytes; no tensor data is read).

    UsageError (one line naming the file) when the file is shorter than its header says, the length is absurd or
    the JSON is not a safetensors header."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise UsageError(f"{path}: shorter than a safetensors header (8-byte length + JSON)")
            (n,) = struct.unpack("<Q", head)
            if n == 0 or n > MAX_HEADER_BYTES:
                raise UsageError(f"{path}: header length {n} is not a safetensors header (1..{MAX_HEADER_BYTES})")
            raw = fh.read(n)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) < n:
        raise UsageError(f"{path}: truncated safetensors header ({len(raw)} of {n} bytes)")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise UsageError(f"{path}: the safetensors header is not JSON") from None
    if not isinstance(header, dict):
        raise UsageError(f"{path}: the safetensors header is not a JSON object")
    return _tensors_of_header(header, str(path))


def _shard_files(directory: Path) -> list[Path]:
    index = directory / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            files = sorted(set(weight_map.values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise UsageError(f"{index}: not a safetensors index (a JSON object with a weight_map)") from None
        missing = [f for f in files if not (directory / f).is_file()]
        if missing:
            raise UsageError(f"{index} names {len(missing)} shard(s) not in the directory, e.g. {missing[0]}; "
                             "accepted: a directory holding every shard the index names")
        return [directory / f for f in files]
    files = sorted(directory.glob("*.safetensors"))
    _check_shard_set(directory, files)
    return files


def _check_shard_set(directory: Path, files: list[Path]) -> None:
    """Without an index, every shard a `-NNNNN-of-NNNNN` name promises must be there: vLLM globs the directory's
    *.safetensors and loads what it finds (model_loader/default_loader.py:229-230, 0.32), then refuses the
    parameters no file filled ("Following weights were not initialized from checkpoint", :562-567)."""
    names = {f.name for f in files}
    for f in files:
        m = SHARD_NAME.match(f.name)
        if not m:
            continue
        width, n = len(m["i"]), int(m["n"])
        want = [f"{m['stem']}-{i:0{width}d}-of-{m['n']}.safetensors" for i in range(1, n + 1)]
        missing = [w for w in want if w not in names]
        if missing:
            raise UsageError(f"{directory}: {f.name} is one of {n} shards and {len(missing)} are missing (e.g. "
                             f"{missing[0]}), with no {INDEX_FILE}; accepted: a directory holding every shard")


def missing_parts(table: TensorTable, layers: int, tied: bool | None) -> list[str]:
    """What a checkpoint lacks for the language model vLLM builds: decoder layers 0..layers-1 without a tensor
    (by the layer index in LAYER-style names), and, where `tied` is not None (text models), the input embedding
    and, untied, the lm_head. [] when complete, or when no tensor name is a decoder layer this reader knows
    (nothing to compare). vLLM refuses such a checkpoint at load: default_loader.py:562-567 (0.32)."""
    seen = {int(m.group(1)) for t in table.tensors if (m := LAYER.search(t.name))}
    if not seen:
        return []
    out = []
    gone = [i for i in range(layers) if i not in seen]
    if gone:
        out.append(f"decoder layers {_spans(gone)} of num_hidden_layers={layers}")
    if tied is None:
        return out
    parts = [set(t.name.lower().split(".")[:-1]) for t in table.tensors]
    if not any(p & {"embed_tokens", "wte", "word_embeddings", "tok_embeddings"} for p in parts):
        out.append("the input embedding (embed_tokens)")
    if not tied and not any(p & {"lm_head", "output_layer", "embed_out"} for p in parts):
        out.append("lm_head (tie_word_embeddings is false)")
    return out


def _spans(ix: list[int]) -> str:
    """[3, 4, 5, 9] -> '3-5, 9'."""
    spans, start = [], ix[0]
    for a, b in zip(ix, ix[1:] + [None]):
        if b != a + 1:
            spans.append(f"{start}-{a}" if a > start else str(a))
            start = b
    return ", ".join(spans)


def read_local(directory) -> TensorTable | None:
    """The tensor table of a local checkpoint directory, or None when it holds no safetensors file. UsageError
    (one line) for a bad header, an index naming absent shards, or an index-less shard set with shards missing."""
    directory = Path(directory)
    files = _shard_files(directory)
    if not files:
        return None
    tensors: list[TensorInfo] = []
    for f in files:
        tensors += read_header(f)
    return TensorTable(tuple(tensors), f"{directory} ({len(files)} safetensors file{'s' if len(files) > 1 else ''})")


def table_from_hub_metadata(meta, repo_id: str) -> TensorTable:
    """A TensorTable from huggingface_hub's SafetensorsRepoMetadata (files_metadata -> tensors -> dtype, shape,
    data_offsets): the same fields a local header holds."""
    tensors = []
    for fname, fmeta in sorted(meta.files_metadata.items()):
        for name, info in fmeta.tensors.items():
            tensors.append(tensor_info(name, str(info.dtype), list(info.shape), list(info.data_offsets),
                                       f"hub:{repo_id}/{fname}"))
    n = len(meta.files_metadata)
    return TensorTable(tuple(tensors), f"hub:{repo_id} ({n} safetensors file{'s' if n > 1 else ''})")


@contextlib.contextmanager
def _hub_call(repo_id: str, what: str):
    """Run one huggingface_hub call: offline (HF_HUB_OFFLINE) or an unresolvable endpoint fails at once, without
    the library's five retries; its retry warnings are kept off the terminal; any failure is one UsageError line."""
    try:
        from huggingface_hub import constants, logging as hf_logging
    except ImportError:
        raise UsageError(f"--model {repo_id}: reading a hub checkpoint needs huggingface_hub (pip install "
                         "huggingface_hub); or pass a local checkpoint directory") from None
    accepted = "accepted: a reachable hub id, or a local checkpoint directory"
    host = urllib.parse.urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    if not constants.HF_HUB_OFFLINE:
        try:
            socket.getaddrinfo(host, 443)
        except OSError:
            raise UsageError(f"--model {repo_id}: cannot read its {what}: the hub ({host}) cannot be resolved "
                             f"(offline?); {accepted}") from None
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"--model {repo_id}: cannot read its {what} from the Hugging Face hub ({_why(exc)}); "
                         f"{accepted}") from None
    finally:
        hf_logging.set_verbosity(level)


def read_hub(repo_id: str, revision: str | None = None) -> TensorTable:
    """The tensor table of a Hugging Face model repository, its headers read remotely (no weights downloaded).

    Uses huggingface_hub's `get_safetensors_metadata` (honours HF_HUB_OFFLINE, HF_TOKEN and HF_ENDPOINT). Raises
    UsageError, one line, when huggingface_hub is missing, the hub is unreachable or offline, the repository is
    unknown or gated, or it holds no safetensors weights."""
    with _hub_call(repo_id, "safetensors headers"):
        from huggingface_hub import get_safetensors_metadata

        meta = get_safetensors_metadata(repo_id, revision=revision)
    return table_from_hub_metadata(meta, repo_id)


def read_hub_config(repo_id: str, revision: str | None = None) -> dict:
    """config.json of a Hugging Face model repository (hf_hub_download: that one small file, cached).

    UsageError, one line, as `read_hub`."""
    with _hub_call(repo_id, "config.json"):
        from huggingface_hub import hf_hub_download

        cfg = json.loads(Path(hf_hub_download(repo_id, "config.json", revision=revision)).read_text(encoding="utf-8"))
    if not isinstance(cfg, dict):
        raise UsageError(f"--model {repo_id}: its config.json is not a JSON object")
    return cfg


def _why(exc: Exception) -> str:
    """A short reason for a failed hub call: the exception's class and first line, no URL query or token."""
    first = (str(exc).strip().splitlines() or [""])[0]
    first = first.split("?")[0].split(". ")[0][:160]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
