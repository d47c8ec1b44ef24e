"""`selfcheck [--card NAME|auto] [--cards FILE] [--json]`: before a long sweep, prove that this box's memory
measurement can be trusted (engine/selfcheck.py: NVML sees the device and its total matches the card; per-process
accounting works or is unavailable; the sampler sees a known 1 GiB allocation within 1 %, catches one held 10 ms,
and sees the device back at baseline). Needs torch with CUDA and nvidia-ml-py, not vLLM.

Exit 0 when measurement can be trusted, 1 when a check failed, 2 (one line) without a usable GPU.
"""

from __future__ import annotations

import json

from diagnostics.cards import card_for_gpu_name, get_card, list_cards, load_cards_toml
from diagnostics.engine.nvml import NoGPU, gpu_name
from diagnostics.engine.selfcheck import run_checks, trusted
from diagnostics.errors import UsageError

HELP = "prove this box's GPU memory measurement (NVML, per-process accounting, the sampler) before a sweep"


def add_arguments(parser) -> None:
    parser.add_argument("--card", default="auto", help="card profile whose total NVML must match (default auto: "
                                                        "the card NVML's name matches)")
    parser.add_argument("--cards", default=None, metavar="FILE", help="TOML file with [cards.NAME] overrides")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


class TorchAllocator:
    """Device allocations through torch's caching allocator; free() empties its cache so the driver sees it.
    Holds the tensors itself (handles are keys), so freeing does not depend on the caller's references."""

    def __init__(self):
        try:
            import torch
        except ImportError:
            raise UsageError("selfcheck needs torch with CUDA (pip install torch); it is not installed") from None
        if not torch.cuda.is_available():
            raise UsageError("selfcheck: torch sees no CUDA device (a CPU-only torch, or CUDA_VISIBLE_DEVICES "
                             "hides it); nothing to check")
        self.torch, self.device, self.held, self._next = torch, torch.device("cuda", 0), {}, 0
        torch.empty(1, device=self.device)  # the CUDA context exists before the baseline is read
        torch.cuda.synchronize()

    def alloc(self, nbytes: int) -> int:
        self._next += 1
        self.held[self._next] = self.torch.empty(nbytes, dtype=self.torch.uint8, device=self.device)
        self.torch.cuda.synchronize()
        return self._next

    def free(self, handle: int) -> None:
        del self.held[handle]
        self.torch.cuda.synchronize()
        self.torch.cuda.empty_cache()


def resolve_card(name: str, device_name: str, cards_file=None):
    """The card profile to check against: --card NAME, or the one NVML's device name matches (None if none)."""
    if name.strip().lower() != "auto":
        return get_card(name, extra_cards_file=cards_file)
    cards = list_cards()
    if cards_file:
        extra = load_cards_toml(cards_file)
        cards = [c for c in cards if c.name not in extra] + list(extra.values())
    return card_for_gpu_name(device_name, cards)


def run(args, allocator=None, nvml=None) -> int:
    if args.cards:
        load_cards_toml(args.cards)  # a broken --cards file: one line, whatever the box has
    if args.card.strip().lower() != "auto":
        get_card(args.card, extra_cards_file=args.cards)  # an unknown --card: named now, not "no usable GPU"
    try:
        card = resolve_card(args.card, gpu_name(nvml=nvml), args.cards)  # NVML first: no GPU, no torch needed
        checks = run_checks(card, allocator or TorchAllocator(), nvml=nvml)
    except NoGPU as err:  # one line, exit 2: there is nothing to measure on this box
        raise UsageError(f"no usable GPU ({err.reason}); selfcheck proves the measurement on the GPU box a sweep "
                         "will run on") from None
    ok = trusted(checks)
    if args.json:
        print(json.dumps({"trusted": ok, "card": card.name if card else None,
                          "checks": [c.to_json() for c in checks]}, indent=2))
    else:
        print(format_checks(checks, ok))
    return 0 if ok else 1


def format_checks(checks, ok: bool) -> str:
    from tabulate import tabulate

    table = tabulate([[c.name, c.status, c.detail] for c in checks], headers=["check", "status", "detail"],
                     tablefmt="simple")
    verdict = ("measurement can be trusted" if ok else
               "measurement cannot be trusted: fix the failed checks before a sweep")
    return f"{table}\n{verdict}"
