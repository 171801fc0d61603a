"""The embedded default: a sandbox copy of the seed-003 app on this machine, rolled back
through Ansible's local connection. No Docker, no remote host, no root needed.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import yaml

from rollback_ops.lab.hosts import lab_app_vars
from rollback_ops.lab.image import FILES


def create_sandbox(state_dir: Path) -> Path:
    """(Re)create the sandbox app with every flag on; return its inventory path."""
    root = state_dir / "demo"
    app_dir = root / "srv" / "analyticbot"
    log_dir = root / "log"
    if root.exists():
        shutil.rmtree(root)
    app_dir.mkdir(parents=True)
    log_dir.mkdir(parents=True)
    env_file = app_dir / ".env.production"
    shutil.copyfile(FILES / "env.production", env_file)
    env_file.chmod(0o640)
    log_file = log_dir / "production.log"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S,000")
    log_file.write_text(
        f"{stamp} [INFO] Feature flags - Advanced: True, Time-weighting: True, Content-type: True\n"
    )
    app = lab_app_vars()
    app["env_file"] = str(env_file)
    app["log"]["path"] = str(log_file)
    app["health"] = {}  # nothing listens in the sandbox: the check is reported as skipped
    # no Docker in the sandbox (and no lab_worker_tag to template the lab's image tag with:
    # the app role validates the whole rollback_app, templated, at the start of every play)
    del app["docker"]
    if Path("/run/systemd/system").exists():
        app["units"] = []  # this machine runs systemd, but the demo installs no unit on it
    inventory = {
        "all": {
            "vars": {"rollback_environment": "local", "rollback_app": app},
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
