"""GPU card profiles by short name, with the usable memory torch/NVML report (not the box label).

`total_gib` is what `torch.cuda.mem_get_info()[1]` / a PyTorch OOM message call "total capacity" (GiB = 2**30 B);
it is a little below nvidia-smi's MiB figure. Figures seen verbatim in the field cases
(tests/data/field_cases/cases.jsonl) are marked "field"; the others are commonly seen torch totals, marked
"typical" (uncertain to about +-0.3 GiB, driver and ECC dependent).

Thresholds, the same rule for every card (documented here, used by the sweep's pass/fail checks):
* profile_threshold_gib = total - 0.5: the largest device peak before the KV cache is allocated that still
  leaves room for the CUDA context (~0.3-0.5 GiB, seen by NVML but not by torch).
* headroom_gib = 1.0: what may sit above util x total once the KV cache exists (CUDA graphs when not budgeted,
  non-torch allocations made after profiling, allocator fragmentation).
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

from diagnostics.errors import UsageError, one_of

CPU_CARD = "cpu"
# lowest compute capability per architecture (a card's own may be higher, e.g. 8.6 for a 3090; only < 8.0 matters)
ARCH_CAPABILITY = {"volta": (7, 0), "turing": (7, 5), "ampere": (8, 0), "ada": (8, 9), "hopper": (9, 0),
                   "blackwell": (10, 0)}
PROFILE_MARGIN_GIB = 0.5
HEADROOM_GIB = 1.0


@dataclass(frozen=True)
class Card:
    name: str  # short name: "3090"
    label: str  # "NVIDIA GeForce RTX 3090"
    total_gib: float  # usable total as torch/NVML report it; 0 for the CPU pseudo-card (read at run time)
    profile_threshold_gib: float  # max allowed peak before the KV cache is allocated (profile phase)
    headroom_gib: float  # allowed above util x total once KV is allocated (graphs, non-torch)
    nvml_names: tuple[str, ...]  # NVML's full names for this card (exact; `*` is a wildcard), see names_card
    arch: str  # "ampere", "hopper", ... ("cpu" for the pseudo-card)
    is_cpu: bool = False  # vLLM's CPU backend: total = node 0 MemTotal, known only at run time

    @property
    def is_a100(self) -> bool:
        """V1 (0.9.0+) keeps the small MBT / max_num_seqs defaults on A100s even with >= 70 GiB. vLLM tests the
        device name for "a100" (0.9.2 arg_utils.py:1629), so an A800 gets the large defaults (audit a15)."""
        return self.name.startswith("a100") or any("A100" in n for n in self.nvml_names)

    @property
    def capability(self) -> tuple[int, int] | None:
        """The lowest CUDA compute capability of the architecture (None for the CPU pseudo-card / unknown):
        vLLM 0.8.0-0.10.1 falls back to V0 below 8.0."""
        return ARCH_CAPABILITY.get(self.arch)


def _card(name, label, total, nvml, arch) -> Card:
    return Card(name, label, total, round(total - PROFILE_MARGIN_GIB, 2), HEADROOM_GIB, tuple(nvml), arch)


_BUILT_IN = (
    # nvml_names: the full names nvmlDeviceGetName / nvidia-smi give, matched exactly (see names_card)
    _card("t4", "NVIDIA Tesla T4", 14.75, ["Tesla T4"], "turing"),  # typical ("14.75 GiB total capacity")
    _card("v100-16", "NVIDIA Tesla V100 16GB", 15.77, ["Tesla V100-SXM2-16GB", "Tesla V100-PCIE-16GB",
                                                       "Tesla V100-SXM2-16GB-LS", "Tesla V100-FHHL-16GB"], "volta"),  # typical
    _card("v100-32", "NVIDIA Tesla V100 32GB", 31.74, ["Tesla V100-SXM2-32GB", "Tesla V100-PCIE-32GB",
                                                       "Tesla V100S-PCIE-32GB", "Tesla V100-SXM3-32GB",
                                                       "Tesla V100-SXM2-32GB-LS"], "volta"),  # field: vllm#22173 OOM message
    _card("a10", "NVIDIA A10", 22.18, ["NVIDIA A10"], "ampere"),  # field: MiniCPM-V#640 OOM message (22.2-22.49 seen via nvidia-smi)
    _card("a10g", "NVIDIA A10G", 22.19, ["NVIDIA A10G"], "ampere"),  # typical (AWS g5; 21.99-22.19 seen), uncertain
    _card("l4", "NVIDIA L4", 22.17, ["NVIDIA L4"], "ada"),  # typical, uncertain (22.03-22.17)
    _card("3090", "NVIDIA GeForce RTX 3090", 23.69, ["NVIDIA GeForce RTX 3090"], "ampere"),  # field summary: 23.69 (23.58 in vllm#10517 with a display attached)
    _card("4090", "NVIDIA GeForce RTX 4090", 23.54, ["NVIDIA GeForce RTX 4090"], "ada"),  # field: vllm#11587 profile summary (nvidia-smi 24564 MiB)
    _card("5090", "NVIDIA GeForce RTX 5090", 31.36, ["NVIDIA GeForce RTX 5090"], "blackwell"),  # typical, uncertain
    _card("a6000", "NVIDIA RTX A6000", 47.53, ["NVIDIA RTX A6000"], "ampere"),  # typical
    _card("l20", "NVIDIA L20", 44.35, ["NVIDIA L20"], "ada"),  # field-ish: 44.35 in OCRFlux#64's log (48 GB-class card, not named); vllm#7721 user says "46GB" (nvidia-smi)
    _card("l40", "NVIDIA L40", 44.35, ["NVIDIA L40"], "ada"),  # same 48 GB class as L20, uncertain
    _card("l40s", "NVIDIA L40S", 44.42, ["NVIDIA L40S"], "ada"),  # field: vllm#15815 profiling log
    _card("a100-40", "NVIDIA A100 40GB", 39.38, ["NVIDIA A100-SXM4-40GB", "NVIDIA A100-PCIE-40GB"], "ampere"),  # field: vllm#16570 profiling log
    _card("a100-80", "NVIDIA A100 80GB", 79.15, ["NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB PCIe", "NVIDIA A100-PCIE-80GB"], "ampere"),  # typical
    _card("h100-80", "NVIDIA H100 80GB", 79.1, ["NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe", "NVIDIA H800",
                                                "NVIDIA H800 PCIe"], "hopper"),  # field: 79.10 in vllm#12604 (80 GB-class card, not named)
    _card("a800-80", "NVIDIA A800 80GB", 79.15, ["NVIDIA A800-SXM4-80GB", "NVIDIA A800 80GB PCIe"], "ampere"),  # typical (same memory as the A100 80GB; its own card: vLLM gives it the large batch defaults, audit a15)
    _card("h20", "NVIDIA H20", 95.0, ["NVIDIA H20"], "hopper"),  # typical, uncertain (96 GB HBM3)
    _card("h200", "NVIDIA H200", 139.8, ["NVIDIA H200", "NVIDIA H200 NVL"], "hopper"),  # typical, uncertain (141 GB HBM3e)
    Card(CPU_CARD, "vLLM CPU backend", 0.0, 0.0, 0.0, (), "cpu", is_cpu=True),
)

CARDS: dict[str, Card] = {c.name: c for c in _BUILT_IN}

_TOML_FIELDS: dict[str, type | tuple[type, ...]] = {
    "label": str,
    "total_gib": (int, float),
    "profile_threshold_gib": (int, float),
    "headroom_gib": (int, float),
    "nvml_names": list,
    "arch": str,
}


def list_cards() -> list[Card]:
    return list(CARDS.values())


def _normalise(name: str) -> str:
    return str(name).strip().lower()


def get_card(name, extra_cards_file=None) -> Card:
    """A card by short name (case-insensitive); `extra_cards_file` (TOML) may override or add cards."""
    if isinstance(name, Card):
        return name
    table = dict(CARDS)
    if extra_cards_file:
        table.update(load_cards_toml(extra_cards_file))
    key = _normalise(name)
    if key not in table:
        raise one_of("card", name, table)
    return table[key]


MAX_CARD_GIB = 65536  # GiB; no accelerator comes near it, and larger (or inf, nan) breaks the arithmetic


def load_cards_toml(path) -> dict[str, Card]:
    """Read `[cards.NAME]` tables: fields override a built-in card of that name or define a new one."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise UsageError(f"cannot read cards file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"cards file {path} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
                         f"{exc.start}); accepted: a TOML file with [cards.NAME] tables") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"cards file {path} is not valid TOML: {exc}") from exc
    tables = data.get("cards")
    if not isinstance(tables, dict):
        raise UsageError(f"cards file {path} has no [cards.NAME] tables")
    out: dict[str, Card] = {}
    for raw_name, fields in tables.items():
        name = _normalise(raw_name)
        where = f"cards file {path}: [cards.{raw_name}]"
        if not isinstance(fields, dict):
            raise UsageError(f"{where} must be a table")
        if name in ("all", "auto") or "," in name or not name:
            raise UsageError(f"{where}: {raw_name!r} cannot name a card (--card takes all, auto and comma lists); "
                             "accepted: a name without commas, other than all and auto")
        for key, value in fields.items():
            if key not in _TOML_FIELDS:
                raise UsageError(f"{where}: unknown key {key!r}; accepted: {', '.join(sorted(_TOML_FIELDS))}")
            if not isinstance(value, _TOML_FIELDS[key]) or isinstance(value, bool):
                raise UsageError(f"{where}: {key} has the wrong type ({type(value).__name__})")
            if key.endswith("_gib") and not 0 <= value <= MAX_CARD_GIB:  # nan and inf fail this too
                raise UsageError(f"{where}: {key} must be a number from 0 to {MAX_CARD_GIB:,} (GiB), got {value}")
        if fields.get("total_gib") == 0 and name != CPU_CARD:  # no memory: every plan would read "unknown"
            raise UsageError(f"{where}: total_gib must be above 0 (the card's memory in GiB); only [cards.cpu] "
                             "reads its total at run time")
        base = CARDS.get(name)
        if base is None and "total_gib" not in fields:
            raise UsageError(f"{where}: a new card needs total_gib")
        total = float(fields.get("total_gib", base.total_gib if base else 0.0))
        card = base or _card(name, str(fields.get("label", name)), total, [], str(fields.get("arch", "unknown")))
        updates = {k: v for k, v in fields.items() if k != "nvml_names"}
        if "nvml_names" in fields:
            updates["nvml_names"] = tuple(str(n) for n in fields["nvml_names"])
        if "total_gib" in fields:
            updates.setdefault("profile_threshold_gib", round(total - PROFILE_MARGIN_GIB, 2))
        updates = {k: (float(v) if k.endswith("_gib") else v) for k, v in updates.items()}
        out[name] = replace(card, **updates)
    return out


def nvml_name_key(name: str) -> str:
    """NVML's device name for comparison: case and runs of spaces ignored, and the "NVIDIA " that drivers before
    R470 did not print ("GeForce RTX 3090", "A100-SXM4-40GB") made optional."""
    return " ".join(str(name).split()).lower().removeprefix("nvidia ")


def names_card(card: Card, gpu_name: str) -> bool:
    """Is `gpu_name` (nvmlDeviceGetName) one of the card's nvml_names? Whole names only: "NVIDIA H200" is not an
    "NVIDIA H20", "NVIDIA A100-SXM4-80GB" not an "NVIDIA A10", "NVIDIA L40S" neither "NVIDIA L4" nor "NVIDIA L40",
    and a MIG slice ("NVIDIA A100-SXM4-40GB MIG 3g.20gb") not its whole card. A `*` in a name from a --cards file
    stands for any text ("*MI300X*")."""
    key = nvml_name_key(gpu_name)
    return any(fnmatch.fnmatchcase(key, nvml_name_key(n)) for n in card.nvml_names)


def card_for_gpu_name(gpu_name: str, cards=None) -> Card | None:
    """The card that names `gpu_name` exactly ("NVIDIA A100-SXM4-80GB" -> a100-80), None when no card does (a MIG
    slice, a card without a profile); where several do (a --cards file that redefines one), the last one listed."""
    found = [card for card in (cards or list_cards()) if names_card(card, gpu_name)]
    return found[-1] if found else None


def check_card_against_nvml(named: Card | None, gpu_name: str, cards_file=None,
                            allow_mismatch: bool = False) -> tuple[Card, list[str]]:
    """(the card a session measures against, notices) for --card NAME (`named`) or auto (None) on a GPU that
    NVML calls `gpu_name`. UsageError when auto matches no profile, or when NAME is another card than NVML's
    (whole names, `names_card`) unless `allow_mismatch` (then a warning notice)."""
    cards = list_cards()
    if cards_file:
        extra = load_cards_toml(cards_file)
        cards = [c for c in cards if c.name not in extra] + list(extra.values())
    detected = card_for_gpu_name(gpu_name, cards)
    if named is None:
        if detected is None:
            raise UsageError(f"--card=auto: NVML reports {gpu_name!r}, which matches no card profile; pass "
                             "--card NAME or describe it in a --cards FILE ([cards.NAME] total_gib = ...)")
        return detected, []
    if not named.nvml_names:  # a card from --cards without nvml_names: nothing to check against
        return named, [f"card {named.name} has no nvml_names; not checked against NVML's {gpu_name!r}"]
    if names_card(named, gpu_name):  # whole names: an A100 is no "NVIDIA A10", an H200 no "NVIDIA H20"
        return named, []
    message = (f"--card={named.name} ({named.label}) but NVML reports {gpu_name!r}"
               f"{f' (card {detected.name})' if detected else ''}; pass the right --card, or "
               "--allow-card-mismatch to measure against the named card anyway")
    if not allow_mismatch:
        raise UsageError(message)
    return named, ["warning: " + message]
