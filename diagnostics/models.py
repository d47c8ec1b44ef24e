"""Model shapes (numbers, not weights): built-in MiniCPM-V-2_6, the stored VLM configs and any local config.json.

VLM families (MiniCPM-V 2.6 / 4.5, Qwen2/2.5/3-VL, InternVL3, Gemma 3, LLaVA-1.5/OneVision, Llama-3.2-Vision) are
read by diagnostics.families from config.json (+ preprocessor_config.json / video_preprocessor_config.json); the
short names (qwen2.5-vl-7b, ...) are the stored configs in diagnostics/data/models (numbers, source noted), and
each answers to its Hugging Face repository id too (the families' data: families.stored_hub_ids()).

Parameter counts are done layer by layer the way vLLM builds the model (vocab rows padded to a multiple of 64),
so `weights_bytes()` equals vLLM's meta-device parameter bytes: 8,099,275,504 params = 16,198,551,008 B
(15.09 GiB) in bf16 for MiniCPM-V-2_6 (docs/minicpmv26-kit.md §4.1). The same arithmetic serves the tiny
kit shapes (945,088 params in checkpoint layout).
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path

from diagnostics import checkpoint, families, gguf_header
from diagnostics.checkpoint import TensorTable
from diagnostics.decoder import (FULL, LINEAR, SLIDING, STATE_POOL_SINCE, Decoder, decoder_from_config,
                                 hybrid_pool_bytes_per_token, layer_kinds, normalise, rope_cache_values,
                                 mrope_kind, state_pool_bytes_per_token)
from diagnostics.errors import UsageError
from diagnostics.families import Family, minicpmv
from diagnostics.families.common import VisionSpec
from diagnostics.quantization import Quantization, decoder_linear_params, read_quantization

VOCAB_PADDING = 64  # vLLM's DEFAULT_VOCAB_PADDING_SIZE for VocabParallelEmbedding / ParallelLMHead


@dataclass(frozen=True)
class ModelSpec:
    name: str
    architecture: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    max_position_embeddings: int
    dtype_bytes: int = 2
    params: int = 0  # as vLLM builds it (padded vocab)
    vision: VisionSpec | None = None
    tie_word_embeddings: bool = False
    source: str = "built-in"
    family: Family | None = None  # the VLM family (diagnostics.families); None for a text-only model
    rope_factor: float = 1.0  # rope scaling that lengthens the context vLLM derives (see derived_max_model_len)
    max_len_key: str = "max_position_embeddings"  # the config key max_position_embeddings was read from
    model_max_length: int | None = None  # config.json's model_max_length: vLLM accepts a max_model_len up to it
    quantization: Quantization | None = None  # from config.json's quantization_config
    decoder: Decoder | None = None  # text models: MoE / MLA / layer kinds (diagnostics.decoder)
    checkpoint: TensorTable | None = None  # the safetensors headers of a local directory or hub id
    # a VLM's text decoder (no `decoder` here): its layer kinds and sliding window (diagnostics.decoder.layer_kinds)
    layer_kinds: tuple[str, ...] = ()
    sliding_window: int = 0
    rope_values: int = 0  # the rotary cos/sin caches vLLM keeps as buffers (diagnostics.decoder.rope_cache_values)
    rope_mrope: str = ""  # those caches are M-RoPE's (decoder.mrope_kind; rows per version: decoder.rope_values_in)
    rope_type: str = ""  # text models: rope_scaling's rope_type / type as get_rope reads it ("" without rope_scaling)

    def kv_bytes_per_token(self, dtype_bytes: int | None = None, tp: int = 1, max_model_len: int | None = None,
                           windowed: bool = False, version=None, in_flight: int = 0, block_size: int = 16) -> float:
        """Paged KV bytes per token on one TP rank: 57,344 B for MiniCPM-V-2_6 in bf16 (tp=1).

        K and V of max(1, kv_heads // tp) heads per attention layer (vllm/config/model.py:1650-1670); MLA one
        latent of kv_lora_rank + qk_rope_head_dim on every rank; Mamba/linear-attention layers none (their state
        is per request). windowed (V1's hybrid KV manager) with max_model_len and sliding-window layers: the
        pool's bytes per token as vLLM counts its capacity (concurrency x max_model_len): layer groups, padding,
        blocks of `block_size` tokens, a sliding layer's min(window - 1 + in_flight, max_model_len) tokens plus one
        block (in_flight: tokens scheduled but not yet freed, max_num_batched_tokens per concurrent batch);
        diagnostics.decoder.hybrid_pool_bytes_per_token. version: vLLM's (MLA's latent cache from 0.7.1,
        diagnostics.decoder.mla_latent_cache; the group rule); None = the newest rules. windowed with
        Mamba/linear-attention layers whose state rule is known (Qwen3-Next's gated delta net, from 0.20): the
        pool's bytes per token with the state's blocks, diagnostics.decoder.state_pool_bytes_per_token. An int
        where neither pool rule applies, else a float."""
        db = dtype_bytes or self.dtype_bytes
        d = self.decoder
        if d is None and not self.layer_kinds:
            return 2 * self.layers * max(1, self.kv_heads // tp) * self.head_dim * db
        if d is None:
            per = 2 * max(1, self.kv_heads // tp) * self.head_dim * db
        else:
            per = d.kv_bytes_per_token_layer(db, tp, version, self.quantization.method if self.quantization else "")
        n, window = self.attention_layers(), self.window
        if windowed and max_model_len and window and n[SLIDING]:
            return hybrid_pool_bytes_per_token(n, per, block_size, int(max_model_len), window, in_flight, version)
        state = d.linear_state if d is not None else None
        if (windowed and max_model_len and state is not None and n[LINEAR] and not n[SLIDING]
                and (version is None or version >= STATE_POOL_SINCE)):
            # the state keeps the model's dtype (mamba_cache_dtype "auto"), whatever kv_cache_dtype says
            return state_pool_bytes_per_token(n, per, state.state_bytes(self.dtype_bytes, tp), block_size,
                                              int(max_model_len), version)
        return int(n[FULL] * per + n[SLIDING] * per)

    def attention_layers(self) -> dict[str, int]:
        """{kind: number of text layers} for FULL, SLIDING and LINEAR (all FULL without layer kinds)."""
        if self.decoder is not None:
            return self.decoder.attention_layers()
        kinds = self.layer_kinds or (FULL,) * self.layers
        return {k: kinds.count(k) for k in (FULL, SLIDING, LINEAR)}

    @property
    def window(self) -> int:
        """The text layers' sliding window in tokens (0: none)."""
        return self.decoder.sliding_window if self.decoder is not None else self.sliding_window

    def weights_bytes(self, dtype_bytes: int | None = None) -> int:
        """Parameter bytes as vLLM stores them: quantized decoder linear weights at their packed size (scales and
        zero points included), everything else at dtype_bytes (default: the checkpoint's dtype)."""
        db = dtype_bytes or self.dtype_bytes
        if self.quantization is None:
            return self.params * db
        if self.quantization.experts_only:
            q = self.decoder.expert_params() if self.decoder is not None else 0
        else:
            q = self.decoder.linear_params() if self.decoder is not None else decoder_linear_params(
            self.hidden, self.layers, self.heads, self.kv_heads, self.head_dim, self.intermediate)
        return int((self.params - q) * db + q * self.quantization.bytes_per_weight())

    @property
    def derived_max_model_len(self) -> int:
        """vLLM's derived max_model_len (tokens): the smallest length key of the config (max_len_key, see
        MAX_LEN_KEYS) times the rope scaling factor; the default max_model_len, and the most vLLM accepts without
        VLLM_ALLOW_LONG_MAX_MODEL_LEN unless model_max_length is larger (vllm/config/model.py
        `_get_and_verify_max_len`, transformers_utils/model_arch_config_convertor.py)."""
        return int(self.max_position_embeddings * self.rope_factor)

    @property
    def vocab_padded(self) -> int:
        return padded_vocab(self.vocab)

    @property
    def is_multimodal(self) -> bool:
        return self.vision is not None

    @property
    def is_gguf(self) -> bool:
        """Whether the weights are a GGUF file (diagnostics.gguf_header)."""
        return self.checkpoint is not None and self.checkpoint.fmt == "gguf"


def padded_vocab(vocab: int, multiple: int = VOCAB_PADDING) -> int:
    return -(-vocab // multiple) * multiple


def llm_params(llm: dict, vocab_rows: int, *, qkv_bias: bool = True) -> int:
    """Qwen2/Llama-style decoder: embeddings, attention (q/k/v with optional bias, o), gated MLP, 2 norms/layer.

    `llm` holds hidden, layers, heads, kv_heads, head_dim, intermediate and optionally tied (tie_word_embeddings);
    vocab_rows is the padded vocabulary. Returns a parameter count (multiply by dtype bytes for bytes)."""
    hidden, layers, intermediate = llm["hidden"], llm["layers"], llm["intermediate"]
    tied = llm.get("tied", False)
    q, kv = llm["heads"] * llm["head_dim"], llm["kv_heads"] * llm["head_dim"]
    attn = hidden * q + 2 * hidden * kv + q * hidden + ((q + 2 * kv) if qkv_bias else 0)
    per_layer = attn + 3 * hidden * intermediate + 2 * hidden
    return vocab_rows * hidden * (1 if tied else 2) + layers * per_layer + hidden


ALIASES = {"minicpm-v-2_6": "minicpm-v-2_6", "openbmb/minicpm-v-2_6": "minicpm-v-2_6",
           "kit:minicpm-v-2_6": "minicpm-v-2_6", "minicpm-v-2.6": "minicpm-v-2_6"}
STORED_DIR = Path(__file__).resolve().parent / "data" / "models"


def hub_id(name: str) -> str | None:
    """The Hugging Face repository of a stored config's short name (what the suite hands vLLM), else None."""
    return families.stored_hub_ids().get(str(name).lower().removeprefix("kit:"))


def stored_name(text: str, paths: bool = False) -> str | None:
    """The stored config a short name (or kit:NAME) or its hub id names (case-insensitive); with paths=True also a
    path ending in one (.../Qwen/Qwen2.5-VL-7B-Instruct, /models/Qwen2.5-VL-7B-Instruct: a log's local copy)."""
    key = str(text).strip().rstrip("/").lower()
    if key.removeprefix("kit:") in stored_models():
        return key.removeprefix("kit:")
    hubs = families.stored_hub_ids()
    by_hub = {hub.lower(): name for name, hub in hubs.items()}
    if not paths:
        return by_hub.get(key)
    by_hub.update({hub.lower().rsplit("/", 1)[-1]: name for name, hub in hubs.items()})
    for n in (2, 1):  # owner/name, then the repository name alone (a local copy's folder)
        tail = "/".join(key.split("/")[-n:])
        if tail in by_hub:
            return by_hub[tail]
    return None


HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}")  # owner/name, as the hub spells ids


def stored_models() -> list[str]:
    """Short names of the stored real configs (diagnostics/data/models/NAME/config.json)."""
    return sorted(p.name for p in STORED_DIR.iterdir() if (p / "config.json").is_file())


def accepted(hub: bool = True) -> str:
    """What a model argument may be; with hub=False (a command that reads no config from the hub) without the
    'any Hugging Face id' clause, so a refusal never lists as accepted what it just refused."""
    return ("minicpm-v-2_6, openbmb/MiniCPM-V-2_6, kit:minicpm-v-2_6, a stored name (" + ", ".join(stored_models())
            + ", also as kit:NAME) or its Hugging Face id, a directory with config.json (or a .gguf file beside one)"
            + (", or a Hugging Face id (owner/name)" if hub else ""))


def get_model(name, hub: bool = False) -> ModelSpec:
    """A built-in model by name/alias, a stored config by short name (or kit:NAME), or DIR/config.json's model;
    with hub=True also a Hugging Face id (owner/name: config.json and safetensors headers read remotely). Only the
    commands a user hands a model id to ask for the hub (plan --model); elsewhere an id is an unknown model."""
    if isinstance(name, ModelSpec):
        return name
    key = str(name).strip()
    if not key:  # Path("") is the working directory: it would be read as a checkpoint directory
        raise UsageError(f"model name is empty; accepted: {accepted(hub)}")
    if key.lower() in ALIASES:
        return MINICPM_V_2_6
    path = Path(key).expanduser()
    short = stored_name(key) if not path.is_dir() else None
    if short is not None:
        return model_from_dir(STORED_DIR / short, name=short)
    if path.is_dir():
        return model_from_dir(path)
    if path.name == "config.json" and path.is_file():
        return model_from_dir(path.parent)
    if path.suffix == ".gguf" and path.is_file():  # vLLM takes the file; its config.json sits beside it here
        spec = model_from_config(_read_json(path.parent / "config.json", required=True), name=str(path),
                                 source=str(path.parent / "config.json"))
        return dataclasses.replace(spec, checkpoint=gguf_header.read_gguf_files(path))
    if hub and HUB_ID.fullmatch(key) and not path.exists():
        return model_from_hub(key)
    if HUB_ID.fullmatch(key) and not path.exists():  # an id this command does not look up on the hub
        raise UsageError(f"model {key!r} is not a stored model and this command reads no config from the hub "
                         f"(plan --model {key} does); accepted: {accepted(hub=False)}")
    raise UsageError(f"unknown model {key!r}; accepted: {accepted(hub)}")


_DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "half": 2, "float32": 4, "float": 4}


def _read_json(path: Path, required: bool) -> dict:
    if not path.is_file():
        if required:
            raise UsageError(f"model directory {path.parent} has no {path.name}; accepted: {accepted()}")
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} is not a JSON object")
    return data


def model_from_dir(path, name: str | None = None) -> ModelSpec:
    """The model of a checkpoint directory: config.json, plus the processor configs a VLM family reads."""
    path = Path(path)
    cfg = _read_json(path / "config.json", required=True)
    processors = {f: _read_json(path / f, required=False)
                  for f in ("preprocessor_config.json", "video_preprocessor_config.json")}
    spec = model_from_config(cfg, name=name or str(path), source=str(path / "config.json"), processors=processors)
    table = checkpoint.read_local(path) or gguf_header.read_local_gguf(path)
    return _with_checkpoint(spec, table) if table is not None else spec


def _with_checkpoint(spec: ModelSpec, table: TensorTable) -> ModelSpec:
    """spec with its tensor table; UsageError (one line) when safetensors headers lack part of the language model
    the config describes (checkpoint.missing_parts): vLLM refuses to start from such a checkpoint
    (model_loader/default_loader.py:562-567, 0.32), and a weight figure from part of the table would be wrong."""
    if table.fmt == "safetensors":
        missing = checkpoint.missing_parts(table, spec.layers, spec.tie_word_embeddings if spec.vision is None
                                           else None)
        if missing:
            raise UsageError(f"{table.source}: the checkpoint lacks {' and '.join(missing)} that {spec.source} "
                             "describes; "
                             "accepted: a complete checkpoint (every shard, or an index naming them)")
    return dataclasses.replace(spec, checkpoint=table)


def model_from_hub(repo_id: str) -> ModelSpec:
    """A Hugging Face model id: its config.json (one small download) and its safetensors headers read remotely
    (no weights). UsageError, one line, when the hub cannot be reached (offline) or the id is unknown."""
    cfg = checkpoint.read_hub_config(repo_id)
    spec = model_from_config(cfg, name=repo_id, source=f"hub:{repo_id}/config.json")
    return _with_checkpoint(spec, checkpoint.read_hub(repo_id))


def _need(cfg: dict, key: str, where: str):
    """A size the text model cannot be without: present and a positive integer (0 heads divide by zero)."""
    if key not in cfg:
        raise UsageError(f"{where} lacks {key!r}; a text model needs hidden_size, num_hidden_layers, "
                         "num_attention_heads, intermediate_size, vocab_size")
    value = cfg[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{where}: {key} is {value!r}; accepted: a positive integer")
    return value


# The keys vLLM reads a model's length from, smallest wins; model_max_length, when set, overrides them
# (ModelArchConfigConvertor.derive_max_model_len_and_key, vLLM 0.32). Absent all: 2048 with a warning.
MAX_LEN_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "model_max_length",
                "max_target_positions", "max_sequence_length", "max_seq_length", "seq_len")


def max_len_from_config(cfg: dict) -> tuple[int, str]:
    """(length in tokens, key) as vLLM derives it from a text config, before rope scaling."""
    found = [(int(cfg[k]), k) for k in MAX_LEN_KEYS if isinstance(cfg.get(k), (int, float))
             and not isinstance(cfg.get(k), bool)]
    if isinstance(cfg.get("model_max_length"), (int, float)) and cfg["model_max_length"]:
        return int(cfg["model_max_length"]), "model_max_length"
    return min(found, key=lambda f: f[0]) if found else (2048, "max_position_embeddings")


def _length_fields(cfg: dict, text: dict) -> dict:
    """ModelSpec's length fields: vLLM's key, the rope factor (none for Gemma 3: its length is already scaled,
    vllm/config/model.py) and model_max_length."""
    length, key = max_len_from_config(text)
    gemma3 = "gemma3" in str(cfg.get("model_type") or text.get("model_type") or "")
    mml = text.get("model_max_length")
    return dict(max_position_embeddings=length, max_len_key=key, rope_factor=1.0 if gemma3 else rope_factor(text),
                model_max_length=int(mml) if isinstance(mml, (int, float)) and mml else None)


def _llm_fields(cfg: dict, where: str) -> dict:
    hidden = int(_need(cfg, "hidden_size", where))
    heads = int(_need(cfg, "num_attention_heads", where))
    return dict(
        hidden=hidden, layers=int(_need(cfg, "num_hidden_layers", where)), heads=heads,
        kv_heads=int(cfg.get("num_key_value_heads") or heads),
        head_dim=int(cfg.get("head_dim") or hidden // heads),
        intermediate=int(_need(cfg, "intermediate_size", where)), vocab=int(_need(cfg, "vocab_size", where)),
        max_position_embeddings=max_len_from_config(cfg)[0],
        tied=bool(cfg.get("tie_word_embeddings", False)),
    )


def _vision_spec(v: dict) -> VisionSpec:
    patch = v.get("patch_size", 14)
    return VisionSpec(
        hidden=int(v.get("embed_dim") or v["hidden_size"]), layers=int(v.get("depth") or v["num_hidden_layers"]),
        heads=int(v.get("num_heads") or v.get("num_attention_heads") or v.get("attention_heads")),
        mlp=int(v.get("intermediate_size") or int(v["embed_dim"]) * int(v.get("mlp_ratio", 4))),
        patch=int(patch[0] if isinstance(patch, list) else patch))


def _family_spec(cfg: dict, processors: dict, name: str, source: str, dtype_bytes: int) -> ModelSpec:
    """A VLM of diagnostics.families: its text config for the LLM terms, its vision config for the tower."""
    text, v, family, params = families.parse(cfg, processors.get("preprocessor_config.json"),
                                             processors.get("video_preprocessor_config.json"), source)
    f = _llm_fields(text, source)
    vision = v if isinstance(v, VisionSpec) else _vision_spec(v)
    arch = (cfg.get("architectures") or [str(cfg.get("model_type"))])[0]
    # an MLA language model (Kimi-VL's DeepSeek-V3) caches one latent per layer, not K and V heads: its KV rules
    # come from diagnostics.decoder (the parameter count stays the family's: tower + LLM)
    dec = decoder_from_config(normalise(text), arch, source) if text.get("kv_lora_rank") else None
    # Gemma 3's 5:1 sliding/full text layers (vLLM keeps only the window of the sliding ones); a top-level
    # use_sliding_window: false (Qwen2-VL) turns a text config's window off as in the text models
    kinds, window = layer_kinds({"use_sliding_window": cfg.get("use_sliding_window", True), **text}, f["layers"])
    return ModelSpec(name=name, architecture=arch, hidden=f["hidden"], layers=f["layers"],
                     heads=f["heads"], kv_heads=f["kv_heads"], head_dim=f["head_dim"], intermediate=f["intermediate"],
                     vocab=f["vocab"], dtype_bytes=dtype_bytes, params=params,
                     vision=vision, tie_word_embeddings=f["tied"], source=source, family=family,
                     quantization=read_quantization(cfg), decoder=dec, layer_kinds=kinds, sliding_window=window,
                     rope_values=rope_cache_values(text, f["head_dim"], dec.mla.qk_rope_head_dim if dec else None),
                     rope_mrope=mrope_kind(text),
                     **_length_fields(cfg, text))


# config counts the plan walks one by one (layers) or multiplies out (heads, experts), and their bound: far above
# any released model (the largest have a few hundred layers, 128 heads, 512 experts), low enough that a typo such
# as num_hidden_layers=10**9 is refused at once instead of iterating for hours
MAX_COUNT = 10_000
COUNT_KEYS = ("num_hidden_layers", "num_layers", "n_layer", "depth", "num_attention_heads", "num_key_value_heads",
              "num_heads", "multi_query_group_num", "num_experts", "num_local_experts", "n_routed_experts")


# widths and lengths, bounded the same way: 100x the largest released (hidden 16-25k, vocab 262k-1M, 10M positions)
MAX_SIZE = {"hidden_size": 2_000_000, "intermediate_size": 20_000_000, "vocab_size": 100_000_000,
            "max_position_embeddings": 1_000_000_000}


def _check_counts(cfg: dict, source: str) -> None:
    """UsageError (one line) when a COUNT_KEYS value of the config or of a sub-config (text_config,
    vision_config, ...) exceeds MAX_COUNT, or a MAX_SIZE key its bound."""
    bounds = {**dict.fromkeys(COUNT_KEYS, MAX_COUNT), **MAX_SIZE}
    for where, sub in [("", cfg)] + [(f"{k}.", v) for k, v in cfg.items() if isinstance(v, dict)]:
        for key, bound in bounds.items():
            v = sub.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v > bound:
                raise UsageError(f"{source}: {where}{key} is {v!r}; accepted: at most {bound:,} (far above any "
                                 "released model, whose largest have a few hundred layers, 512 experts, hidden "
                                 "sizes of ~25k and 10M positions)")


def model_from_config(cfg: dict, name: str = "config.json", source: str = "config.json",
                      processors: dict | None = None) -> ModelSpec:
    """ModelSpec for a config.json dict; processors: {"preprocessor_config.json": {...}, ...} where present.

    UsageError (one line, naming the architecture) for a vision-language architecture no family here knows."""
    _check_counts(cfg, source)
    archs = cfg.get("architectures") or []
    arch = archs[0] if archs else str(cfg.get("model_type", "unknown"))
    dtype_bytes = _DTYPE_BYTES.get(str(cfg.get("torch_dtype") or cfg.get("dtype") or "bfloat16"), 2)
    dtype_bytes = min(dtype_bytes, 2)  # vLLM's dtype="auto" runs float32 checkpoints in 16-bit on GPUs
    if families.lookup(cfg) is not None:
        return _family_spec(cfg, processors or {}, name, source, dtype_bytes)
    if isinstance(cfg.get("vision_config"), dict) or isinstance(cfg.get("audio_config"), dict):
        raise UsageError(f"{source}: architecture {arch} is not a model family vllm-memcheck knows; supported: "
                         f"{', '.join(families.supported_architectures())}, or a text-only model")
    text = cfg.get("text_config") if isinstance(cfg.get("text_config"), dict) else cfg
    text = normalise(text)
    model_type = str(text.get("model_type") or cfg.get("model_type") or "")
    qkv_bias, inter = None, None
    if arch == "QWenLMHeadModel" or model_type == "qwen":
        # Qwen (v1) stores the fused gate+up width: vLLM builds QWenMLP(hidden, intermediate_size // 2) and c_attn
        # with a bias (model_executor/models/qwen.py); its length may be only in seq_length
        qkv_bias, inter = True, int(_need(text, "intermediate_size", source)) // 2
    dec = decoder_from_config({**text, "model_type": model_type}, arch, source, qkv_bias=qkv_bias,
                              intermediate=inter)
    return ModelSpec(name=name, architecture=arch, hidden=dec.hidden, layers=dec.layers, heads=dec.heads,
                     kv_heads=dec.kv_heads, head_dim=dec.head_dim, intermediate=dec.intermediate,
                     vocab=dec.vocab, dtype_bytes=dtype_bytes, params=dec.params_per_rank(1), vision=None,
                     tie_word_embeddings=dec.tied, source=source, quantization=read_quantization(cfg),
                     decoder=dec, rope_values=rope_cache_values(text, dec.head_dim,
                                                                dec.mla.qk_rope_head_dim if dec.mla else None),
                     rope_mrope=mrope_kind(text), rope_type=rope_type(text),
                     **_length_fields(cfg, text))


def rope_type(cfg: dict) -> str:
    """rope_scaling's `rope_type` (else its older `type` key) as vLLM's get_rope dispatches on it; "" when the
    config has no rope_scaling / rope_parameters dict."""
    rope = cfg.get("rope_scaling") or cfg.get("rope_parameters")
    return str(rope.get("rope_type") or rope.get("type") or "") if isinstance(rope, dict) else ""


# rope types whose `factor` vLLM does not apply to max_position_embeddings (already scaled, or per-frequency)
ROPE_UNSCALED = ("su", "longrope", "llama3", "yarn", "deepseek_yarn", "deepseek_llama_scaling", "default", "mrope")


def rope_factor(cfg: dict) -> float:
    """The factor vLLM multiplies max_position_embeddings by (rope_scaling / rope_parameters `factor`), else 1."""
    rope = cfg.get("rope_scaling") or cfg.get("rope_parameters")
    if not isinstance(rope, dict):
        return 1.0
    kind = rope.get("rope_type") or rope.get("type") or "default"
    factor = rope.get("factor")
    if kind in ROPE_UNSCALED or not isinstance(factor, (int, float)) or isinstance(factor, bool) or factor <= 0:
        return 1.0
    return float(factor)


MINICPM_V_2_6 = model_from_config(minicpmv.BUILT_IN_CONFIG, name="openbmb/MiniCPM-V-2_6", source="built-in")
