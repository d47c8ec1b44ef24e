"""A checkpoint's own tensor table: every tensor's name, dtype, shape and stored bytes, read from safetensors headers.

Pure Python, no torch and no weights read: a `.safetensors` file starts with an 8-byte little-endian header length N
and N bytes of JSON, `{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}`
(https://huggingface.co/docs/safetensors/index#format). A tensor's stored bytes are `end - begin`, so packed
formats (GPTQ/AWQ int32 words, fp8, mxfp4 U8 blocks and E8M0 scales, NVFP4 F4 pairs, bitsandbytes U8) are counted
as stored without knowing their dtype's width.

* `read_local(dir)`: `model.safetensors.index.json` (its `weight_map` names the shards) or every `*.safetensors`
  file of the directory; None when the directory has none (config arithmetic is then the fallback).
* `read_hub(repo_id)`: the same headers read remotely by `huggingface_hub.get_safetensors_metadata` (HTTP range
  requests for the headers only, as hf-mem does); one-line UsageError when offline, not found or not safetensors.
"""

from __future__ import annotations

import contextlib
import json
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


def _tensors_of_header(header: dict, where: str) -> list[TensorInfo]:
    out = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, end = (int(x) for x in entry["data_offsets"])
            shape = tuple(int(d) for d in entry["shape"])
            dtype = str(entry["dtype"])
        except (KeyError, TypeError, ValueError):
            raise UsageError(f"{where}: tensor {name!r} has no dtype/shape/data_offsets; not a safetensors header") \
                from None
        if end < begin:
            raise UsageError(f"{where}: tensor {name!r} has data_offsets {begin}..{end}; not a safetensors header")
        out.append(TensorInfo(name, dtype, shape, end - begin))
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
    return sorted(directory.glob("*.safetensors"))


def read_local(directory) -> TensorTable | None:
    """The tensor table of a local checkpoint directory, or None when it holds no safetensors file."""
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
            begin, end = info.data_offsets
            tensors.append(TensorInfo(name, str(info.dtype), tuple(info.shape), int(end) - int(begin)))
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
