"""`rollback-ops report`: the Rollback Log rendered from real receipts. A real demo run
(local connection, no Docker) gives the events behind the timeline; the receipt of a real
full-level lab run (tests/fixtures/receipts) gives the data-loss and verification sections."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest

from rollback_ops import api, demo, history, report
from rollback_ops.authorization import Authorization
from tests.conftest import ROOT

FULL = ROOT / "tests" / "fixtures" / "receipts" / "full-level.json"
FULL_ID = "20261202T130354Z-c398ea"


def section(text: str, title: str) -> str:
    """The body of one `## title` section."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"no section {title!r} in:\n{text}"
    return match.group(1)


def table_rows(text: str) -> list[list[str]]:
    """The cells of every Markdown table row in text (the separator rows left out)."""
    return [
        [c.strip() for c in line.strip().strip("|").split(" | ")]
        for line in text.splitlines()
        if line.startswith("|") and not line.startswith("|---")
    ]


def put(state: Path, receipt: dict[str, Any]) -> None:
    run_dir = state / "runs" / receipt["run_id"]
    run_dir.mkdir(parents=True)
    (run_dir / "receipt.json").write_text(json.dumps(receipt))


@pytest.fixture
def full_receipt() -> dict[str, Any]:
    return json.loads(FULL.read_text())


def test_the_data_loss_section_lists_each_table_with_its_numbers(
    state_dir: Path, full_receipt: dict[str, Any]
):
    put(state_dir, full_receipt)
    text = report.render(state_dir, FULL_ID)
    loss = section(text, "Data Loss")
    assert "see" not in loss.lower()  # filled in, not pointing elsewhere
    for host in ("web1", "web2", "web3"):
        data = full_receipt["hosts"][host]["data"]
        part = loss.split(f"### {host}\n", 1)[1].split("### ", 1)[0]
        assert f"Restored from backup set `{data['set_id']}`." in part
        assert f"kept in forensic set `{data['forensic_set_id']}`" in part
        assert table_rows(part) == [
            [
                "Database",
                "Table",
                "Rows missing since the backup",
                "Rows changed since the backup",
                "Columns dropped",
            ],
            ["main", "orders", "40", "0", "risk_score"],
            ["main", "pgbench_accounts", "0", "40", "-"],
            ["analytics", "events", "40", "0", "-"],
        ]
        assert (
            "**Migrations rolled back**: main: "
            "`/opt/analyticbot/migrations-rollback/004_rollback.sql` (sha256 a0c8ed093172)"
        ) in part
        assert "**Integrity**: main: ok (duplicate orders passed); analytics: ok" in part


def test_the_verification_section_lists_every_check_per_host_with_the_settle_check(
    state_dir: Path, full_receipt: dict[str, Any]
):
    put(state_dir, full_receipt)
    rows = table_rows(section(report.render(state_dir, FULL_ID), "Verification"))
    assert rows == [
        ["Check", "web1", "web2", "web3"],
        ["containers: Recreate the compose services and watch them settle", "ok", "ok", "ok"],
        ["healthcheck: Check the units are active", "ok", "ok", "ok"],
        ["healthcheck: Require the units to be active", "ok", "ok", "ok"],
        ["healthcheck: Call the health endpoint", "ok", "ok", "ok"],
        ["healthcheck: Require the expected health fields", "ok", "ok", "ok"],
        [
            "healthcheck: Require the running process to report the new values",
            "skipped",
            "skipped",
            "skipped",
        ],
        ["healthcheck: Scan the log for new errors", "ok", "ok", "ok"],
        ["healthcheck: Require no new error lines in the log", "ok", "ok", "ok"],
    ]


def test_a_check_a_host_did_not_reach_or_failed_shows_as_such(
    state_dir: Path, full_receipt: dict[str, Any]
):
    """The same real receipt with web3 stopped before the settle check, and web2's log check
    failed (a message holding a pipe, as the log check's own message does)."""
    receipt = copy.deepcopy(full_receipt)
    web3 = receipt["hosts"]["web3"]
    web3["steps"] = [s for s in web3["steps"] if "settle" not in s["step"]]
    for s in receipt["hosts"]["web2"]["steps"]:
        if s["step"] == "healthcheck: Require no new error lines in the log":
            s.update(status="failed", message="2 new line(s) match ERROR: a | b")
    put(state_dir, receipt)
    text = section(report.render(state_dir, FULL_ID), "Verification")
    rows = {r[0]: r[1:] for r in table_rows(text)}
    assert rows["containers: Recreate the compose services and watch them settle"] == [
        "ok",
        "ok",
        "not run",
    ]
    assert rows["healthcheck: Require no new error lines in the log"] == ["ok", "**FAILED**", "ok"]
    assert (
        "- healthcheck: Require no new error lines in the log: failed on web2: "
        "2 new line(s) match ERROR: a | b"
    ) in text


def test_without_event_files_the_timeline_comes_from_the_receipt_naming_each_host_once(
    state_dir: Path, full_receipt: dict[str, Any]
):
    put(state_dir, full_receipt)  # the receipt alone: runner's artifacts are gone
    timeline = section(report.render(state_dir, FULL_ID), "Timeline")
    rows = table_rows(timeline)
    assert rows[0] == ["Time", "Step", "web1", "web2", "web3"]
    for row in rows[1:]:
        assert not {"web1", "web2", "web3"} & set(" ".join(row).replace(",", " ").split())
    steps = [r[1] for r in rows]
    # a task that ran twice (the units stopped, then started) is two rows, in order
    restarts = [
        i for i, s in enumerate(steps) if s == "appservice: Restart, start or stop the units"
    ]
    assert len(restarts) == 2
    assert steps.index("backup: Make a forensic set of the live databases") < restarts[1]
    assert rows[steps.index("containers: Rebuild the stale images")][2:] == ["changed"] * 3
    assert rows[1][1] == f"rollback initiated (run `{FULL_ID}`)"
    assert rows[-1] == ["13:04:25 UTC", "rollback completed: ok", "", "", ""]


def test_a_flag_level_report_says_no_data_was_touched(state_dir: Path):
    receipt = {"run_id": FULL_ID, "level": "flag", "result": "ok", "hosts": {}}
    put(state_dir, receipt)
    assert section(report.render(state_dir, FULL_ID), "Data Loss").strip() == (
        "None: the flag level does not restore databases."
    )


def test_a_full_level_that_found_the_data_already_equal_says_so(
    state_dir: Path, full_receipt: dict[str, Any]
):
    receipt = copy.deepcopy(full_receipt)
    for h in receipt["hosts"].values():
        h["data"] = {"set_id": "S"}
        h["steps"].append(
            {
                "step": "Say why the databases were not restored",
                "status": "skipped",
                "action": "ansible.builtin.debug",
                "message": "the databases already equal backup set S",
            }
        )
    put(state_dir, receipt)
    loss = section(report.render(state_dir, FULL_ID), "Data Loss")
    assert loss.count("Nothing restored: the databases already equal backup set S.") == 3


def test_odd_values_in_a_receipts_data_loss_render_as_unknown_not_a_crash(
    state_dir: Path, full_receipt: dict[str, Any]
):
    receipt = copy.deepcopy(full_receipt)
    data = receipt["hosts"]["web1"]["data"]
    data["data_loss"]["main"]["orders"] = {"missing_count": "many", "changed": ["1", "2"]}
    data["data_loss"]["main"]["pgbench_accounts"] = ["not", "an", "object"]
    data["migrations"] = {"main": ["005_rollback.sql"], "analytics": "x"}
    data["integrity"] = {"main": {"ok": "yes", "failures": ["duplicate | orders"]}}
    put(state_dir, receipt)
    part = section(report.render(state_dir, FULL_ID), "Data Loss").split("### web2")[0]
    assert ["main", "orders", "?", "2", "-"] in table_rows(part)
    assert ["main", "pgbench_accounts", "?", "?", "-"] in table_rows(part)
    assert "**Migrations rolled back**: main: `005_rollback.sql`\n" in part
    assert "**Integrity**: main: **FAILED** (duplicate | orders)" in part


# --- a real run of the demo sandbox ---------------------------------------------------------


def test_a_real_runs_report_has_its_timeline_checks_and_the_runs_linked_to_it(tmp_path: Path):
    """Two real flag runs of the demo app, the second following the first as a resume does;
    each one's report links the other, the timeline comes from runner's events."""
    state = tmp_path / "state"
    demo.create_sandbox(state)
    first = api.apply("flag", "local", state_dir=state, auth=Authorization("ana", reason="INC-7"))
    prep = api.prepare("flag", "local", state_dir=state)
    prep.request = dataclasses.replace(prep.request, resumes=first.run_id)
    second = api.execute(prep, state_dir=state, auth=Authorization("ana"))
    assert first.ok and second.ok

    text = report.render(state, first.run_id)
    assert f"**Linked Runs**: resumed by `{second.run_id}` (ok)" in text
    rows = table_rows(section(text, "Timeline"))
    assert rows[0] == ["Time", "Step", "localhost"]
    times = [r[0] for r in rows[1:]]
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d UTC", t) for t in times), times
    assert times == sorted(times)
    steps = {r[1]: r[2:] for r in rows}
    assert steps["envfile: Set values in the env file"] == ["changed"]
    assert rows[-1][1] == f"resumed by run `{second.run_id}`: ok"
    checks = {r[0]: r[1] for r in table_rows(section(text, "Verification"))}
    assert checks["healthcheck: Require no new error lines in the log"] == "ok"
    assert checks["healthcheck: Require the units to be active"] == "skipped"
    assert (
        "- healthcheck: Say why there is no health check: skipped on localhost: "
        "no health URL configured for this app"
    ) in section(text, "Verification")
    assert "1. set ENABLE_ADVANCED_RECOMMENDATIONS from true to false: localhost" in text

    later = report.render(state, second.run_id)
    assert f"**Linked Runs**: resumes `{first.run_id}`" in later
    assert f"**Reason**: INC-7 (kept from run `{first.run_id}`)" in later
    assert f"rollback initiated (run `{second.run_id}`, resumes `{first.run_id}`)" in later
    assert history.read(state)[1].reason_from == first.run_id


OLD_TEMPLATE = """\
{% for t in timeline %}- {{ t.time }}: {{ t.text }}
{% endfor %}{% for check, by_host in verification.items() -%}
- {{ check }}: {{ by_host | join(", ") }}
{% endfor %}"""


def test_a_teams_template_written_before_the_new_sections_still_renders(
    state_dir: Path, tmp_path: Path, full_receipt: dict[str, Any]
):
    put(state_dir, full_receipt)
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "report.md.j2").write_text(OLD_TEMPLATE)
    text = report.render(state_dir, FULL_ID, templates)
    assert "- Require the units to be active: web1, web2, web3\n" in text
    assert (
        "- containers: Recreate the compose services and watch them settle: web1, web2, web3\n"
    ) in text
    assert "- 13:04:25 UTC: rollback completed: ok\n" in text


@pytest.mark.parametrize(("key", "words"), [("resumes", "resumes"), ("undoes", "undoes")])
def test_without_a_history_row_the_link_comes_from_the_receipt(
    state_dir: Path, full_receipt: dict[str, Any], key: str, words: str
):
    put(state_dir, {**full_receipt, key: "20261202T120000Z-abcdef"})
    text = report.render(state_dir, FULL_ID)
    assert f"**Linked Runs**: {words} `20261202T120000Z-abcdef`\n" in text


def _schema_receipt(full_receipt: dict[str, Any], check: bool) -> dict[str, Any]:
    """The real receipt's shape, its hosts' data replaced by the schema level's (dbmigrate)."""
    receipt = copy.deepcopy(full_receipt)
    receipt.update(level="schema", check=check)
    cost = {
        "columns": [
            {"table": "orders", "column": "has_video", "non_null": 17},
            {"table": "orders", "column": "has_media", "non_null": 4},
        ],
        "tables": [{"table": "videos", "rows": 2, "non_null": 3}],
        "added": [],
        "rows_changed": {},
        "values_lost": 24,
        "changes": True,
    }
    for host, h in receipt["hosts"].items():
        h["data"] = {"planned": {"main": cost, "analytics": {**cost, "changes": False}}}
        if not check:
            h["data"].update(
                dropped={"main": cost},
                forensic_set_id=f"20261203T074000Z-forensic-{host}",
                migrations={"main": [{"file": "/srv/a/004_rollback.sql", "sha256": "ab"}]},
                integrity={"main": {"ok": True, "passed": [], "failures": []}},
            )
    return receipt


@pytest.mark.parametrize("check", [False, True])
def test_the_schema_section_lists_what_was_dropped_with_its_values(
    state_dir: Path, full_receipt: dict[str, Any], check: bool
):
    put(state_dir, _schema_receipt(full_receipt, check))
    text = report.render(state_dir, FULL_ID)
    part = section(text, "Schema Rolled Back").split("### web2\n", 1)[1].split("### ", 1)[0]
    assert table_rows(part) == [
        ["Database", "Dropped", "Rows", "Non-null values"],
        ["main", "column orders.has_video", "-", "17"],
        ["main", "column orders.has_media", "-", "4"],
        ["main", "table videos", "2", "3"],
    ]
    if check:
        assert "Nothing ran (check mode)" in part and "24 non-null value(s) would be lost" in part
        assert "analytics: the schema is already rolled back" in part
    else:
        assert "kept in forensic set `20261203T074000Z-forensic-web2`" in part
        assert "24 non-null value(s) lost in main" in part
        assert "**Files run**: main: /srv/a/004_rollback.sql" in part
        assert "**Integrity**: main: ok" in part
    assert "does not restore databases" in section(text, "Data Loss")


def test_no_schema_section_for_other_levels(state_dir: Path, full_receipt: dict[str, Any]):
    put(state_dir, full_receipt)
    assert "## Schema Rolled Back" not in report.render(state_dir, FULL_ID)
