"""The JSON rollback-ops prints and saves: one versioned document shape for every output.

Every ``--json`` output and every receipt is a JSON object with ``schema_version`` (bumped
only for a change that breaks a reader) and ``kind`` (receipt, plan, history, status,
recommend ...); its JSON Schema ships in the package as ``schemas/<kind>.schema.json``
(draft 2020-12), and the tests validate real outputs against it.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

SCHEMA_VERSION = 1


def document(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` as a versioned document of ``kind`` (its own keys come after the two)."""
    return {"schema_version": SCHEMA_VERSION, "kind": kind, **body}


def schema(kind: str) -> dict[str, Any]:
    """The shipped JSON Schema of ``kind``'s documents."""
    text = resources.files("rollback_ops.schemas").joinpath(f"{kind}.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def kinds() -> list[str]:
    """Every kind that has a shipped schema."""
    suffix = ".schema.json"
    return sorted(
        p.name[: -len(suffix)]
        for p in resources.files("rollback_ops.schemas").iterdir()
        if p.name.endswith(suffix)
    )
