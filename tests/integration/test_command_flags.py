"""The flag level through the app's own commands (rollback_app.flag_backend: command; seed
002's ``manage.py configure_ux_features``, flags in a database, per tenant), end to end on
the lab hosts. tests/integration/flagstore.py, a small flag program keeping flags per tenant
in SQLite, is copied to each host and declared as the backend; every assertion reads the
flags back from the host's database with that program. The same program's dump and load
are the app's config rows (rollback_app.config.rows; seed 002 strategy 2, dumpdata and
loaddata): `backup create` puts them in the set, `apply --level config` loads them back.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import ENV_FILE, LabHosts

PROGRAM = Path(__file__).with_name("flagstore.py")
DIR = "/srv/analyticbot/flags"
DB = f"{DIR}/flags.db"
TOOL = "/usr/local/bin/lab-flagstore"
START = {
    "acme:enable_harmonization": "true",
    "acme:enable_references": "true",
    "beta:enable_harmonization": "true",
}


@pytest.fixture
def flags(lab: LabHosts) -> Iterator[LabHosts]:
    code = base64.b64encode(PROGRAM.read_bytes()).decode()
    sets = " && ".join(
        f"runuser -u analyticbot -- python3 {TOOL} {DB} set {k} {v}" for k, v in START.items()
    )
    for host in lab.names:
        lab.sh(
            host,
            f"rm -rf {DIR} /var/lib/rollback-ops/rollback.lock && mkdir -p {DIR} "
            f"&& chown analyticbot {DIR} && echo {code} | base64 -d > {TOOL} "
            f"&& chmod 0755 {TOOL} && {sets}",
        )
    yield lab
    for host in lab.names:
        lab.sh(host, f"rm -rf {DIR} {TOOL}")
    lab.reset()


def inventory(lab: LabHosts, directory: Path, rows: bool = False) -> str:
    data = yaml.safe_load(Path(lab.inventory).read_text())
    app: dict[str, Any] = dict(data["all"]["vars"]["rollback_app"])
    if rows:
        app["config"] = {
            **app["config"],
            "rows": [
                {
                    "name": "flags.json",
                    "dump": ["python3", TOOL, DB, "dump"],
                    "load": ["python3", TOOL, DB, "load", "{file}"],
                    "user": "analyticbot",
                    "chdir": DIR,
                }
            ],
        }
    app.update(
        master_switch="acme:enable_harmonization",
        master_switch_off="false",
        flags=list(START),
        flag_backend={
            "type": "command",
            "get": ["python3", TOOL, DB, "get", "{key}"],
            "set": ["python3", TOOL, DB, "set", "{key}", "{value}"],
            "user": "analyticbot",
            "chdir": DIR,
        },
    )
    return lab.inventory_with(directory, rollback_app=app)


def read(lab: LabHosts, host: str, key: str) -> str:
    return lab.sh(host, f"python3 {TOOL} {DB} get {key}").strip()


def apply(lab: LabHosts, inv: str, *extra: str) -> Any:
    return lab.cli("apply", "--level", "flag", "--inventory", inv, "--yes", "--json", *extra)


def test_a_flag_goes_through_set_verified_recorded_once_and_undone(flags: LabHosts, tmp_path: Path):
    inv = inventory(flags, tmp_path)
    env_before = {h: flags.read(h) for h in flags.names}
    run = apply(flags, inv, "--flag", "acme:enable_harmonization=false")
    assert run.code == 0, run.stderr
    for host in flags.names:
        assert read(flags, host, "acme:enable_harmonization") == "false"
        # the other tenant's flag and the other flag: untouched; the env file too
        assert read(flags, host, "beta:enable_harmonization") == "true"
        assert read(flags, host, "acme:enable_references") == "true"
        assert flags.read(host) == env_before[host]
        result = run.receipt["hosts"][host]
        assert result["status"] == "changed"
        assert result["flags"] == [
            {
                "key": "acme:enable_harmonization",
                "before": "true",
                "after": "false",
                "changed": True,
            }
        ]
        steps = {s["step"]: s["status"] for s in result["steps"]}
        assert steps["Check the flag backend reads every flag (before any host is changed)"] == "ok"
        assert steps["Set the flags through the app's commands"] == "changed"
    assert "acme:enable_harmonization true -> false" in run.stderr

    after_first = flags.fingerprint()
    again = apply(flags, inv, "--flag", "acme:enable_harmonization=false")
    assert again.code == 0, again.stderr
    assert again.receipt["changed"] == 0, json.dumps(again.receipt["hosts"], indent=1)
    flags.assert_unchanged(after_first)  # no set, no restart

    undo = flags.cli("undo", run.receipt["run_id"], "-i", inv, "--yes", "--json")
    assert undo.code == 0, undo.stderr
    for host in flags.names:
        assert read(flags, host, "acme:enable_harmonization") == "true"
        assert undo.receipt["hosts"][host]["flags"][0]["before"] == "false"


def test_check_mode_reads_only_and_says_what_would_change(flags: LabHosts, tmp_path: Path):
    inv = inventory(flags, tmp_path)
    before = flags.fingerprint()
    run = apply(flags, inv, "--check", "--diff")  # no --flag: the master switch goes off
    assert run.code == 0, run.stderr
    assert "-acme:enable_harmonization=true" in run.stderr
    assert "+acme:enable_harmonization=false" in run.stderr
    assert run.receipt["check"] is True and run.receipt["changed"] > 0
    flags.assert_unchanged(before)
    for host in flags.names:
        assert read(flags, host, "acme:enable_harmonization") == "true"


def test_a_value_the_command_refuses_fails_in_one_line_naming_the_flag(
    flags: LabHosts, tmp_path: Path
):
    inv = inventory(flags, tmp_path)
    # a template and a shell substitution: they reach the program as typed, one argv element
    value = "{{ 7 * 7 }}$(id -u);x"
    run = apply(flags, inv, "--flag", f"acme:enable_references={value}", "--limit", "web1")
    assert run.code == 1, run.stderr
    web1 = run.receipt["hosts"]["web1"]
    assert web1["status"] == "failed"
    assert "\n" not in web1["message"]
    assert "flag backend set acme:enable_references: python3 exited 2" in web1["message"]
    assert f"invalid value {value!r} for enable_references" in web1["message"]
    assert read(flags, "web1", "acme:enable_references") == "true"
    assert "Traceback" not in run.stderr


def test_a_failing_get_refuses_before_the_host_changes(flags: LabHosts, tmp_path: Path):
    inv = inventory(flags, tmp_path)
    wipe = (
        f"import sqlite3; c = sqlite3.connect('{DB}'); c.execute('DELETE FROM flags'); c.commit()"
    )
    flags.sh("web2", f'runuser -u analyticbot -- python3 -c "{wipe}"')
    before = flags.fingerprint("web2")
    run = apply(flags, inv, "--flag", "acme:enable_harmonization=false", "--limit", "web2")
    assert run.code == 3, run.stderr  # refused at preflight: nothing changed
    web2 = run.receipt["hosts"]["web2"]
    assert "\n" not in web2["message"]
    assert "flag backend get acme:enable_harmonization: python3 exited 3" in web2["message"]
    assert "no flag enable_harmonization for tenant acme" in web2["message"]
    flags.assert_unchanged(before)


def test_env_flags_keep_env_keys(flags: LabHosts):
    run = flags.cli(
        "apply", "--level", "flag", "-i", flags.inventory, "--yes", "--flag", "acme:x=false"
    )
    assert run.code == 2
    assert "--flag acme:x: not an env key" in run.stderr
    assert ENV_FILE in run.stderr


SETS = "/var/backups/rollback-ops/analyticbot"
KEEP = "/var/lib/rollback-ops/config-rows"


@pytest.fixture
def rows(flags: LabHosts) -> Iterator[LabHosts]:
    for host in flags.names:
        flags.sh(host, f"rm -rf {SETS} {KEEP}")
    yield flags
    for host in flags.names:
        flags.sh(host, f"rm -rf {SETS} {KEEP}")


def test_config_rows_go_into_the_set_and_come_back_with_the_config_level(
    rows: LabHosts, tmp_path: Path
):
    inv = inventory(rows, tmp_path, rows=True)
    made = rows.cli("backup", "create", "--inventory", inv, "--json")
    assert made.code == 0, made.stderr
    for host in rows.names:
        manifest = json.loads(rows.sh(host, f"cat {SETS}/*/manifest.json"))
        (entry,) = manifest["rows"]
        assert entry["file"] == "rows/flags.json"
        assert manifest["verification"]["ok"]
        assert "rows/flags.json: sha256 ok" in manifest["verification"]["checks"]
        set_rows = json.loads(rows.sh(host, f"cat {SETS}/*/rows/flags.json"))
        assert {"tenant": "acme", "flag": "enable_harmonization", "value": "true"} in set_rows
        # the bad deployment turns features off in the database
        rows.sh(
            host,
            f"runuser -u analyticbot -- python3 {TOOL} {DB} set beta:enable_harmonization false",
        )

    before = rows.fingerprint()
    check = rows.cli(
        "apply", "--level", "config", "-i", inv, "--yes", "--json", "--check", "--diff"
    )
    assert check.code == 0, check.stderr
    assert check.receipt["changed"] > 0
    rows.assert_unchanged(before)

    run = rows.cli("apply", "--level", "config", "-i", inv, "--yes", "--json")
    assert run.code == 0, run.stderr
    for host in rows.names:
        assert read(rows, host, "beta:enable_harmonization") == "true"
        result = run.receipt["hosts"][host]
        (loaded,) = result["data"]["config_rows"]
        assert loaded["name"] == "flags.json" and loaded["copy"].startswith(f"{KEEP}/flags.json.")
        assert loaded["copy"] in result["backups"]
        # nothing lost: the rows as they were before the load are kept
        kept = json.loads(rows.sh(host, f"cat {loaded['copy']}"))
        assert {"tenant": "beta", "flag": "enable_harmonization", "value": "false"} in kept
        assert rows.sh(host, f"stat -c '%a %U' {loaded['copy']}") == "600 root\n"

    again = rows.cli("apply", "--level", "config", "-i", inv, "--yes", "--json")
    assert again.code == 0, again.stderr
    assert again.receipt["changed"] == 0, json.dumps(again.receipt["hosts"], indent=1)
