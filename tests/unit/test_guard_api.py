"""Production's guard holds in the API itself, not only in the CLI that calls it first.

``api.execute`` is called directly (as another program would), with ansible-runner replaced by
a tripwire: a refused run must never reach it, and must leave no run directory, no history
entry and no host lock behind; an allowed run must reach it. The hosts are loopback addresses
that are never contacted.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import ansible_runner
import pytest
import yaml

from rollback_ops import api, history
from rollback_ops.authorization import Authorization
from rollback_ops.exceptions import Refused
from rollback_ops.lock import HostsLock
from rollback_ops.operations import Request

APP = {
    "name": "shop",
    "env_file": "/srv/shop/.env",
    "master_switch": "SHOP_NEW_CHECKOUT",
    "flags": ["SHOP_FAST_PATH"],
    "emergency": {"APP_MODE": "research"},
    "units": ["shop"],
    "health": {"url": "http://{{ ansible_host }}:8080/health", "expect": {"status": "ok"}},
    "log": {"path": "/var/log/shop.log", "error_pattern": "ERROR"},
    "code": {"path": "/opt/shop/app", "git": {"mode": "revert"}},
}


def write_inventory(path: Path, environment: str, hosts: dict[str, dict[str, str]]) -> str:
    """A one-file YAML inventory of these hosts running the shop app in this environment."""
    path.parent.mkdir(parents=True, exist_ok=True)
    inventory = {
        "all": {
            "vars": {"rollback_environment": environment, "rollback_app": APP},
            "hosts": hosts,
        }
    }
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    return str(path)


@pytest.fixture
def production(tmp_path: Path) -> str:
    return write_inventory(
        tmp_path / "prod" / "hosts.yml",
        "production",
        {"web1": {"ansible_host": "127.0.0.21"}, "web2": {"ansible_host": "127.0.0.22"}},
    )


class Reached(BaseException):
    """Raised by the tripwire: ansible-runner would have started (BaseException, so the
    runner adapter's ``except Exception`` cannot turn it into a RunnerError)."""


@pytest.fixture
def tripwire(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict]]:
    """ansible-runner's entry point, replaced: each call is recorded, then Reached raised."""
    calls: list[dict] = []

    def run(**kwargs: object) -> None:
        calls.append(kwargs)
        raise Reached

    monkeypatch.setattr(ansible_runner, "run", run)
    yield calls


def files_under(state: Path) -> list[str]:
    return sorted(str(p.relative_to(state)) for p in state.rglob("*")) if state.exists() else []


def assert_nothing_left(state: Path, addresses: dict[str, str]) -> None:
    """No run directory, no history entry, and every host's controller lock free."""
    assert not (state / "runs").exists() or not any((state / "runs").iterdir())
    assert history.read(state) == []
    assert files_under(state) == []
    with HostsLock(state, addresses) as lock:
        lock.acquire("after", "test")  # would be Refused if the refused run held one


ADDRESSES = {"web1": "127.0.0.21", "web2": "127.0.0.22"}


@pytest.mark.parametrize(
    ("level", "request_"),
    [("flag", Request()), ("emergency", Request()), ("code", Request(to="v1.0.0"))],
)
def test_an_unapproved_production_change_is_refused_by_the_api(
    production: str, tmp_path: Path, level: str, request_: Request, monkeypatch: pytest.MonkeyPatch
):
    state = tmp_path / "state"
    prep = api.prepare(level, production, request_, state_dir=state)
    assert prep.production

    def never(**_kwargs: object) -> None:
        pytest.fail("ansible-runner started for an unapproved production run")

    monkeypatch.setattr(ansible_runner, "run", never)
    with pytest.raises(Refused, match="this inventory is production"):
        api.execute(prep, state_dir=state, auth=Authorization(operator="ana"))
    assert_nothing_left(state, ADDRESSES)


APPROVAL = {"run": "20240501T101500Z-1a2b3c", "hash": "ab" * 32}
APPROVED = Authorization(
    operator="ana", approved_by="ben", approval_run=APPROVAL["run"], requester="ana"
)


def approved(prep: api.Prepared, approval: dict[str, str] = APPROVAL) -> api.Prepared:
    """prep carrying an approved request, as approvals.prepare_run makes it."""
    return dataclasses.replace(
        prep, request=dataclasses.replace(prep.request, approval=dict(approval))
    )


def sent_request(call: dict) -> dict:
    """The rollback_request the playbook would have got."""
    text = Path(call["extravars"]).read_text().replace("!unsafe", "")
    return yaml.safe_load(text)["rollback_request"]


def test_an_approved_request_reaches_the_runner_and_the_hosts_get_it_to_check(
    production: str, tmp_path: Path, tripwire: list[dict]
):
    state = tmp_path / "state"
    prep = approved(api.prepare("flag", production, state_dir=state))
    with pytest.raises(Reached):
        api.execute(prep, state_dir=state, auth=APPROVED)
    (call,) = tripwire
    assert call["limit"] == "web1,web2"
    assert "--check" not in (call["cmdline"] or "")
    request = sent_request(call)
    # what every host checks against its records before any host is changed
    assert request["approval"]["run"] == APPROVAL["run"]
    assert request["approval"]["hash"] == APPROVAL["hash"]
    assert (request["operator"], request["approved_by"]) == ("ana", "ben")


@pytest.mark.parametrize(
    "auth",
    [
        Authorization(operator="ana", approved_by="ben"),
        Authorization(operator="ana", confirmed_by_typing=True),
        Authorization(operator="ana", approved_by="ben", confirmed_by_typing=True),
        Authorization(operator="ana", approval_run=APPROVAL["run"]),  # nobody approved it
    ],
)
def test_a_name_or_a_typed_confirmation_is_refused_by_the_api(
    production: str, tmp_path: Path, tripwire: list[dict], auth: Authorization
):
    state = tmp_path / "state"
    prep = api.prepare("flag", production, state_dir=state)
    with pytest.raises(Refused):
        api.execute(prep, state_dir=state, auth=auth)
    assert tripwire == []
    assert_nothing_left(state, ADDRESSES)


def test_an_authorization_for_another_request_than_the_run_carries_is_refused(
    production: str, tmp_path: Path, tripwire: list[dict]
):
    state = tmp_path / "state"
    for prep in (
        api.prepare("flag", production, state_dir=state),  # carries no approval
        approved(api.prepare("flag", production, state_dir=state), {"run": "R2", "hash": "0"}),
    ):
        with pytest.raises(Refused, match="carries approval"):
            api.execute(prep, state_dir=state, auth=APPROVED)
    assert tripwire == []
    assert_nothing_left(state, ADDRESSES)


def test_break_glass_with_a_reason_reaches_the_runner(
    production: str, tmp_path: Path, tripwire: list[dict]
):
    state = tmp_path / "state"
    prep = api.prepare("flag", production, state_dir=state)
    auth = Authorization(operator="ana", break_glass=True, reason="P0: checkout down")
    with pytest.raises(Reached):
        api.execute(prep, state_dir=state, auth=auth)
    (call,) = tripwire
    assert sent_request(call)["break_glass"] is True
    assert sent_request(call)["approval"]["run"] == ""


@pytest.mark.parametrize("approvers", ["ana", "ben, ana"])
def test_self_approval_is_refused_by_the_api(
    production: str, tmp_path: Path, tripwire: list[dict], approvers: str
):
    state = tmp_path / "state"
    prep = approved(api.prepare("flag", production, state_dir=state))
    auth = dataclasses.replace(APPROVED, approved_by=approvers)
    with pytest.raises(Refused, match="cannot approve their own"):
        api.execute(prep, state_dir=state, auth=auth)
    assert tripwire == []
    assert_nothing_left(state, ADDRESSES)


def test_break_glass_on_the_code_level_is_refused_by_the_api(
    production: str, tmp_path: Path, tripwire: list[dict]
):
    state = tmp_path / "state"
    prep = api.prepare("code", production, Request(to="v1.0.0"), state_dir=state)
    glass = Authorization(operator="ana", break_glass=True, reason="P0: checkout down")
    with pytest.raises(Refused, match="flag, emergency, unlock levels only, not code"):
        api.execute(prep, state_dir=state, auth=glass)
    assert tripwire == []
    assert_nothing_left(state, ADDRESSES)


def test_check_mode_on_production_is_not_guarded(
    production: str, tmp_path: Path, tripwire: list[dict]
):
    state = tmp_path / "state"
    prep = api.prepare("flag", production, state_dir=state)
    with pytest.raises(Reached):
        api.execute(prep, check=True, state_dir=state, auth=Authorization(operator="ana"))
    (call,) = tripwire
    assert "--check" in call["cmdline"]


def test_a_host_held_by_another_run_is_refused_through_the_api(tmp_path: Path, tripwire):
    """The controller's host lock is keyed by address: an inventory naming 127.0.0.21 ``db``
    and one naming it by its address cannot both run while another run holds it."""
    state = tmp_path / "state"
    by_name = write_inventory(
        tmp_path / "a" / "hosts.yml", "staging", {"web1": {"ansible_host": "127.0.0.21"}}
    )
    by_address = write_inventory(tmp_path / "b" / "hosts.yml", "staging", {"127.0.0.21": {}})
    holder = HostsLock(state, {"db": "127.0.0.21"})
    holder.acquire("run-held", "carl")
    try:
        for source in (by_name, by_address):
            prep = api.prepare("flag", source, state_dir=state)
            with pytest.raises(
                Refused, match=r"\(127\.0\.0\.21\) is in use by run run-held of carl"
            ):
                api.execute(prep, state_dir=state, auth=Authorization(operator="ana"))
        assert tripwire == []
        assert history.read(state) == []
        assert not (state / "runs").exists() or not any((state / "runs").iterdir())
    finally:
        holder.release()
    prep = api.prepare("flag", by_address, state_dir=state)
    with pytest.raises(Reached):
        api.execute(prep, state_dir=state, auth=Authorization(operator="ana"))
    assert len(tripwire) == 1


def test_a_resumed_approved_run_carries_its_approval_for_the_hosts_to_check(
    production: str, tmp_path: Path, tripwire: list[dict]
):
    """`apply --resume` of an approved code run: the hosts get the same approval and the run
    it resumes (each host lets that run's approval serve its resume, nothing else)."""
    from rollback_ops import approvals

    state = tmp_path / "state"
    old = "20240501T110000Z-0a0b0c"
    receipt = {
        "run_id": old,
        "level": "code",
        "result": "failed",
        "inventory_path": production,
        "authorization": APPROVED.as_dict(),
        "request": {"to": "v1.0.0", "approval": dict(APPROVAL)},
        "hosts": {"web1": {"status": "failed"}, "web2": {"status": "changed"}},
    }
    (state / "runs" / old).mkdir(parents=True)
    (state / "runs" / old / "receipt.json").write_text(json.dumps(receipt))
    prep = api.prepare_resume(old, state_dir=state)
    auth = approvals.resumed(prep, old, state)
    assert auth is not None and auth.approval_run == APPROVAL["run"]
    with pytest.raises(Reached):
        api.execute(prep, state_dir=state, auth=auth)
    request = sent_request(tripwire[0])
    assert request["approval"]["run"] == APPROVAL["run"]
    assert request["approval"]["hash"] == APPROVAL["hash"]
    assert (request["resumes"], request["to"]) == (old, "v1.0.0")
    # without the recorded approval, the resume of a production run is refused
    receipt["request"] = {"to": "v1.0.0"}
    (state / "runs" / old / "receipt.json").write_text(json.dumps(receipt))
    bare = api.prepare_resume(old, state_dir=state)
    assert approvals.resumed(bare, old, state) is None
    with pytest.raises(Refused, match="this inventory is production"):
        api.execute(bare, state_dir=state, auth=Authorization(operator="ana"))
