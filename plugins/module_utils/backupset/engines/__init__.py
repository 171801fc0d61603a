"""The engines, by the name a database spec gives (``engine:``): the one place that maps a
name to its class. Adding an engine is adding its module and its line in ENGINES."""

from __future__ import annotations

from ..common import BackupError, Json
from .base import Engine, ServerEngine
from .mysql import MySQL
from .postgresql import PostgreSQL
from .sqlite import SQLite

ENGINES: dict[str, type[Engine]] = {cls.name: cls for cls in (PostgreSQL, SQLite, MySQL)}

__all__ = ["ENGINES", "Engine", "ServerEngine", "engine_class", "engine_for", "offline_engine"]


def engine_class(name: object) -> type[Engine]:
    """The class of the engine called name; BackupError naming it when there is none."""
    try:
        return ENGINES[name]  # type: ignore[index]
    except (KeyError, TypeError):
        raise BackupError(
            f"unknown database engine {name!r}: one of {', '.join(ENGINES)}"
        ) from None


def engine_for(spec: Json) -> Engine:
    """The engine of a (normalized) database spec, bound to it."""
    return engine_class(spec.get("engine"))(spec)


def offline_engine(entry: Json) -> Engine:
    """The engine of a manifest's database entry, for its dump only (no connection)."""
    return engine_class(entry.get("engine")).offline(str(entry.get("name")))
