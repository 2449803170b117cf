"""How a spec's fields are checked: every mistake is collected, one message each, naming the
field and what to write instead (the CLI prints each as one `error:` line).

Shared by `netspec.py` (the fields every net has) and the family modules (their blocks and
their own fields). Standard library only: a spec is checked before TensorFlow is imported.
"""
from __future__ import annotations

import re
from typing import Any, Sequence

from ..errors import UsageError

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
STRIDE_FIX = " (1 keeps the resolution, 2 halves it)"


class SpecError(UsageError):
    """Spec fields that are wrong; `messages` holds one line per mistake (str() is the first)."""

    def __init__(self, messages: str | Sequence[str]):
        self._messages: tuple[str, ...] = (messages,) if isinstance(messages, str) else tuple(messages)
        super().__init__(self._messages[0])

    @property
    def messages(self) -> tuple[str, ...]:
        return self._messages

    def prefixed(self, prefix: str) -> "SpecError":
        return SpecError([f"{prefix}: {m}" for m in self.messages])


class Problems:
    """The mistakes found so far, in the order found."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def add(self, message: str) -> None:
        self.messages.append(message)

    def __bool__(self) -> bool:
        return bool(self.messages)

    def raise_if_any(self) -> None:
        if self.messages:
            raise SpecError(self.messages)


def check_int(problems: Problems, where: str, value: Any, minimum: int = 1, fix: str = "") -> int | None:
    """`value` if it is an integer >= minimum, else None with the mistake recorded."""
    if isinstance(value, bool) or not isinstance(value, int):
        problems.add(f"{where} {value!r}: give an integer >= {minimum}")
        return None
    if value < minimum:
        problems.add(f"{where} {value}: must be >= {minimum}{fix}")
        return None
    return value


def check_scope(problems: Problems, i: int, scope: Any) -> str | None:
    """A block's variable scope (`block1`, `conv3`): one path component of a variable name."""
    if not isinstance(scope, str) or not NAME.match(scope):
        problems.add(f"blocks[{i}]: scope {scope!r} must be a name like \"block1\" (letters, digits, _ . -)")
        return None
    return scope


def check_unique_scopes(problems: Problems, scopes: Sequence[str]) -> None:
    dup = next((x for x in scopes if scopes.count(x) > 1), None)
    if dup is not None:
        problems.add(f"blocks: scope {dup!r} appears twice; give each block its own scope")
