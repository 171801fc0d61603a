"""The audit history's apps, inventory, hosts and links between runs (resume, undo,
escalate): written, read back trusting nothing, shown in a table that fits 100 columns and
filtered. The last tests make real runs of the demo sandbox (local connection, no Docker)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jsonschema
import pytest

from rollback_ops import api, cli, demo, history, history_view, jsonout
from rollback_ops.authorization import Authorization

FIRST = "20261202T101010Z-aaaaaa"
SECOND = "20261202T102020Z-bbbbbb"
THIRD = "20261202T103030Z-cccccc"


def started(run_id: str, **fields: object) -> dict[str, object]:
    return {"event": "started", "run_id": run_id, "operator": "ana", "level": "code", **fields}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err + out
    return code, out, err


def test_the_new_fields_round_trip_and_the_later_run_is_linked_when_reading(state_dir: Path):
    history.append(
        state_dir,
        started(
            FIRST,
            apps=["analyticbot"],
            inventory="staging",
            inventory_path="/srv/inv/staging.yml",
            hosts=["web1", "web2", "web3"],
            reason="INC-9 p95 > 5s",
        ),
    )
    history.append(state_dir, {"event": "finished", "run_id": FIRST, "result": "interrupted"})
    before = history.history_path(state_dir).read_bytes()
    history.append(
        state_dir,
        started(
            SECOND,
            apps=["analyticbot"],
            hosts=["web2"],
            reason="INC-9 p95 > 5s",
            reason_from=FIRST,
            **history.link("resume", FIRST),
        ),
    )
    first, second = history.read(state_dir)
    assert (first.apps, first.inventory, first.inventory_path) == (
        ["analyticbot"],
        "staging",
        "/srv/inv/staging.yml",
    )
    assert first.hosts == ["web1", "web2", "web3"]
    assert (second.follows, second.relation, second.reason_from) == (FIRST, "resume", FIRST)
    assert first.followed_by == [history.Link(SECOND, "resume")]  # computed, never written
    assert second.followed_by == []
    assert history.history_path(state_dir).read_bytes().startswith(before)
    # the older readers' key is still written beside the generic link
    last = json.loads(history.history_path(state_dir).read_bytes().splitlines()[-1])
    assert (last["follows"], last["relation"], last["resumes"]) == (FIRST, "resume", FIRST)


def test_an_old_history_without_the_new_fields_still_reads(state_dir: Path):
    """Entries written before apps and links were recorded: `resumes` (and an undo's
    `undoes`) are read as links; the new fields stay empty."""
    history.append(state_dir, started(FIRST, inventory="prod", hosts=["web1"]))
    history.append(state_dir, started(SECOND, inventory="prod", hosts=["web1"], resumes=FIRST))
    history.append(state_dir, started(THIRD, undoes=FIRST))
    warnings: list[str] = []
    first, second, third = history.read(state_dir, warnings)
    assert warnings == []
    assert (first.apps, first.inventory_path, first.follows) == ([], "", "")
    assert (second.follows, second.relation) == (FIRST, "resume")
    assert (third.follows, third.relation) == (FIRST, "undo")
    assert first.followed_by == [history.Link(SECOND, "resume"), history.Link(THIRD, "undo")]


DAMAGED_FIELDS = {
    "apps": (3, "apps ignored (not a list of strings but 3)"),
    "inventory_path": (["x"], "inventory_path ignored (not a string but ['x'])"),
    "follows": ("../../etc", "follows ignored (not a run id but '../../etc')"),
    "relation": ("rewind", "relation ignored (not resume, undo, escalate but 'rewind')"),
    "reason_from": (7, "reason_from ignored (not a string but 7)"),
    "resumes": ("a b", "resumes ignored (not a run id but 'a b')"),
}


@pytest.mark.parametrize("key", DAMAGED_FIELDS)
def test_a_damaged_new_field_is_dropped_alone_with_a_warning(state_dir: Path, key: str):
    value, why = DAMAGED_FIELDS[key]
    history.append(state_dir, started(FIRST))
    history.append(state_dir, started(SECOND, hosts=["web1"], reason="r", **{key: value}))
    warnings: list[str] = []
    first, second = history.read(state_dir, warnings)
    assert warnings == [f"history.jsonl line 2: {why}"]
    # the run is kept, as if the field had not been written
    assert second == history.HistoryRow(
        SECOND, started=second.started, operator="ana", level="code", hosts=["web1"], reason="r"
    )
    assert first.followed_by == []


def test_a_link_with_an_unknown_relation_still_links(state_dir: Path):
    history.append(state_dir, started(FIRST))
    history.append(state_dir, started(SECOND, follows=FIRST, relation="rewind"))
    warnings: list[str] = []
    first, second = history.read(state_dir, warnings)
    assert (second.follows, second.relation) == (FIRST, "")
    assert history_view.links(second) == [f"follows {FIRST}"]
    assert history_view.links(first) == [f"followed by {SECOND}"]
    assert len(warnings) == 1


def many_runs(state_dir: Path) -> None:
    history.append(
        state_dir,
        started(
            FIRST,
            apps=["analyticbot-recommendations-api"],
            inventory="production-eu-west-1-blue",
            environment=["production"],
            hosts=["web-frontend-01.example.com", "web2", "web3", "web4", "web5"],
            approved_by="ben",
            reason="INC-9: p95 above 5 s since the 14:02 deploy; " + "long story " * 20,
        ),
    )
    history.append(
        state_dir, {"event": "finished", "run_id": FIRST, "result": "interrupted", "duration": 4}
    )
    history.append(
        state_dir,
        started(
            SECOND,
            apps=["analyticbot"],
            inventory="prod",
            environment=["production"],
            hosts=["web2", "web3"],
            reason="INC-9: p95 above 5 s",
            reason_from=FIRST,
            **history.link("resume", FIRST),
        ),
    )
    history.append(
        state_dir, {"event": "finished", "run_id": SECOND, "result": "ok", "duration": 62.25}
    )
    history.append(
        state_dir,
        started(
            THIRD,
            level="flag",
            apps=["shop"],
            inventory="staging",
            inventory_path=str(state_dir),
            environment=["staging"],
            hosts=["shop1"],
            check=True,
        ),
    )


def test_the_table_has_app_inventory_and_hosts_columns_and_fits_100_columns(
    capsys: pytest.CaptureFixture[str], state_dir: Path
):
    many_runs(state_dir)
    code, out, _err = run(capsys, "--state-dir", str(state_dir), "history")
    assert code == 0
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 100, "\n".join(lines)
    assert lines[0].split() == ["RUN", "ID", "LEVEL", "APP", "INVENTORY", "HOSTS", "OUTCOME"]
    # a run is its line and an indented line of who, where, how long, links and why
    assert len(lines) == 1 + 2 * 3
    assert lines[1].split() == [
        FIRST,
        "code",
        "analyticb...",
        "productio...",
        "web-fronte...",
        "+4",
        "interrupted",
    ]
    assert lines[2].startswith(
        f"  by ana, approved by ben; production; 4.0s; resumed by {SECOND}; reason: INC-9"
    )
    assert lines[2].endswith("...")
    assert lines[3].split() == [SECOND, "code", "analyticbot", "prod", "web2,web3", "ok"]
    assert lines[4] == (
        f"  by ana; production; 62.2s; resumes {FIRST}; reason (kept): INC-9: p95 above 5 s"
    )
    assert lines[5].split() == [THIRD, "flag", "shop", "staging", "shop1", "unfinished"]
    assert lines[6] == "  by ana; staging; check mode; no reason given"


def test_hosts_show_as_the_first_two_and_how_many_more():
    assert history_view.compact_hosts([]) == "-"
    assert history_view.compact_hosts(["web1"]) == "web1"
    assert history_view.compact_hosts(["web1", "web2"]) == "web1,web2"
    assert history_view.compact_hosts(["web1", "web2", "web3", "web4"]) == "web1,web2 +2"
    assert history_view.compact_hosts(["frontend-1", "frontend-2", "x"]) == "frontend-1 +2"
    assert history_view.compact_hosts(["a" * 30, "b"], 16) == "aaaaaaaaaa... +1"


def test_wide_shows_every_field_on_one_line_per_run(
    capsys: pytest.CaptureFixture[str], state_dir: Path
):
    many_runs(state_dir)
    code, out, _err = run(capsys, "--state-dir", str(state_dir), "history", "--wide")
    assert code == 0
    header, first, second, third = out.splitlines()
    assert header.split()[:6] == ["DATE", "RUN", "ID", "LEVEL", "APP", "INVENTORY"]
    assert "web-frontend-01.example.com,web2,web3,web4,web5" in first
    assert "analyticbot-recommendations-api" in first and "production-eu-west-1-blue" in first
    assert f"resumed by {SECOND}" in first and "ben" in first
    assert f"resumes {FIRST}" in second and f"(of {FIRST}) INC-9: p95 above 5 s" in second
    assert " check " in third


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--app", "analyticbot"], [SECOND]),
        (["--app", "nope"], []),
        (["--inventory", "production"], [SECOND]),  # typed as prod: they stand for each other
        (["-i", "prod"], [SECOND]),
        (["-i", "production-eu-west-1-blue"], [FIRST]),
        (["--host", "web3"], [FIRST, SECOND]),
        (["--host", "web3", "--last", "1"], [SECOND]),  # the filter first, then the last N
        (["--host", "web3", "--app", "shop"], []),
    ],
)
def test_history_filters_by_app_inventory_and_host(
    capsys: pytest.CaptureFixture[str], state_dir: Path, argv: list[str], expected: list[str]
):
    many_runs(state_dir)
    code, out, _err = run(capsys, "--state-dir", str(state_dir), "history", "--json", *argv)
    assert code == 0
    assert [r["run_id"] for r in json.loads(out)["runs"]] == expected


def test_a_filter_that_matches_nothing_says_so(capsys: pytest.CaptureFixture[str], state_dir: Path):
    many_runs(state_dir)
    code, out, _err = run(capsys, "--state-dir", str(state_dir), "history", "--host", "nope")
    assert (code, out) == (0, "no recorded run matches --app, --inventory and --host as given\n")


def test_the_inventory_filter_takes_the_inventory_path(
    capsys: pytest.CaptureFixture[str], state_dir: Path
):
    many_runs(state_dir)
    code, out, _err = run(capsys, "--state-dir", str(state_dir), "history", "-i", str(state_dir))
    assert code == 0
    assert THIRD in out and FIRST not in out and SECOND not in out


def test_history_json_rows_carry_the_new_fields(
    capsys: pytest.CaptureFixture[str], state_dir: Path
):
    many_runs(state_dir)
    _code, out, _err = run(capsys, "--state-dir", str(state_dir), "history", "--json")
    document = json.loads(out)
    jsonschema.validate(document, jsonout.schema("history"))
    rows = document["runs"]
    first, second, _third = rows
    assert first["followed_by"] == [{"run_id": SECOND, "relation": "resume"}]
    assert (second["follows"], second["relation"], second["reason_from"]) == (
        FIRST,
        "resume",
        FIRST,
    )
    assert second["apps"] == ["analyticbot"] and second["hosts"] == ["web2", "web3"]


# --- real runs of the demo sandbox ---------------------------------------------------------


def test_a_real_run_records_its_apps_inventory_and_hosts_and_a_follower_keeps_its_reason(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
):
    """Two real flag runs of the demo app; the second names the first as the run it resumes
    (as `apply --resume` does) and is given no reason: it records the first one's."""
    state = tmp_path / "state"
    inventory = demo.create_sandbox(state)
    ana = Authorization(operator="ana", reason="INC-7 slow")
    first = api.apply("flag", "local", state_dir=state, auth=ana)
    assert first.ok, first.receipt()
    prep = api.prepare("flag", "local", state_dir=state)
    prep.request = dataclasses.replace(prep.request, resumes=first.run_id)
    second = api.execute(prep, state_dir=state, auth=Authorization(operator="ben"))
    assert second.ok, second.receipt()
    # the reason kept is the one recorded, in the receipt too
    assert second.authorization["reason"] == "INC-7 slow"
    saved = json.loads((Path(second.run_dir) / "receipt.json").read_text())
    assert saved["authorization"]["reason"] == "INC-7 slow"

    rows = history.read(state)
    assert [r.run_id for r in rows] == [first.run_id, second.run_id]
    for row in rows:
        assert row.apps == ["analyticbot"]
        assert (row.inventory, row.inventory_path) == ("local", str(inventory))
        assert row.hosts == ["localhost"]
    assert (rows[1].follows, rows[1].relation, rows[1].reason_from) == (
        first.run_id,
        "resume",
        first.run_id,
    )
    assert rows[0].followed_by == [history.Link(second.run_id, "resume")]

    code, out, _err = run(capsys, "--state-dir", str(state), "history")
    assert code == 0
    lines = out.splitlines()
    assert lines[1].split() == [first.run_id, "flag", "analyticbot", "local", "localhost", "ok"]
    assert f"resumed by {second.run_id}; reason: INC-7 slow" in lines[2]
    assert "by ben; local;" in lines[4]
    assert f"resumes {first.run_id}; reason (kept): INC-7 slow" in lines[4]


def test_a_follower_given_a_reason_keeps_its_own(tmp_path: Path):
    state = tmp_path / "state"
    demo.create_sandbox(state)
    first = api.apply("flag", "local", state_dir=state, auth=Authorization("ana", reason="A"))
    prep = api.prepare("flag", "local", state_dir=state)
    prep.request = dataclasses.replace(prep.request, resumes=first.run_id)
    second = api.execute(prep, state_dir=state, auth=Authorization("ana", reason="B"))
    assert second.authorization["reason"] == "B"
    row = history.read(state)[1]
    assert (row.reason, row.reason_from, row.follows) == ("B", "", first.run_id)


def test_the_reason_of_a_run_comes_from_its_receipt_when_the_history_has_none(
    state_dir: Path,
):
    run_dir = state_dir / "runs" / FIRST
    run_dir.mkdir(parents=True)
    receipt = {"run_id": FIRST, "level": "code", "result": "failed", "hosts": {}}
    (run_dir / "receipt.json").write_text(
        json.dumps({**receipt, "authorization": {"operator": "ana", "reason": "INC-3"}})
    )
    assert history.reason_of(state_dir, FIRST) == "INC-3"
    assert history.reason_of(state_dir, SECOND) == ""  # no such run: no reason, no error
