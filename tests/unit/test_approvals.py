"""Approvals without the lab: the host-side records (module_utils/approvals.py) judged by
their file owners and read as untrusted, the approval module's consume step, the plan hash
(stable, and changed by every field it binds), the schema of the approvers, and the CLI's
one-line errors. The lab test (tests/integration/test_approvals.py) runs the whole flow
with real logins."""

from __future__ import annotations

import json
import os
import pwd
import time
from pathlib import Path

import pytest

from rollback_ops import api, approvals, appspec, cli
from rollback_ops.exceptions import ConfigError
from rollback_ops.operations import Request
from tests.conftest import FIXTURES, load_module, run_module
from tests.requirements import need

records = load_module("plugins/module_utils/approvals.py")
GOOD = str(FIXTURES / "inventories" / "good")
RUN = "20240501T101500Z-1a2b3c"
HASH = "ab" * 32
REQUESTER, APPROVER, OTHER = "bin", "daemon", "sys"  # system logins every Debian has


def uid(login: str) -> int:
    return pwd.getpwnam(login).pw_uid


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    need(os.getuid() == 0, "the records are given other owners: run as root")
    directory = tmp_path / "spool"
    directory.mkdir()
    os.chmod(directory, 0o1777)
    return directory


def put(spool: Path, name: str, record: object, login: str, age: float = 0) -> Path:
    path = spool / name
    path.write_text(json.dumps(record))
    os.chown(path, uid(login), -1)
    if age:
        then = time.time() - age
        os.utime(path, (then, then))
    return path


def request_record(**over: object) -> dict[str, object]:
    return {"run_id": RUN, "hash": HASH, "level": "flag", "requested_epoch": time.time(), **over}


def approval_record(**over: object) -> dict[str, object]:
    return {"run_id": RUN, "hash": HASH, **over}


def judge(spool: Path, approvers: tuple[str, ...] = (APPROVER,)) -> tuple[list, list, list]:
    request, problems = records.judge_request(str(spool), RUN, 24 * 3600)
    approved, rejected = records.judge_approvals(
        str(spool), RUN, request, list(approvers), 24 * 3600
    )
    return problems, approved, rejected


def test_the_owner_is_the_identity_not_what_the_record_says(spool: Path):
    put(spool, f"{RUN}.request", request_record(requester=APPROVER), REQUESTER)
    put(spool, f"{RUN}.approval.1", approval_record(approver="nobody-else"), APPROVER)
    request, problems = records.judge_request(str(spool), RUN, 3600)
    assert problems == [] and request["requester"] == REQUESTER
    assert judge(spool) == ([], [APPROVER], [])


@pytest.mark.parametrize(
    ("login", "record", "why"),
    [
        (REQUESTER, approval_record(), "bin requested this run and cannot approve it"),
        ("root", approval_record(), "written by root"),
        (OTHER, approval_record(), "sys is not in rollback_approvers"),
        (APPROVER, approval_record(hash="cd" * 32), "it approves another plan"),
        (APPROVER, approval_record(run_id="20240501T000000Z-ffffff"), "it names another run"),
    ],
)
def test_an_approval_that_proves_nothing_is_rejected_with_why(
    spool: Path, login: str, record: dict, why: str
):
    put(spool, f"{RUN}.request", request_record(), REQUESTER)
    put(spool, f"{RUN}.approval.x", record, login)
    problems, approved, rejected = judge(spool, (APPROVER, REQUESTER))
    assert problems == [] and approved == []
    assert len(rejected) == 1 and why in rejected[0]


def test_an_old_approval_or_request_has_expired(spool: Path):
    put(spool, f"{RUN}.request", request_record(), REQUESTER)
    put(spool, f"{RUN}.approval.x", approval_record(), APPROVER, age=25 * 3600)
    assert "older than 24 hours" in judge(spool)[2][0]
    # the request's own time cannot make it younger than its file
    put(spool, f"{RUN}.request", request_record(), REQUESTER, age=25 * 3600)
    assert "older than 24 hours" in judge(spool)[0][0]


def test_a_request_written_by_root_or_naming_another_run_is_refused(spool: Path):
    put(spool, f"{RUN}.request", request_record(), "root")
    assert "written by root" in judge(spool)[0][0]
    put(spool, f"{RUN}.request", request_record(run_id="other", hash="short"), REQUESTER)
    problems = judge(spool)[0]
    assert any("names another run" in p for p in problems)
    assert any("holds no plan hash" in p for p in problems)


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"not json", "is not JSON"),
        (b"[1, 2]", "is not a JSON object"),
        (b"\xff\xfe", "is not JSON"),
        (b"{" + b" " * (64 * 1024) + b"}", "larger than"),
    ],
)
def test_a_record_is_read_as_untrusted(spool: Path, content: bytes, why: str):
    path = spool / "record"
    path.write_bytes(content)
    with pytest.raises(records.RecordError, match=why):
        records.read_record(str(path))


def test_links_and_special_files_are_not_records(spool: Path, tmp_path: Path):
    real = put(spool, "real", approval_record(), APPROVER)
    (spool / "symlink").symlink_to(real)
    with pytest.raises(records.RecordError, match="cannot open"):
        records.read_record(str(spool / "symlink"))
    os.link(real, spool / "hardlink")
    with pytest.raises(records.RecordError, match="has 2 links"):
        records.read_record(str(spool / "hardlink"))
    os.mkfifo(spool / "fifo")
    with pytest.raises(records.RecordError, match="not a regular file"):
        records.read_record(str(spool / "fifo"))


def test_the_directory_must_be_roots_sticky_and_writable_by_all(spool: Path, tmp_path: Path):
    assert records.directory_problem(str(spool)) is None
    os.chmod(spool, 0o777)
    assert "mode 1777" in records.directory_problem(str(spool))
    os.chmod(spool, 0o1777)
    os.chown(spool, uid(REQUESTER), -1)
    assert "owned by bin, not root" in records.directory_problem(str(spool))
    assert "does not exist" in records.directory_problem(str(tmp_path / "none"))


def test_a_record_is_created_once_and_readable_by_every_login(spool: Path):
    path = records.write_record(str(spool), "r", {"a": 1})
    assert os.stat(path).st_mode & 0o777 == 0o644
    with pytest.raises(records.RecordError, match="exists already"):
        records.write_record(str(spool), "r", {"a": 2})
    assert records.read_record(path)[0] == {"a": 1}


def consume(spool: Path, **over: object) -> dict:
    args = {
        "state": "consume",
        "run": RUN,
        "hash": HASH,
        "approvers": [APPROVER],
        "request_fields": {"level": "flag", "flags": {"A": "false"}},
        "run_id": "20240501T120000Z-000001",
        "directory": str(spool),
        **over,
    }
    return run_module("plugins/modules/approval.py", args)


def test_the_module_uses_an_approval_once_and_checks_the_request(spool: Path):
    fields = {"level": "flag", "flags": {"A": "false"}}
    put(spool, f"{RUN}.request", request_record(fields=fields), REQUESTER)
    nobody = consume(spool)
    assert nobody.get("failed") and "has no approval" in nobody["msg"]
    put(spool, f"{RUN}.approval.x", approval_record(), APPROVER)
    assert (
        "differ from the approved request"
        in consume(spool, request_fields={"level": "flag", "flags": {"A": "true"}})["msg"]
    )
    assert "the plan changed" in consume(spool, hash="cd" * 32)["msg"]
    assert not (spool / f"{RUN}.used").exists()
    used = consume(spool)
    assert used["changed"] and not used.get("failed"), used
    assert json.loads((spool / f"{RUN}.used").read_text())["used_by"] == "20240501T120000Z-000001"
    again = consume(spool, run_id="20240501T130000Z-000002")
    assert again.get("failed") and "used already (by run 20240501T120000Z-000001)" in again["msg"]
    # a resume of the run that used it goes on
    resumed = consume(spool, run_id="20240501T130000Z-000003", resumes="20240501T120000Z-000001")
    assert not resumed.get("failed") and not resumed["changed"]


def test_the_module_refuses_a_request_or_an_approval_as_root(spool: Path):
    asked = run_module(
        "plugins/modules/approval.py",
        {"state": "request", "run": RUN, "hash": HASH, "directory": str(spool)},
    )
    assert asked.get("failed") and "as root" in asked["msg"]
    assert list(spool.iterdir()) == []


# ------------------------------------------------------------------ the plan hash (controller)
def digest(request: Request | None = None, **kwargs: object) -> str:
    return approvals.plan_hash(api.prepare("flag", GOOD, request, **kwargs))  # type: ignore[arg-type]


def test_the_plan_hash_is_stable():
    assert digest(Request(flags={"SHOP_FAST_PATH": "false"})) == digest(
        Request(flags={"SHOP_FAST_PATH": "false"})
    )


def test_every_bound_field_changes_the_hash():
    base = digest(Request(flags={"SHOP_FAST_PATH": "false"}))
    others = {
        digest(Request(flags={"SHOP_FAST_PATH": "true"})),
        digest(Request()),  # the master switch instead
        digest(Request(flags={"SHOP_FAST_PATH": "false"}, verify=False)),
        digest(Request(flags={"SHOP_FAST_PATH": "false"}, allow_new_flags=True)),
        digest(Request(flags={"SHOP_FAST_PATH": "false"}), limit="web2"),
        approvals.plan_hash(
            api.prepare("emergency", GOOD, Request(flags={"SHOP_FAST_PATH": "false"}))
        ),
    }
    assert base not in others and len(others) == 6


def test_the_hash_binds_the_hosts_addresses_and_the_app(tmp_path: Path):
    import shutil

    copy = tmp_path / "good"
    shutil.copytree(GOOD, copy)
    assert digest(Request(), limit="web1") == approvals.plan_hash(
        api.prepare("flag", str(copy), Request(), limit="web1")
    )  # the inventory's path is not bound: two controllers' checkouts differ
    hosts = copy / "hosts.yml"
    hosts.write_text(hosts.read_text().replace("127.0.0.", "127.0.1."))
    assert digest(Request(), limit="web1") != approvals.plan_hash(
        api.prepare("flag", str(copy), Request(), limit="web1")
    )


# ------------------------------------------------------------------ the schema and the CLI
@pytest.mark.parametrize(
    ("value", "why"),
    [
        (["root"], "root cannot approve"),
        (["Bob Smith"], "is not a login name"),
        (["bob", "bob"], "bob is listed twice"),
        ("bob", "list"),
    ],
)
def test_approvers_are_login_names_other_than_root(value: object, why: str):
    _value, problems = appspec.validator.validate("rollback_approvers", value)
    assert any(why in message for _path, message in problems), problems


def test_the_approval_age_is_bounded():
    assert appspec.validator.validate("rollback_approval_max_age", 24)[1] == []
    for hours in (0, 169):
        assert appspec.validator.validate("rollback_approval_max_age", hours)[1]


def test_a_policy_differing_between_hosts_is_refused(tmp_path: Path):
    import shutil

    copy = tmp_path / "good"
    shutil.copytree(GOOD, copy)
    with (copy / "host_vars" / "web2.yml").open("a") as handle:
        handle.write("rollback_approvers: [bob]\n")
    prep = api.prepare("flag", str(copy), Request())
    with pytest.raises(ConfigError, match="rollback_approvers differs between the hosts"):
        approvals.policy(prep.inventory, prep.hosts)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["apply", "--run", "../x", "-i", GOOD], "run id"),
        (["apply", "--run", RUN, "-i", GOOD, "--limit", "web1"], "leave out --limit"),
        (["apply", "--run", RUN, "-i", GOOD, "--break-glass"], "leave out --break-glass"),
        (["approve", "../x", "-i", GOOD], "run id"),
        (["request", "--level", "flag", "-i", GOOD, "--limit", "web1"], "is not production"),
        (["apply", "--level", "flag", "-i", GOOD, "--approved-by", "bob"], "unrecognized"),
    ],
)
def test_the_cli_says_what_is_wrong_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], message: str
):
    code = cli.main(["--state-dir", str(tmp_path), *argv])
    err = capsys.readouterr().err
    assert code in (2, 3) and message in err, err
    assert "Traceback" not in err
    assert len([line for line in err.splitlines() if "error" in line]) == 1
