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
