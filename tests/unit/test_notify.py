"""Notifications: the config is validated, deliveries go to real servers, failures are data."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollback_ops import notify
from rollback_ops.exceptions import ConfigError
from rollback_ops.inventory import Host, Inventory
from rollback_ops.results import HostResult, RunResult
from tests.servers import free_port, smtp_sink, webhook_sink

CONTEXT = {
    "run_id": "r1",
    "level": "flag",
    "strategy": "Feature Flag",
    "inventory": "prod",
    "environment": "production",
    "hosts": ["web1"],
    "operator": "ana",
    "approved_by": "",
    "break_glass": True,
    "reason": "P0",
    "confirmed_by_typing": False,
    "result": None,
}


def inventory_with(value: object) -> Inventory:
    host = Host("web1", {"rollback_notify": value})
    return Inventory("prod", Path("/inv"), {"web1": host})


def config(value: object) -> notify.NotifyConfig:
    return notify.config_from(inventory_with(value))


def test_config_is_validated_and_passwords_stay_out_of_inventories():
    assert not config(None).enabled
    cfg = config({"webhook": {"url_env": "HOOK"}, "email": {"host": "h", "to": "a@x"}})
    assert cfg.webhook_url_env == "HOOK" and cfg.email and cfg.email.to == ("a@x",)
    with pytest.raises(ConfigError, match="password_env"):
        config({"email": {"host": "h", "to": ["a@x"], "password": "pw"}})
    with pytest.raises(ConfigError, match="http:// or https://"):
        config({"webhook": {"url": "file:///etc/passwd"}})
    with pytest.raises(ConfigError, match=r"rollback_notify\.slack: unknown key"):
        config({"slack": {}})


def test_the_defaults_come_from_the_spec_file():
    cfg = config({"email": {"host": "h", "to": ["a@x"]}})
    assert cfg.email == notify.EmailConfig(
        host="h",
        port=25,
        starttls=False,
        sender="rollback-ops@localhost",
        to=("a@x",),
        username="",
        password_env="",
    )
    assert (cfg.webhook_url, cfg.webhook_url_env) == ("", "")


def test_every_problem_is_reported_at_once_with_the_file_and_the_key():
    value = {
        "webhook": {"url": "ftp://x", "url_env": "HOOK"},
        "email": {"to": ["a@x"], "port": "25", "password": "pw"},
    }
    host = Host("web1", {"rollback_notify": value}, {"rollback_notify": "/inv/group_vars/all.yml"})
    with pytest.raises(ConfigError) as error:
        notify.config_from(Inventory("prod", Path("/inv"), {"web1": host}))
    lines = str(error.value).splitlines()[1:]
    assert [line.strip() for line in lines] == [
        "/inv/group_vars/all.yml: rollback_notify.webhook: needs exactly one of url or url_env",
        "/inv/group_vars/all.yml: rollback_notify.email.host: is required",
        "/inv/group_vars/all.yml: rollback_notify.email.port: must be a whole number >= 0, "
        "not '25'",
        "/inv/group_vars/all.yml: rollback_notify.webhook.url: must be http:// or https://",
        "/inv/group_vars/all.yml: rollback_notify.email.password: put the password in an "
        "environment variable and name it in password_env",
    ]


def test_start_alert_reaches_a_real_webhook_and_a_real_smtp_server(tmp_path: Path):
    with webhook_sink() as (url, bodies), smtp_sink() as (port, mails):
        email = {"host": "127.0.0.1", "port": port, "to": ["oncall@example.com"]}
        notifier = notify.Notifier(config({"webhook": {"url": url}, "email": email}), tmp_path)
        notifier.send("start", CONTEXT)
    assert [d.ok for d in notifier.deliveries] == [True, True]
    (body,) = bodies
    assert body["text"].startswith("ROLLBACK IN PROGRESS: Feature Flag on prod [BREAK-GLASS]")
    assert "Operator: ana (BREAK-GLASS" in body["text"]
    (mail,) = mails
    assert mail["Subject"] == "ROLLBACK IN PROGRESS: Feature Flag on prod [BREAK-GLASS]"
    assert mail["To"] == "oncall@example.com"
    assert "Reason: P0" in mail.get_payload()


def test_a_failed_delivery_is_recorded_not_raised(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("HOOK", raising=False)
    email = {"host": "127.0.0.1", "port": free_port(), "to": ["x@y"]}
    notifier = notify.Notifier(config({"webhook": {"url_env": "HOOK"}, "email": email}), tmp_path)
    failed = HostResult("web1", status="unreachable", failed_step="preflight", message="timeout")
    result = RunResult("r1", "flag", "prod", "/inv", False, {"web1": failed}, "t", 2.0, 4, "/r")
    notifier.send("failure", {**CONTEXT, "result": result})
    webhook, email = notifier.deliveries
    assert not webhook.ok and "$HOOK is not set" in webhook.error
    assert not email.ok and "ConnectionRefused" in email.error


def test_a_team_template_overrides_the_builtin_one(tmp_path: Path):
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "alert.txt.j2").write_text("{{ event }} {{ run_id }}\nbody\n")
    with webhook_sink() as (url, bodies):
        notify.Notifier(notify.NotifyConfig(webhook_url=url), tmp_path).send("start", CONTEXT)
    assert bodies == [{"text": "start r1\nbody\n"}]


def test_failure_alert_names_the_failed_hosts(tmp_path: Path):
    failed = HostResult(
        "web2", status="failed", failed_step="appservice: Restart", message="unit failed"
    )
    result = RunResult("r1", "flag", "prod", "/inv", False, {"web2": failed}, "t", 3.25, 2, "/r")
    with webhook_sink() as (url, bodies):
        notify.Notifier(notify.NotifyConfig(webhook_url=url), tmp_path).send(
            "failure", {**CONTEXT, "result": result}
        )
    text = bodies[0]["text"]
    assert text.startswith("ROLLBACK FAILED: Feature Flag on prod")
    assert "Status: FAILED after 3.2s" in text
    assert 'Failed: web2 at "appservice: Restart" (unit failed)' in text
    assert "rollback-ops report r1" in text
