"""The data level and external backups on real lab hosts: seed 000's SQLite app (its own
Data/backups/ancestry_backup_YYYYMMDD_HHMMSS.db files, a systemd unit, no code part) and
seed 001's plain pg_dump backup_YYYYMMDD.sql of the lab's PostgreSQL database, each restored
by `apply --level data --from external`; a corrupt backup refused before anything stops."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import LabHosts
from tests.integration.test_full_level import FullLab

ROOT = "/var/backups/rollback-ops"
HOST = "web1"
DIR = "/srv/ancestry"
DB = f"{DIR}/Data/ancestry.db"
BACKUPS = f"{DIR}/Data/backups"
NEWEST = f"{BACKUPS}/ancestry_backup_20251223_101500.db"  # the newest by name, oldest mtime
OLDER = f"{BACKUPS}/ancestry_backup_20251222_080000.db"
APP_PY = """
import sqlite3, time
con = sqlite3.connect("/srv/ancestry/Data/ancestry.db", isolation_level=None)
con.execute("PRAGMA journal_mode=WAL")
con.execute("PRAGMA wal_autocheckpoint=0")
con.execute("CREATE TABLE IF NOT EXISTS people(id INTEGER PRIMARY KEY, name TEXT)")
open("/run/ancestry/started", "w").write("x")
while True:
    time.sleep(1)
"""
UNIT = """[Unit]
Description=seed 000's app
[Service]
User=ancestry
RuntimeDirectory=ancestry
ExecStart=/usr/bin/python3 /srv/ancestry/app.py
"""
# seed 000's layout: the app's own backups made by copying its database, 2 and 3 rows; then
# 2 more rows written after the newest backup (in the WAL of the running app)
SETUP = f"""
set -e
systemctl stop ancestry 2>/dev/null || true
rm -rf {DIR} {ROOT}/ancestry
id ancestry >/dev/null 2>&1 || useradd --system --no-create-home ancestry
mkdir -p {BACKUPS}
cat > {DIR}/app.py <<'EOF'
{APP_PY}
EOF
cat > /etc/systemd/system/ancestry.service <<'EOF'
{UNIT}
EOF
sqlite3 {DB} "CREATE TABLE people(id INTEGER PRIMARY KEY, name TEXT);
  INSERT INTO people(name) VALUES ('ada'), ('bob');"
sqlite3 {DB} ".backup {OLDER}"
sqlite3 {DB} "INSERT INTO people(name) VALUES ('cy');"
sqlite3 {DB} ".backup {NEWEST}"
touch -d '2025-01-01 00:00' {NEWEST}
chown -R ancestry:ancestry {DIR}/Data && chmod 0640 {DB}
systemctl daemon-reload && systemctl start ancestry
for i in $(seq 50); do [ -e /run/ancestry/started ] && break; sleep 0.1; done
systemctl is-active ancestry
sqlite3 {DB} "INSERT INTO people(name) VALUES ('dee'), ('eve');"
"""
ANCESTRY = {
    "name": "ancestry",
    "units": ["ancestry"],
    "maintenance": {"file": f"{DIR}/MAINTENANCE"},
    "databases": [
        {
            "name": "ancestry",
            "engine": "sqlite",
            "path": DB,
            "integrity_checks": [
                {
                    "name": "duplicate names",
                    "sql": "SELECT name FROM people GROUP BY name HAVING count(*) > 1",
                }
            ],
            "data_loss_tables": [{"table": "people", "key": "id"}],
            "external_backups": {"glob": f"{BACKUPS}/ancestry_backup_*.db", "format": "sqlite"},
        }
    ],
}
STATE = (
    f"cd {DIR} && find {DIR} {ROOT}/ancestry -xdev ! -name '*-shm' -printf '%p %y %m %u:%g\\n' "
    f"2>/dev/null | sort; find {DIR} ! -name '*-shm' -type f -exec sha256sum {{}} + | sort; "
    "systemctl show -p MainPID -p ActiveState ancestry"
)


def apply(lab: LabHosts, inventory: str, *extra: str) -> Any:
    argv = ["apply", "--level", "data", "--inventory", inventory, "--yes", "--json"]
    return lab.cli(*argv, *extra)


def sql(lab: LabHosts, query: str) -> str:
    return lab.sh(HOST, f'sqlite3 {DB} "{query}"').strip()


def test_seed_000_sqlite_app_backups_restored_with_the_app_stopped(lab: LabHosts, tmp_path: Path):
    inventory = lab.inventory_with(tmp_path, rollback_app=ANCESTRY)
    lab.sh(HOST, SETUP)
    assert sql(lab, "SELECT count(*) FROM people") == "5"
    pid = lab.sh(HOST, "systemctl show -p MainPID --value ancestry").strip()

    # no own set and no --from: one line naming the option, nothing stopped
    refused = apply(lab, inventory, "--limit", HOST)
    assert refused.code != 0
    assert "--from external restores the newest of them" in refused.stderr, refused.stderr

    before = lab.sh(HOST, STATE)
    checked = apply(lab, inventory, "--limit", HOST, "--from", "external", "--check", "--diff")
    assert checked.code == 0, checked.stderr
    assert lab.sh(HOST, STATE) == before  # not a byte, not a restart

    # `backup import` adopts the newest backup into a verified set, once
    imported = lab.cli("backup", "import", "--inventory", inventory, "--limit", HOST, "--json")
    assert imported.code == 0, imported.stderr
    adopted = imported.receipt["hosts"][HOST]["data"]["manifest"]
    assert adopted["kind"] == "external" and adopted["verification"]["ok"]
    assert adopted["sources"][0]["path"] == NEWEST
    assert adopted["databases"][0]["tables"]["people"]["rows"] == 3
    twice = lab.cli("backup", "import", "--inventory", inventory, "--limit", HOST, "--json")
    assert twice.code == 0 and twice.receipt["changed"] == 0, twice.stderr

    # the app will not start again (the running process has the good script loaded): the run
    # stops at the check after the start, with maintenance left on; resume finishes it
    lab.sh(HOST, f"cp {DIR}/app.py {DIR}/app.py.good && echo 'raise SystemExit(3)' > {DIR}/app.py")
    run = apply(lab, inventory, "--limit", HOST, "--from", "external")
    assert run.code != 0 and f"--resume {run.receipt['run_id']}" in run.stderr, run.stderr
    assert lab.sh(HOST, f"test -e {DIR}/MAINTENANCE && echo on").strip() == "on"
    lab.sh(HOST, f"mv {DIR}/app.py.good {DIR}/app.py")
    resumed = lab.cli("apply", "--resume", run.receipt["run_id"], "--yes", "--json")
    assert resumed.code == 0, resumed.stderr
    assert (
        resumed.receipt["hosts"][HOST]["data"]["set_id"]
        == run.receipt["hosts"][HOST]["data"]["set_id"]
    )
    # the newest by name (3 rows), not the newest by mtime (2 rows)
    assert sql(lab, "SELECT count(*), max(id) FROM people") == "3|3"
    assert lab.sh(HOST, f"stat -c '%U:%G %a' {DB}").strip() == "ancestry:ancestry 640"
    assert lab.sh(HOST, "systemctl is-active ancestry").strip() == "active"
    assert lab.sh(HOST, "systemctl show -p MainPID --value ancestry").strip() != pid
    assert sql(lab, "PRAGMA journal_mode") == "wal"  # the live file's mode kept
    data = run.receipt["hosts"][HOST]["data"]
    (source,) = data["external"]["sources"]
    assert source["path"] == NEWEST  # chosen by the check; the later steps pinned to it
    assert re.fullmatch(r"newest of \d+ by name", source["chosen"]), source  # kept
    assert data["set_id"] == adopted["set_id"] and data["integrity"]["ancestry"]["ok"]
    assert data["data_loss"]["ancestry"]["people"]["missing_count"] == 2
    forensic = data["forensic_set_id"]
    manifest = json.loads(lab.read(HOST, f"{ROOT}/ancestry/{forensic}/manifest.json"))
    assert manifest["kind"] == "forensic"
    assert manifest["databases"][0]["tables"]["people"]["rows"] == 5  # the lost rows kept
    assert "data loss in" in run.stderr
    assert lab.sh(HOST, f"test ! -e {DIR}/MAINTENANCE && echo gone").strip() == "gone"

    again = apply(lab, inventory, "--limit", HOST, "--from", "external")
    assert again.code == 0, again.stderr
    assert again.receipt["changed"] == 0, json.dumps(again.receipt["hosts"], indent=1)

    # a newer backup that is corrupt: refused before anything stops
    lab.sh(
        HOST,
        f"cp {NEWEST} {BACKUPS}/ancestry_backup_20251224_000000.db && "
        f"dd if=/dev/urandom of={BACKUPS}/ancestry_backup_20251224_000000.db bs=1024 "
        "seek=1 count=3 conv=notrunc 2>/dev/null",
    )
    before = lab.sh(HOST, STATE)
    bad = apply(lab, inventory, "--limit", HOST, "--from", "external")
    assert bad.code != 0
    assert "ancestry_backup_20251224_000000.db" in bad.stderr, bad.stderr
    assert lab.sh(HOST, STATE) == before
    lab.sh(
        HOST,
        "systemctl stop ancestry; rm -f /etc/systemd/system/ancestry.service; "
        f"systemctl daemon-reload; rm -rf {DIR} {ROOT}/ancestry",
    )


PG_DIR = "/srv/harbor"
STATS = "SELECT count(*), coalesce(sum(hashtext(t::text)::bigint), 0) FROM orders t"


def psql(lab: LabHosts, host: str, query: str) -> str:
    return lab.sh(host, f'runuser -u postgres -- psql -X -At -d analyticbot -c "{query}"').strip()


def test_seed_001_plain_pg_dump_restored_and_its_duplicate_check_passes(
    lab: LabHosts, tmp_path: Path
):
    host = "web2"
    # the lab app's PostgreSQL database, as the lab inventory describes it
    base = yaml.safe_load(Path(lab.inventory).read_text())["all"]["vars"]["rollback_app"]
    (main,) = [d for d in base["databases"] if d["name"] == "main"]
    main = {k: v for k, v in main.items() if k != "migrations_rollback"}
    main["data_loss_tables"] = [{"table": "orders", "key": "id"}]
    main["external_backups"] = {"glob": f"{PG_DIR}/backup_*.sql", "format": "postgresql_plain"}
    harbor = {"name": "harbor", "units": ["analyticbot-api"], "databases": [main]}
    inventory = lab.inventory_with(tmp_path, rollback_app=harbor)
    lab.sh(
        host,
        f"rm -rf {PG_DIR} {ROOT}/harbor && mkdir -p {PG_DIR} && "
        f"runuser -u postgres -- pg_dump -d analyticbot > {PG_DIR}/backup_20251201.sql",
    )
    before = psql(lab, host, STATS)
    lab.sh(host, "lab-db-traffic 15 >/dev/null")
    assert psql(lab, host, STATS) != before

    run = apply(lab, inventory, "--limit", host, "--from", "external")
    assert run.code == 0, run.stderr
    assert psql(lab, host, STATS) == before
    data = run.receipt["hosts"][host]["data"]
    assert data["external"]["sources"][0]["format"] == "postgresql_plain"
    assert data["integrity"]["main"]["ok"]
    assert data["data_loss"]["main"]["orders"]["missing_count"] == 15
    assert psql(lab, host, "SELECT id FROM orders GROUP BY id HAVING count(*) > 1") == ""
    assert lab.sh(host, "systemctl is-active analyticbot-api").strip() == "active"

    again = apply(lab, inventory, "--limit", host, "--from", "external")
    assert again.code == 0, again.stderr
    assert again.receipt["changed"] == 0, json.dumps(again.receipt["hosts"], indent=1)
    lab.sh(host, f"rm -rf {PG_DIR} {ROOT}/harbor")


EXT = "/srv/extbackups"


@pytest.fixture
def full(lab: LabHosts) -> Iterator[FullLab]:
    """The lab app at its good release and data; reset afterwards."""
    f = FullLab(lab)
    f.each("lab-release reset")
    yield f
    f.each(f"lab-release reset; rm -rf {EXT}")


def test_the_full_level_restores_from_the_apps_own_backups(full: FullLab, tmp_path: Path):
    """The lab app's own pg_dump -Fc and SQLite copies (no rollback-ops set at all): code and
    data back after the bad release and new writes; a second run changes nothing."""
    app = yaml.safe_load(Path(full.lab.inventory).read_text())["all"]["vars"]["rollback_app"]
    globs = {"main": f"{EXT}/main_*.dump", "analytics": f"{EXT}/analytics_*.db"}
    for db in app["databases"]:
        db["external_backups"] = {"glob": globs[db["name"]]}
    inventory = full.lab.inventory_with(tmp_path, rollback_app=app)
    full.each(
        f"rm -rf {EXT} {ROOT}/analyticbot && mkdir -p {EXT} && "
        f"runuser -u postgres -- pg_dump -Fc -d analyticbot > {EXT}/main_20251201_020000.dump && "
        f"sqlite3 /srv/analyticbot/analytics.db '.backup {EXT}/analytics_20251201_020000.db'"
    )
    before = {h: full.data(h) for h in full.names}
    full.each("lab-db-traffic 20 >/dev/null && lab-release deploy-bad")
    assert all(full.data(h) != before[h] for h in full.names)

    argv = ["apply", "--level", "full", "--inventory", inventory, "--yes", "--json"]
    run = full.lab.cli(*argv, "--from", "external")
    assert run.code == 0, run.stderr
    for host in full.names:
        assert full.data(host) == before[host]
        full.assert_good(host)
        data = run.receipt["hosts"][host]["data"]
        assert data["set_id"].endswith("-external") and data["forensic_set_id"]
        assert data["data_loss"]["main"]["orders"]["missing_count"] == 20
    again = full.lab.cli(*argv, "--from", "external")
    assert again.code == 0, again.stderr
    assert again.receipt["changed"] == 0, json.dumps(again.receipt["hosts"], indent=1)


def test_the_data_level_restores_an_own_set_and_leaves_the_code_and_images(
    full: FullLab, tmp_path: Path
):
    """The lab app (units, compose worker, PostgreSQL and SQLite) with its own predeploy set:
    only the databases go back; HEAD, the images and the containers' image stay. The good
    release has no 004_rollback.sql (the bad one brings it): a run that lists it is refused
    before anything stops."""
    full.backup()
    before = {h: full.data(h) for h in full.names}
    heads = {h: full.git(h, "rev-parse", "HEAD") for h in full.names}
    images = {h: (full.worker(h)["image"], full.worker(h)["tag_id"]) for h in full.names}
    full.each("lab-db-traffic 10 >/dev/null")
    changed = {h: full.data(h) for h in full.names}
    base = ["apply", "--level", "data", "--yes", "--json", "--inventory"]
    refused = full.lab.cli(*base, full.lab.inventory)
    assert refused.code != 0 and "004_rollback.sql is not there" in refused.stderr
    assert {h: full.data(h) for h in full.names} == changed
    assert all(not r["changed"] for r in refused.receipt["hosts"].values())

    app = yaml.safe_load(Path(full.lab.inventory).read_text())["all"]["vars"]["rollback_app"]
    databases = [
        {k: v for k, v in d.items() if k != "migrations_rollback"} for d in app["databases"]
    ]
    argv = [*base, full.variant(tmp_path, databases=databases)]
    run = full.lab.cli(*argv)
    assert run.code == 0, run.stderr
    for host in full.names:
        assert full.data(host) == before[host]
        full.assert_good(host)
        assert full.git(host, "rev-parse", "HEAD") == heads[host]
        worker = full.worker(host)
        assert (worker["image"], worker["tag_id"]) == images[host]  # no rebuild
        assert (
            run.receipt["hosts"][host]["data"]["data_loss"]["main"]["orders"]["missing_count"] == 10
        )
    again = full.lab.cli(*argv)
    assert again.code == 0 and again.receipt["changed"] == 0, again.stderr
