"""Find, start and (when asked) install the local Docker engine the lab runs on.

The flags are the ones recorded in shared LAB-NOTES: no iptables, no bridge (the default
bridge hands out 172.17.x addresses, which we must never use), and the vfs storage driver.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import docker
import docker.errors

from rollback_ops.exceptions import LabError

DOCKERD_ARGS = [
    "--iptables=false",
    "--ip6tables=false",
    "--bridge=none",
    "--storage-driver=vfs",
]
DEBIAN_PACKAGES = ["docker.io", "debootstrap"]


def client(timeout: int = 120) -> Any:
    """A docker SDK client for a running engine, or LabError saying why not."""
    try:
        c = docker.from_env(timeout=timeout)
        c.ping()
    except docker.errors.DockerException as exc:
        raise LabError(f"Docker engine not reachable: {exc}") from exc
    return c


def engine_running() -> bool:
    try:
        docker.from_env(timeout=5).ping()
    except docker.errors.DockerException:
        return False
    return True


def install_packages(packages: list[str]) -> None:
    """Install Debian packages with apt-get (root only): used by ``lab up --install``."""
    missing = [p for p in packages if not _package_installed(p)]
    if not missing:
        return
    if os.geteuid() != 0:
        raise LabError(f"missing Debian packages {', '.join(missing)}; install them as root")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise LabError(f"{' '.join(argv)} failed: {proc.stderr.strip()[-800:]}")


def _package_installed(name: str) -> bool:
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True, check=False
    )
    return proc.returncode == 0 and "install ok installed" in proc.stdout


def ensure_engine(*, install: bool = False, log_file: Path | None = None) -> Any:
    """Return a client for a running engine, starting ``dockerd`` if it is installed."""
    if engine_running():
        return client()
    if install:
        install_packages(DEBIAN_PACKAGES)
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise LabError(
            "no Docker engine is running and dockerd is not installed "
            "(run `rollback-ops lab up --install` as root, or `apt-get install docker.io`)"
        )
    if os.geteuid() != 0:
        raise LabError("no Docker engine is running; start dockerd as root")
    log_path = log_file or Path("/var/log/rollback-ops-dockerd.log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        subprocess.Popen(
            [dockerd, *DOCKERD_ARGS],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if engine_running():
            return client()
        time.sleep(0.5)
    raise LabError(f"dockerd did not answer within 60 s; see {log_path}")
