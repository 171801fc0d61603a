"""Backup sets and the full level end to end on three lab hosts, with real PostgreSQL (bound to
each host's own address, password auth) and SQLite: backup, then writes and the bad release's
migration, then `apply --level full` restores code and data exactly, with a forensic set and
a data-loss report; refusals change nothing; a scheduled timer fires; no password leaks.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import LabHosts
from tests.integration.test_code_level import GOOD, CodeLab

ROOT = "/var/backups/rollback-ops/analyticbot"
STATS = (
    "SELECT count(*), coalesce(sum(('x' || substr(md5(t::text), 1, 16))::bit(64)::bigint), 0) "
    "FROM {} t"
)


class FullLab(CodeLab):
    def psql(self, host: str, sql: str) -> str:
        return self.lab.sh(
            host, f'runuser -u postgres -- psql -X -At -d analyticbot -c "{sql}"'
        ).strip()

    def pg_stats(self, host: str, table: str) -> str:
        return self.psql(host, STATS.format(table))

    def sqlite(self, host: str, sql: str) -> str:
        return self.lab.sh(host, f"sqlite3 /srv/analyticbot/analytics.db '{sql}'").strip()

    def data(self, host: str) -> dict[str, str]:
        """What the full level restores, per table."""
        return {
            "orders": self.pg_stats(host, "orders"),
            "pgbench_accounts": self.pg_stats(host, "pgbench_accounts"),
            "schema": self.psql(host, "SELECT max(version) FROM schema_migrations"),
            "columns": self.psql(
                host,
                "SELECT string_agg(column_name, ',' ORDER BY column_name) FROM "
                "information_schema.columns WHERE table_name = 'orders'",
            ),
            "events": self.sqlite(host, "SELECT count(*), max(id) FROM events"),
        }

    def backup(self, *extra: str) -> Any:
        run = self.lab.cli("backup", "create", "--inventory", self.lab.inventory, "--json", *extra)
        assert run.code == 0, run.stderr
        return run.receipt

    def full(self, *extra: str) -> Any:
        argv = ["apply", "--level", "full", "--inventory", self.lab.inventory, "--yes", "--json"]
        return self.lab.cli(*argv, *extra)


@pytest.fixture
def full(lab: LabHosts) -> Iterator[FullLab]:
    """Good release and data, no backup sets; reset afterwards."""
    f = FullLab(lab)
    f.each("lab-release reset")
    yield f
    f.each("lab-release reset")


def test_backup_then_bad_deployment_then_full_restores_code_and_data_exactly(full: FullLab):
    receipt = full.backup()
    sets = {h: receipt["hosts"][h]["data"]["manifest"] for h in full.names}
    before = {h: full.data(h) for h in full.names}
    for host, manifest in sets.items():
        assert manifest["kind"] == "predeploy" and manifest["verification"]["ok"]
        assert manifest["code"]["describe"] == GOOD
        (backup,) = receipt["hosts"][host]["backups"]
        assert full.lab.sh(host, f"stat -c %a {backup}/manifest.json").strip() == "600"
    listed = full.lab.cli("backup", "list", "--inventory", full.lab.inventory, "--json")
    assert listed.code == 0 and sets["web1"]["set_id"] in listed.stderr

    full.each("lab-db-traffic 40 && lab-release deploy-bad")
    changed = {h: full.data(h) for h in full.names}
    for host in full.names:
        assert changed[host]["schema"] == "4" and "risk_score" in changed[host]["columns"]
        assert changed[host]["orders"] != before[host]["orders"]

    run = full.full()
    assert run.code == 0, run.stderr
    for host in full.names:
        assert full.data(host) == before[host]  # every table as it was at the backup
        full.assert_good(host)  # and the code, image, containers, units, health
        result = run.receipt["hosts"][host]
        data = result["data"]
        assert data["set_id"] == sets[host]["set_id"]
        forensic = data["forensic_set_id"]
        assert forensic.endswith("-forensic") and any(forensic in b for b in result["backups"])
        # the forensic set holds the writes made after the backup
        manifest = json.loads(full.lab.read(host, f"{ROOT}/{forensic}/manifest.json"))
        (main,) = [d for d in manifest["databases"] if d["name"] == "main"]
        assert main["schema_version"] == "4"
        loss = data["data_loss"]  # per database, per table
        orders = loss["main"]["orders"]
        new_orders = int(changed[host]["orders"].split("|")[0]) - int(
            before[host]["orders"].split("|")[0]
        )
        assert orders["missing_count"] == new_orders > 0
        events = loss["analytics"]["events"]
        assert events["missing_count"] > 0
    assert "data loss in" in run.stderr

    again = full.full()
    assert again.code == 0, again.stderr
    assert again.receipt["changed"] == 0, json.dumps(again.receipt["hosts"], indent=1)


def test_a_corrupted_or_foreign_backup_is_refused_before_anything_changes(full: FullLab):
    full.backup()
    full.each("lab-release deploy-bad")
    full.lab.sh(
        "web2", f"printf X | dd of=$(ls -d {ROOT}/*/db/main.dump) bs=1 seek=100 conv=notrunc"
    )
    full.lab.sh(
        "web3",
        f'cd {ROOT}/* && sed -i \'s/"app": "analyticbot"/"app": "shop"/\' manifest.json',
    )
    before = full.lab.fingerprint()
    run = full.full()
    assert run.code == 3, run.stderr  # refused at preflight: nothing changed
    hosts = run.receipt["hosts"]
    assert "cannot be restored" in hosts["web2"]["message"] and "sha256" in hosts["web2"]["message"]
    assert "shop" in hosts["web3"]["message"]
    assert "nothing was changed on any host" in hosts["web1"]["message"]
    full.lab.assert_unchanged(before)  # code, sets, units, containers, every table


def test_check_mode_changes_nothing(full: FullLab):
    full.backup()
    full.each("lab-db-traffic 10 && lab-release deploy-bad")
    before = full.lab.fingerprint()
    run = full.full("--check", "--diff")
    assert run.code == 0, run.stderr
    assert run.receipt["changed"] > 0
    full.lab.assert_unchanged(before)  # no forensic set, no restore, no restart
    assert full.lab.sh("web1", f"ls {ROOT} | grep -c forensic || true").strip() == "0"


def test_no_password_in_argv_logs_artifacts_receipts_or_sets(full: FullLab):
    password = full.lab.lab.db_password()
    full.backup()
    full.each("lab-release deploy-bad")
    run = full.full()
    assert run.code == 0, run.stderr
    assert password not in run.stdout + run.stderr
    run_dir = Path(run.receipt["run_dir"])
    for path in [*run_dir.rglob("*"), full.lab.state_dir / "history.jsonl"]:
        if path.is_file():
            assert password not in path.read_text(errors="replace"), path
    for host in full.names:
        found = full.lab.sh(host, f"grep -rl -- '{password}' {ROOT} /var/log || true").strip()
        assert found == ""


def test_a_scheduled_timer_fires_and_makes_a_verified_set(full: FullLab, tmp_path: Path):
    # no randomized delay (15 minutes by default): the timer fires on its calendar spec
    inv = full.lab.inventory_with(tmp_path, backup_schedule_randomized_delay="0")
    run = full.lab.cli(
        "backup", "schedule", "--inventory", inv, "--limit", "web1", "--at", "*:*:0/15"
    )
    assert run.code == 0, run.stderr
    try:
        deadline = time.monotonic() + 60  # the timer fires every 15 s
        while True:
            listing = full.lab.sh("web1", f"ls {ROOT} 2>/dev/null || true").split()
            made = [name for name in listing if name.endswith("-scheduled")]
            if made:
                break
            assert time.monotonic() < deadline, f"the timer made no set in 60 s: {listing}"
            time.sleep(2)
        manifest_path = f"{ROOT}/{made[0]}/manifest.json"  # written last, once verified
        deadline = time.monotonic() + 300
        while full.lab.sh("web1", f"test -e {manifest_path} || echo missing").strip():
            assert time.monotonic() < deadline, f"no {manifest_path} 300 s after the set began"
            time.sleep(1)
        manifest = json.loads(full.lab.read("web1", manifest_path))
        assert manifest["verification"]["ok"], manifest["verification"]
        assert {d["name"] for d in manifest["databases"]} == {"main", "analytics"}
        assert full.lab.sh("web1", "stat -c %a /etc/rollback-ops/backup-analyticbot.env") == "600\n"
    finally:
        run = full.lab.cli("backup", "unschedule", "--inventory", inv, "--limit", "web1")
        assert run.code == 0, run.stderr
    assert "inactive" in full.lab.sh(
        "web1", "systemctl is-active rollback-ops-backup-analyticbot.timer || true"
    )


def test_an_in_place_update_after_the_set_is_restored_by_the_full_level(
    full: FullLab, tmp_path: Path
):
    """Same rows, same columns, one value changed by UPDATE (no release deployed, so no
    migration to roll back): the live database differs from the set, so the full level
    restores it (it must not read as already equal)."""
    app = yaml.safe_load(Path(full.lab.inventory).read_text())["all"]["vars"]["rollback_app"]
    databases = [
        {k: v for k, v in d.items() if k != "migrations_rollback"} for d in app["databases"]
    ]
    inventory = full.variant(tmp_path, databases=databases)
    full.backup()
    taken = full.lab.fingerprint()  # the databases as the set holds them
    value = {h: full.psql(h, "SELECT customer FROM orders WHERE id = 3") for h in full.names}
    full.each(
        "runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -d analyticbot "
        "-c \"UPDATE orders SET customer = 'in-place' WHERE id = 3\""
    )
    for host in full.names:
        assert full.psql(host, "SELECT customer FROM orders WHERE id = 3") == "in-place"
        assert full.lab.fingerprint(host)[host]["postgresql"] != taken[host]["postgresql"]

    argv = ["apply", "--level", "full", "--inventory", inventory, "--yes", "--json"]
    run = full.lab.cli(*argv)
    assert run.code == 0, run.stderr
    assert "already equal" not in run.stderr + run.stdout
    for host in full.names:
        assert full.psql(host, "SELECT customer FROM orders WHERE id = 3") == value[host]
        data = run.receipt["hosts"][host]["data"]
        assert data["data_loss"]["main"]["orders"]["changed"] == ["3"]  # the lost value, kept
    after = full.lab.fingerprint()
    for host in full.names:  # every table, sequence and the schema as the set holds them
        assert after[host]["postgresql"] == taken[host]["postgresql"], host
        assert after[host]["sqlite"] == taken[host]["sqlite"], host


FK = "order_scores_order_fk"
ADD_FK = (
    "runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -d analyticbot -c "
    f'"ALTER TABLE order_scores ADD CONSTRAINT {FK} FOREIGN KEY (order_id) REFERENCES orders(id)"'
)


def test_a_foreign_key_from_a_table_the_bad_release_added_is_dropped_by_its_rollback_first(
    full: FullLab, tmp_path: Path
):
    """The bad release's order_scores references orders (which the set replaces):
    pg_restore --clean cannot drop orders while that foreign key exists, so the migration
    rollback (which drops order_scores) runs before the restore. Without a migration rollback
    the preflight refuses, before anything stops."""
    host = "web1"
    full.backup("--limit", host)
    before = full.data(host)
    full.lab.sh(host, f"lab-db-traffic 10 && lab-release deploy-bad && {ADD_FK}")
    assert full.psql(host, f"SELECT count(*) FROM pg_constraint WHERE conname = '{FK}'") == "1"

    app = yaml.safe_load(Path(full.lab.inventory).read_text())["all"]["vars"]["rollback_app"]
    databases = [
        {k: v for k, v in d.items() if k != "migrations_rollback"} for d in app["databases"]
    ]
    bare = full.variant(tmp_path, databases=databases)
    untouched = full.lab.fingerprint(host)
    argv = ["apply", "--level", "full", "--inventory", bare, "--limit", host, "--yes", "--json"]
    refused = full.lab.cli(*argv)
    assert refused.code != 0
    assert f"foreign key {FK} of public.order_scores references public.orders" in refused.stderr
    assert "add a migrations_rollback file" in refused.stderr, refused.stderr
    assert full.lab.fingerprint(host) == untouched  # refused before anything stopped

    run = full.full("--limit", host)
    assert run.code == 0, run.stderr
    assert full.data(host) == before  # orders restored, order_scores and risk_score gone
    assert full.psql(host, "SELECT to_regclass('order_scores') IS NULL") == "t"
    data = run.receipt["hosts"][host]["data"]
    assert data["migrations_first"]["main"] == [
        f"foreign key {FK} of public.order_scores references public.orders"
    ]
    assert [m["file"] for m in data["migrations"]["main"]] == [
        "/opt/analyticbot/migrations-rollback/004_rollback.sql"
    ]
    assert "before the restore" in run.stderr, run.stderr
    full.assert_good(host)
