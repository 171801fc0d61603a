"""The production guard (seed 003 "Rollback Authorization")."""

from __future__ import annotations

import pytest

from rollback_ops.authorization import Authorization, check
from rollback_ops.exceptions import Refused


def test_production_is_refused_without_approval_and_says_how():
    with pytest.raises(Refused, match="--approved-by NAME") as err:
        check(Authorization("ana"), level="flag", production=True, check_mode=False)
    assert "--yes does not bypass" in str(err.value)


def test_self_approval_is_refused_whatever_the_case():
    with pytest.raises(Refused, match="cannot approve their own"):
        check(
            Authorization("ana", approved_by="Ana"), level="flag", production=True, check_mode=False
        )


def test_another_persons_approval_or_typed_confirmation_is_accepted():
    check(
        Authorization("ana", approved_by="ben"),
        level="emergency",
        production=True,
        check_mode=False,
    )
    check(
        Authorization("ana", confirmed_by_typing=True),
        level="flag",
        production=True,
        check_mode=False,
    )


def test_break_glass_covers_flag_and_emergency_only_and_needs_a_reason():
    glass = Authorization("ana", break_glass=True, reason="P0: checkout errors at 40%")
    check(glass, level="flag", production=True, check_mode=False)
    check(glass, level="emergency", production=True, check_mode=False)
    with pytest.raises(Refused, match="flag and emergency levels only"):
        check(glass, level="code", production=True, check_mode=False)
    with pytest.raises(Refused, match="needs --reason"):
        check(
            Authorization("ana", break_glass=True), level="flag", production=True, check_mode=False
        )


def test_staging_and_check_mode_are_self_service():
    check(Authorization("ana"), level="flag", production=False, check_mode=False)
    check(Authorization("ana"), level="flag", production=True, check_mode=True)


def test_an_approver_whose_name_sorts_before_or_after_the_operator_is_accepted():
    # equality, not an ordering: "zoe" > "ana" and "ana" < "ben" are both someone else
    for operator, approver in (("zoe", "ana"), ("ana", "zoe")):
        check(
            Authorization(operator, approved_by=approver),
            level="config",
            production=True,
            check_mode=False,
        )


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
        auth.approved_by = "ben"  # type: ignore[misc]
