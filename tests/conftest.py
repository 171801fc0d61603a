"""Shared test helpers: paths into the repository and loading the roles' modules by path."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def load_module(relative: str) -> ModuleType:
    """Import an Ansible module shipped in a role's library/ so its pure functions can be tested."""
    import ansible.module_utils

    shared = str(ROOT / "plugins" / "module_utils")  # what AnsiballZ ships with the module
    if shared not in ansible.module_utils.__path__:
        ansible.module_utils.__path__.append(shared)
    path = ROOT / relative
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
    # Ansible ships plugins/module_utils with the module (AnsiballZ); here the package path
    # of ansible.module_utils is extended instead, so `from ansible.module_utils.X` resolves
    bootstrap = (
        "import runpy, sys, ansible.module_utils as m; "
        f"m.__path__.append({str(ROOT / 'plugins' / 'module_utils')!r}); "
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
