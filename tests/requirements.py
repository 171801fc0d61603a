"""What a test needs from the machine (a database server, root, a tmpfs, chattr), and what
happens when it is missing: a skip on a developer's machine, a failure in CI.

CI is any environment with ``CI`` set (``.ci/run`` exports ``CI=1``; GitHub Actions, GitLab
and the others set ``CI=true``): there a missing PostgreSQL must turn the run red, never
leave it green with the PostgreSQL tests quietly skipped. tests/conftest.py also fails a CI
session that skipped anything at all, so a skip that does not come through here is caught.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unavailable(reason: str) -> NoReturn:
    """This test cannot run here: fail under CI, skip elsewhere, saying why."""
    if in_ci():
        pytest.fail(f"CI is set, and this test needs what is missing here: {reason}")
    pytest.skip(reason)


def need(condition: bool, reason: str) -> None:
    """Go on only if condition holds; otherwise unavailable(reason)."""
    if not condition:
        unavailable(reason)
