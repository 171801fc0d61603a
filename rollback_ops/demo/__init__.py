"""The embedded default: a sandbox copy of the seed-003 app on this machine, rolled back
through Ansible's local connection. No Docker, no remote host, no root needed.

Everything it needs ships beside this file (``env.production``, ``app.yml``); everything it
writes, the host's rollback lock included, stays in ``<state dir>/demo``.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any

import yaml

FILES = Path(__file__).resolve().parent


def app_vars() -> dict[str, Any]:
    """The demo app's description (``app.yml``), before the sandbox paths are filled in."""
    app: dict[str, Any] = yaml.safe_load((FILES / "app.yml").read_text())
    return app


def create_sandbox(state_dir: Path) -> Path:
    """(Re)create the sandbox app with every flag on; return its inventory path."""
    root = state_dir / "demo"
    app_dir = root / "srv" / "analyticbot"
    log_dir = root / "log"
    if root.exists():
        shutil.rmtree(root)
    app_dir.mkdir(parents=True)
    log_dir.mkdir(parents=True)
    (root / "lock").mkdir()
    env_file = app_dir / ".env.production"
    shutil.copyfile(FILES / "env.production", env_file)
    env_file.chmod(0o640)
    log_file = log_dir / "production.log"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S,000")
    log_file.write_text(
        f"{stamp} [INFO] Feature flags - Advanced: True, Time-weighting: True, Content-type: True\n"
    )
    app = app_vars()
    app["env_file"] = str(env_file)
    app["log"]["path"] = str(log_file)
    if Path("/run/systemd/system").exists():
        app["units"] = []  # this machine runs systemd, but the demo installs no unit on it
    inventory = {
        "all": {
            "vars": {
                "rollback_environment": "local",
                "rollback_app": app,
                # the host's rollback lock in the sandbox, not /var/lib (no root needed)
                "preflight_lock_path": str(root / "lock" / "rollback.lock"),
            },
            "hosts": {
                "localhost": {
                    "ansible_connection": "local",
                    "ansible_python_interpreter": sys.executable,
                }
            },
        }
    }
    path = root / "inventory.yml"
    path.write_text(
        "# Written by `rollback-ops demo`: a sandbox app on this machine.\n"
        + yaml.safe_dump(inventory, sort_keys=False)
    )
    return path
