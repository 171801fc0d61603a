"""Lab hosts: containers with systemd as PID 1 and sshd, each on its own loopback address.

``Lab.up(n)`` makes exactly n hosts (``web1``..``webN``) and writes an Ansible inventory
that targets them; running it again keeps hosts that are running. See shared LAB-NOTES for
the container options (no --privileged; SYS_ADMIN, host cgroup namespace, tmpfs /run).

Each host also gets the outer engine's socket: the app's worker
(``/opt/analyticbot/app/worker``) is built and run by docker-compose on the host, as the
container ``rollback-ops-<lab>-<host>-worker`` from the image
``analyticbot-worker:<lab>-<host>`` (names per host, as every host drives the same engine).
``up`` puts every host's app back on the good release (``lab-release reset``); ``down``
removes the workers and their images with the hosts.
"""

from __future__ import annotations

import ipaddress
import shlex
import shutil
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import docker.errors
import yaml

from rollback_ops.exceptions import LabError
from rollback_ops.lab import engine, image

APP_PORT = 10300
LABEL = "rollback-ops.lab"
DOCKER_SOCKET = "/var/run/docker.sock"
WORKER_DIR = "/opt/analyticbot/app/worker"
WORKER_REPOSITORY = "analyticbot-worker"
WORKER_LABEL = "rollback-ops.worker"  # on every layer of a worker image: <lab>-<host>
COMPOSE_PROJECT_LABEL = "com.docker.compose.project"


@dataclass(frozen=True)
class LabHost:
    name: str
    address: str
    container: str
    state: str
    ssh: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def lab_app_vars() -> dict[str, Any]:
    """How the lab's demo app is described in the inventory (same shape as staging/prod)."""
    return {
        "name": "analyticbot",
        "env_file": "/srv/analyticbot/.env.production",
        "master_switch": "ENABLE_ADVANCED_RECOMMENDATIONS",
        "flags": ["ENABLE_TIME_WEIGHTING", "ENABLE_CONTENT_TYPE_ANALYSIS"],
        "emergency": {"APP_MODE": "research"},
        "units": ["analyticbot-api"],
        "health": {
            "url": f"http://{{{{ ansible_host }}}}:{APP_PORT}/health",
            "expect": {"status": "healthy"},
            "config_field": "config",
        },
        "log": {
            "path": "/var/log/analyticbot/production.log",
            "error_pattern": r"\[(ERROR|CRITICAL)\]|Traceback",
        },
        # code level: the app's git work tree (release tags), its worker image and service
        "code": {
            "path": "/opt/analyticbot/app",
            "git": {"mode": "revert", "release_tags": "release-*"},
            "deps": {
                "requirements": "requirements.txt",
                "venv": "/opt/analyticbot/venv",
                "pip_args": "--no-index",
            },
        },
        "maintenance": {"file": "/srv/analyticbot/MAINTENANCE"},
        "drain_timeout": 30,
        "docker": {
            "images": [
                {
                    "context": WORKER_DIR,
                    "tag": f"{WORKER_REPOSITORY}:{{{{ lab_worker_tag }}}}",
                    "nocache": True,
                    # labels every layer, so `lab down` finds the untagged ones too
                    "buildargs": {"LAB_TAG": "{{ lab_worker_tag }}"},
                }
            ],
            "compose": {"project_dir": WORKER_DIR, "services": ["worker"]},
            "settle": 3,
            "log_error_pattern": "Traceback|ERROR",
        },
    }


class Lab:
    """One named lab: its containers, key, per-host files and inventory under the state dir."""

    def __init__(self, state_dir: Path, name: str = "lab", first_address: str = "127.0.0.11"):
        if not name.isidentifier():
            raise LabError(f"lab name must be a simple identifier, not {name!r}")
        self.name = name
        self.dir = state_dir / "labs" / name
        self.first_address = ipaddress.IPv4Address(first_address)
        if not self.first_address.is_loopback:
            raise LabError(f"lab addresses must be loopback (127.0.0.0/8), not {first_address}")
        self.prefix = f"rollback-ops-{name}-"

    # -- paths -------------------------------------------------------------------------
    @property
    def inventory_path(self) -> Path:
        return self.dir / "inventory.yml"

    @property
    def key_path(self) -> Path:
        return self.dir / "lab_key"

    def address(self, index: int) -> str:
        return str(self.first_address + index - 1)

    def worker_tag(self, hostname: str) -> str:
        """The tag of a host's worker image (``analyticbot-worker:<tag>``) and its LAB_TAG."""
        return f"{self.name}-{hostname}"

    def worker_project(self, hostname: str) -> str:
        """A host's compose project, also its worker container's name (compose lowercases)."""
        return f"{self.prefix}{hostname}-worker".lower()

    # -- lifecycle ---------------------------------------------------------------------
    def up(self, hosts: int = 3, *, install: bool = False, timeout: float = 120) -> list[LabHost]:
        if not 1 <= hosts <= 20:
            raise LabError(f"--hosts must be between 1 and 20, not {hosts}")
        if install:
            engine.install_packages(["debootstrap", "openssh-client"])
        client = engine.ensure_engine(install=install, log_file=self.dir.parent / "dockerd.log")
        tag = image.ensure_image(client, self.dir.parent / "build")
        self.dir.mkdir(parents=True, exist_ok=True)
        self._ensure_key()
        wanted = {f"web{i}": self.address(i) for i in range(1, hosts + 1)}
        existing = {c.name: c for c in self._containers(client)}
        for cname, container in existing.items():
            hostname = cname.removeprefix(self.prefix)
            if hostname not in wanted:
                self._remove_workers(client, hostname)
            if hostname not in wanted or tag not in container.image.tags:
                container.remove(force=True)
        for hostname, address in wanted.items():
            self._ensure_host(client, tag, hostname, address, existing)
        deadline = time.monotonic() + timeout
        for hostname, address in wanted.items():
            self._wait_ready(client, hostname, address, deadline)
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda hostname: self._reset_release(client, hostname), wanted))
        self._write_inventory(wanted)
        return self.status()

    def down(self) -> int:
        if not engine.engine_running():
            return 0
        client = engine.client()
        removed = 0
        self._remove_workers(client)
        for container in self._containers(client):
            container.remove(force=True)
            removed += 1
        if self.inventory_path.exists():
            self.inventory_path.unlink()
        return removed

    def status(self) -> list[LabHost]:
        if not engine.engine_running():
            return []
        client = engine.client()
        hosts = []
        for c in sorted(self._containers(client), key=lambda c: c.name):
            address = c.labels.get("rollback-ops.address", "?")
            ssh = f"ssh -i {self.key_path} -o StrictHostKeyChecking=no root@{address}"
            hosts.append(LabHost(c.name.removeprefix(self.prefix), address, c.name, c.status, ssh))
        return hosts

    def container(self, hostname: str) -> Any:
        return engine.client().containers.get(self.prefix + hostname)

    # -- internals ---------------------------------------------------------------------
    def _containers(self, client: Any) -> list[Any]:
        return list(client.containers.list(all=True, filters={"label": f"{LABEL}={self.name}"}))

    def _ensure_key(self) -> None:
        if self.key_path.exists():
            return
        if shutil.which("ssh-keygen") is None:
            raise LabError("ssh-keygen is not installed (`apt-get install openssh-client`)")
        subprocess.run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                f"rollback-ops-{self.name}",
                "-f",
                str(self.key_path),
            ],
            check=True,
        )

    def _ensure_host(
        self, client: Any, tag: str, hostname: str, address: str, existing: dict[str, Any]
    ) -> None:
        cname = self.prefix + hostname
        try:
            container = client.containers.get(cname)
        except docker.errors.NotFound:
            container = None
        if container is not None:
            if container.status != "running":
                container.start()
            return
        host_dir = self.dir / "hosts" / hostname
        host_dir.mkdir(parents=True, exist_ok=True)
        (host_dir / "listen.conf").write_text(f"ListenAddress {address}:22\n")
        (host_dir / "host.env").write_text(f"BIND_ADDRESS={address}\nPORT={APP_PORT}\n")
        client.containers.run(
            tag,
            name=cname,
            hostname=hostname,
            detach=True,
            cap_add=["SYS_ADMIN"],
            cgroupns="host",
            network_mode="host",
            tmpfs={"/run": "", "/run/lock": ""},
            volumes={
                "/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"},
                str(host_dir / "listen.conf"): {
                    "bind": "/etc/ssh/sshd_config.d/listen.conf",
                    "mode": "ro",
                },
                str(host_dir / "host.env"): {"bind": "/etc/analyticbot/host.env", "mode": "ro"},
                str(self.key_path) + ".pub": {"bind": "/root/.ssh/authorized_keys", "mode": "ro"},
                DOCKER_SOCKET: {"bind": DOCKER_SOCKET, "mode": "rw"},
            },
            labels={LABEL: self.name, "rollback-ops.address": address},
        )

    def _wait_ready(self, client: Any, hostname: str, address: str, deadline: float) -> None:
        """Ready when systemd has booted, sshd answers and the demo app listens."""
        container = client.containers.get(self.prefix + hostname)
        state = ""
        while time.monotonic() < deadline:
            state = container.exec_run(["systemctl", "is-system-running"]).output.decode().strip()
            if state in ("running", "degraded") and all(
                _port_open(address, port) for port in (22, APP_PORT)
            ):
                return
            time.sleep(0.5)
        raise LabError(
            f"lab host {hostname} ({address}) not ready in time: systemd says {state!r}; "
            f"see `docker logs {self.prefix + hostname}`"
        )

    def _reset_release(self, client: Any, hostname: str) -> None:
        """Write the worker's .env and busybox, then put the good release back on the host."""
        env = (
            f"COMPOSE_PROJECT_NAME={self.worker_project(hostname)}\n"
            f"LAB_TAG={self.worker_tag(hostname)}\n"
            # docker-compose 1.29 builds with the docker CLI unless told not to (none here)
            "COMPOSE_DOCKER_CLI_BUILD=0\nDOCKER_BUILDKIT=0\n"
        )
        script = (
            f"set -e; cd {WORKER_DIR}; printf %s {shlex.quote(env)} > .env; "
            "cmp -s /bin/busybox busybox || cp /bin/busybox busybox; "
            "lab-release reset"
        )
        container = client.containers.get(self.prefix + hostname)
        result = container.exec_run(["sh", "-c", script])
        if result.exit_code != 0:
            raise LabError(
                f"lab host {hostname}: `lab-release reset` failed: "
                f"{result.output.decode(errors='replace').strip()[-1500:]}"
            )

    def _remove_workers(self, client: Any, hostname: str | None = None) -> None:
        """Remove the worker containers and images of one host, or of every host of the lab."""
        if hostname is None:
            project, worker_tag = self.prefix.lower(), f"{self.name}-"
        else:
            project, worker_tag = self.worker_project(hostname), self.worker_tag(hostname)
        # The workers, and the containers of builds that failed (they carry the image's label).
        for container in client.containers.list(all=True):
            labels = container.labels
            if _matches(labels.get(COMPOSE_PROJECT_LABEL, ""), project, hostname) or _matches(
                labels.get(WORKER_LABEL, ""), worker_tag, hostname
            ):
                container.remove(force=True)
        # Tagged images, and the untagged ones (build cache, the release replaced last).
        pending = {
            i.id
            for i in client.images.list(all=True, filters={"label": WORKER_LABEL})
            if _matches(i.labels.get(WORKER_LABEL, ""), worker_tag, hostname)
        }
        for i in client.images.list(name=WORKER_REPOSITORY):
            if any(_matches(t.partition(":")[2], worker_tag, hostname) for t in i.tags):
                pending.add(i.id)
        while pending:  # children before parents: an image with children cannot be removed
            removed = set()
            for image_id in pending:
                try:
                    client.images.remove(image_id, force=True)
                except docker.errors.NotFound:
                    pass  # went with its child
                except docker.errors.APIError:
                    continue
                removed.add(image_id)
            if not removed:
                break
            pending -= removed

    def _write_inventory(self, hosts: dict[str, str]) -> None:
        ssh_args = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
        inventory = {
            "all": {
                "vars": {
                    "rollback_environment": "lab",
                    "ansible_user": "root",
                    "ansible_ssh_private_key_file": str(self.key_path),
                    "ansible_ssh_common_args": ssh_args,
                    "ansible_python_interpreter": "/usr/bin/python3",
                    "rollback_app": lab_app_vars(),
                },
                "hosts": {
                    name: {"ansible_host": address, "lab_worker_tag": self.worker_tag(name)}
                    for name, address in hosts.items()
                },
            }
        }
        header = (
            f"# Written by `rollback-ops lab up` for lab {self.name!r}; rewritten on each run.\n"
        )
        self.inventory_path.write_text(header + yaml.safe_dump(inventory, sort_keys=False))


def _matches(value: str, wanted: str, hostname: str | None) -> bool:
    """One host's name is matched exactly; the whole lab's (hostname None) as a prefix."""
    return bool(value) and (value == wanted or (hostname is None and value.startswith(wanted)))


def _port_open(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False
