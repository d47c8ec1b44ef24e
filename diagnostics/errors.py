"""The one error type the command line turns into a one-line message and exit code 2."""

from __future__ import annotations


class UsageError(Exception):
    """Bad input from a user: names the input and what is accepted. The CLI prints it on one line, exit 2."""

    exit_code = 2


def one_of(kind: str, value: object, accepted) -> UsageError:
    """`unknown card 'bogus'; accepted: 3090, 4090, ...` — the standard wording for a bad choice."""
    names = ", ".join(sorted(str(a) for a in accepted))
    return UsageError(f"unknown {kind} {value!r}; accepted: {names}")
