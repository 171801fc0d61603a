"""One rollback at a time per inventory, on this controller.

The lock is an ``flock`` on ``<state>/locks/<inventory>.lock``: the kernel releases it when
the holding process dies, so a crashed run can never leave it stuck. The file records who
holds it (run id, operator, pid, since); a second run is refused with that, and a record
left by a dead run is reported as such when the next run takes the lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from rollback_ops.exceptions import Refused


class InventoryLock:
    def __init__(self, state_dir: Path, inventory_path: Path, inventory_name: str):
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", inventory_name).strip("_")[-40:] or "inventory"
        digest = hashlib.sha256(str(inventory_path).encode()).hexdigest()[:8]
        self.path = state_dir / "locks" / f"{slug}-{digest}.lock"
        self.inventory_name = inventory_name
        self.fd: int | None = None
        self.previous: dict[str, Any] = {}

    def acquire(self, run_id: str, operator: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise Refused(
                f"inventory {self.inventory_name} is locked by run {holder.get('run_id', '?')} of "
                f"{holder.get('operator', '?')} (pid {holder.get('pid', '?')}) since "
                f"{holder.get('since', '?')}: one rollback at a time"
            ) from None
        self.previous = _read(fd)
        record = {
            "run_id": run_id,
            "operator": operator,
            "pid": os.getpid(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        self.fd = fd

    @property
    def stale_previous(self) -> str:
        """The run that held the lock last and died without releasing it, if any."""
        if self.previous.get("pid"):
            return (
                f"run {self.previous.get('run_id')} of {self.previous.get('operator')} "
                f"held this lock since {self.previous.get('since')} and died without "
                "releasing it"
            )
        return ""

    def release(self) -> None:
        if self.fd is None:
            return
        os.ftruncate(self.fd, 0)
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> InventoryLock:
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
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
