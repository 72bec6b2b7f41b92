"""A switch on the kit's reference ops: while an op's name is forbidden, calling it raises.

Graders forbid the op a student is asked to write while they call the student's version, so that
a submission that only wraps the reference (imported under any name) fails instead of passing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator

_forbidden: set[str] = set()
_attempts: list[
    str
] = []  # every forbidden op called, in order, whether the error was caught or not


class ReferenceUseError(RuntimeError):
    """The reference implementation of the op being graded was called."""


@contextlib.contextmanager
def forbidden(names: Iterable[str]) -> Iterator[None]:
    """Forbid the ops `names` inside the block (blocks nest; each restores what it found)."""
    added = set(names) - _forbidden
    _forbidden.update(added)
    try:
        yield
    finally:
        _forbidden.difference_update(added)


def attempts() -> list[str]:
    """The forbidden ops called so far in this process (a copy), caught or not."""
    return list(_attempts)


def guarded(fn: Callable, name: str | None = None) -> Callable:
    """`fn`, failing with ReferenceUseError while `name` (default: fn's name) is forbidden."""
    name = name or fn.__name__

    def op(*args, **kwargs):
        if name in _forbidden:
            _attempts.append(name)
            raise ReferenceUseError(
                f"{name}: this calls the kit's reference implementation of {name}, the function "
                "you are asked to write; write it yourself"
            )
        return fn(*args, **kwargs)

    # Copied by hand rather than with functools.wraps, which would expose the unguarded op.
    op.__name__ = op.__qualname__ = name
    op.__doc__, op.__module__ = fn.__doc__, fn.__module__
    return op


def guard_module(namespace: dict, names: Iterable[str]) -> None:
    """Replace each function `names` in a module's `namespace` (its globals()) by its guarded self."""
    for n in names:
        namespace[n] = guarded(namespace[n])
