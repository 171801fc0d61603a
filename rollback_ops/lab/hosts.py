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

Databases: each host runs PostgreSQL, listening on the host's own address (port 5432) and
its unix socket, with a role ``analyticbot`` owning the database ``analyticbot`` (pgbench
tables, ``orders``, ``schema_migrations``), and a SQLite database
``/srv/analyticbot/analytics.db``; ``lab-release reset`` puts both back to their baselines,
``lab-db-traffic N`` writes to them (see ``files/lab-db``). The role's password is one per
lab, made at the first ``up`` and kept in ``<state>/labs/<name>/db_password`` (mode 0600):
the hosts only get its SCRAM verifier, and the inventory only names the controller's
environment variable that must hold it (``password_env``), so it is never in the inventory,
argv or the hosts' files. Before a run that touches the databases::

    export ROLLBACK_OPS_LAB_DB_PASSWORD="$(cat ~/.local/state/rollback-ops/labs/lab/db_password)"

or in Python ``os.environ.update(lab.db_env())``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import secrets
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

from rollback_ops.demo import app_vars
from rollback_ops.exceptions import LabError
from rollback_ops.lab import engine, image

APP_PORT = 10300
LABEL = "rollback-ops.lab"
DOCKER_SOCKET = "/var/run/docker.sock"
WORKER_DIR = "/opt/analyticbot/app/worker"
WORKER_REPOSITORY = "analyticbot-worker"
WORKER_LABEL = "rollback-ops.worker"  # on every layer of a worker image: <lab>-<host>
COMPOSE_PROJECT_LABEL = "com.docker.compose.project"
DB_PASSWORD_ENV = "ROLLBACK_OPS_LAB_DB_PASSWORD"  # noqa: S105 (the name of the variable)
DB_NAME = "analyticbot"  # the PostgreSQL role and database on every host
DB_PORT = 5432


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
    """How the lab's demo app is described in the inventory (same shape as staging/prod): the
    demo's app (its flags, emergency values, unit and log pattern) on the hosts' paths, with
    what the other levels need."""
    app = app_vars()
    return {
        **app,
        "env_file": "/srv/analyticbot/.env.production",
        "health": {
            "url": f"http://{{{{ ansible_host }}}}:{APP_PORT}/health",
            "expect": {"status": "healthy"},
            "config_field": "config",
        },
        "log": {**app["log"], "path": "/var/log/analyticbot/production.log"},
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
        # full level: the host's PostgreSQL, reached over TCP on the host's own address, and
        # a SQLite file; migration 004's rollback SQL lives outside the work tree (the code
        # rollback reverts the tree), where `lab-release deploy-bad` puts it
        "databases": [
            {
                "name": "main",
                "engine": "postgresql",
                "database": DB_NAME,
                "host": "{{ ansible_host }}",
                "port": DB_PORT,
                "user": DB_NAME,
                "password_env": DB_PASSWORD_ENV,
                "compression": 6,
                "schema_version_query": "SELECT max(version) FROM schema_migrations",
                "integrity_checks": [
                    {
                        "name": "duplicate orders",
                        "sql": "SELECT id FROM orders GROUP BY id HAVING count(*) > 1",
                    }
                ],
                # pgbench_history has no key; pgbench transactions change accounts' balances
                "data_loss_tables": [
                    {"table": "orders", "key": "id"},
                    {"table": "pgbench_accounts", "key": "aid"},
                ],
                "migrations_rollback": ["/opt/analyticbot/migrations-rollback/004_rollback.sql"],
            },
            {
                "name": "analytics",
                "engine": "sqlite",
                "path": "/srv/analyticbot/analytics.db",
                "data_loss_tables": [{"table": "events", "key": "id"}],
            },
        ],
        "backup": {
            "root": "/var/backups/rollback-ops",
            "files": ["/srv/analyticbot/.env.production", "/etc/analyticbot/settings.yml"],
        },
        # config level (seed 002 strategy 2): settings.yml from the backup set, cache cleared
        "config": {
            "files": ["/etc/analyticbot/settings.yml"],
            "caches": [{"command": ["/usr/local/sbin/lab-cache", "clear"]}],
        },
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

    @property
    def db_password_path(self) -> Path:
        return self.dir / "db_password"

    def db_password(self) -> str:
        """The password of the hosts' PostgreSQL role analyticbot (made by ``up``)."""
        try:
            return self.db_password_path.read_text().strip()
        except FileNotFoundError:
            raise LabError(
                f"lab {self.name} has no database password yet: run `rollback-ops lab up`"
            ) from None

    def db_env(self) -> dict[str, str]:
        """The controller's environment the inventory's ``password_env`` names."""
        return {DB_PASSWORD_ENV: self.db_password()}

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
        verifier = scram_verifier(self._ensure_db_password())
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
            list(
                pool.map(
                    lambda item: self._reset_release(client, item[0], item[1], verifier),
                    wanted.items(),
                )
            )
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

    def _ensure_db_password(self) -> str:
        if not self.db_password_path.exists():
            fd = os.open(self.db_password_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(24) + "\n")
        self.db_password_path.chmod(0o600)
        return self.db_password()

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

    def _reset_release(self, client: Any, hostname: str, address: str, verifier: str) -> None:
        """Write the worker's .env and busybox, set up the databases (PostgreSQL on the host's
        address, the role's password from its SCRAM verifier), then put the good release back
        on the host."""
        env = (
            f"COMPOSE_PROJECT_NAME={self.worker_project(hostname)}\n"
            f"LAB_TAG={self.worker_tag(hostname)}\n"
            # docker-compose 1.29 builds with the docker CLI unless told not to (none here)
            "COMPOSE_DOCKER_CLI_BUILD=0\nDOCKER_BUILDKIT=0\n"
        )
        script = (
            f"set -e; cd {WORKER_DIR}; printf %s {shlex.quote(env)} > .env; "
            "cmp -s /bin/busybox busybox || cp /bin/busybox busybox; "
            f"lab-db setup {address}; lab-release reset"
        )
        container = client.containers.get(self.prefix + hostname)
        result = container.exec_run(["sh", "-c", script], environment={"LAB_DB_SCRAM": verifier})
        if result.exit_code != 0:
            raise LabError(
                f"lab host {hostname}: `lab-db setup` or `lab-release reset` failed: "
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


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """PostgreSQL's SCRAM-SHA-256 verifier of a password (what ``ALTER ROLE ... PASSWORD``
    stores), so that the password itself never reaches the hosts. The salt is derived from
    the password: the same password gives the same verifier, and ``up`` changes nothing."""
    salt = hmac.digest(password.encode(), b"rollback-ops lab salt", "sha256")[:16]
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored_key = hashlib.sha256(hmac.digest(salted, b"Client Key", "sha256")).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _matches(value: str, wanted: str, hostname: str | None) -> bool:
    """One host's name is matched exactly; the whole lab's (hostname None) as a prefix."""
    return bool(value) and (value == wanted or (hostname is None and value.startswith(wanted)))


def _port_open(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False
