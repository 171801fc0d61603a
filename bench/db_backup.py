#!/usr/bin/env python3
"""Back up and restore a PostgreSQL database of at least 1 GB through rollback-ops and through
plain pg_dump/pg_restore with the same options on the same host, alternating in one run, and
print MB/s medians and ratios (the issue's target: rollback-ops at 0.95x or better):

  create   rollback-ops  `rollback-ops backup create` with an inventory whose only database is
                         benchdb: the engine on the host, through Ansible (pg_dump -Fc -Z6 in an
                         exported snapshot, streamed and hashed by Python, every table's rows and
                         checksum taken in that snapshot meanwhile, then the set verified:
                         sha256, pg_restore --list); "engine task" is that Ansible task alone
           plain         `ssh host pg_dump -Fc -Z6 -f FILE`, the same connection (TCP to the
                         host's address as analyticbot, password auth)
  restore  rollback-ops  the engine's restore_database run on the host over ssh (pg_restore
                         --list for the owners, then pg_restore --clean --if-exists
                         --single-transaction --exit-on-error < the set's dump); "engine" is the
                         call alone
           plain         `ssh host pg_restore --clean --if-exists --single-transaction
                         --exit-on-error -d benchdb FILE`

MB/s is benchdb's size (pg_database_size, measured once) over the wall time seen from the
controller. Each round runs both creates then both restores, the order swapped every other
round; after each restore, untimed, VACUUM ANALYZE and CHECKPOINT, so that autovacuum and the
restore's dirty pages do not land in the next measurement. Passwords reach the host on ssh's
stdin, never in argv. The database is `benchdb` on the first host, owned by the app's role
analyticbot (the app's own database is left alone), grown once with `pgbench -i -s SCALE` and
reused. After the rounds, the engine runs once more on the host with its phases timed, and
once without its stats pass, to show where the time goes.

Needs a lab: `rollback-ops lab up --hosts 1` (the database password is read from the lab).
Usage: python bench/db_backup.py [--rounds N] [--scale S] [--state-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

DB = "benchdb"
ROOT = "/var/backups/rollback-ops-bench"  # the bench's sets, apart from the app's
WORK = "/var/tmp/rollback-ops-bench"  # on the host: the engine's copy, the plain dumps
# the engine as the backup role installs it for the timer: files.py and the backupset package
# under <WORK>/rollback_ops_utils/
UTILS = Path(__file__).resolve().parent.parent / "plugins/module_utils"
MIN_BYTES = 1 << 30

RESTORE = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
import rollback_ops_utils.backupset as engine
manifest = engine.read_manifest(sys.argv[2])
t0 = time.monotonic()
done = engine.restore_database(sys.argv[2], manifest["databases"][0], json.loads(sys.argv[3]))
print(json.dumps({"seconds": time.monotonic() - t0, "owners_kept": done.get("owners_kept")}))
"""

# The engine's create_set and restore_database with their phases timed (after the rounds);
# then create_set again without its stats pass, to show what that pass costs.
BREAKDOWN = """
import json, shutil, subprocess, sys, time
sys.path.insert(0, sys.argv[1])
import rollback_ops_utils.backupset as engine
from rollback_ops_utils.backupset import verify
from rollback_ops_utils.backupset.engines.base import ServerEngine
from rollback_ops_utils.backupset.engines.postgresql import PostgreSQL, Session
root, spec = sys.argv[2], json.loads(sys.argv[3])
spans = {}
patched = []
def timed(owner, attr, name):
    fn = getattr(owner, attr)
    patched.append((owner, attr, fn))
    def wrapper(*args, **kwargs):
        t0 = time.monotonic()
        try:
            return fn(*args, **kwargs)
        finally:
            spans[name] = spans.get(name, 0.0) + time.monotonic() - t0
    setattr(owner, attr, wrapper)
timed(ServerEngine, "stream_to_file", "create: pg_dump streamed to the file")
timed(Session, "stats", "create: stats, rows and checksum of every table")
timed(ServerEngine, "tool_version", "create: pg_dump --version")
timed(verify, "check_files", "create: verify, sha256 of the dump read again")
timed(verify, "check_dumps", "create: verify, pg_restore --list")
timed(PostgreSQL, "restore_list", "restore: pg_restore --list (owners)")
timed(PostgreSQL, "can_keep_owners", "restore: owner check")
timed(PostgreSQL, "restore_into", "restore: pg_restore")
t0 = time.monotonic()
manifest = engine.create_set(root, "bench", "manual", [spec], [])
spans["create: total"] = time.monotonic() - t0
set_dir = engine.set_path(root, "bench", manifest["set_id"])
t0 = time.monotonic()
engine.restore_database(set_dir, manifest["databases"][0], spec)
spans["restore: total"] = time.monotonic() - t0
shutil.rmtree(set_dir)
settle = ["psql", "-X", "-q", "-d", spec["database"], "-c", "VACUUM ANALYZE", "-c", "CHECKPOINT"]
subprocess.run(["runuser", "-u", "postgres", "--", *settle], check=True, cwd="/")
for owner, attr, fn in patched:  # the phases above are timed once
    setattr(owner, attr, fn)
Session.stats = lambda self, tables: {}
t0 = time.monotonic()
manifest = engine.create_set(root, "bench", "manual", [spec], [])
spans["create without the stats pass: total"] = time.monotonic() - t0
shutil.rmtree(engine.set_path(root, "bench", manifest["set_id"]))
print(json.dumps(spans))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scale", type=int, default=70, help="pgbench scale (70: about 1.05 GB)")
    parser.add_argument("--state-dir", type=Path, default=None)
    args = parser.parse_args()
    from rollback_ops import paths
    from rollback_ops.exceptions import LabError
    from rollback_ops.lab import Lab

    state = paths.state_dir(args.state_dir)
    lab = Lab(state)
    if not lab.inventory_path.exists():
        print("no lab: run `rollback-ops lab up --hosts 1` first", file=sys.stderr)
        return 2
    try:
        db_env = lab.db_env()
    except LabError as exc:
        print(exc, file=sys.stderr)
        return 2
    (password,) = db_env.values()
    data = yaml.safe_load(lab.inventory_path.read_text())
    host, host_vars = next(iter(data["all"]["hosts"].items()))
    address = host_vars["ansible_host"]
    key = data["all"]["vars"]["ansible_ssh_private_key_file"]
    ssh = ["ssh", "-i", key, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    ssh += ["-o", "LogLevel=ERROR", "-o", "BatchMode=yes", f"root@{address}"]
    conn = f"-h {address} -p 5432 -U analyticbot -w"

    def remote(script: str, secret: bool = False, data: bytes | None = None) -> str:
        """Run a script on the host; with secret, PGPASSWORD (and the inventory's password_env)
        come through stdin, never argv."""
        if secret:
            script = (
                "IFS= read -r PGPASSWORD; export PGPASSWORD; "
                "ROLLBACK_OPS_LAB_DB_PASSWORD=$PGPASSWORD; export ROLLBACK_OPS_LAB_DB_PASSWORD; "
                + script
            )
            data = (password + "\n").encode()
        proc = subprocess.run([*ssh, script], input=data, capture_output=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"on {host}: {script[-300:]}\n{proc.stderr.decode()[-2000:]}")
        return proc.stdout.decode()

    def as_app(sql: str, database: str = "postgres") -> str:
        sql = shlex.quote(sql)
        return remote(f"runuser -u analyticbot -- psql -X -At -d {database} -c {sql}")

    # benchdb: grown once, reused while it is big enough
    size_sql = (
        f"SELECT coalesce((SELECT pg_database_size(datname) FROM pg_database "
        f"WHERE datname = '{DB}'), 0)"
    )
    size = int(as_app(size_sql))
    if size < MIN_BYTES:
        print(f"growing {DB} on {host}: pgbench -i -s {args.scale} (once; a few minutes)")
        t0 = time.perf_counter()
        remote(
            f"runuser -u postgres -- dropdb --if-exists --force {DB} && "
            f"runuser -u postgres -- createdb -O analyticbot {DB} && "
            f"runuser -u analyticbot -- pgbench -i -q -s {args.scale} {DB} 2>&1 | tail -n 1"
        )
        size = int(as_app(size_sql))
        print(f"  {time.perf_counter() - t0:.0f} s")
    if size < MIN_BYTES:
        print(f"{DB} is {size / 1e9:.2f} GB: raise --scale", file=sys.stderr)
        return 2
    mb = size / 1e6
    tables = as_app(
        "SELECT string_agg(relname || ' ' || n_live_tup || ' rows', ', ' ORDER BY relname) "
        "FROM pg_stat_user_tables",
        DB,
    ).strip()
    cpus = remote("nproc").strip()
    print(f"{DB} on {host} ({address}, {cpus} CPUs): {mb:.0f} MB ({tables})")

    remote(f"rm -rf {ROOT} {WORK} && mkdir -p {WORK}")
    engine = [UTILS / "files.py", *UTILS.glob("backupset/*.py"), *UTILS.glob("backupset/*/*.py")]
    remote(f"mkdir -p {WORK}/rollback_ops_utils/backupset/engines")
    for name, text in (
        ("rollback_ops_utils/__init__.py", b""),
        *((f"rollback_ops_utils/{p.relative_to(UTILS)}", p.read_bytes()) for p in engine),
        ("restore.py", RESTORE.encode()),
        ("breakdown.py", BREAKDOWN.encode()),
    ):
        remote(f"cat > {WORK}/{name}", data=text)
    spec = {
        "name": "bench",
        "engine": "postgresql",
        "database": DB,
        "host": address,
        "port": 5432,
        "user": "analyticbot",
        "password_env": "ROLLBACK_OPS_LAB_DB_PASSWORD",
        "compression": 6,
    }
    work = Path(tempfile.mkdtemp(prefix="rollback-bench-"))
    variant = data
    app = variant["all"]["vars"]["rollback_app"]
    app["databases"] = [{**spec, "host": "{{ ansible_host }}"}]
    app["backup"] = {"root": ROOT, "files": []}
    app.pop("config", None)
    variant["all"]["hosts"] = {host: host_vars}
    inventory = work / "bench.yml"
    inventory.write_text(yaml.safe_dump(variant, sort_keys=False))
    bindir = Path(sys.executable).parent
    tool = shutil.which("rollback-ops", path=str(bindir)) or "rollback-ops"
    env = {"PATH": f"{bindir}:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": str(Path.home()), **db_env}

    times: dict[str, list[float]] = {
        "create rollback-ops": [],
        "create engine task": [],
        "create plain": [],
        "restore rollback-ops": [],
        "restore engine": [],
        "restore plain": [],
    }
    sizes: dict[str, int] = {}
    set_dir = ""

    def create_rollback_ops() -> None:
        nonlocal set_dir
        if set_dir:  # the previous round's set, restored from already
            remote(f"rm -rf {shlex.quote(set_dir)}")
        t0 = time.perf_counter()
        argv = [tool, "--state-dir", str(state), "backup", "create", "--inventory", str(inventory)]
        proc = subprocess.run(
            [*argv, "--kind", "manual", "--json"], env=env, capture_output=True, text=True
        )
        times["create rollback-ops"].append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise SystemExit(f"rollback-ops backup create failed:\n{proc.stderr[-3000:]}")
        result = json.loads(proc.stdout)["hosts"][host]
        (set_dir,) = result["backups"]
        task = [s for s in result["steps"] if s.get("action") == "rollback_backup"]
        times["create engine task"].append(sum(s["duration"] for s in task))
        sizes["rollback-ops"] = result["data"]["manifest"]["databases"][0]["size"]

    def create_plain() -> None:
        remote(f"rm -f {WORK}/plain.dump")
        t0 = time.perf_counter()
        remote(f"pg_dump -Fc -Z6 {conn} -d {DB} -f {WORK}/plain.dump", secret=True)
        times["create plain"].append(time.perf_counter() - t0)
        sizes["plain"] = int(remote(f"stat -c %s {WORK}/plain.dump"))

    def restore_rollback_ops() -> None:
        t0 = time.perf_counter()
        out = remote(
            f"python3 {WORK}/restore.py {WORK} {shlex.quote(set_dir)} "
            f"{shlex.quote(json.dumps(spec))}",
            secret=True,
        )
        times["restore rollback-ops"].append(time.perf_counter() - t0)
        times["restore engine"].append(json.loads(out)["seconds"])
        settle()

    def restore_plain() -> None:
        t0 = time.perf_counter()
        remote(
            f"pg_restore {conn} --single-transaction --exit-on-error --clean --if-exists "
            f"-d {DB} {WORK}/plain.dump",
            secret=True,
        )
        times["restore plain"].append(time.perf_counter() - t0)
        settle()

    def settle() -> None:
        """Untimed, after a restore: vacuum the fresh tables and checkpoint, so that neither
        autovacuum nor the restore's dirty pages land in the next measurement."""
        remote(f"runuser -u postgres -- psql -X -q -d {DB} -c 'VACUUM ANALYZE' -c CHECKPOINT")

    settle()
    for round_no in range(1, args.rounds + 1):
        # alternating which goes first, so that neither always finds the caches warm
        creates = [create_rollback_ops, create_plain]
        restores = [restore_rollback_ops, restore_plain]
        if round_no % 2 == 0:
            creates.reverse()
            restores.reverse()
        for step in creates + restores:
            step()
        print(
            f"round {round_no}: "
            + ", ".join(f"{name} {values[-1]:.1f} s" for name, values in times.items())
        )

    print(
        f"\n{DB}: {mb:.0f} MB; dumps: rollback-ops {sizes['rollback-ops'] / 1e6:.1f} MB, "
        f"plain {sizes['plain'] / 1e6:.1f} MB; {args.rounds} alternating rounds"
    )
    print(f"{'':<24}{'median s':>10}{'min s':>8}{'max s':>8}{'MB/s':>8}{'vs plain':>10}")
    for what in ("create", "restore"):
        base = statistics.median(times[f"{what} plain"])
        for name in [n for n in times if n.startswith(what)]:
            med = statistics.median(times[name])
            values = times[name]
            print(
                f"{name:<24}{med:>10.1f}{min(values):>8.1f}{max(values):>8.1f}"
                f"{mb / med:>8.1f}{base / med:>9.2f}x"
            )
    for what in ("create", "restore"):
        ratio = statistics.median(times[f"{what} plain"]) / statistics.median(
            times[f"{what} rollback-ops"]
        )
        verdict = "met" if ratio >= 0.95 else "NOT met"
        print(f"{what}: rollback-ops at {ratio:.2f}x plain throughput: target 0.95x {verdict}")

    # where the engine's create time goes (one more create, the engine run by hand, phased)
    remote(f"rm -rf {shlex.quote(set_dir)}")
    out = remote(
        f"python3 {WORK}/breakdown.py {WORK} {ROOT} {shlex.quote(json.dumps(spec))}",
        secret=True,
    )
    spans = json.loads(out)
    print("\nthe engine by phase, run once more on the host (pg_dump and the stats pass run")
    print("at the same time, each in its own process; the restore restores that set):")
    for name, seconds in sorted(spans.items(), key=lambda kv: (kv[0].split(":")[0], -kv[1])):
        print(f"  {seconds:>7.1f} s  {name}")
    remote(f"rm -rf {ROOT} {WORK}")
    shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
