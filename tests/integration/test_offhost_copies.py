"""Off-host copies on two lab hosts: web1 runs seed 000's SQLite app and makes the sets, web2
is its backup.offhost host. A set is copied to web2 and verified there, once; a copy damaged
there is copied again; after web1 lost the set, `apply --level data` fetches it back from
web2, verifies it and restores it (the rows of the set, not the later ones)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.integration.conftest import LabHosts
from tests.integration.test_data_level import ANCESTRY, DB, DIR, ROOT, SETUP

HOST, BACKUP = "web1", "web2"
OFFROOT = "/var/backups/rollback-ops-offhost"
RESET = (
    "systemctl stop ancestry 2>/dev/null; rm -f /etc/systemd/system/ancestry.service; "
    f"systemctl daemon-reload; rm -rf {DIR} {ROOT}/ancestry"
)


def sql(lab: LabHosts, query: str) -> str:
    return lab.sh(HOST, f'sqlite3 {DB} "{query}"').strip()


def cli(lab: LabHosts, inventory: str, *argv: str) -> Any:
    return lab.cli(*argv, "--inventory", inventory, "--limit", HOST, "--json")


def copy_state(lab: LabHosts) -> str:
    return lab.sh(
        BACKUP,
        f"find {OFFROOT} -printf '%p %y %m %s %T@\\n' 2>/dev/null | sort; "
        f"find {OFFROOT} -type f -exec sha256sum {{}} + 2>/dev/null | sort",
    )


def test_a_set_copied_to_the_backup_host_and_restored_from_it(lab: LabHosts, tmp_path: Path):
    lab.sh(BACKUP, f"rm -rf {OFFROOT}")
    lab.sh(HOST, SETUP)
    try:
        # a backup host that is not in the inventory: one line naming it, nothing made
        wrong = {**ANCESTRY, "backup": {"offhost": {"host": "nohost"}}}
        (tmp_path / "bad").mkdir()
        bad_inventory = lab.inventory_with(tmp_path / "bad", rollback_app=wrong)
        refused = cli(lab, bad_inventory, "backup", "create")
        assert refused.code != 0
        assert "rollback_app.backup.offhost.host: 'nohost' is not a host of the inventory" in (
            refused.stderr
        ), refused.stderr
        assert lab.sh(HOST, f"ls {ROOT}/ancestry 2>/dev/null | wc -l").strip() == "0"

        app = {**ANCESTRY, "backup": {"offhost": {"host": BACKUP}}}
        inventory = lab.inventory_with(tmp_path, rollback_app=app)

        made = cli(lab, inventory, "backup", "create")
        assert made.code == 0, made.stderr
        data = made.receipt["hosts"][HOST]["data"]
        set_id = data["set_id"]
        where = f"{OFFROOT}/{HOST}/ancestry/{set_id}"
        assert data["offhost"] == {
            "host": BACKUP,
            "path": where,
            "copied": True,
            "set_id": set_id,
            "verified": True,
        }
        local = lab.sh(HOST, f"cd {ROOT}/ancestry/{set_id} && sha256sum manifest.json db/*")
        assert lab.sh(BACKUP, f"cd {where} && sha256sum manifest.json db/*") == local
        modes = lab.sh(BACKUP, f"stat -c '%a %n' {OFFROOT}/{HOST} {where} {where}/db/*")
        assert [line.split()[0] for line in modes.splitlines()] == ["700", "700", "600"]
        rows = sql(lab, "SELECT count(*) FROM people")

        # the same set again: already there and verified, not copied again
        state = copy_state(lab)
        again = cli(lab, inventory, "backup", "copy")
        assert again.code == 0, again.stderr
        assert again.receipt["changed"] == 0, json.dumps(again.receipt["hosts"], indent=1)
        assert again.receipt["hosts"][HOST]["data"]["offhost"]["copied"] is False
        assert copy_state(lab) == state

        # a copy damaged on the backup host is copied again
        lab.sh(BACKUP, f"echo x >> {where}/db/ancestry.sqlite3")
        repaired = cli(lab, inventory, "backup", "copy", "--backup-id", set_id)
        assert repaired.code == 0, repaired.stderr
        assert repaired.receipt["hosts"][HOST]["data"]["offhost"]["copied"] is True
        assert lab.sh(BACKUP, f"cd {where} && sha256sum manifest.json db/*") == local

        # later writes, then web1 loses the set: the data level fetches it back from web2
        sql(lab, "INSERT INTO people(name) VALUES ('fay'), ('gus');")
        lab.sh(HOST, f"rm -rf {ROOT}/ancestry/{set_id}")
        before = lab.sh(HOST, f"ls -R {ROOT}/ancestry; sha256sum {DB}")
        preview = cli(lab, inventory, "apply", "--level", "data", "--yes", "--check")
        assert "a run would fetch it back from web2:" in preview.stderr, preview.stderr
        assert lab.sh(HOST, f"ls -R {ROOT}/ancestry; sha256sum {DB}") == before

        run = cli(lab, inventory, "apply", "--level", "data", "--yes")
        assert run.code == 0, run.stderr
        data = run.receipt["hosts"][HOST]["data"]
        assert data["set_id"] == set_id
        assert data["offhost"]["host"] == BACKUP and data["offhost"]["fetched"] is True
        assert data["offhost"]["path"] == where and data["offhost"]["verified"] is True
        assert sql(lab, "SELECT count(*) FROM people") == rows
        assert sql(lab, "SELECT count(*) FROM people WHERE name IN ('fay', 'gus')") == "0"
        assert lab.sh(HOST, f"cd {ROOT}/ancestry/{set_id} && sha256sum manifest.json db/*") == (
            local
        )
        assert lab.sh(HOST, "systemctl is-active ancestry").strip() == "active"

        # a second run: the set is here again, nothing fetched, nothing changed
        twice = cli(lab, inventory, "apply", "--level", "data", "--yes")
        assert twice.code == 0, twice.stderr
        assert twice.receipt["changed"] == 0, json.dumps(twice.receipt["hosts"], indent=1)
    finally:
        lab.sh(HOST, RESET)
        lab.sh(BACKUP, f"rm -rf {OFFROOT}")
