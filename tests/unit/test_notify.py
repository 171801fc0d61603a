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


def test_config_is_validated_and_passwords_stay_out_of_inventories():
    assert not notify.config_from(inventory_with(None)).enabled
    cfg = notify.config_from(
        inventory_with({"webhook": {"url_env": "HOOK"}, "email": {"host": "h", "to": "a@x"}})
    )
    assert cfg.webhook_url_env == "HOOK" and cfg.email and cfg.email.to == ("a@x",)
    with pytest.raises(ConfigError, match="password_env"):
        notify.config_from(
            inventory_with({"email": {"host": "h", "to": ["a@x"], "password": "pw"}})
        )
    with pytest.raises(ConfigError, match="http:// or https://"):
        notify.config_from(inventory_with({"webhook": {"url": "file:///etc/passwd"}}))
    with pytest.raises(ConfigError, match="webhook and/or email"):
        notify.config_from(inventory_with({"slack": {}}))


def test_start_alert_reaches_a_real_webhook_and_a_real_smtp_server(tmp_path: Path):
    with webhook_sink() as (url, bodies), smtp_sink() as (port, mails):
        config = notify.NotifyConfig(
            webhook_url=url,
            email=notify.EmailConfig(host="127.0.0.1", port=port, to=("oncall@example.com",)),
        )
        notifier = notify.Notifier(config, tmp_path)
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
    config = notify.NotifyConfig(
        webhook_url_env="HOOK",
        email=notify.EmailConfig(host="127.0.0.1", port=free_port(), to=("x@y",)),
    )
    notifier = notify.Notifier(config, tmp_path)
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
