"""Faults mid-run on the real lab hosts: Ctrl-C, SIGTERM and a second Ctrl-C to the controller,
a host killed, a full disk under the env file. Each test waits for a specific event (a step
line on the run's stderr, a change on a host) before it injects the fault, then asserts on the
hosts' real state: every file old or new, a copy of each changed one, the receipt and the
history saying what happened, no lock left unnamed, and a follow-up run that finishes.
(bench/faults.py does the same at random points, many times.)
"""

from __future__ import annotations

import hashlib
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollback_ops import history
from tests.integration.conftest import ENV_FILE, CliRun, LabHosts
from tests.integration.test_code_level import MAINTENANCE, CodeLab
from tests.integration.test_guard import assert_no_orphans

LOCK = "/var/lib/rollback-ops/rollback.lock"
ORIGINAL = "/opt/analyticbot/env.production.orig"
FLAG = "ENABLE_TIME_WEIGHTING"
SLOW_RESTART = "/etc/systemd/system/analyticbot-api.service.d/faults-slow.conf"
RESTARTING = "/run/faults-restarting"


class Watched:
    """A CLI run in the background, its stderr lines watched for the moment of a fault."""

    def __init__(self, lab: LabHosts, *argv: str):
        self.proc = subprocess.Popen(
            lab.argv(*argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=lab.env(),
        )
        self.lines: list[str] = []
        self.out: list[str] = []
        self.changed = threading.Condition()
        self.readers = [
            threading.Thread(target=self._read_err, daemon=True),
            threading.Thread(target=self._read_out, daemon=True),
        ]
        for reader in self.readers:
            reader.start()

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()
        with self.changed:
            self.lines.append("")  # end of output
            self.changed.notify_all()

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        self.out.append(self.proc.stdout.read())

    def wait_for(self, pattern: str, timeout: float = 120) -> str:
        """The first stderr line matching pattern; fails if the run ends or time is up first."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self.changed:
            while True:
                for line in self.lines[seen:]:
                    if line == "":
                        pytest.fail(f"the run ended before {pattern!r}:\n{''.join(self.lines)}")
                    if re.search(pattern, line):
                        return line
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"no {pattern!r} in {timeout:.0f} s:\n{''.join(self.lines)}")
                self.changed.wait(left)

    def signal(self, signum: int) -> None:
        assert self.proc.poll() is None, "the run ended before the signal"
        self.proc.send_signal(signum)

    def finish(self, timeout: float = 300) -> CliRun:
        code = self.proc.wait(timeout=timeout)
        for reader in self.readers:
            reader.join(timeout=30)
        return CliRun(code, "".join(self.out), "".join(self.lines))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def watch(lab: LabHosts) -> Iterator[list[Watched]]:
    """Start runs with ``watch.append(Watched(...))``; any still running at the end is killed."""
    runs: list[Watched] = []
    yield runs
    for run in runs:
        run.stop()


def flag_run(lab: LabHosts, *extra: str) -> list[str]:
    argv = ["apply", "--level", "flag", "--inventory", lab.inventory, "--yes", "--json"]
    return [*argv, "--flag", f"{FLAG}=false", *extra]


def sha(lab: LabHosts, host: str, path: str = ENV_FILE) -> str:
    return lab.sh(host, f"sha256sum {path}").split()[0]


def copies(lab: LabHosts, host: str) -> dict[str, str]:
    """The env file's backup copies on a host: path -> sha256."""
    out = lab.sh(host, f"for f in {ENV_FILE}.backup.*; do [ -e $f ] && sha256sum $f; done; true")
    return {path: digest for digest, path in (line.split() for line in out.splitlines())}


def locks(lab: LabHosts) -> list[str]:
    return [h for h in lab.names if lab.sh(h, f"test -e {LOCK} && echo held || true").strip()]


def new_bytes(lab: LabHosts) -> str:
    """The env file as a finished run leaves it (the flag set to false, nothing else)."""
    text = lab.read("web1", ORIGINAL)
    assert f"{FLAG}=true\n" in text
    return hashlib.sha256(text.replace(f"{FLAG}=true\n", f"{FLAG}=false\n").encode()).hexdigest()


def assert_old_or_new_with_copies(lab: LabHosts, old: dict[str, str]) -> set[str]:
    """Every env file is its old or its new bytes; each changed one has a copy of its old
    bytes, and no copy is partial. Returns the hosts whose file changed."""
    new = new_bytes(lab)
    changed = set()
    for host in lab.names:
        now = sha(lab, host)
        assert now in (old[host], new), f"{host}: env file is neither old nor new"
        found = copies(lab, host)
        assert all(digest == old[host] for digest in found.values()), f"{host}: partial copy"
        if now != old[host]:
            changed.add(host)
            assert found, f"{host}: env file changed without a copy of its old bytes"
    return changed


def history_result(lab: LabHosts, run_id: str) -> str:
    rows = {r.run_id: r for r in history.read(lab.state_dir)}
    return rows[run_id].result


def test_sigint_mid_flag_run_stops_between_steps_and_the_same_command_finishes(
    lab: LabHosts, watch: list[Watched]
):
    old = {h: sha(lab, h) for h in lab.names}
    run = Watched(lab, *flag_run(lab))
    watch.append(run)
    run.wait_for(r"changed\s+envfile: Set values in the env file")  # a host has changed
    run.signal(signal.SIGINT)
    done = run.finish()
    assert done.code == 130, done.stderr
    receipt = done.receipt
    run_id = receipt["run_id"]
    assert (receipt["result"], receipt["interrupted"], receipt["hard_stop"]) == (
        "interrupted",
        "SIGINT",
        False,
    )
    changed = assert_old_or_new_with_copies(lab, old)
    assert changed and sorted(changed) == receipt["changed_hosts"]
    for host in lab.names:
        assert receipt["hosts"][host]["status"] in ("interrupted", "ok", "changed")
    assert receipt["locks_left"] == [] and locks(lab) == []  # the always sections ran
    assert history_result(lab, run_id) == "interrupted"
    assert "INTERRUPTED (SIGINT)" in done.stderr
    assert f"hosts changed before the stop: {', '.join(sorted(changed))}" in done.stderr
    assert "run the same command again" in done.stderr
    assert_no_orphans(run_id)

    again = lab.cli(*flag_run(lab))
    assert again.code == 0, again.stderr
    for host in changed:  # nothing left to change in the file where the first run wrote it
        assert not any(f["changed"] for f in again.receipt["hosts"][host]["flags"])
    for host in lab.names:
        assert lab.health(host)["config"][FLAG] is False  # as the running process sees it


@pytest.fixture
def code(lab: LabHosts) -> Iterator[CodeLab]:
    c = CodeLab(lab)
    c.each("lab-release reset && lab-release deploy-bad")
    yield c
    c.each("lab-release reset")


def test_sigterm_mid_code_run_releases_the_locks_and_resume_finishes(
    code: CodeLab, lab: LabHosts, watch: list[Watched]
):
    hosts = ["web1", "web2"]
    bad = {h: code.git(h, "rev-parse", "HEAD") for h in lab.names}
    untargeted = lab.fingerprint("web3")
    argv = ["apply", "--level", "code", "--inventory", lab.inventory, "--yes", "--json"]
    run = Watched(lab, *argv, "--limit", ",".join(hosts), "--reason", "INC-12 checkout fails")
    watch.append(run)
    run.wait_for(r"changed\s+coderevert: Record the current code")
    run.signal(signal.SIGTERM)
    done = run.finish()
    assert done.code == 143, done.stderr
    receipt = done.receipt
    run_id = receipt["run_id"]
    assert (receipt["result"], receipt["interrupted"], receipt["hard_stop"]) == (
        "interrupted",
        "SIGTERM",
        False,
    )
    assert receipt["locks_left"] == [] and locks(lab) == []
    assert receipt["changed_hosts"] == hosts  # maintenance on, units stopped, code recorded
    for host in hosts:
        assert receipt["hosts"][host]["status"] == "interrupted"
        assert lab.sh(host, f"test -e {MAINTENANCE} && echo on").strip() == "on"
        if code.git(host, "rev-parse", "HEAD") != bad[host]:  # moved: the old code is recorded
            assert code.git(host, "rev-parse", f"refs/rollback-ops/{run_id}") == bad[host]
    lab.assert_unchanged(untargeted)  # web3: not targeted, not touched
    assert history_result(lab, run_id) == "interrupted"
    assert f"rollback-ops apply --resume {run_id}" in done.stderr
    assert_no_orphans(run_id)

    resumed = lab.cli("apply", "--resume", run_id, "--yes", "--json")
    assert resumed.code == 0, resumed.stderr
    assert resumed.receipt["resumes"] == run_id
    for host in hosts:
        code.assert_good(host)
    assert locks(lab) == []
    # given no --reason, the resume keeps the interrupted run's; the history links both ways
    assert resumed.receipt["authorization"]["reason"] == "INC-12 checkout fails"
    rows = {r.run_id: r for r in history.read(lab.state_dir)}
    later = rows[resumed.receipt["run_id"]]
    assert (later.follows, later.relation, later.reason_from) == (run_id, "resume", run_id)
    assert [link.run_id for link in rows[run_id].followed_by] == [later.run_id]
    shown = lab.cli("history", "--host", "web1", "--last", "2")
    assert f"resumed by {later.run_id}; reason: INC-12 checkout fails" in shown.stdout
    assert f"resumes {run_id}; reason (kept): INC-12 checkout fails" in shown.stdout


@pytest.fixture
def slow_restart(lab: LabHosts) -> Iterator[None]:
    """The app's restart takes 5 s on every host and says when it begins (a marker file)."""
    for host in lab.names:
        lab.sh(
            host,
            f"mkdir -p {Path(SLOW_RESTART).parent} && printf '%s\\n' '[Service]' "
            f"\"ExecStartPre=/bin/sh -c 'touch {RESTARTING}; sleep 5'\" > {SLOW_RESTART} && "
            f"rm -f {RESTARTING} && systemctl daemon-reload",
        )
    yield
    for host in lab.names:
        lab.sh(host, f"rm -f {SLOW_RESTART} {RESTARTING} && systemctl daemon-reload")


def test_a_second_sigint_stops_at_once_naming_the_locks_left_and_unlock_clears_them(
    lab: LabHosts, watch: list[Watched], slow_restart: None
):
    old = {h: sha(lab, h) for h in lab.names}
    run = Watched(lab, *flag_run(lab))
    watch.append(run)
    deadline = time.monotonic() + 90  # every host is in the middle of its restart
    while not all(
        lab.sh(h, f"test -e {RESTARTING} && echo yes || true").strip() for h in lab.names
    ):
        assert run.proc.poll() is None, run.finish().stderr
        assert time.monotonic() < deadline, "the restarts did not begin"
        time.sleep(0.1)
    run.signal(signal.SIGINT)
    time.sleep(0.1)
    run.signal(signal.SIGINT)
    done = run.finish()
    assert done.code == 130, done.stderr
    receipt = done.receipt
    run_id = receipt["run_id"]
    assert receipt["result"] == "interrupted" and receipt["hard_stop"] is True
    held = locks(lab)
    assert held, "stopped at once mid-restart: the locks stay"
    assert receipt["locks_left"] == held  # exactly the hosts whose lock file is there
    assert f"--run {run_id}" in done.stderr and "rollback-ops unlock -i" in done.stderr
    changed = assert_old_or_new_with_copies(lab, old)
    assert changed <= set(receipt["changed_hosts"])
    assert history_result(lab, run_id) == "interrupted"
    assert_no_orphans(run_id)

    cleared = lab.cli("unlock", "--inventory", lab.inventory, "--run", run_id, "--yes")
    assert cleared.code == 0, cleared.stderr
    assert locks(lab) == []


def wait_ready(lab: LabHosts, host: str, timeout: float = 90) -> None:
    """A restarted host: systemd up, and the app answering."""
    deadline = time.monotonic() + timeout
    while True:
        state = lab.lab.container(host).exec_run(["systemctl", "is-system-running"])
        if state.output.decode().strip() in ("running", "degraded"):
            try:
                lab.health(host)
                return
            except OSError:
                pass
        assert time.monotonic() < deadline, f"{host} did not come back"
        time.sleep(0.5)


def test_a_host_killed_mid_flag_run_is_unreachable_and_the_others_finish(
    lab: LabHosts, watch: list[Watched]
):
    old = {h: sha(lab, h) for h in lab.names}
    run = Watched(lab, *flag_run(lab))
    watch.append(run)
    run.wait_for(r"\] web2\s+ok\s+preflight: Check the host can take the rollback")
    try:
        lab.lab.container("web2").kill()
        done = run.finish()
    finally:
        lab.lab.container("web2").start()
        wait_ready(lab, "web2")
    assert done.code == 1, done.stderr
    receipt = done.receipt
    run_id = receipt["run_id"]
    hosts = receipt["hosts"]
    assert hosts["web2"]["status"] == "unreachable"
    for host in ("web1", "web3"):
        assert hosts[host]["status"] == "changed"
        assert lab.health(host)["config"][FLAG] is False
    assert receipt["result"] == "failed" and history_result(lab, run_id) == "failed"
    changed = assert_old_or_new_with_copies(lab, old)
    assert {"web1", "web3"} <= changed
    held = locks(lab)
    assert held == ["web2"] == receipt["locks_left"]  # taken at preflight, never released
    assert "run the same command again" in done.stderr and f"--run {run_id}" in done.stderr
    assert_no_orphans(run_id)

    cleared = lab.cli("unlock", "--inventory", lab.inventory, "--run", run_id, "--yes")
    assert cleared.code == 0, cleared.stderr
    again = lab.cli(*flag_run(lab))
    assert again.code == 0, again.stderr
    for host in ("web1", "web3"):
        assert again.receipt["hosts"][host]["changed"] == 0
    assert lab.health("web2")["config"][FLAG] is False


FILLER = ".faults-filler"


@pytest.fixture
def full_disk(lab: LabHosts) -> Iterator[str]:
    """web2's env file on a tmpfs of 64 KiB with one page (4 KiB) left free."""
    directory = str(Path(ENV_FILE).parent)
    lab.sh(
        "web2",
        f"set -e; d={directory}; s=/run/faults-stage; rm -rf $s; mkdir -p $s; cp -a $d/. $s/; "
        f"mount -t tmpfs -o size=64k,mode=0755 tmpfs $d; cp -a $s/. $d/; rm -rf $s; "
        f"dd if=/dev/zero of=$d/{FILLER} bs=4096 2>/dev/null || true; "
        f"truncate -s -4096 $d/{FILLER}",
    )
    yield "web2"
    lab.sh("web2", f"umount {directory} || umount -l {directory}")


def test_a_full_disk_under_the_env_file_refuses_or_leaves_it_untouched(
    lab: LabHosts, full_disk: str, tmp_path: Path
):
    host = full_disk
    before = lab.fingerprint()
    listing = lab.sh(host, f"ls -A {Path(ENV_FILE).parent}")

    refused = lab.cli(*flag_run(lab, "--limit", host))
    assert refused.code == 3, refused.stderr
    assert "free" in refused.receipt["hosts"][host]["message"]
    assert refused.receipt["result"] == "refused" and refused.receipt["changed_hosts"] == []

    # with no free-space margin the preflight lets it through: the write itself meets ENOSPC
    inv = lab.inventory_with(tmp_path, preflight_min_free_mb=0, envfile_min_free_mb=0)
    argv = ["apply", "--level", "flag", "--inventory", inv, "--yes", "--json", "--limit", host]
    tight = lab.cli(*argv, "--flag", f"{FLAG}=false")
    assert tight.code in (1, 3), tight.stderr
    result = tight.receipt["hosts"][host]
    assert result["status"] == "failed" and result["changed"] == 0
    lab.assert_unchanged(before)  # untouched, not restarted
    assert lab.sh(host, f"ls -A {Path(ENV_FILE).parent}") == listing  # no copy, no temp file
    assert locks(lab) == []
