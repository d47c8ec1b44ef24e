"""Vision-language model families, MiniCPM-V included: one module per family behind one interface.

Every module of this package that declares ARCHITECTURES is a family (MODULES finds them: adding a family is adding
its module, no list to edit; minicpmv first, the others by name) and declares:
  ARCHITECTURES  HF architecture -> variant (MiniCPM-V: variant_of(config) picks it from config.json's version)
  VARIANTS       variant -> common.Variant (modalities, version window, kit, stored configs and hub ids)
  parse(cfg, preprocessor, video preprocessor, where) -> (text config, vision config or VisionSpec, shape, params)
  items(shape, settings, seq_len, counts, version) -> {modality: Item} (vLLM's largest dummy items; modalities
    are setting_values.MODALITIES: image, video, audio; a modality the version's encoder budget leaves out has no
    Item, as MiniCPM-o's audio from vLLM 0.30)
  knobs(shape) -> [Knob] (the settings that change the dummy items, as data: explain's advice and ladders)
  size_knobs(shape, version, modalities) -> [SizeKnob] (the knobs that size one item, with their domain per
                 max_model_len, as `plan --fit` and the suite's search and matrix walk them; [] when none)
  geometry(shape, settings, modality, version) -> Geometry (the pixel size of the largest item the suite's
                 worst-case request sends)
and optionally encoder_bytes(model, prof, db, eager, tp, coef, version) (default: common.tower_encoder_bytes),
vision_tower_params(vision, llm hidden) (the tower + projector parameters as vLLM builds them; default: an estimate),
eager_attention(version, rules) (default: never), modalities(variant, version) (default: the variant's),
known_gaps(shape, version, settings) -> [str] (what plan does not model for this family, among plan's notes) and
MM_KWARGS (the mm_processor_kwargs keys items() reads).
check() raises at import when a module lacks a piece; tests/unit/test_families.py checks the data behind them.
Pure: no torch, no vllm.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from dataclasses import dataclass
from types import ModuleType

from diagnostics.errors import UsageError
from diagnostics.families import minicpmv
from diagnostics.families.common import Geometry, Item, Knob, Kit, SizeKnob, Variant, tower_encoder_bytes
from diagnostics.versions import Version, parse_version, read_version

REQUIRED = ("ARCHITECTURES", "VARIANTS", "parse", "items", "knobs", "size_knobs", "geometry")


def discover() -> tuple[ModuleType, ...]:
    """Every module of this package that declares ARCHITECTURES (a family), MiniCPM-V first, then by name: a new
    family is its module alone, no list to extend here."""
    found = [importlib.import_module(f"{__name__}.{info.name}") for info in pkgutil.iter_modules(__path__)]
    return (minicpmv,) + tuple(m for m in found if hasattr(m, "ARCHITECTURES") and m is not minicpmv)


MODULES = discover()


def check(modules=MODULES) -> None:
    """RuntimeError naming the module and the piece when a family module lacks part of the interface."""
    owner: dict[str, str] = {}
    for mod in modules:
        for arch in getattr(mod, "ARCHITECTURES", {}):
            if owner.setdefault(arch, mod.__name__) != mod.__name__:
                raise RuntimeError(f"family modules {owner[arch]} and {mod.__name__} both claim {arch}")
        for name in REQUIRED:
            if not hasattr(mod, name):
                raise RuntimeError(f"family module {mod.__name__} lacks {name}")
        fn = getattr(mod, "encoder_bytes", None)  # called with the vLLM version (Family.encoder_bytes)
        if fn is not None and "version" not in inspect.signature(fn).parameters:
            raise RuntimeError(f"family module {mod.__name__}'s encoder_bytes takes no version")
        variants = set(getattr(mod, "VARIANT_NAMES", ())) | set(mod.ARCHITECTURES.values())
        for variant in variants:
            if not isinstance(mod.VARIANTS.get(variant), Variant):
                raise RuntimeError(f"family module {mod.__name__} lacks VARIANTS[{variant!r}]")


check()
BY_ARCHITECTURE = {arch: (mod, variant) for mod in MODULES for arch, variant in mod.ARCHITECTURES.items()}


@dataclass(frozen=True)
class Family:
    """What ModelSpec carries for a VLM: the variant, its module and parsed shape; every family question
    (modalities, version window, dummy items, knobs, kit, encoder bytes) is asked through it."""

    variant: str
    module: ModuleType
    shape: object

    @property
    def info(self) -> Variant:
        return self.module.VARIANTS[self.variant]

    @property
    def since(self) -> Version:
        return read_version(self.info.window.since)

    @property
    def until(self) -> Version | None:
        return read_version(self.info.window.until) if self.info.window.until else None

    @property
    def v0_only_until(self) -> Version | None:
        w = self.info.window
        return read_version(w.v0_only_until) if w.v0_only_until else None

    @property
    def kit(self) -> Kit:
        return self.info.kit

    def modalities(self, version=None) -> tuple[str, ...]:
        fn = getattr(self.module, "modalities", None)
        return fn(self.variant, parse_version(version)) if fn and version is not None else self.info.modalities

    @property
    def knobs(self) -> list[Knob]:
        """The settings that change this model's dummy items, as data (common.Knob), the family's own first."""
        return list(self.module.knobs(self.shape))

    @property
    def knob(self) -> str:
        """The advised knobs in one line (explain's advice names them)."""
        return " or ".join(k.text() for k in self.knobs if k.advise)

    def size_knobs(self, version, modalities: tuple[str, ...]) -> list[SizeKnob]:
        """The knobs that size one dummy item in this vLLM version with these modalities active (common.SizeKnob:
        name, setting, step, domain per max_model_len), as `plan --fit` walks them; [] when the family has none."""
        return list(self.module.size_knobs(self.shape, parse_version(version), tuple(modalities)))

    def geometry(self, settings: dict, modality: str, version) -> Geometry:
        """(width, height, basis, note) of the largest `modality` item in pixels (a video: each frame)."""
        return self.module.geometry(self.shape, settings, modality, parse_version(version))

    def items(self, settings: dict, seq_len: int, counts: dict[str, int], version) -> dict[str, Item]:
        """Largest dummy item per active modality (counts: modality -> items per prompt, as vLLM asks)."""
        return self.module.items(self.shape, settings, seq_len, counts, parse_version(version))

    def tokens_per_item(self, knob: Knob, value, settings: dict, version, seq_len: int | None = None) -> int | None:
        """vLLM's max tokens per item of knob.modality with the knob at `value` (None: the knob changes no item's
        tokens). settings: resolved settings (max_model_len is the default seq_len)."""
        if knob.modality is None:
            return None
        s = {**settings, knob.setting: knob.setting_value(settings, value)}
        got = self.items(s, seq_len or int(settings.get("max_model_len") or 0), {knob.modality: 1}, version)
        return got[knob.modality].per_item if knob.modality in got else None

    def encoder_bytes(self, model, prof, db: int, eager: bool, tp: int, coef, version=None) -> dict:
        """The encoder pass's bytes (the family's encoder_bytes, default common.tower_encoder_bytes); version: the
        vLLM release (None: unknown, the module's newest rule)."""
        fn = getattr(self.module, "encoder_bytes", tower_encoder_bytes)
        return fn(model, prof, db, eager, tp, coef, parse_version(version) if version is not None else None)

    def vision_tower_params(self, model) -> int | None:
        """The vision tower + projector parameters as vLLM builds them (exact), or None where the family module does
        not count them (predict.terms then estimates). model: ModelSpec."""
        fn = getattr(self.module, "vision_tower_params", None)
        return fn(model.vision, model.hidden) if fn else None

    def eager_attention(self, version, rules: str) -> bool:
        """Does the vision tower compute L^2 attention scores (eager) in this vLLM version and rule family?"""
        fn = getattr(self.module, "eager_attention", None)
        return bool(fn and fn(parse_version(version), rules))

    def refusal(self, version, name: str) -> str | None:
        """Why this vLLM has no model class for this model (before `since`, from `until`), else None."""
        v = parse_version(version)
        who = name if name == self.variant else f"{name} ({self.variant})"
        if v < self.since:
            return f"{who} needs vLLM >= {self.since}: vLLM {v} has no model class for it"
        if self.until is not None and v >= self.until:
            return (f"{who} is not in vLLM {v}: removed in {self.until}; plan for --vllm "
                    f"{self.info.window.last} or earlier")
        return None


def supported_architectures() -> list[str]:
    return sorted(BY_ARCHITECTURE)


def lookup(cfg: dict):
    """(module, variant) for a config.json dict, or None when its architecture is not a VLM family here.

    UsageError when the architecture is a family's but the config's version has no rules here (MiniCPM-V 2.0)."""
    for arch in cfg.get("architectures") or []:
        if arch in BY_ARCHITECTURE:
            mod, variant = BY_ARCHITECTURE[arch]
            pick = getattr(mod, "variant_of", None)
            return (mod, pick(cfg) if pick else variant)
    if cfg.get("model_type") in getattr(minicpmv, "MODEL_TYPES", ()):
        return minicpmv, minicpmv.variant_of(cfg)
    return None


def parse(cfg: dict, pre: dict, video_pre: dict, where: str):
    """-> (text config, vision config or VisionSpec, Family, params); UsageError when a needed field is missing."""
    mod, variant = lookup(cfg)
    try:
        text, vision, shape, params = mod.parse(cfg, pre or {}, video_pre or {}, where)
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"{where}: cannot read a {variant} config ({type(exc).__name__}: {exc})") from None
    return text, vision, Family(variant, mod, shape), params


def check_version(family: Family, version, name: str) -> None:
    """UsageError naming the releases that have this model when `version` is outside them (every family alike)."""
    why = family.refusal(version, name)
    if why:
        raise UsageError(why)


def stored_hub_ids() -> dict[str, str]:
    """Stored config name (diagnostics/data/models/NAME) -> Hugging Face repository, from every family's data."""
    return {name: hub for mod in MODULES for info in mod.VARIANTS.values() for name, hub in info.stored.items()}
