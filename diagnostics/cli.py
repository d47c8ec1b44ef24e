"""`vllm-memcheck` / `python -m diagnostics`: one sub-command per module in diagnostics/commands/.

Each command module defines HELP (one line), add_arguments(parser) and run(args) -> exit code. Modules are
imported only when their command runs, so `plan` never pays for matplotlib and nothing here imports torch.
A UsageError anywhere becomes one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from diagnostics.errors import UsageError

DESCRIPTION = ("Read, predict and measure the GPU memory vLLM takes when it starts a vision-language model "
               "(MiniCPM-V-2_6 first). `COMMAND -h` for each command's options.")

COMMANDS = {
    "explain": "diagnostics.commands.explain",
    "plan": "diagnostics.commands.plan",
    "model-kit": "diagnostics.commands.model_kit",
    "report": "diagnostics.commands.report",
    "compare": "diagnostics.commands.compare",
    "env": "diagnostics.commands.env",
}

HELP = {
    "explain": "read a vLLM start-up log (file or -) and say what failed, why, and the smallest fix",
    "plan": "predict every term of vLLM's start-up memory for a model, card and vLLM version",
    "model-kit": "write a MiniCPM-V-2_6 checkpoint directory (real shapes or tiny) for load_format=dummy",
    "report": "write Markdown/JSON/HTML/PNG memory reports from a sweep's results.jsonl",
    "compare": "compare two results files; exit 1 on a memory/start-up regression",
    "env": "print the environment block (GPU, driver, CUDA, torch, vLLM) for an issue thread",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, like every other bad input
        self.exit(2, f"{self.prog}: error: {message}\n")


def _module(module_name: str):
    return importlib.import_module(module_name)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Load only the sub-command that runs (fast start, no optional imports for the others).
    name = next((a for a in argv if not a.startswith("-")), None)
    parser = _Parser(prog="vllm-memcheck", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for cmd, module_name in COMMANDS.items():
        p = sub.add_parser(cmd, help=HELP[cmd], description=HELP[cmd])
        p.set_defaults(_module=module_name)
        if cmd == name:
            _module(module_name).add_arguments(p)
    args = parser.parse_args(argv)
    if not getattr(args, "_module", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(_module(args._module).run(args) or 0)
    except UsageError as exc:
        print(f"vllm-memcheck {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
