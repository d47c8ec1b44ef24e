"""`vllm-memcheck` / `python -m diagnostics`: one sub-command per module in diagnostics/commands/.

Each command module defines HELP (one line, the only place the command's help is written), add_arguments(parser)
and run(args) -> exit code. Command modules import heavy or optional libraries (matplotlib, tabulate, torch) only
inside run(), so `plan` never pays for matplotlib and nothing here imports torch.
A UsageError anywhere becomes one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import sys

from diagnostics.commands import calibrate, compare, env, explain, model_kit, plan, report, selfcheck
from diagnostics.errors import UsageError

DESCRIPTION = ("Read, predict and measure the GPU memory vLLM takes when it starts a vision-language model "
               "(MiniCPM-V-2_6 first). `COMMAND -h` for each command's options.")

# Each command module holds its own HELP line, add_arguments(parser) and run(args); this table only names them.
COMMANDS = {"explain": explain, "plan": plan, "model-kit": model_kit, "report": report, "compare": compare,
            "env": env, "calibrate": calibrate, "selfcheck": selfcheck}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, like every other bad input
        self.exit(2, f"{self.prog}: error: {message}\n")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _Parser(prog="vllm-memcheck", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"vllm-memcheck {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for cmd, module in COMMANDS.items():
        p = sub.add_parser(cmd, help=module.HELP, description=module.HELP)
        p.set_defaults(_run=module.run)
        module.add_arguments(p)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        code = int(args._run(args) or 0)
        sys.stdout.flush()  # a full or broken standard output fails here, where it can be said in one line
        return code
    except UsageError as exc:
        print(f"vllm-memcheck {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        _drop_stdout()
        return 0
    except OSError as exc:
        if exc.filename is not None:  # a file the command itself opened: not standard output
            raise
        _drop_stdout()
        print(f"vllm-memcheck {args.command}: error: cannot write the answer to standard output "
              f"({exc.strerror or exc}); accepted: a writable standard output, or --out FILE where the command "
              "has it", file=sys.stderr)
        return 1


def _version() -> str:
    """This package's version (its metadata), else the source tree's pyproject version."""
    from diagnostics.versions import package_version

    return package_version("vllm-memcheck", "vllm_memcheck") or "(source tree)"


def _drop_stdout() -> None:
    """Point standard output at /dev/null, so the interpreter's exit-time flush of what is left in its buffer
    cannot fail a second time (with a traceback) after the one-line answer."""
    try:
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
