"""Build the lab host image without a registry.

Two layers, each tagged by a hash of what it is made from, so that a change rebuilds
only what it touches:

* base: ``debootstrap --variant=minbase`` of the machine's own Debian release from the
  mirror apt already uses, imported with ``docker import`` (systemd, sshd, python3, ...);
* app: a Dockerfile (``files/Dockerfile``) adding the demo app to the base: its git work
  tree ``/opt/analyticbot/app`` with releases 1.4.0 (deployed) and 1.5.0 (the bad one, with
  migration 004, ``files/make-releases.sh``), the worker that docker-compose builds and
  runs, its settings file and result cache, its databases (PostgreSQL ``analyticbot`` and a
  SQLite file, made with their baselines by ``files/lab-db``), and
  ``/usr/local/sbin/lab-release`` (``files/lab-release``) that resets or breaks a host.
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import docker.errors

from rollback_ops.exceptions import LabError

FILES = Path(__file__).resolve().parent / "files"
BASE_REPOSITORY = "rollback-ops-lab-base"
APP_REPOSITORY = "rollback-ops-lab"
BASE_PACKAGES = [
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "sudo",
    "ca-certificates",
    "curl",
    "git",
    "sqlite3",
    "procps",
    "iproute2",
    # for the code level: the app's worker is built and run with docker-compose against the
    # outer engine (its socket is mounted into each host), its dependencies go in a venv
    "python3-docker",
    "docker-compose",
    "python3-venv",
    "busybox-static",
    # for the full level: each host's PostgreSQL listens on its own address and unix socket
    # (files/lab-db); pgbench ships in postgresql-15 on bookworm, no contrib package needed
    "postgresql",
    # for the config level and backup sets: the app user's crontab (seed 001 restores cron jobs)
    "cron",
]


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
        h.update(b"\0")
    return h.hexdigest()[:12]


def debian_release() -> str:
    text = Path("/etc/os-release").read_text()
    match = re.search(r"^VERSION_CODENAME=(\S+)$", text, re.MULTILINE)
    if not match:
        raise LabError("cannot tell the Debian release from /etc/os-release")
    return match.group(1).strip('"')


def debian_mirror() -> str:
    """The Debian mirror apt already uses here (never a hard-coded one)."""
    candidates: list[str] = []
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        candidates += re.findall(r"^URIs:\s*(\S+)", path.read_text(), re.MULTILINE)
    sources_list = Path("/etc/apt/sources.list")
    if sources_list.exists():
        candidates += re.findall(
            r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)", sources_list.read_text(), re.MULTILINE
        )
    for uri in candidates:
        if "security" not in uri:
            return uri
    raise LabError("no Debian mirror found in apt's sources")


def base_tag() -> str:
    recipe = " ".join(BASE_PACKAGES).encode()
    return f"{BASE_REPOSITORY}:{_digest(recipe, debian_release().encode())}"


def app_tag() -> str:
    """Hashed from every file under files/ (releases/ included): its path and content."""
    files = sorted(p for p in FILES.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    parts = [str(p.relative_to(FILES)).encode() + b"\0" + p.read_bytes() for p in files]
    return f"{APP_REPOSITORY}:{_digest(base_tag().encode(), *parts)}"


def _has_image(client: Any, tag: str) -> bool:
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def build_base(client: Any, work_dir: Path) -> str:
    tag = base_tag()
    if _has_image(client, tag):
        return tag
    if shutil.which("debootstrap") is None:
        raise LabError("debootstrap is not installed (`apt-get install debootstrap`)")
    work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        rootfs = Path(tmp) / "rootfs"
        argv = [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(BASE_PACKAGES)}",
            debian_release(),
            str(rootfs),
            debian_mirror(),
        ]
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise LabError(f"debootstrap failed: {(proc.stdout + proc.stderr).strip()[-1500:]}")
        tarball = Path(tmp) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tarball), "."], check=True)
        repository, _, version = tag.partition(":")
        client.api.import_image_from_file(
            str(tarball), repository=repository, tag=version, changes=['CMD ["/sbin/init"]']
        )
    return tag


def build_app(client: Any, base: str) -> str:
    tag = app_tag()
    if _has_image(client, tag):
        return tag
    try:
        client.images.build(
            path=str(FILES), tag=tag, buildargs={"BASE_IMAGE": base}, rm=True, forcerm=True
        )
    except (docker.errors.BuildError, docker.errors.APIError) as exc:
        log = io.StringIO()
        for chunk in getattr(exc, "build_log", []) or []:
            log.write(str(chunk.get("stream", "")))
        raise LabError(f"lab image build failed: {exc}\n{log.getvalue()[-1500:]}") from exc
    return tag


def ensure_image(client: Any, work_dir: Path) -> str:
    """The lab image's tag, building whatever layer is missing."""
    return build_app(client, build_base(client, work_dir))
