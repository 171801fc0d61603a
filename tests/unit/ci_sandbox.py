"""The demo's sandbox app as a CI target: real check-mode runs through the CLI, no Docker.

:func:`sandbox` writes the `local` inventory under a test's own state dir (its lock too), with
changes to the app's description; :func:`unhealthy_endpoint` is a real HTTP server on
loopback whose health endpoint answers 503, so that the healthcheck role fails for real.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollback_ops import cli, demo
from tests.servers import health_endpoint

UNHEALTHY = {"status": "down", "reason": "database unreachable"}


def sandbox(state: Path, **app: Any) -> Path:
    """The demo's sandbox under ``state`` (every flag on), its app updated with ``app``."""
    inventory = demo.create_sandbox(state)
    if app:
        data = yaml.safe_load(inventory.read_text())
        data["all"]["vars"]["rollback_app"].update(app)
        inventory.write_text(yaml.safe_dump(data))
    return inventory


def unhealthy_endpoint() -> AbstractContextManager[str]:
    """A health endpoint on 127.0.0.1 that answers 503 with a JSON body; yields its URL."""
    return health_endpoint(503, UNHEALTHY)


def unhealthy_app(url: str) -> dict[str, Any]:
    """App changes whose health check fails at once (one attempt)."""
    return {"health": {"url": url, "retries": 1, "delay": 0, "timeout": 5}}


def run(capsys: pytest.CaptureFixture[str], state: Path, *argv: str) -> tuple[int, str, str]:
    """``rollback-ops --state-dir STATE ARGV...`` in this process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = cli.main(["--state-dir", str(state), *argv])
    out, err = capsys.readouterr()
    return code, out, err
