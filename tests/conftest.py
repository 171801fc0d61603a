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
