#!/usr/bin/env python3
"""Fault injection: interrupt real rollbacks on real lab hosts and check what they leave.

Each trial sets a lab of 3 hosts up for one level (flag: every flag on; code: the bad release
deployed; full: a pre-deployment backup set, writes since, then the bad release), starts
`rollback-ops apply`, injects one fault at a random point, and then checks the hosts:

  sigint, sigterm, sigkill   the controller gets the signal at uniform [0.2 s, typical duration]
  sigint2                    two SIGINTs (the hard stop), same timing
  host-kill                  a host's container is `docker kill`ed mid-run, started again after
  sshd-stop                  sshd stopped on a host mid-run (listener and sessions), started after
  disk-env                   (flag) the env file's directory is a nearly full tmpfs: either the
                             preflight refuses (`--limit HOST`), or, with no free-space margin,
                             the write itself hits ENOSPC
  disk-backup                (full) the backup root is a nearly full tmpfs
  pg-stop                    (full) PostgreSQL stopped on a host while the databases are restored
  docker-sock                (code) the host's Docker socket made unusable during the rebuild
                             (a bind mount of /dev/null over it inside the host: the outer
                             engine, which runs the lab, is not touched)

Checks after each trial (counted in the table): every file rollback-ops may change is its old
or its new bytes (env file, settings, each file of the code tree); a copy of everything that
changed exists (an env backup with the old bytes, the code's refs/rollback-ops/<run> ref, a
forensic set before the databases change); each database equals the state before the run or
the backup set, never a mix; no partial backup copy or set is left; the receipt (when the
process could write one) and the history say what happened (result, exit status, every host
that changed is named as changed or as not finished); no host lock is left that the receipt's
`locks_left` did not name; no process of the run outlives it (controller, and ansible modules on
the hosts); and the follow-up (`unlock --run` where locks are left, then the same command again
for flag, `apply --resume RUN_ID` for code and full) exits 0 and leaves the target state.

Uses its own lab (`faults`, 127.0.3.11-13) under --state-dir; removes it at the end unless
--keep-lab. Every trial is written as one JSON line to --out; the table is printed at the end.

Usage: python bench/faults.py [--trials 50] [--seed N] [--levels flag,code,full]
           [--faults sigint,sigterm,...] [--keep-lab] [--max-minutes 150] [--state-dir DIR]
           [--out FILE]
       python bench/faults.py --report FILE...    (the table of saved trials)
About a minute per code or full trial and 20 s per flag trial on a 2-core machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rollback_ops import history
from rollback_ops.lab import Lab

LAB_NAME, FIRST_ADDRESS = "faults", "127.0.3.11"
HOSTS = ["web1", "web2", "web3"]
APP_DIR = "/srv/analyticbot"
ENV_FILE = f"{APP_DIR}/.env.production"
ENV_ORIG = "/opt/analyticbot/env.production.orig"
SETTINGS = "/etc/analyticbot/settings.yml"
CODE = "/opt/analyticbot/app"
MAINTENANCE = f"{APP_DIR}/MAINTENANCE"
LOCK = "/var/lib/rollback-ops/rollback.lock"
BACKUP_ROOT = "/var/backups/rollback-ops"
SETS = f"{BACKUP_ROOT}/analyticbot"
SOCK = "/run/docker.sock"
FILLER = ".faults-filler"
FLAG = "ENABLE_TIME_WEIGHTING"
APP_PORT = 10300
STATS = (
    "SELECT count(*) || ':' || coalesce(sum(('x' || substr(md5(t::text), 1, 16))::bit(64)"
    "::bigint), 0) FROM {} t;"
)
DB_SQL = "\n".join(
    [
        STATS.format("orders"),
        STATS.format("pgbench_accounts"),
        "SELECT max(version) FROM schema_migrations;",
        "SELECT string_agg(column_name, ',' ORDER BY column_name) FROM information_schema.columns "
        "WHERE table_name = 'orders';",
    ]
)
FAULTS: dict[str, tuple[str, ...]] = {
    "sigint": ("flag", "code", "full"),
    "sigterm": ("flag", "code", "full"),
    "sigkill": ("flag", "code", "full"),
    "sigint2": ("flag", "code", "full"),
    "host-kill": ("flag", "code", "full"),
    "sshd-stop": ("flag", "code", "full"),
    "disk-env": ("flag",),
    "disk-backup": ("full",),
    "pg-stop": ("full",),
    "docker-sock": ("code",),
}
SIGNAL_EXIT = {"sigint": {130}, "sigint2": {130}, "sigterm": {143}, "sigkill": {-9}}


# -- the lab ---------------------------------------------------------------------------------
def run(argv: list[str], timeout: float = 120, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, **kw)


class Hosts:
    def __init__(self, state: Path):
        self.state = state
        self.lab = Lab(state, name=LAB_NAME, first_address=FIRST_ADDRESS)
        self.pg_unit = ""

    @property
    def inventory(self) -> str:
        return str(self.lab.inventory_path)

    def cname(self, host: str) -> str:
        return self.lab.prefix + host

    def address(self, host: str) -> str:
        return self.lab.address(int(host.removeprefix("web")))

    def sh(self, host: str, script: str, timeout: float = 180, check: bool = True) -> str:
        proc = run(["docker", "exec", self.cname(host), "sh", "-c", script], timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"{host}: {script[:120]}: rc {proc.returncode}: {proc.stderr[-800:]}"
            )
        return proc.stdout

    def each(self, script: str, hosts: list[str] | None = None) -> dict[str, str]:
        hosts = hosts or HOSTS
        with ThreadPoolExecutor(len(hosts)) as pool:
            return dict(zip(hosts, pool.map(lambda h: self.sh(h, script), hosts), strict=True))

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "ROLLBACK_OPS_STATE_DIR"}
        return {
            **env,
            "ROLLBACK_OPS_LAB_DB_PASSWORD": self.lab.db_password(),
            "ROLLBACK_OPS_OPERATOR": "faults",
        }

    def argv(self, *argv: str) -> list[str]:
        return [sys.executable, "-m", "rollback_ops", "--state-dir", str(self.state), *argv]

    def cli(self, *argv: str, timeout: float = 400) -> Cli:
        try:
            proc = run(self.argv(*argv), timeout=timeout, env=self.env(), stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return Cli(-1, "", f"timed out after {timeout:.0f} s")
        return Cli(proc.returncode, proc.stdout, proc.stderr)

    def up(self) -> None:
        self.lab.up(len(HOSTS))
        self.pg_unit = "postgresql@{}-main".format(
            self.sh("web1", "ls /usr/lib/postgresql | sort -n | tail -n 1").strip()
        )
        # an inventory with no free-space margin: the write itself meets the full disk
        data = yaml.safe_load(self.lab.inventory_path.read_text())
        data["all"]["vars"].update(preflight_min_free_mb=0, envfile_min_free_mb=0)
        self.tight_inventory.write_text(yaml.safe_dump(data))

    @property
    def tight_inventory(self) -> Path:
        return self.lab.dir / "inventory-no-margin.yml"

    def ensure_running(self, host: str, timeout: float = 120) -> None:
        """The host's container runs, systemd is up, sshd and PostgreSQL answer."""
        state = run(["docker", "inspect", "-f", "{{.State.Running}}", self.cname(host)])
        if state.stdout.strip() != "true":
            run(["docker", "start", self.cname(host)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            probe = run(
                ["docker", "exec", self.cname(host), "systemctl", "is-system-running"], timeout=20
            )
            booted = probe.stdout.strip() in ("running", "degraded")
            if booted and port_open(self.address(host), 22):
                break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"{host} did not come back in {timeout:.0f} s")
        self.sh(
            host,
            f"systemctl start ssh {self.pg_unit}; i=0; "
            f"until pg_isready -q -h {self.address(host)}; do i=$((i+1)); "
            '[ "$i" -lt 300 ] || exit 1; sleep 0.1; done',
        )


@dataclass
class Cli:
    code: int
    stdout: str
    stderr: str

    def receipt(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.stdout)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None


def port_open(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def processes_mentioning(text: str) -> dict[int, str]:
    found = {}
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in args and str(os.getpid()) != cmdline.parent.name:
            found[int(cmdline.parent.name)] = args[:160]
    return found


# -- what a host holds -----------------------------------------------------------------------
SNAPSHOT = rf"""
cd /
h() {{ sha256sum "$1" 2>/dev/null | cut -c1-64; }}
printf 'env\t%s\n' "$(h {ENV_FILE})"
printf 'settings\t%s\n' "$(h {SETTINGS})"
for f in {ENV_FILE}.backup.* {APP_DIR}/.rollback-ops.* {APP_DIR}/*.tmp; do
    [ -e "$f" ] && printf 'envcopy\t%s\t%s\n' "$f" "$(h "$f")"
done
[ -e {LOCK} ] && printf 'lock\t%s\n' "$(tr -d '\n' < {LOCK})"
[ -e {MAINTENANCE} ] && printf 'maintenance\t1\n'
cd {CODE} && {{
    printf 'head\t%s\n' "$(git -c safe.directory='*' rev-parse HEAD)"
    git -c safe.directory='*' for-each-ref refs/rollback-ops/ \
        --format='ref%09%(refname)%09%(objectname)'
    find . -path ./.git -prune -o -name __pycache__ -prune -o -type f -print0 |
        xargs -0 -r sha256sum | sed 's/^\([0-9a-f]*\)  \(.*\)$/file\t\2\t\1/'
}}
cd /
if [ -d {SETS} ]; then
    for s in $(ls -1 {SETS}); do
        if [ -f {SETS}/$s/manifest.json ]; then printf 'set\t%s\tcomplete\n' "$s"
        else printf 'set\t%s\tpartial\n' "$s"; fi
    done
fi
true
"""
# a module Ansible runs on a host (pipelined: python3 reading the module on stdin)
PROCS = (
    "ps -eo pid=,args= | grep -E '[A]nsiballZ|[a]nsible-tmp|[p]ython3 && sleep 0' "
    "| sed 's/^ *//' || true"
)
DB_SNAPSHOT = rf"""
cd /
if pg_isready -q; then
    runuser -u postgres -- psql -X -At -d analyticbot <<'SQL' | sed 's/^/pg\t/'
{DB_SQL}
SQL
else printf 'pg\tdown\n'; fi
printf 'sqlite\t%s\n' "$(sqlite3 {APP_DIR}/analytics.db 'SELECT count(*), max(id) FROM events')"
"""


@dataclass
class Snap:
    env: str = ""
    settings: str = ""
    envcopies: dict[str, str] = field(default_factory=dict)
    lock: dict[str, Any] | None = None
    maintenance: bool = False
    head: str = ""
    refs: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    sets: dict[str, str] = field(default_factory=dict)
    pg: tuple[str, ...] = ()
    sqlite: str = ""

    @property
    def db(self) -> tuple[tuple[str, ...], str]:
        return self.pg, self.sqlite


def snapshot(hosts: Hosts, host: str, db: bool = False) -> Snap:
    out = hosts.sh(host, SNAPSHOT + (DB_SNAPSHOT if db else ""), timeout=120)
    snap, pg = Snap(), []
    for line in out.splitlines():
        kind, _, rest = line.partition("\t")
        parts = rest.split("\t")
        if kind in ("env", "settings", "head", "sqlite"):
            setattr(snap, kind, rest)
        elif kind == "envcopy":
            snap.envcopies[parts[0]] = parts[1]
        elif kind == "lock":
            try:
                snap.lock = json.loads(rest)
            except ValueError:
                snap.lock = {"run_id": "?", "raw": rest}
        elif kind == "maintenance":
            snap.maintenance = True
        elif kind == "ref":
            snap.refs[parts[0]] = parts[1]
        elif kind == "file" and FILLER not in parts[0]:
            snap.files[parts[0]] = parts[1]
        elif kind == "set":
            snap.sets[parts[0]] = parts[1]
        elif kind == "pg":
            pg.append(rest)
    snap.pg = tuple(pg)
    return snap


def host_processes(hosts: Hosts) -> dict[str, list[str]]:
    """Ansible modules still running on the hosts."""
    found = {h: hosts.sh(h, PROCS, check=False).splitlines() for h in HOSTS}
    return {h: procs for h, procs in found.items() if procs}


def snapshots(hosts: Hosts, db: bool = False) -> dict[str, Snap]:
    with ThreadPoolExecutor(len(HOSTS)) as pool:
        return dict(zip(HOSTS, pool.map(lambda h: snapshot(hosts, h, db), HOSTS), strict=True))


# -- levels ----------------------------------------------------------------------------------
UNMOUNT = (
    f"for d in {APP_DIR} {BACKUP_ROOT}; do mountpoint -q $d && (umount $d || umount -l $d); done; "
    f"[ -c {SOCK} ] && umount {SOCK}; true"
)
QUICK_RESET = (
    f"{UNMOUNT}; cp {ENV_ORIG} {ENV_FILE} && chmod 0640 {ENV_FILE} && rm -f {ENV_FILE}.backup.* "
    f"{APP_DIR}/{FILLER} {LOCK}; "
)


class Bench:
    def __init__(self, hosts: Hosts, rng: random.Random, out: Path):
        self.hosts = hosts
        self.rng = rng
        self.out = out
        self.duration: dict[str, float] = {}
        self.new_env = ""
        self.good_files: dict[str, dict[str, str]] = {}
        self.code_dirty = True

    # setups: each returns the snapshots a trial starts from, and the backup set's data
    def setup(self, level: str) -> tuple[dict[str, Snap], dict[str, Any]]:
        for host in HOSTS:
            self.hosts.ensure_running(host)
        self.hosts.each(QUICK_RESET + "true")
        extra: dict[str, Any] = {}
        if level == "flag":
            if self.code_dirty:
                self.hosts.each("lab-release reset")
                self.code_dirty = False
            self.hosts.each(
                "systemctl reset-failed analyticbot-api; systemctl restart analyticbot-api"
            )
        elif level == "code":
            self.hosts.each("lab-release reset && lab-release deploy-bad")
            self.code_dirty = True
        else:
            self.hosts.each("lab-release reset")
            extra["restored"] = {h: s.db for h, s in snapshots(self.hosts, db=True).items()}
            made = self.hosts.cli("backup", "create", "--inventory", self.hosts.inventory)
            if made.code != 0:
                raise RuntimeError(f"backup create failed: {made.stderr[-1500:]}")
            self.hosts.each("lab-db-traffic 20 >/dev/null && lab-release deploy-bad")
            self.code_dirty = True
        return snapshots(self.hosts, db=level == "full"), extra

    def argv(self, level: str) -> list[str]:
        argv = ["apply", "--level", level, "--inventory", self.hosts.inventory, "--yes", "--json"]
        return [*argv, "--flag", f"{FLAG}=false"] if level == "flag" else argv

    def reference(self, level: str) -> None:
        """One run without a fault: its duration, and the state a finished run leaves."""
        _before, _extra = self.setup(level)
        t0 = time.monotonic()
        done = self.hosts.cli(*self.argv(level))
        self.duration[level] = time.monotonic() - t0
        if done.code != 0:
            raise RuntimeError(f"reference {level} run failed: {done.stderr[-2000:]}")
        after = snapshots(self.hosts)
        if level == "flag":
            self.new_env = after["web1"].env
        else:
            self.good_files = {h: s.files for h, s in after.items()}
        print(f"reference {level}: {self.duration[level]:.1f} s", file=sys.stderr)

    # -- one trial -------------------------------------------------------------------------
    def trial(self, number: int, fault: str, level: str) -> dict[str, Any]:
        rng = self.rng
        target = rng.choice(HOSTS)
        row: dict[str, Any] = {"trial": number, "fault": fault, "level": level, "host": target}
        notes: list[str] = row.setdefault("notes", [])
        before, extra = self.setup(level)
        argv = self.argv(level)
        dur = self.duration[level]
        at = rng.uniform(0.2, dur)
        pattern: str | None = None
        delay = 0.0
        action: Callable[[subprocess.Popen[str]], str]
        restore: Callable[[], None] = lambda: None  # noqa: E731
        expected = {0, 1}
        if fault in SIGNAL_EXIT:
            expected = SIGNAL_EXIT[fault] | {0}  # 0 when the run ended first
            gap = rng.uniform(0.05, 0.6)
            row["at"] = round(at, 2)

            def action(proc: subprocess.Popen[str]) -> str:
                sig = {"sigterm": signal.SIGTERM, "sigkill": signal.SIGKILL}.get(
                    fault, signal.SIGINT
                )
                proc.send_signal(sig)
                if fault == "sigint2":
                    time.sleep(gap)
                    if proc.poll() is None:
                        proc.send_signal(signal.SIGINT)
                return sig.name
        elif fault == "host-kill":
            at = rng.uniform(0.2, 0.9 * dur)
            row["at"] = round(at, 2)

            def action(proc: subprocess.Popen[str]) -> str:
                run(["docker", "kill", self.hosts.cname(target)])
                return "docker kill"

            def restore() -> None:
                self.hosts.ensure_running(target)
        elif fault == "sshd-stop":
            at = rng.uniform(0.2, 0.9 * dur)
            row["at"] = round(at, 2)

            def action(proc: subprocess.Popen[str]) -> str:
                # the listener, then each session it forked (by pid, inside the host)
                self.hosts.sh(
                    target,
                    "systemctl stop ssh; for p in $(ps -eo pid=,args= | "
                    "awk '$2 ~ /^sshd:/ {print $1}'); do kill -9 $p; done",
                )
                return "sshd stopped"

            def restore() -> None:
                self.hosts.sh(target, "systemctl start ssh")
        elif fault == "disk-env":
            tight = rng.random() < 0.5
            row["variant"] = "no-margin" if tight else "preflight"
            fill(self.hosts, target, APP_DIR, size_kib=64, free_pages=1)
            if tight:
                argv = [*argv[:4], str(self.hosts.tight_inventory), *argv[5:]]
                expected = {1}
            else:
                argv = [*argv, "--limit", target]
                expected = {3}
            at = 1e9  # the fault is there from the start
            action = lambda proc: "full disk"  # noqa: E731
        elif fault == "disk-backup":
            pages = rng.randint(1, 40)
            row["variant"] = f"{pages} pages free"
            fill(self.hosts, target, BACKUP_ROOT, size_kib=640, free_pages=pages)
            expected = {1, 3}
            at = 1e9
            action = lambda proc: "full disk"  # noqa: E731
        elif fault == "pg-stop":
            pattern = rf"\] {target}\s+\w+\s+coderevert: Reinstall the dependencies"
            delay = rng.uniform(0.0, 1.5)
            row["delay"] = round(delay, 2)

            def action(proc: subprocess.Popen[str]) -> str:
                self.hosts.sh(target, f"systemctl stop {self.hosts.pg_unit}")
                return "postgresql stopped"

            def restore() -> None:
                self.hosts.ensure_running(target)
        elif fault == "docker-sock":
            pattern = rf"\] {target}\s+\w+\s+coderevert: Reinstall the dependencies"
            delay = rng.uniform(0.0, 6.0)
            row["delay"] = round(delay, 2)

            def action(proc: subprocess.Popen[str]) -> str:
                self.hosts.sh(target, f"mount --bind /dev/null {SOCK}")
                return "docker socket blocked"

            def restore() -> None:
                self.hosts.sh(target, f"[ -c {SOCK} ] && umount {SOCK}; true")
        else:
            raise ValueError(fault)

        t0 = time.time()
        earlier = {r.run_id for r in history.read(self.hosts.state)}
        proc = subprocess.Popen(
            self.hosts.argv(*argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.hosts.env(),
        )
        lines: list[str] = []
        seen = threading.Event()
        out: list[str] = []

        def read_err() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                lines.append(line)
                if pattern and re.search(pattern, line):
                    seen.set()

        def read_out() -> None:
            assert proc.stdout is not None
            out.append(proc.stdout.read())

        readers = [threading.Thread(target=read_err), threading.Thread(target=read_out)]
        for t in readers:
            t.start()
        fired: list[str] = []

        def inject() -> None:
            if at >= 1e9:
                fired.append(action(proc))
                return
            if pattern:
                if not wait_until(lambda: seen.is_set() or proc.poll() is not None, 400):
                    return
                if proc.poll() is not None:
                    return
                time.sleep(delay)
            else:
                while time.time() - t0 < at and proc.poll() is None:
                    time.sleep(0.02)
            if proc.poll() is None:
                try:
                    fired.append(f"{action(proc)} at {time.time() - t0:.2f} s")
                except Exception as exc:  # a fault that could not be injected is reported
                    fired.append(f"injection failed: {exc}")

        injector = threading.Thread(target=inject)
        injector.start()
        try:
            proc.wait(timeout=600)
        except subprocess.TimeoutExpired:
            notes.append("HANG: the run did not end in 600 s; killed")
            proc.kill()
            proc.wait()
        ended = time.time()
        injector.join(timeout=60)
        for t in readers:
            t.join(timeout=30)
        stderr = "".join(lines)
        rc = proc.returncode
        row.update(rc=rc, elapsed=round(ended - t0, 1), fired=fired or ["(run ended first)"])
        receipt = Cli(rc, "".join(out), stderr).receipt()
        run_id = (receipt or {}).get("run_id") or next(
            (r.run_id for r in history.read(self.hosts.state) if r.run_id not in earlier), ""
        )
        row["run_id"] = run_id

        # no process of the run outlives it, here or on the hosts
        orphans = wait_gone(lambda: processes_mentioning(run_id) if run_id else {}, 15)
        if orphans:
            notes.append(f"orphan processes 15 s after the run: {list(orphans.values())}")
            for pid in orphans:
                with_suppress(lambda pid=pid: os.kill(pid, signal.SIGKILL))
        row["orphans"] = len(orphans)
        try:
            restore()
        except Exception as exc:
            notes.append(f"restoring after the fault failed: {exc}")
        for host in HOSTS:
            self.hosts.ensure_running(host)
        late = wait_gone(lambda: host_processes(self.hosts), 45)
        if late:
            notes.append(f"ansible modules still running on hosts 45 s after the run: {late}")
        row["host_orphans"] = sum(len(v) for v in late.values())
        after = snapshots(self.hosts, db=level == "full")
        self.check(row, level, before, after, extra, receipt, rc, expected, stderr)
        if fault in ("disk-env", "disk-backup"):
            self.hosts.sh(target, UNMOUNT)
        self.follow_up(row, level, argv, receipt, after, extra)
        if fault == "disk-env":
            row["follow_up_note"] = "full disk removed before the follow-up"
        return row

    # -- checks ----------------------------------------------------------------------------
    def check(
        self,
        row: dict[str, Any],
        level: str,
        before: dict[str, Snap],
        after: dict[str, Snap],
        extra: dict[str, Any],
        receipt: dict[str, Any] | None,
        rc: int,
        expected: set[int],
        stderr: str,
    ) -> None:
        notes: list[str] = row["notes"]
        run_id = row["run_id"]
        corrupt = missing_copy = partial = half_db = 0
        changed_seen: set[str] = set()
        for host in HOSTS:
            b, a = before[host], after[host]
            # the env file: old or new bytes, and a copy of the old where it changed
            if a.env not in (b.env, self.new_env if level == "flag" else b.env):
                corrupt += 1
                notes.append(f"{host}: env file neither old nor new ({a.env[:12]})")
            if a.settings != b.settings:
                corrupt += 1
                notes.append(f"{host}: settings.yml changed")
            new_copies = {p: s for p, s in a.envcopies.items() if p not in b.envcopies}
            for path, sha in new_copies.items():
                if sha != b.env:
                    partial += 1
                    notes.append(f"{host}: {path} is not a whole copy of the old env file")
            if a.env != b.env:
                changed_seen.add(host)
                if b.env not in new_copies.values():
                    missing_copy += 1
                    notes.append(f"{host}: env file changed, no copy of its old bytes")
            # the code tree: each file old or new, and the old code recorded if it moved
            if level != "flag":
                good = self.good_files.get(host, {})
                for path in sorted(set(b.files) | set(a.files)):
                    old = b.files.get(path)
                    new = good.get(path, old if ".backup." in path else None)
                    if a.files.get(path) not in (old, new):
                        corrupt += 1
                        notes.append(f"{host}: {path} is neither the old nor the new file")
                moved = a.files != b.files or a.head != b.head
                if moved:
                    changed_seen.add(host)
                    if a.refs.get(f"refs/rollback-ops/{run_id}") != b.head:
                        missing_copy += 1
                        notes.append(f"{host}: code changed, no refs/rollback-ops/{run_id}")
                if a.maintenance:
                    changed_seen.add(host)
            # backup sets: no partial one; the databases old or restored, with a forensic copy
            for name, state in a.sets.items():
                if name not in b.sets and state != "complete":
                    partial += 1
                    notes.append(f"{host}: partial backup set {name} left")
            if level == "full":
                restored = extra["restored"][host]
                for part, (old, new) in {
                    "postgresql": (b.db[0], restored[0]),
                    "sqlite": (b.db[1], restored[1]),
                }.items():
                    now = a.db[0] if part == "postgresql" else a.db[1]
                    if now not in (old, new):
                        half_db += 1
                        notes.append(f"{host}: {part} is neither as before nor the set: {now}")
                if a.db != b.db:
                    changed_seen.add(host)
                    forensic = [
                        n
                        for n, s in a.sets.items()
                        if n not in b.sets and n.endswith("-forensic") and s == "complete"
                    ]
                    if not forensic:
                        missing_copy += 1
                        notes.append(f"{host}: databases changed, no forensic set")
        row.update(corrupt=corrupt, missing_copy=missing_copy, partial=partial, half_db=half_db)

        # exit status, receipt, history, recap
        wrong: list[str] = []
        if not run_id:  # stopped while starting, before any run: nothing may have changed
            expected = expected | {-signal.SIGINT, -signal.SIGTERM, 130, 143}
        row["exit_ok"] = rc in expected
        if rc not in expected:
            wrong.append(f"exit {rc}, expected {sorted(expected)}")
        rows = {r.run_id: r for r in history.read(self.hosts.state)}
        logged = rows.get(run_id)
        if "Traceback" in stderr:
            wrong.append("a Python traceback on stderr")
        if not run_id:
            if changed_seen:
                wrong.append(f"{sorted(changed_seen)} changed, and no run was recorded")
        elif rc == -9:
            if logged is None or logged.result != "unfinished":
                wrong.append(f"history says {logged and logged.result}, not unfinished")
        elif receipt is None:
            wrong.append("no receipt printed")
        else:
            if receipt.get("exit_status") != rc:
                wrong.append(f"receipt exit_status {receipt.get('exit_status')} but exit {rc}")
            if logged is None or logged.result != receipt.get("result"):
                wrong.append(f"history {logged and logged.result} != {receipt.get('result')}")
            hosts = receipt.get("hosts") or {}
            for host in sorted(changed_seen):
                status = (hosts.get(host) or {}).get("status")
                if host not in receipt.get("changed_hosts", []) and status in ("ok", "changed"):
                    wrong.append(f"{host} changed but the receipt says {status}, not changed")
            if rc in (130, 143):
                sig = "SIGINT" if rc == 130 else "SIGTERM"
                if receipt.get("result") != "interrupted" or receipt.get("interrupted") != sig:
                    wrong.append(f"receipt {receipt.get('result')}/{receipt.get('interrupted')}")
                if f"INTERRUPTED ({sig})" not in stderr:
                    wrong.append("recap does not say INTERRUPTED")
                if "hosts changed before the stop" not in stderr:
                    wrong.append("recap does not list the hosts changed before the stop")
            if receipt.get("result") not in ("ok", "refused"):
                how = "run the same command again" if level == "flag" else f"--resume {run_id}"
                if how not in stderr:
                    wrong.append(f"recap does not say how to continue ({how})")
            if receipt.get("locks_left") and f"--run {run_id}" not in stderr:
                wrong.append("recap does not say how to clear the locks left")
        if wrong:
            notes.extend(f"receipt/history: {w}" for w in wrong)
        row["receipt_wrong"] = len(wrong)

        # locks: every lock left is this run's, and named by the receipt
        held = {h: a.lock for h, a in after.items() if a.lock}
        named = set((receipt or {}).get("locks_left") or [])
        foreign = {h: lk.get("run_id") for h, lk in held.items() if lk.get("run_id") != run_id}
        if foreign:
            notes.append(f"locks of another run left: {foreign}")
        unnamed = sorted(set(held) - named) if receipt is not None else []
        if unnamed:
            notes.append(f"locks left that locks_left does not name: {unnamed}")
        phantom = sorted(named - set(held))
        if phantom:
            notes.append(f"locks_left names hosts with no lock file: {phantom}")
        row.update(
            locks=sorted(held),
            unnamed_locks=len(unnamed) + len(foreign),
            phantom_locks=len(phantom),
        )

    def follow_up(
        self,
        row: dict[str, Any],
        level: str,
        argv: list[str],
        receipt: dict[str, Any] | None,
        after: dict[str, Snap],
        extra: dict[str, Any],
    ) -> None:
        notes: list[str] = row["notes"]
        run_id = row["run_id"]
        held = [h for h, a in after.items() if a.lock and a.lock.get("run_id") == run_id]
        row["unlock"] = ""
        if held:
            cleared = self.hosts.cli("unlock", "-i", self.hosts.inventory, "--run", run_id, "--yes")
            left = [h for h in held if snapshot(self.hosts, h).lock]
            row["unlock"] = "ok" if cleared.code == 0 and not left else f"rc {cleared.code}"
            if left or cleared.code != 0:
                notes.append(
                    f"unlock --run {run_id}: rc {cleared.code}, locks still on {left}: "
                    f"{last_lines(cleared.stderr, 2)}"
                )
                self.hosts.each(f"rm -f {LOCK}", left)  # so that the follow-up can be judged
        if "--limit" in argv:  # the disk-env preflight variant: the follow-up does all hosts
            argv = argv[: argv.index("--limit")]
        how = "again"
        if level == "flag" or not run_id or (receipt is not None and receipt["result"] == "ok"):
            follow = self.hosts.cli(*argv)
        elif receipt is not None:
            how = "resume"
            follow = self.hosts.cli("apply", "--resume", run_id, "--yes", "--json")
        else:  # killed: no receipt to resume from
            tried = self.hosts.cli("apply", "--resume", run_id, "--yes", "--json")
            row["resume_after_kill"] = f"rc {tried.code}: {last_lines(tried.stderr, 1)}"
            how = "resume" if tried.code == 0 else "again (no receipt to resume)"
            follow = tried if tried.code == 0 else self.hosts.cli(*argv)
        row["follow_up"] = how
        row["follow_rc"] = follow.code
        if follow.code != 0:
            notes.append(f"follow-up ({how}) rc {follow.code}: {last_lines(follow.stderr, 6)}")
        final = snapshots(self.hosts, db=level == "full")
        bad: list[str] = []
        for host, s in final.items():
            if level == "flag" and s.env != self.new_env:
                bad.append(f"{host}: env file not the new one")
            if level == "flag":
                try:
                    health = self.hosts.sh(
                        host, f"curl -fs http://{self.hosts.address(host)}:{APP_PORT}/health"
                    )
                    if json.loads(health)["config"][FLAG] is not False:
                        bad.append(f"{host}: the running app still has {FLAG} on")
                except Exception as exc:
                    bad.append(f"{host}: health: {exc}")
            if level != "flag" and (
                code_of(s.files) != code_of(self.good_files.get(host, {})) or s.maintenance
            ):
                bad.append(f"{host}: code not the good release (or maintenance on)")
            if level == "full" and s.db != extra["restored"][host]:
                bad.append(f"{host}: databases not the backup set's")
            if s.lock:
                bad.append(f"{host}: a lock is left after the follow-up")
        if bad:
            notes.append(f"after the follow-up: {bad}")
        row["final_ok"] = not bad
        row["follow_ok"] = follow.code == 0


def code_of(files: dict[str, str]) -> dict[str, str]:
    """The code tree without the .backup.<stamp> copies a deployment leaves beside it."""
    return {path: digest for path, digest in files.items() if ".backup." not in path}


def fill(hosts: Hosts, host: str, directory: str, size_kib: int, free_pages: int) -> None:
    """Put a tmpfs of size_kib over directory (its files copied in), filled up to free_pages."""
    hosts.sh(
        host,
        f"set -e; d={directory}; s=/run/faults-stage; rm -rf $s; mkdir -p $s $d; "
        f"cp -a $d/. $s/; mount -t tmpfs -o size={size_kib}k,mode=0755 tmpfs $d; "
        f"cp -a $s/. $d/; rm -rf $s; "
        f"dd if=/dev/zero of=$d/{FILLER} bs=4096 2>/dev/null || true; "
        f"truncate -s -{free_pages * 4096} $d/{FILLER}",
    )


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def wait_gone(found: Callable[[], dict[Any, Any]], timeout: float) -> dict[Any, Any]:
    deadline = time.monotonic() + timeout
    while (now := found()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return now


def with_suppress(fn: Callable[[], Any]) -> None:
    with contextlib.suppress(OSError):
        fn()


def last_lines(text: str, n: int) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-n:])


# -- the table -------------------------------------------------------------------------------
COLUMNS = [
    ("trials", "trials"),
    ("injected", "injected"),
    ("exit ok", "exit_ok"),
    ("corrupt", "corrupt"),
    ("no copy", "missing_copy"),
    ("partial", "partial"),
    ("half db", "half_db"),
    ("rcpt wrong", "receipt_wrong"),
    ("unnamed lk", "unnamed_locks"),
    ("phantom lk", "phantom_locks"),
    ("orphans", "orphans"),
    ("host orph", "host_orphans"),
    ("follow-up ok", "follow_ok"),
    ("final ok", "final_ok"),
]


def table(rows: list[dict[str, Any]]) -> str:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["fault"], r["level"]), []).append(r)
    head = ["fault", "level", *[c[0] for c in COLUMNS]]
    body = []

    def line(name: str, level: str, rs: list[dict[str, Any]]) -> list[str]:
        cells = [name, level]
        for _title, key in COLUMNS:
            if key == "trials":
                cells.append(str(len(rs)))
            elif key == "injected":  # the fault came before the run ended
                hit = sum(1 for r in rs if "(run ended first)" not in r.get("fired", []))
                cells.append(str(hit))
            elif key == "exit_ok":
                cells.append(f"{sum(1 for r in rs if r.get('exit_ok'))}/{len(rs)}")
            elif key in ("follow_ok", "final_ok"):
                cells.append(f"{sum(1 for r in rs if r.get(key))}/{len(rs)}")
            else:
                cells.append(str(sum(int(r.get(key) or 0) for r in rs)))
        return cells

    for (fault, level), rs in sorted(groups.items()):
        body.append(line(fault, level, rs))
    body.append(line("ALL", "", rows))
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
    out = []
    for i, row in enumerate([head, *body]):
        if i == len(body):
            out.append("  ".join("-" * w for w in widths))
        out.append(
            "  ".join(
                c.rjust(w) if j > 1 else c.ljust(w)
                for j, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--levels", default="flag,code,full")
    parser.add_argument("--faults", default=",".join(FAULTS))
    parser.add_argument("--keep-lab", action="store_true", help="leave the lab's hosts running")
    parser.add_argument("--max-minutes", type=float, default=150, help="start no trial after")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path.home() / ".cache" / "rollback-ops" / "faults-lab",
    )
    parser.add_argument("--out", type=Path, default=Path("/tmp/faults-trials.jsonl"))
    parser.add_argument(
        "--report", type=Path, nargs="+", help="print the table of these --out files; run nothing"
    )
    args = parser.parse_args()
    if args.report:
        saved = [json.loads(line) for path in args.report for line in path.read_text().splitlines()]
        print(table(saved))
        return 0
    levels = [lv for lv in args.levels.split(",") if lv]
    faults = [f for f in args.faults.split(",") if f]
    unknown = [f for f in faults if f not in FAULTS] + [
        lv for lv in levels if lv not in ("flag", "code", "full")
    ]
    if unknown:
        parser.error(f"unknown fault or level: {', '.join(unknown)}")
    combos = [(f, lv) for f in faults for lv in FAULTS[f] if lv in levels]
    if not combos:
        parser.error("no fault applies to these levels")
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    plan: list[tuple[str, str]] = []
    while len(plan) < args.trials:
        batch = combos[:]
        rng.shuffle(batch)
        plan.extend(batch)
    plan = plan[: args.trials]
    print(f"seed {seed}: {len(plan)} trials, {len(combos)} fault x level kinds", file=sys.stderr)

    hosts = Hosts(args.state_dir)
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    args.out.write_text("")
    try:
        hosts.up()
        bench = Bench(hosts, rng, args.out)
        for level in levels:
            bench.reference(level)
        for number, (fault, level) in enumerate(plan, 1):
            if time.monotonic() - started > args.max_minutes * 60:
                print(f"time is up after {number - 1} trials", file=sys.stderr)
                break
            t0 = time.monotonic()
            try:
                row = bench.trial(number, fault, level)
            except Exception as exc:  # the lab broke: say so, count it, go on
                row = {"trial": number, "fault": fault, "level": level, "notes": [f"ERROR {exc}"]}
                bench.code_dirty = True
            row["seconds"] = round(time.monotonic() - t0, 1)
            rows.append(row)
            with args.out.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            problems = [n for n in row["notes"]]
            print(
                f"[{number}/{len(plan)}] {fault} {level} {row.get('fired', '')} rc {row.get('rc')} "
                f"follow-up {row.get('follow_rc')} ({row['seconds']} s)"
                + "".join(f"\n    {p}" for p in problems),
                file=sys.stderr,
                flush=True,
            )
    finally:
        if not args.keep_lab:
            hosts.lab.down()
    print(f"\nfault trials: seed {seed}, {len(rows)} trials, {time.monotonic() - started:.0f} s")
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
