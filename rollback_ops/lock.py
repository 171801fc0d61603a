"""One rollback at a time per target host, on this controller; and whether a lock's holder lives.

Each host a run targets is locked with an ``flock`` on ``<state>/locks/host-<address>.lock``,
keyed by where Ansible connects (``ansible_host:port``), not by how the inventory file was
spelled or which inventory names the host: two runs reaching one machine through two paths or
two inventories cannot both hold it. The kernel releases an flock when its process dies, so a
crashed run never leaves one stuck. Each file records its holder (run id, operator, pid and
the pid's start time); a second run is refused with that.

Host-side locks (taken by the preflight module on the host) record the same, so
:func:`liveness` can tell a live holder from a dead one on this controller.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from rollback_ops.exceptions import Refused

Liveness = Literal["live", "dead", "unknown", "expired"]
LOCK_MAX_AGE_MINUTES = 240  # the preflight module's lock_max_age default


def process_start(pid: int) -> str:
    """The start time of a process (clock ticks since boot, /proc/PID/stat field 22), or ""."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    _name, _paren, fields = stat.rpartition(")")
    try:
        return fields.split()[19]  # field 22 of the line
    except IndexError:
        return ""


def holder_record(run_id: str, operator: str) -> dict[str, Any]:
    """Who holds a lock: this process, on this controller, for this run."""
    pid = os.getpid()
    return {
        "run_id": run_id,
        "operator": operator,
        "controller": socket.gethostname(),
        "pid": pid,
        "pid_start": process_start(pid),
        "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "epoch": time.time(),
    }


def liveness(record: dict[str, Any], max_age_minutes: int = LOCK_MAX_AGE_MINUTES) -> Liveness:
    """Whether the run that wrote a lock record still runs.

    On this controller the answer is exact (its pid is alive with the same start time);
    from another controller it is "unknown" until the lock is older than the maximum age.
    """
    if record.get("controller") == socket.gethostname() and record.get("pid"):
        try:
            pid = int(record["pid"])
        except (TypeError, ValueError):
            return "dead"
        start = process_start(pid)
        alive = bool(start) and (not record.get("pid_start") or start == record["pid_start"])
        return "live" if alive else "dead"
    try:
        age = time.time() - float(record["epoch"])
    except (KeyError, TypeError, ValueError):  # no epoch, or not a number: of unknown age
        age = float("inf")
    return "unknown" if age < max_age_minutes * 60 else "expired"


def describe(record: dict[str, Any]) -> str:
    return (
        f"run {record.get('run_id', '?')} of {record.get('operator', '?')} from "
        f"{record.get('controller', '?')} (pid {record.get('pid', '?')}) since "
        f"{record.get('since', '?')}"
    )


class HostsLock:
    """The controller-side locks of the hosts one run targets (all or none)."""

    def __init__(self, state_dir: Path, addresses: dict[str, str]):
        self.dir = state_dir / "locks"
        self.addresses = dict(sorted(addresses.items()))
        self.fds: dict[str, int] = {}
        self.previous: dict[str, dict[str, Any]] = {}

    def path(self, address: str) -> Path:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", address).strip("_")[-40:] or "host"
        digest = hashlib.sha256(address.encode()).hexdigest()[:8]
        return self.dir / f"host-{slug}-{digest}.lock"

    def acquire(self, run_id: str, operator: str) -> None:
        """Take every host's lock, in a fixed order, or none (Refused naming the holder)."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        record = json.dumps(holder_record(run_id, operator)).encode()
        try:
            for host, address in self.addresses.items():
                fd = os.open(self.path(address), os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = _read(fd)
                    os.close(fd)
                    raise Refused(
                        f"host {host} ({address}) is in use by {describe(holder)}, which is "
                        "running now on this controller: one rollback at a time per host"
                    ) from None
                self.previous[host] = _read(fd)
                os.pwrite(fd, record, 0)
                os.ftruncate(fd, len(record))
                self.fds[host] = fd
        except BaseException:
            self.release()
            raise

    @property
    def stale_previous(self) -> str:
        """The run that held these locks last and died without releasing them, if any."""
        dead = {
            describe(r)
            for r in self.previous.values()
            if r.get("pid") and liveness(r) in ("dead", "expired")
        }
        if not dead:
            return ""
        return (
            "; ".join(sorted(dead)) + " held this controller's lock and died without releasing it"
        )

    def release(self) -> None:
        for fd in self.fds.values():
            try:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        self.fds.clear()

    def __enter__(self) -> HostsLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _read(fd: int) -> dict[str, Any]:
    try:
        data = json.loads(os.pread(fd, os.fstat(fd).st_size, 0) or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
