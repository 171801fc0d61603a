"""The flag level through the app's own commands (rollback_app.flag_backend: command; seed
002's ``manage.py configure_ux_features``, flags in a database, per tenant), end to end on
the lab hosts. tests/integration/flagstore.py, a small flag program keeping flags per tenant
in SQLite, is copied to each host and declared as the backend; every assertion reads the
flags back from the host's database with that program.
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


def inventory(lab: LabHosts, directory: Path) -> str:
    data = yaml.safe_load(Path(lab.inventory).read_text())
    app: dict[str, Any] = dict(data["all"]["vars"]["rollback_app"])
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
    run = apply(flags, inv, "--flag", "acme:enable_references=maybe", "--limit", "web1")
    assert run.code == 1, run.stderr
    web1 = run.receipt["hosts"]["web1"]
    assert web1["status"] == "failed"
    assert "\n" not in web1["message"]
    assert "flag backend set acme:enable_references: python3 exited 2" in web1["message"]
    assert "invalid value 'maybe' for enable_references" in web1["message"]
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
