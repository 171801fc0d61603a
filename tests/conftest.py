"""Shared test helpers: paths into the repository and loading the roles' modules by path."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import pytest

from tests.requirements import in_ci

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
COLLECTION = ("rollback_ops", "rollback")


def _collections_root() -> Path:
    """A directory holding ansible_collections/rollback_ops/rollback -> the repository, so the
    modules' ``ansible_collections.rollback_ops.rollback.plugins.module_utils`` imports resolve
    here as they do on a host (where AnsiballZ ships them)."""
    # one per checkout: two worktrees' test runs must each import their own collection
    checkout = hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]
    base = Path(tempfile.gettempdir()) / f"rollback-ops-tests-{os.getuid()}" / checkout
    link = base / "ansible_collections" / Path(*COLLECTION)
    if not link.is_symlink():
        link.parent.mkdir(parents=True, exist_ok=True)
        tmp = link.with_name(f".{os.getpid()}")
        tmp.symlink_to(ROOT, target_is_directory=True)
        tmp.replace(link)
    return base


COLLECTIONS = _collections_root()
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))


def load_module(relative: str) -> ModuleType:
    """Import one of the collection's modules or module_utils by its path in the repository,
    under its collection name, so its pure functions can be tested."""
    path = ROOT / relative
    if relative.startswith("plugins/"):
        name = ".".join(("ansible_collections", *COLLECTION, *Path(relative).with_suffix("").parts))
        return importlib.import_module(name)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


def run_module(relative: str, args: dict[str, object], check_mode: bool = False) -> dict:
    """Run a role's module as Ansible does (own process, JSON args); return its result."""
    import json
    import subprocess
    import sys
    import tempfile

    payload = {"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": check_mode}}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(payload, handle)
    # Ansible ships the collection's module_utils with the module (AnsiballZ); here the
    # collections root is put on sys.path instead, so the same imports resolve
    bootstrap = (
        "import runpy, sys; "
        f"sys.path.insert(0, {str(COLLECTIONS)!r}); "
        "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", bootstrap, str(ROOT / relative), handle.name],
        capture_output=True,
        text=True,
        check=False,
    )
    Path(handle.name).unlink()
    try:
        return json.loads(proc.stdout)
    except ValueError as exc:
        raise AssertionError(f"module output is not JSON: {proc.stdout}{proc.stderr}") from exc


# ----------------------------------------------------------------------------- the two tiers
# Every test under tests/integration is marked `lab` there (its conftest), so `-m "not lab"`
# is the fast tier, with no Docker. The first lab test of a session also waits for the
# session lock (another session using the lab: up to an hour, tests/integration/conftest.py
# exclusive) and starts the lab (about 6 minutes on a fresh machine): that test gets that
# time on top of the per-test timeout ([tool.pytest.ini_options] timeout).
LAB_SESSION_SETUP = 3600 + 900


@pytest.hookimpl(trylast=True)  # after the integration conftest marked and -m deselected
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    lab_items = [item for item in items if "lab_session" in getattr(item, "fixturenames", ())]
    hiding = [item.nodeid for item in lab_items if item.get_closest_marker("lab") is None]
    if hiding:
        raise pytest.UsageError(
            "tests that use the lab must be marked lab (tests/integration does it for its "
            f"own): {', '.join(hiding)}"
        )
    timeout = float(config.getoption("timeout", None) or config.getini("timeout") or 0)
    if lab_items and timeout > 0 and lab_items[0].get_closest_marker("timeout") is None:
        lab_items[0].add_marker(pytest.mark.timeout(timeout + LAB_SESSION_SETUP))


# ----------------------------------------------------------------------------- no skip in CI
# A skip under CI is a test that did not run while the run says green: tests/requirements.py
# fails instead of skipping there, and this catches any skip that does not go through it.
# (xfail is not a skip: strict xfails fail when they pass.)
SKIPPED: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        SKIPPED.append(f"{report.nodeid}: {_skip_reason(report)}")


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.skipped:
        SKIPPED.append(f"{report.nodeid}: {_skip_reason(report)}")


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    return str(longrepr[2]) if isinstance(longrepr, tuple) else str(longrepr)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if SKIPPED and in_ci() and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SKIPPED and in_ci():
        terminalreporter.write_sep("=", "CI is set: skipped tests fail the run", red=True)
        for line in SKIPPED:
            terminalreporter.write_line(f"SKIPPED {line}")
