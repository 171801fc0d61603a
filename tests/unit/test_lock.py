"""This controller's per-host locks, and telling a live lock holder from a dead one."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rollback_ops.exceptions import Refused
from rollback_ops.lock import HostsLock, holder_record, liveness, process_start

HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from rollback_ops.lock import HostsLock
    lock = HostsLock(Path(sys.argv[1]), {"web1": "127.0.1.11", "web2": "127.0.1.12"})
    lock.acquire("run-A", "ana")
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
""")


def hold(state_dir: Path, seconds: str) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(state_dir), seconds], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout and holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_run_on_a_held_host_is_refused_naming_the_holder(state_dir: Path):
    holder = hold(state_dir, "30")
    try:
        # another inventory, another spelling, another host name: the same address is held
        with pytest.raises(Refused, match=r"host db \(127\.0\.1\.12\) is in use by run run-A "):
            HostsLock(state_dir, {"db": "127.0.1.12", "web9": "127.0.1.19"}).acquire("B", "ben")
        # all or nothing: the free host was not left locked by the refused run
        with HostsLock(state_dir, {"web9": "127.0.1.19"}) as free:
            free.acquire("run-C", "ben")
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_dead_run_is_detected_and_taken(state_dir: Path):
    holder = hold(state_dir, "30")
    holder.kill()
    holder.wait()
    lock = HostsLock(state_dir, {"web1": "127.0.1.11"})
    lock.acquire("run-B", "ben")
    assert "run run-A of ana" in lock.stale_previous and "died" in lock.stale_previous
    lock.release()
    again = HostsLock(state_dir, {"web1": "127.0.1.11"})
    again.acquire("run-C", "ben")
    assert again.stale_previous == ""  # a released lock leaves no record behind
    again.release()


def test_liveness_of_a_lock_record():
    me = holder_record("r", "ana")
    assert me["pid_start"] == process_start(os.getpid()) != ""
    assert liveness(me) == "live"
    # same pid, other start time: the pid was reused by another process
    assert liveness({**me, "pid_start": "1"}) == "dead"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    assert liveness({**me, "pid": int(dead.stdout)}) == "dead"
    other = {**me, "controller": socket.gethostname() + "-other"}
    assert liveness(other) == "unknown"  # another controller's run, younger than the max age
    # the max age is in minutes: a 5-minute-old lock is not expired, a 5-hour-old one is
    assert liveness({**other, "epoch": time.time() - 5 * 60}) == "unknown"
    assert liveness({**other, "epoch": time.time() - 5 * 3600}) == "expired"


def test_liveness_compares_controllers_and_start_times_for_equality_only():
    me = holder_record("r", "ana")
    start = int(me["pid_start"])
    # a pid_start after or before ours: another process that got our pid
    assert liveness({**me, "pid_start": str(start + 1)}) == "dead"
    assert liveness({**me, "pid_start": str(start - 1)}) == "dead"
    # controllers whose names sort before and after ours are other controllers
    for name in ("", "0-" + socket.gethostname(), socket.gethostname() + "-zz", "~"):
        assert liveness({**me, "controller": name}) == "unknown", name


def test_a_lock_of_unreadable_pid_is_dead_and_one_without_epoch_expired():
    me = holder_record("r", "ana")
    assert liveness({**me, "pid": ["not", "a", "pid"]}) == "dead"
    assert liveness({**me, "pid": "garbage"}) == "dead"
    other = {**me, "controller": "elsewhere"}
    assert liveness({**other, "epoch": None}) == "expired"
    assert liveness({**other, "epoch": "garbage"}) == "expired"
    assert liveness({k: v for k, v in other.items() if k != "epoch"}) == "expired"


def test_the_controller_and_the_host_agree_on_the_lock_maximum_age():
    """The controller's LOCK_MAX_AGE_MINUTES is the preflight's default everywhere it is set."""
    import yaml

    from rollback_ops.lock import LOCK_MAX_AGE_MINUTES
    from tests.conftest import ROOT, load_module

    preflight = load_module("plugins/modules/preflight.py")
    documented = yaml.safe_load(preflight.DOCUMENTATION)["options"]["lock_max_age"]["default"]
    role = ROOT / "roles" / "preflight"
    default = yaml.safe_load((role / "defaults" / "main.yml").read_text())["preflight_lock_max_age"]
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())
    spec = specs["argument_specs"]["main"]["options"]["preflight_lock_max_age"]["default"]
    assert [documented, default, spec] == [LOCK_MAX_AGE_MINUTES] * 3 == [240] * 3
    other = {**holder_record("r", "ana"), "controller": "elsewhere"}
    assert liveness({**other, "epoch": time.time() - 239.5 * 60}) == "unknown"
    assert liveness({**other, "epoch": time.time() - 240.5 * 60}) == "expired"


def test_lock_files_keep_their_names_and_stay_private(state_dir: Path):
    """Two versions of rollback-ops on one controller must lock the same file for a host."""
    import hashlib

    lock = HostsLock(state_dir, {"web1": "127.0.1.11:22", "x": "%%%", "long": "a" * 60})

    def digest(address: str) -> str:
        return hashlib.sha256(address.encode()).hexdigest()[:8]

    assert lock.path("127.0.1.11:22").name == f"host-127.0.1.11_22-{digest('127.0.1.11:22')}.lock"
    assert lock.path("%%%").name == f"host-host-{digest('%%%')}.lock"
    assert lock.path("a" * 60).name == f"host-{'a' * 40}-{digest('a' * 60)}.lock"
    lock.acquire("run-A", "ana")
    try:
        assert (state_dir / "locks").stat().st_mode & 0o777 == 0o700
        modes = {p.stat().st_mode & 0o777 for p in (state_dir / "locks").iterdir()}
        assert modes == {0o600}
    finally:
        lock.release()
    # released: every file is empty, so no holder is left behind to read
    assert {p.stat().st_size for p in (state_dir / "locks").iterdir()} == {0}


def test_a_lock_file_with_garbage_in_it_is_taken_with_no_previous_holder(state_dir: Path):
    lock = HostsLock(state_dir, {"web1": "127.0.1.11"})
    path = lock.path("127.0.1.11")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x00{not json")
    lock.acquire("run-A", "ana")
    lock.release()
    assert lock.previous == {"web1": {}} and lock.stale_previous == ""


def test_the_start_time_is_read_after_a_command_name_holding_parentheses(tmp_path: Path):
    """/proc/PID/stat's second field is the command name, which may hold ") (" and spaces."""
    odd = tmp_path / "x) 1 2 (y"
    odd.symlink_to(shutil.which("sleep") or "/bin/sleep")
    proc = subprocess.Popen([str(odd), "30"])
    try:
        stat = Path(f"/proc/{proc.pid}/stat").read_text()
        comm = Path(f"/proc/{proc.pid}/comm").read_text().rstrip("\n")
        after_name = stat[len(f"{proc.pid} ({comm}) ") :].split()
        assert ")" in comm
        assert process_start(proc.pid) == after_name[19] != ""  # field 22 of the line
    finally:
        proc.kill()
        proc.wait()
    assert process_start(proc.pid) == ""  # gone


def test_a_long_holder_record_is_read_back_whole(state_dir: Path):
    """A record is read to its end, however long the operator's name (it was cut at 4 KB)."""
    long_name = "ops-" + "x" * 5000
    first = HostsLock(state_dir, {"web1": "127.0.1.11"})
    first.acquire("run-long", long_name)
    for fd in first.fds.values():  # the holder dies without releasing: the kernel drops
        os.close(fd)  # its flock, and its record stays in the file
    first.fds.clear()
    again = HostsLock(state_dir, {"web1": "127.0.1.11"})
    again.acquire("run-next", "ben")
    again.release()
    assert again.previous["web1"]["operator"] == long_name
    assert again.previous["web1"]["run_id"] == "run-long"


def test_a_lock_stamped_in_the_distant_past_is_expired():
    other = {**holder_record("r", "ana"), "controller": "elsewhere"}
    assert liveness({**other, "epoch": 1000.0}) == "expired"  # 1970: a reset clock
