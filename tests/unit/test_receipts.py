"""The receipt: what a run's outcome and exit status are, how it is written, read back and
checked (rollback_ops/results.py, rollback_ops/receipts.py)."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from rollback_ops import receipts
from rollback_ops.exceptions import ConfigError
from rollback_ops.results import FlagChange, HostResult, RunResult, StepEvent
from rollback_ops.text import one_line, short

RUN_ID = "20250102T030405Z-a1b2c3"


def host(name: str, status: str = "ok", *steps: tuple[str, str], **kw) -> HostResult:
    made = HostResult(name, status, [StepEvent(name, s, st) for s, st in steps], **kw)  # type: ignore[arg-type]
    return made


def run(*hosts: HostResult, rc: int = 0, **kw) -> RunResult:
    return RunResult(
        run_id=RUN_ID,
        level="flag",
        inventory="staging",
        inventory_path="/inv/staging.yml",
        check=False,
        hosts={h.name: h for h in hosts},
        started="2025-01-02T03:04:05Z",
        duration=1.23456,
        rc=rc,
        run_dir="/state/runs/" + RUN_ID,
        **kw,
    )


PREFLIGHT = "preflight: Check the env file, units and free space"


@pytest.mark.parametrize(
    ("result", "outcome", "status", "ok", "refused"),
    [
        (run(host("web1", "ok", ("envfile: Set", "ok"))), "ok", 0, True, False),
        (run(host("web1", "changed", ("envfile: Set", "changed"))), "ok", 0, True, False),
        # a failed host: the run failed, even when ansible said rc 0
        (run(host("web1", "failed", failed_step="envfile: Set")), "failed", 1, False, False),
        (run(host("web1", "unreachable", failed_step="Gathering")), "failed", 1, False, False),
        # every host refused at a check before any change: refused (exit 3)
        (run(host("web1", "failed", failed_step=PREFLIGHT), rc=2), "refused", 3, False, True),
        (
            run(
                host("web1", "failed", failed_step=PREFLIGHT),
                host("web2", "failed", failed_step="appservice: Check the unit"),
                rc=2,
            ),
            "refused",
            3,
            False,
            True,
        ),
        # one host refused, another failed after a change: failed, not refused
        (
            run(
                host("web1", "failed", failed_step=PREFLIGHT),
                host("web2", "failed", ("envfile: Set", "changed"), failed_step="Restart"),
                rc=2,
            ),
            "failed",
            1,
            False,
            False,
        ),
        # no host failed, but ansible-playbook itself did
        (run(host("web1"), rc=4), "failed", 1, False, False),
        (run(rc=0), "ok", 0, True, False),
        (run(rc=2), "failed", 1, False, False),
        (run(host("web1", "changed"), interrupted="SIGINT"), "interrupted", 130, False, False),
        (run(host("web1", "ok"), interrupted="SIGTERM"), "interrupted", 143, False, False),
        (
            run(host("web1", "failed", failed_step=PREFLIGHT), interrupted="SIGINT", rc=2),
            "interrupted",
            130,
            False,
            False,
        ),
    ],
)
def test_outcome_and_exit_status(
    result: RunResult, outcome: str, status: int, ok: bool, refused: bool
) -> None:
    assert (result.outcome, result.exit_status, result.ok, result.refused) == (
        outcome,
        status,
        ok,
        refused,
    )
    receipt = result.receipt()
    assert (receipt["result"], receipt["exit_status"]) == (outcome, status)


def test_an_interrupted_host_is_a_failed_one_in_order() -> None:
    result = run(host("web2", "interrupted"), host("web1", "unreachable"), host("web0", "changed"))
    assert [h.name for h in result.failed_hosts] == ["web1", "web2"]


def test_the_receipt_records_changes_locks_backups_and_flags() -> None:
    web1 = host(
        "web1",
        "changed",
        ("preflight: Check", "ok"),
        ("envfile: Set", "changed"),
        ("appservice: Restart", "changed"),
        flags=[FlagChange("FLAG", "true", "false", True)],
        backups=["/srv/app/.env.backup.1", "/srv/app/.env.backup.2"],
        lock="held",
        started=100.0,
        ended=101.5,
    )
    web2 = host("web2", "ok", ("envfile: Set", "ok"), lock="released", started=5.0, ended=4.0)
    result = run(web2, web1, warnings=["w"])
    receipt = result.receipt()
    assert receipts.validate(json.loads(json.dumps(receipt))) == []
    assert (receipt["changed"], receipt["changed_hosts"], receipt["locks_left"]) == (
        2,
        ["web1"],
        ["web1"],
    )
    assert list(receipt["hosts"]) == ["web1", "web2"]
    assert receipt["hosts"]["web1"]["changed"] == 2
    assert receipt["hosts"]["web1"]["duration"] == 1.5
    assert receipt["hosts"]["web2"]["duration"] == 0.0  # never negative
    assert "started" not in receipt["hosts"]["web1"] and "ended" not in receipt["hosts"]["web1"]
    assert receipt["hosts"]["web1"]["flags"] == [
        {"key": "FLAG", "before": "true", "after": "false", "changed": True}
    ]
    assert receipt["backups"] == [
        {"host": "web1", "path": "/srv/app/.env.backup.1"},
        {"host": "web1", "path": "/srv/app/.env.backup.2"},
    ]
    assert receipt["duration"] == 1.235
    assert (receipt["run_id"], receipt["level"], receipt["check"]) == (RUN_ID, "flag", False)
    assert receipt["warnings"] == ["w"] and receipt["interrupted"] == ""


def test_a_receipt_is_saved_private_and_whole(tmp_path: Path) -> None:
    path = tmp_path / "receipt.json"
    receipt = run(host("web1", "changed", ("envfile: Set", "changed"))).receipt()
    assert receipts.save(receipt, path) == ""
    assert json.loads(path.read_text()) == receipt
    assert path.read_text().endswith("}\n")
    assert path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["receipt.json"]


def test_a_receipt_that_cannot_be_saved_says_why_and_leaves_the_old_one(tmp_path: Path) -> None:
    path = tmp_path / "receipt.json"
    path.write_text('{"old": true}\n')
    # a directory where the temp file goes: the write fails before anything is replaced
    blocker = tmp_path / f".receipt.json.{os.getpid()}"
    blocker.mkdir()
    error = receipts.save({"new": True}, path)
    assert error == f"{path}: {os.strerror(errno.EISDIR)}"
    assert path.read_text() == '{"old": true}\n'
    blocker.rmdir()
    # the temp file is removed when the rename fails (the receipt's name is a directory)
    target = tmp_path / "dir.json"
    target.mkdir()
    (target / "x").write_text("")
    assert receipts.save({"new": True}, target).startswith(f"{target}: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.json", "receipt.json"]


def write(state: Path, run_id: str, content: str | bytes) -> Path:
    run_dir = state / "runs" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "receipt.json"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def test_a_saved_receipt_loads_back(tmp_path: Path) -> None:
    receipt = run(host("web1", "changed", ("envfile: Set", "changed"))).receipt()
    (tmp_path / "runs" / RUN_ID).mkdir(parents=True)
    receipts.save(receipt, tmp_path / "runs" / RUN_ID / "receipt.json")
    data, run_dir = receipts.load(tmp_path, RUN_ID)
    assert data == receipt and run_dir == tmp_path / "runs" / RUN_ID


@pytest.mark.parametrize("run_id", ["", "../x", "a/b", "a.b", "-x", "x" * 65, "ä", "a\x00b", 12])
def test_a_run_id_that_cannot_name_a_run_is_refused(run_id) -> None:
    with pytest.raises(ConfigError, match="not a run id"):
        receipts.check_run_id(run_id)


def test_run_ids_that_can_name_a_run() -> None:
    for run_id in (RUN_ID, "x", "A_b-9", "x" * 64):
        assert receipts.check_run_id(run_id) == run_id


def test_an_unknown_run_names_the_latest_five(tmp_path: Path) -> None:
    runs = [f"2025010{i}T000000Z-aaaaaa" for i in range(1, 8)]
    for r in runs:
        write(tmp_path, r, "{}")
    (tmp_path / "runs" / "not.a.run").mkdir()
    (tmp_path / "runs" / "zz-file").write_text("")
    with pytest.raises(ConfigError) as err:
        receipts.load(tmp_path, "20990101T000000Z-bbbbbb")
    assert str(err.value).endswith(f"(latest: {', '.join(runs[-5:])})")
    empty = tmp_path / "empty"
    (empty / "runs").mkdir(parents=True)
    with pytest.raises(ConfigError) as err:
        receipts.load(empty, RUN_ID)
    assert str(err.value) == f"no receipt for run '{RUN_ID}' in {empty / 'runs'}"


def test_what_is_not_a_receipt_is_said_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "runs" / "isdir" / "receipt.json").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"receipt .*isdir/receipt.json: not a file$"):
        receipts.load(tmp_path, "isdir")
    write(tmp_path, "notjson", "{nope")
    with pytest.raises(ConfigError, match=r"notjson/receipt.json is not valid JSON: Expecting"):
        receipts.load(tmp_path, "notjson")
    write(tmp_path, "deep", "[" * 100_000 + "]" * 100_000)
    with pytest.raises(ConfigError, match="nested too deeply"):
        receipts.load(tmp_path, "deep")
    write(tmp_path, "binary", b"\xff\xfe{")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        receipts.load(tmp_path, "binary")
    big = write(tmp_path, "big", "")
    with big.open("wb") as handle:
        handle.truncate(receipts.MAX_BYTES + 1)
    with pytest.raises(ConfigError, match=r"big/receipt.json: larger than 64 MB$"):
        receipts.load(tmp_path, "big")
    at_limit = write(tmp_path, "limit", "")
    with at_limit.open("wb") as handle:
        handle.truncate(receipts.MAX_BYTES)
    with pytest.raises(ConfigError, match="is not valid JSON"):  # read, not refused for size
        receipts.load(tmp_path, "limit")


def test_a_receipt_of_the_wrong_shape_names_the_first_three_problems(tmp_path: Path) -> None:
    write(tmp_path, "shape", json.dumps({"hosts": [], "check": "no", "duration": True}))
    with pytest.raises(ConfigError) as err:
        receipts.load(tmp_path, "shape")
    assert str(err.value).endswith(
        "shape/receipt.json: run_id: missing; level: missing; result: missing (and 3 more)"
    )
    write(tmp_path, "three", json.dumps({"run_id": "x", "level": "flag", "hosts": {}}))
    with pytest.raises(ConfigError) as err:
        receipts.load(tmp_path, "three")
    assert str(err.value).endswith("three/receipt.json: result: missing")


@pytest.mark.parametrize(
    ("data", "problems"),
    [
        ([], ["not a JSON object but list []"]),
        (
            {"run_id": 1, "level": "x", "result": "ok", "hosts": {}, "duration": "1"},
            ["run_id: not a string but int 1", "duration: not a number but str '1'"],
        ),
        ({"run_id": "r", "level": "x", "result": "ok", "hosts": {}, "duration": 1.5}, []),
        ({"run_id": "r", "level": "x", "result": "ok", "hosts": {}, "duration": 2}, []),
        (
            {"run_id": "r", "level": "x", "result": "ok", "hosts": {}, "duration": False},
            ["duration: not a number but bool False"],
        ),
        (
            {"run_id": "r", "level": "x", "result": "ok", "hosts": {"w": []}},
            ["hosts.w: not an object but list []"],
        ),
        (
            {
                "run_id": "r",
                "level": "x",
                "result": "ok",
                "hosts": {
                    "w": {
                        "status": 1,
                        "steps": [{"step": "s", "status": "ok", "action": "a"}, "x"],
                        "flags": [{"key": "K", "before": None, "after": "1", "changed": "yes"}],
                    }
                },
                "backups": [{"host": "w"}, {"host": "w", "path": 1}],
            },
            [
                "backups[0].path: missing",
                "backups[1].path: not a string but int 1",
                "hosts.w.status: not a string but int 1",
                "hosts.w.steps[0].message: missing",
                "hosts.w.steps[1]: not an object but str 'x'",
                "hosts.w.flags[0].changed: not true or false but str 'yes'",
            ],
        ),
        (
            {
                "run_id": "r",
                "level": "x",
                "result": "ok",
                "hosts": {"w": {"flags": [{"key": "K", "before": 1, "after": "1", "changed": 0}]}},
            },
            [
                "hosts.w.flags[0].before: not a string or null but int 1",
                "hosts.w.flags[0].changed: not true or false but int 0",
            ],
        ),
        (
            {"run_id": "r", "level": "x", "result": "ok", "hosts": {}, "backups": {}, "check": 1},
            ["check: not true or false but int 1", "backups: not a list but dict {}"],
        ),
    ],
)
def test_the_shape_of_a_receipt(data, problems) -> None:
    assert receipts.validate(data) == problems


def test_three_problems_are_named_and_a_fourth_counted(tmp_path: Path) -> None:
    three = {"hosts": {}, "check": 1}  # run_id, level, result missing; check mistyped: four
    write(tmp_path, "four", json.dumps(three))
    with pytest.raises(ConfigError) as err:
        receipts.load(tmp_path, "four")
    assert str(err.value).endswith("result: missing (and 1 more)")
    write(tmp_path, "three", json.dumps({"hosts": {}}))
    with pytest.raises(ConfigError) as err:
        receipts.load(tmp_path, "three")
    assert str(err.value).endswith("receipt.json: run_id: missing; level: missing; result: missing")


def test_every_host_is_checked_and_hosts_are_required() -> None:
    base = {"run_id": "r", "level": "x", "result": "ok"}
    assert receipts.validate(base) == ["hosts: missing"]
    long_name = "w" * 60
    assert receipts.validate({**base, "hosts": {"a": [], "b": {"status": 1}, long_name: 2}}) == [
        "hosts.a: not an object but list []",
        "hosts.b.status: not a string but int 1",
        f"hosts.{one_line(long_name, 40)}: not an object but int 2",
    ]
    assert receipts.validate({**base, "hosts": {}, "level": "y" * 60}) == []
    assert receipts.validate({**base, "hosts": {}, "warnings": "z" * 60}) == [
        f"warnings: not a list but str {short('z' * 60, 40)}"
    ]


def test_a_receipt_file_is_indented_for_people_and_diffs(tmp_path: Path) -> None:
    receipt = run(host("web1", "changed", ("envfile: Set", "changed"))).receipt()
    receipts.save(receipt, tmp_path / "receipt.json")
    assert (tmp_path / "receipt.json").read_text() == json.dumps(receipt, indent=2) + "\n"


def test_a_runs_path_that_is_not_a_directory_lists_no_latest_run(tmp_path: Path) -> None:
    (tmp_path / "runs").write_text("")
    with pytest.raises(ConfigError) as err:
        receipts.load(tmp_path, RUN_ID)
    assert str(err.value) == f"no receipt for run '{RUN_ID}' in {tmp_path / 'runs'}"


def test_invalid_json_is_explained_in_at_most_120_characters(tmp_path: Path) -> None:
    write(tmp_path, "long", '{"' + "k" * 300)
    with pytest.raises(ConfigError) as err:
        receipts.load(tmp_path, "long")
    try:
        json.loads('{"' + "k" * 300)
    except ValueError as exc:
        reason = one_line(str(exc), 120)
    assert str(err.value).endswith(f"is not valid JSON: {reason}")


def test_what_counts_as_refused_and_as_a_lock_left() -> None:
    # every failed host refused at a check, but another host changed: failed, not refused
    changed_elsewhere = run(
        host("web1", "failed", failed_step=PREFLIGHT),
        host("web2", "changed", ("envfile: Set", "changed")),
        rc=2,
    )
    assert (changed_elsewhere.outcome, changed_elsewhere.exit_status) == ("failed", 1)
    # unreachable at the check: nothing was changed, but it is not a refusal (exit 1)
    unreachable = run(host("web1", "unreachable", failed_step=PREFLIGHT), rc=4)
    assert (unreachable.outcome, unreachable.exit_status) == ("failed", 1)
    # a playbook killed by a signal reports a negative rc
    assert not run(host("web1"), rc=-15).ok
    # locks: held is left; never taken or released is not
    result = run(host("a", lock=""), host("b", lock="held"), host("c", lock="released"))
    assert result.locks_left == ["b"]
    # another signal than SIGINT/SIGTERM still exits as an interruption
    assert run(host("a"), interrupted="SIGHUP").exit_status == 130


def test_preflight_steps_are_named_check_or_preflight() -> None:
    from rollback_ops.results import is_preflight_step

    assert is_preflight_step("Check the request is for this playbook")
    assert is_preflight_step("preflight: Check the env file")
    assert is_preflight_step("app: Run the preflight")
    assert not is_preflight_step("envfile: Set the flags")
    assert not is_preflight_step("envfile: Set: Check later")  # the task is "Set: Check later"
    assert not is_preflight_step("Checkout the code")


def test_defaults_of_a_result() -> None:
    result = run(host("a"))
    assert result.hard_stop is False and result.receipt()["hard_stop"] is False
    assert StepEvent("a", "s", "ok").duration == 0.0
    fresh = HostResult("a")
    assert (fresh.started, fresh.ended, fresh.duration) == (0.0, 0.0, 0.0)
    timed = HostResult("a", started=10.0, ended=11.23456)
    assert timed.as_dict()["duration"] == 1.235
