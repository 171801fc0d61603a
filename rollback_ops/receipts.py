"""Reading the receipts of earlier runs (``<state>/runs/<run_id>/receipt.json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rollback_ops.exceptions import ConfigError


def load(state_dir: Path, run_id: str) -> tuple[dict[str, Any], Path]:
    """A run's receipt and its run dir; ConfigError naming the latest runs when it is unknown."""
    if not run_id or "/" in run_id or run_id.startswith("."):
        raise ConfigError(f"{run_id!r} is not a run id (see `rollback-ops history`)")
    run_dir = state_dir / "runs" / run_id
    receipt = run_dir / "receipt.json"
    if not receipt.exists():
        known = sorted(p.name for p in (state_dir / "runs").glob("*") if p.is_dir())[-5:]
        hint = f" (latest: {', '.join(known)})" if known else ""
        raise ConfigError(f"no receipt for run {run_id!r} in {state_dir / 'runs'}{hint}")
    try:
        data = json.loads(receipt.read_text())
    except ValueError as exc:
        raise ConfigError(f"receipt {receipt} is not valid JSON: {exc}") from exc
    return data, run_dir
