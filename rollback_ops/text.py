"""Bounded, one-line renderings of values for messages.

Any message that echoes what a person or a file gave (an inventory value, an option, a run
id, a line of the history) goes through :func:`short` or :func:`one_line`: a YAML alias bomb,
a 10k-character option or a terminal escape sequence must not reach the terminal as is.
"""

from __future__ import annotations

import builtins
import reprlib
from collections.abc import Mapping
from enum import Enum
from pathlib import PurePath
from typing import Any

_SAFE_REPR = (bool, int, float, complex, type(None), Enum)


class _Bounded(reprlib.Repr):
    """reprlib, dispatching on isinstance (subclasses of str, dict and list, as ansible-core
    and PyYAML make, are bounded too) and never calling the repr of an unknown type, which
    may be huge (a container) or reveal a secret (a vaulted value)."""

    def repr1(self, x: Any, level: int) -> str:
        if isinstance(x, str):
            return self.repr_str(str(x[: self.maxstring + 1]), level)
        if isinstance(x, bytes | bytearray):
            return builtins.repr(bytes(x[: self.maxstring + 1]))
        if isinstance(x, PurePath):
            return self.repr_str(str(x)[: self.maxstring + 1], level)
        if isinstance(x, Mapping):
            return self.repr_dict(x, level)  # type: ignore[arg-type]  # a Mapping will do
        if isinstance(x, list):
            return self.repr_list(x, level)
        if isinstance(x, tuple):
            return self.repr_tuple(x, level)
        if isinstance(x, set):
            return self.repr_set(x, level)
        if isinstance(x, frozenset):
            return self.repr_frozenset(x, level)
        if isinstance(x, _SAFE_REPR):
            return builtins.repr(x)[: self.maxother]
        return f"<{type(x).__name__}>"


def short(value: Any, limit: int = 80) -> str:
    """``repr(value)``, at most ``limit`` characters and on one line, for any value: huge
    strings, deep or recursive containers (a YAML alias bomb) and unknown objects included."""
    r = _Bounded()
    r.maxstring = r.maxother = max(limit, 8)
    r.maxlevel, r.maxlist, r.maxtuple, r.maxdict, r.maxset, r.maxfrozenset = 3, 6, 6, 6, 6, 6
    try:
        text = r.repr(value)
    except Exception:  # a message must never fail: name the type instead
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."


def one_line(text: str, limit: int = 300) -> str:
    """``text`` on one line of at most ``limit`` characters: control characters (newlines,
    escape sequences, NUL) are shown escaped, the rest is cut with ``...``."""
    head = text[: limit + 1]
    out = "".join(
        c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
        for c in head
    )
    if len(out) <= limit and len(text) <= limit:
        return out
    return out[: max(limit - 3, 0)] + "..."
