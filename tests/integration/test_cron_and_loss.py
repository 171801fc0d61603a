"""Cron jobs and lost rows on real lab hosts (issue 12 parts 8 and 9).

- The app user's crontab and an /etc/cron.d file are part of a backup set
  (rollback_app.backup.crontabs); after both change, `apply --level config --check` changes
  nothing, `apply --level config` puts them back (the current crontab copied first, named in
  the receipt), and a second run changes nothing.
- After a data-level restore, `backup export-loss RUN_ID` writes the rows written after the
  backup (held by the run's forensic set) as SQL; replaying it brings them back (counted).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import LabHosts

HOST = "web1"
USER = "analyticbot"
CRON_D = "/etc/cron.d/analyticbot-jobs"
COPIES = "/var/backups/rollback-ops/analyticbot/.crontab-copies"
GOOD_CRONTAB = "# analyticbot's jobs\n*/5 * * * * /usr/bin/true nightly-report\n"
BAD_CRONTAB = GOOD_CRONTAB + "* * * * * /usr/bin/true every-minute-experiment\n"
GOOD_CRON_D = "SHELL=/bin/sh\n15 3 * * * analyticbot /usr/bin/true cleanup\n"
CRON_STATE = (
    f"crontab -l -u {USER}; sha256sum {CRON_D}; stat -c '%a %U' {CRON_D}; "
    f"ls -R {COPIES} 2>/dev/null || true"
)


def lab_app(lab: LabHosts, **extra: Any) -> dict[str, Any]:
    app: dict[str, Any] = yaml.safe_load(Path(lab.inventory).read_text())["all"]["vars"][
        "rollback_app"
    ]
    app.update(extra)
    return app


def put_crontab(lab: LabHosts, text: str) -> None:
    lab.sh(HOST, f"printf '%s' {shlex.quote(text)} | crontab -u {USER} -")


@pytest.fixture
def cron(lab: LabHosts) -> Iterator[LabHosts]:
    clean = f"lab-release reset; crontab -r -u {USER} 2>/dev/null; rm -f {CRON_D}; true"
    lab.sh(HOST, clean)
    yield lab
    lab.sh(HOST, clean)


def config(lab: LabHosts, inventory: str, *extra: str) -> Any:
    argv = ["apply", "--level", "config", "--inventory", inventory, "--limit", HOST]
    return lab.cli(*argv, "--yes", "--json", *extra)


def test_a_changed_crontab_and_cron_d_file_are_restored_by_the_config_level(
    cron: LabHosts, tmp_path: Path
):
    app = lab_app(cron)
    app["backup"] = {**app["backup"], "crontabs": {"users": [USER], "files": [CRON_D]}}
    inventory = cron.inventory_with(tmp_path, rollback_app=app)
    put_crontab(cron, GOOD_CRONTAB)
    cron.sh(HOST, f"printf '%s' {shlex.quote(GOOD_CRON_D)} > {CRON_D} && chmod 0644 {CRON_D}")
    made = cron.cli("backup", "create", "--inventory", inventory, "--limit", HOST, "--json")
    assert made.code == 0, made.stderr
    manifest = made.receipt["hosts"][HOST]["data"]["manifest"]
    (saved,) = manifest["crontabs"]
    assert saved["user"] == USER and saved["present"] and saved["file"] == f"crontabs/{USER}"
    assert CRON_D in [f["path"] for f in manifest["files"]]

    put_crontab(cron, BAD_CRONTAB)
    cron.sh(HOST, f"echo '* * * * * root /usr/bin/true bad' >> {CRON_D}")
    before = cron.sh(HOST, CRON_STATE)

    checked = config(cron, inventory, "--check", "--diff")
    assert checked.code == 0, checked.stderr
    assert cron.sh(HOST, CRON_STATE) == before  # not a byte

    run = config(cron, inventory)
    assert run.code == 0, run.stderr
    assert cron.sh(HOST, f"crontab -l -u {USER}") == GOOD_CRONTAB
    assert cron.read(HOST, CRON_D) == GOOD_CRON_D
    assert cron.sh(HOST, f"stat -c '%a %U' {CRON_D}") == "644 root\n"
    result = run.receipt["hosts"][HOST]
    (entry,) = result["data"]["crontabs"]
    assert entry["user"] == USER and entry["copy"].startswith(f"{COPIES}/{USER}.backup.")
    assert entry["copy"] in result["backups"]  # named in the receipt
    assert cron.read(HOST, entry["copy"]) == BAD_CRONTAB  # nothing lost
    assert any(b.startswith(f"{CRON_D}.backup.") for b in result["backups"])

    again = config(cron, inventory)
    assert again.code == 0, again.stderr
    assert again.receipt["changed"] == 0, json.dumps(again.receipt["hosts"], indent=1)


PG_DIR = "/srv/harbor"
ROOT = "/var/backups/rollback-ops"


def psql(lab: LabHosts, host: str, query: str) -> str:
    return lab.sh(host, f'runuser -u postgres -- psql -X -At -d analyticbot -c "{query}"').strip()


def test_rows_written_after_the_backup_are_exported_and_replaying_them_brings_them_back(
    lab: LabHosts, tmp_path: Path
):
    host = "web2"
    base = lab_app(lab)
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
    backed_up = int(psql(lab, host, "SELECT count(*) FROM orders"))
    lab.sh(host, "lab-db-traffic 15 >/dev/null")
    written = int(psql(lab, host, "SELECT count(*) FROM orders"))
    assert written == backed_up + 15

    run = lab.cli(
        "apply", "--level", "data", "--inventory", inventory, "--limit", host,
        "--from", "external", "--yes", "--json",
    )  # fmt: skip
    assert run.code == 0, run.stderr
    assert int(psql(lab, host, "SELECT count(*) FROM orders")) == backed_up
    run_id = run.receipt["run_id"]

    out = tmp_path / "lost"
    exported = lab.cli(
        "backup", "export-loss", run_id, "--inventory", inventory, "--limit", host,
        "--out", str(out), "--json",
    )  # fmt: skip
    assert exported.code == 0, exported.stderr
    (counted,) = exported.receipt["hosts"][host]["data"]["loss_export"]["tables"]
    assert (counted["table"], counted["rows"]) == ("orders", 15)
    assert "content" not in counted  # counts in the receipt, the rows only in the files
    sql_file = out / f"{host}-main-orders.sql"
    *statements, sequence = sql_file.read_text().splitlines()
    assert len(statements) == 15
    assert all(s.startswith('INSERT INTO "orders"') for s in statements)
    assert all(s.endswith("ON CONFLICT DO NOTHING;") for s in statements)
    assert sequence.startswith("SELECT setval(")  # the app's next insert takes a new key
    for _ in range(2):  # a second replay adds nothing
        replay = lab.lab.container(host).exec_run(
            ["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
             "-d", "analyticbot", "-c", sql_file.read_text()]
        )  # fmt: skip
        assert replay.exit_code == 0, replay.output.decode()
        assert int(psql(lab, host, "SELECT count(*) FROM orders")) == written
    lab.sh(host, "lab-db-traffic 1 >/dev/null")  # the app writes on, past the replayed keys
    written += 1

    csv_out = tmp_path / "csv"
    as_csv = lab.cli(
        "backup", "export-loss", run_id, "--inventory", inventory, "--limit", host,
        "--format", "csv", "--out", str(csv_out),
    )  # fmt: skip
    assert as_csv.code == 0, as_csv.stderr
    # after the replay nothing is lost any more: a header only
    assert len((csv_out / f"{host}-main-orders.csv").read_text().splitlines()) == 1

    bad = lab.cli("backup", "export-loss", "20990101T000000Z-nope00", "--inventory", inventory)
    assert bad.code != 0 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "20990101T000000Z-nope00" in bad.stderr
    lab.sh(host, f"rm -rf {PG_DIR} {ROOT}/harbor")
