"""The production guard (seed 003 "Rollback Authorization"): on production a change needs an
approved request (checked again by every host) or break-glass; nothing typed approves."""

from __future__ import annotations

import pytest

from rollback_ops.authorization import Authorization, check
from rollback_ops.exceptions import Refused

APPROVED = Authorization("ana", approved_by="ben", approval_run="R1", requester="ana")


def test_production_is_refused_without_approval_and_says_how():
    with pytest.raises(Refused, match="needs an approved request") as err:
        check(Authorization("ana"), level="flag", production=True, check_mode=False)
    assert "rollback-ops request" in str(err.value)
    assert "rollback-ops approve RUN_ID" in str(err.value)
    assert "apply --run RUN_ID" in str(err.value)
    assert "--yes does not approve" in str(err.value)


@pytest.mark.parametrize(
    "auth",
    [
        Authorization("ana", approved_by="ben"),  # a name, however typed
        Authorization("ana", confirmed_by_typing=True),  # the inventory's name, typed
        Authorization("ana", approved_by="ben", confirmed_by_typing=True),
        Authorization("ana", approval_run="R1"),  # a request nobody approved
        Authorization("ana", approval_run=" ", approved_by="ben"),
    ],
)
def test_nothing_typed_on_the_controller_approves(auth: Authorization):
    with pytest.raises(Refused):
        check(auth, level="emergency", production=True, check_mode=False)


def test_an_approved_request_is_accepted_on_every_level():
    for level in ("flag", "emergency", "config", "code", "full"):
        check(APPROVED, level=level, production=True, check_mode=False)


def test_the_requester_cannot_be_among_the_approvers():
    for approvers in ("ana", "ben, ana"):
        auth = Authorization("ana", approved_by=approvers, approval_run="R1", requester="ana")
        with pytest.raises(Refused, match="ana cannot approve their own request"):
            check(auth, level="flag", production=True, check_mode=False)
    # who runs the approved request does not matter: the hosts saw two logins
    check(
        Authorization("carl", approved_by="ben", approval_run="R1", requester="ana"),
        level="code",
        production=True,
        check_mode=False,
    )


def test_break_glass_covers_flag_emergency_and_unlock_only_and_needs_a_reason():
    glass = Authorization("ana", break_glass=True, reason="P0: checkout errors at 40%")
    for level in ("flag", "emergency", "unlock"):
        check(glass, level=level, production=True, check_mode=False)
    for level in ("config", "code", "full"):
        with pytest.raises(Refused, match="flag, emergency, unlock levels only"):
            check(glass, level=level, production=True, check_mode=False)
    with pytest.raises(Refused, match="needs --reason"):
        check(
            Authorization("ana", break_glass=True), level="flag", production=True, check_mode=False
        )
    with pytest.raises(Refused, match="needs --reason"):
        check(
            Authorization("ana", break_glass=True, reason=" \t"),
            level="flag",
            production=False,
            check_mode=True,
        )


def test_staging_and_check_mode_are_self_service():
    check(Authorization("ana"), level="flag", production=False, check_mode=False)
    check(Authorization("ana"), level="code", production=True, check_mode=True)


def test_the_operator_is_named_by_the_environment_then_sudo_then_the_login(monkeypatch):
    import getpass

    from rollback_ops.authorization import current_operator

    monkeypatch.setattr(getpass, "getuser", lambda: "login-name")
    monkeypatch.delenv("ROLLBACK_OPS_OPERATOR", raising=False)
    monkeypatch.delenv("SUDO_USER", raising=False)
    assert current_operator() == "login-name"
    monkeypatch.setenv("SUDO_USER", "  sudoer ")
    assert current_operator() == "sudoer"
    monkeypatch.setenv("ROLLBACK_OPS_OPERATOR", " ana ")
    assert current_operator() == "ana"
    monkeypatch.setenv("ROLLBACK_OPS_OPERATOR", "  ")
    with pytest.raises(Refused, match=r"\$ROLLBACK_OPS_OPERATOR is blank"):
        current_operator()
    monkeypatch.delenv("ROLLBACK_OPS_OPERATOR")
    monkeypatch.setenv("SUDO_USER", "")
    with pytest.raises(Refused, match=r"\$SUDO_USER is blank"):
        current_operator()


def test_an_authorization_cannot_be_changed_after_the_guard_read_it():
    import dataclasses

    auth = Authorization("ana")
    with pytest.raises(dataclasses.FrozenInstanceError):
        auth.approval_run = "R1"  # type: ignore[misc]
