"""The schema level on a real lab host: seed 003 step 4, the migration rollback file run on the
live PostgreSQL database (no restore, no code change). The "bad release" added two columns
to orders (has_video, has_media) holding non-null values, and the app wrote on after it; the
rollback file drops exactly those two columns. `--check` changes nothing and reports the
cost; the apply drops the two columns, keeps every other write (counted), and leaves a
forensic set; a second apply changes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import LabHosts

HOST = "web2"
ROOT = "/var/backups/rollback-ops"
APP = "vidapp"
DIR = f"/srv/{APP}"
ROLLBACK = f"{DIR}/004_rollback.sql"
# seed 003's 004_rollback.sql, made safe to run twice
ROLLBACK_SQL = """-- undo 004_add_media: the two columns, and its version
ALTER TABLE orders DROP COLUMN IF EXISTS has_video, DROP COLUMN IF EXISTS has_media;
DELETE FROM schema_migrations WHERE version = 4;
"""
BAD_RELEASE = (
    "ALTER TABLE orders ADD COLUMN has_video boolean, ADD COLUMN has_media text;"
    "UPDATE orders SET has_video = (id % 2 = 0);"
    "UPDATE orders SET has_media = 'clip-' || id WHERE id <= 4;"
    "INSERT INTO schema_migrations VALUES (4);"
)
# every table's rows, and every value but the two columns the rollback drops
KEPT = (
    "SELECT '{0}', count(*), coalesce(sum(hashtext("
    "(row_to_json(t)::jsonb - 'has_video' - 'has_media')::text)::bigint), 0) FROM {0} t"
)
TABLES = ("orders", "pgbench_accounts", "pgbench_history", "pgbench_tellers", "pgbench_branches")
COLUMNS = (
    "SELECT string_agg(column_name, ',' ORDER BY column_name) FROM information_schema.columns "
    "WHERE table_name = 'orders'"
)


def psql(lab: LabHosts, query: str) -> str:
    return lab.sh(
        HOST,
        f'runuser -u analyticbot -- psql -X -At -v ON_ERROR_STOP=1 -d analyticbot -c "{query}"',
    ).strip()


def kept(lab: LabHosts) -> dict[str, str]:
    state = {t: psql(lab, KEPT.format(t)) for t in TABLES}
    state["version"] = psql(lab, "SELECT max(version) FROM schema_migrations")
    return state


@pytest.fixture
def vidapp(lab: LabHosts, tmp_path: Path) -> Iterator[str]:
    """The lab's PostgreSQL database as app vidapp, after its bad release and later writes."""
    base = yaml.safe_load(Path(lab.inventory).read_text())["all"]["vars"]["rollback_app"]
    (main,) = [d for d in base["databases"] if d["name"] == "main"]
    main = {**main, "migrations_rollback": [ROLLBACK]}
    main["integrity_checks"] = [
        {"name": "one row per id", "sql": "SELECT id FROM orders GROUP BY id HAVING count(*) > 1"}
    ]
    app = {"name": APP, "units": ["analyticbot-api"], "databases": [main]}
    lab.sh(HOST, f"lab-release reset; rm -rf {DIR} {ROOT}/{APP} && mkdir -p {DIR}")
    lab.sh(HOST, f"cat > {ROLLBACK} <<'EOF'\n{ROLLBACK_SQL}EOF")
    psql(lab, BAD_RELEASE)
    lab.sh(HOST, "lab-db-traffic 7 >/dev/null")  # written after the release: must stay
    yield lab.inventory_with(tmp_path, rollback_app=app)
    lab.sh(HOST, f"rm -rf {DIR} {ROOT}/{APP}; lab-release reset")


def apply(lab: LabHosts, inventory: str, *extra: str) -> Any:
    argv = ["apply", "--level", "schema", "--inventory", inventory, "--limit", HOST]
    return lab.cli(*argv, "--yes", "--json", *extra)


def test_the_schema_level_drops_the_two_columns_and_keeps_every_other_write(
    lab: LabHosts, vidapp: str
):
    orders = int(psql(lab, "SELECT count(*) FROM orders"))
    assert orders >= 17  # 10 from the baseline, 7 since the release
    videos = int(psql(lab, "SELECT count(has_video) FROM orders"))
    assert videos == orders - 7  # the rows written after the release have none
    assert psql(lab, "SELECT count(has_media) FROM orders") == "4"
    assert psql(lab, COLUMNS) == "amount,created_at,customer,has_media,has_video,id"
    before = kept(lab)
    assert before["version"] == "4"

    # --check: the cost, and not a byte changed (the columns, their values, no set)
    checked = apply(lab, vidapp, "--check", "--diff")
    assert checked.code == 0, checked.stderr
    planned = checked.receipt["hosts"][HOST]["data"]["planned"]["main"]
    assert planned["columns"] == [
        {"table": "orders", "column": "has_video", "non_null": videos},
        {"table": "orders", "column": "has_media", "non_null": 4},
    ]
    assert planned["tables"] == [] and planned["values_lost"] == videos + 4
    assert "has_video" in checked.stderr + checked.stdout
    assert psql(lab, COLUMNS) == "amount,created_at,customer,has_media,has_video,id"
    assert psql(lab, "SELECT count(has_media) FROM orders") == "4"
    assert kept(lab) == before
    assert lab.sh(HOST, f"ls {ROOT}/{APP} 2>/dev/null | wc -l").strip() == "0"

    # apply: exactly the two columns go; every row and every other value stays
    run = apply(lab, vidapp)
    assert run.code == 0, run.stderr
    data = run.receipt["hosts"][HOST]["data"]
    dropped = data["dropped"]["main"]
    assert [(c["column"], c["non_null"]) for c in dropped["columns"]] == [
        ("has_video", videos),
        ("has_media", 4),
    ]
    assert dropped["tables"] == [] and dropped["values_lost"] == videos + 4
    assert psql(lab, COLUMNS) == "amount,created_at,customer,id"
    after = kept(lab)
    assert after.pop("version") == "3"
    assert after == {k: v for k, v in before.items() if k != "version"}
    assert data["integrity"]["main"]["ok"]
    assert data["migrations"]["main"][0]["file"] == ROLLBACK
    forensic = data["forensic_set_id"]
    manifest = json.loads(lab.read(HOST, f"{ROOT}/{APP}/{forensic}/manifest.json"))
    assert manifest["kind"] == "forensic" and manifest["verification"]["ok"]
    assert manifest["databases"][0]["tables"]["orders"]["rows"] == orders

    # a second apply: the preview finds nothing to drop, nothing runs, no new set
    sets = lab.sh(HOST, f"ls {ROOT}/{APP}")
    again = apply(lab, vidapp)
    assert again.code == 0, again.stderr
    assert again.receipt["changed"] == 0, json.dumps(again.receipt["hosts"], indent=1)
    assert lab.sh(HOST, f"ls {ROOT}/{APP}") == sets
    assert kept(lab) == {**after, "version": "3"}
