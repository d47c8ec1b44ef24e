"""A small byte-level BPE tokenizer trained locally (no model hub), saved the way transformers loads it.

Memory does not depend on the tokenizer (the vocab size comes from config.json), but vLLM needs a real one:
special tokens that encode to one id each, a BOS, and `decode(encode(x)) == x`. Used by the MiniCPM-V kit and
by the tiny text model builder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

# A few hundred words of plain English plus digits and punctuation, enough for ~370 BPE tokens.
CORPUS = [
    "What is in the image? The image shows a small red house next to a tall green tree.",
    "Describe the picture in one sentence. A cat sits on a wooden table near the window.",
    "The quick brown fox jumps over the lazy dog while the sun sets behind the hills.",
    "Please answer the question about the photo: how many people are standing on the bridge?",
    "There are three boats on the river, and the water is calm and blue today.",
    "user assistant system: you are a helpful assistant that answers questions about images.",
    "Numbers 0 1 2 3 4 5 6 7 8 9 10 11 12 64 128 448 1024 4096 8192 and symbols ( ) [ ] { } < > / . , ; : ! ?",
    "Memory, cache, tokens, slices, patches, encoder, budget, profile, weights, engine, start.",
    "A video of a dog running on the beach, then a frame with a ball in the air.",
    "The chart shows the temperature rising in the morning and falling again at night.",
]


@dataclass(frozen=True)
class TokenizerFiles:
    """What build_tokenizer wrote: the directory, how many ids the tokenizer uses, and the special token ids."""

    out_dir: Path
    size: int  # len(vocab) including special tokens; config.json's vocab_size must be >= this
    special_ids: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class TokenizerSpec:
    """What to build: special tokens (they get the first ids, in order) and their roles, the embedding rows."""

    special_tokens: tuple[str, ...]
    bos: str | None = None
    eos: str | None = None
    unk: str | None = None
    pad: str | None = None
    vocab_size: int = 512
    chat_template: str | None = None
    model_max_length: int = 32768
    extra_config: dict = field(default_factory=dict)


def build_tokenizer(out_dir, spec: TokenizerSpec) -> TokenizerFiles:
    """Train a byte-level BPE on CORPUS; write tokenizer.json, tokenizer_config.json and special_tokens_map.json.

    spec.special_tokens are registered as special added tokens; bos/eos/unk/pad must be among them (or None),
    else ValueError. The trained vocab stays below spec.vocab_size, the embedding rows (ValueError if not).
    Needs the `tokenizers` library.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    special_tokens = list(dict.fromkeys(spec.special_tokens))
    bos, eos, unk, pad, vocab_size = spec.bos, spec.eos, spec.unk, spec.pad, spec.vocab_size
    for role, token in (("bos", bos), ("eos", eos), ("unk", unk), ("pad", pad)):
        if token is not None and token not in special_tokens:
            raise ValueError(f"{role} token {token!r} is not among special_tokens")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=max(vocab_size - 128, len(special_tokens) + 300),
        min_frequency=1,
        show_progress=False,
        special_tokens=[AddedToken(t, special=True, normalized=False) for t in special_tokens],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(CORPUS, trainer=trainer)
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special_tokens])
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    if size > vocab_size:
        raise ValueError(f"tokenizer has {size} ids, more than vocab_size {vocab_size}")
    tokenizer.save(str(out_dir / "tokenizer.json"))

    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": spec.model_max_length,
        "clean_up_tokenization_spaces": False,
        "add_bos_token": False,
        "add_eos_token": False,
        "additional_special_tokens": [t for t in special_tokens if t not in (bos, eos, unk, pad)],
    }
    for role, token in (("bos_token", bos), ("eos_token", eos), ("unk_token", unk), ("pad_token", pad)):
        if token is not None:
            config[role] = token
    if spec.chat_template is not None:
        config["chat_template"] = spec.chat_template
    config.update(spec.extra_config)
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out_dir / "special_tokens_map.json").write_text(
        json.dumps({k: config[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token") if k in config}
                   | {"additional_special_tokens": config["additional_special_tokens"]}, indent=2) + "\n"
    )
    return TokenizerFiles(out_dir, size, {t: tokenizer.token_to_id(t) for t in special_tokens})
