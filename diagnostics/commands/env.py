"""`python -m diagnostics env [--json]`: the environment block alone, redacted, for an issue thread."""

from __future__ import annotations

import json

from diagnostics.engine.machine import collect_environment, format_environment
from diagnostics.redact import Redactor

HELP = "print the environment block (GPU, driver, CUDA, torch, vLLM) for an issue thread"


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of key: value lines")
    parser.add_argument("--no-torch", action="store_true",
                        help="do not import torch (CUDA version then comes from the wheel's +cuXYZ tag only)")


def run(args) -> int:
    red = Redactor.for_this_machine()
    env = red.obj(collect_environment(with_torch=not args.no_torch))
    if args.json:
        print(json.dumps({"schema_version": 1, **env}, indent=2))
    else:
        print(red.text(format_environment(env)))
    return 0
