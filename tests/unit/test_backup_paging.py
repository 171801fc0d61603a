"""Backups that page someone, in the fast tier: durations as typed, the run dirs' retention
on a real state dir, the env file's backup copies kept N per file through the envfile
module, the scheduled units rendered from the role's templates, and the host's failure
notifier posting to a real webhook on loopback without secrets."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import jinja2
import jsonschema
import pytest

from rollback_ops import cli, durations, history, jsonout, retention
from rollback_ops.exceptions import ConfigError
from tests.conftest import ROOT, run_module
from tests.servers import smtp_sink, webhook_sink

# ----------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1), ("90m", 5400), ("26h", 93600), ("2d", 172800), ("1w", 604800), (" 3H ", 10800)],
)
def test_a_duration_is_a_number_and_a_unit(text: str, seconds: int):
    assert durations.parse(text) == seconds


@pytest.mark.parametrize("text", ["", "26", "h", "1.5h", "-1h", "0s", "26 h", "1y", "1h30m"])
def test_a_bad_duration_is_one_line_naming_it(text: str):
    with pytest.raises(ValueError) as caught:
        durations.parse(text)
    assert "\n" not in str(caught.value)
    with pytest.raises(argparse.ArgumentTypeError):
        durations.duration(text)


def test_verify_max_age_takes_a_duration_and_sends_seconds(capsys: pytest.CaptureFixture[str]):
    from rollback_ops import operations

    args = cli.build_parser().parse_args(["backup", "verify", "-i", "x", "--max-age", "26h"])
    assert operations.get("backup-verify").request(args).max_age_seconds == 93600
    assert cli.main(["backup", "verify", "-i", "x", "--max-age", "26x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("rollback-ops backup verify: error: argument --max-age: '26x'")


def test_prune_is_guarded_and_takes_check_mode():
    from rollback_ops import operations

    prune = operations.get("backup-prune")
    assert prune.guarded
    args = cli.build_parser().parse_args(
        ["backup", "prune", "-i", "x", "--keep", "2", "--check", "--break-glass", "--reason", "r"]
    )
    assert (args.check, args.reason, args.break_glass) == (True, "r", True)
    # the other backup commands take no guard options and never run in check mode
    args = cli.build_parser().parse_args(["backup", "create", "-i", "x"])
    assert args.check is False and not hasattr(args, "break_glass")


# ----------------------------------------------------------------------------- runs/ retention

DAY = 86400.0
NOW = time.mktime((2026, 6, 1, 12, 0, 0, 0, 0, -1)) - time.timezone


def run_id(days_ago: float, suffix: str) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(NOW - days_ago * DAY)) + "-" + suffix


def make_run(state: Path, rid: str, hosts: list[str], **receipt: object) -> Path:
    run_dir = state / "runs" / rid
    (run_dir / "artifacts").mkdir(parents=True)
    (run_dir / "artifacts" / "stdout").write_text("x")
    body = {"run_id": rid, "level": "flag", "result": "ok", "hosts": {h: {} for h in hosts}}
    (run_dir / "receipt.json").write_text(json.dumps({**body, **receipt}))
    history.append(state, {"event": "started", "run_id": rid, "level": "flag"})
    history.append(state, {"event": "finished", "run_id": rid, "result": "ok"})
    return run_dir


def test_runs_retention_keeps_the_newest_the_young_and_what_a_run_still_needs(tmp_path: Path):
    state = tmp_path / "state"
    old = [make_run(state, run_id(200 - i, f"a{i:05d}"), ["web1", "web2"]) for i in range(5)]
    # old, but each must stay for its own reason
    locks = make_run(state, run_id(150, "locks0"), ["web1"], locks_left=["web1"])
    crashed = state / "runs" / run_id(140, "crash0")
    crashed.mkdir(parents=True)  # no receipt: killed mid-run
    history.append(state, {"event": "started", "run_id": crashed.name, "level": "code"})
    only_web3 = make_run(state, run_id(130, "web3aa"), ["web3"])  # web3's newest run
    young = [make_run(state, run_id(10 - i, f"y{i:05d}"), ["web1", "web2"]) for i in range(3)]
    # not run dirs: never touched
    (state / "runs" / "notes.txt").write_text("mine")
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "keep-me").write_text("x")
    (state / "runs" / run_id(300, "link00")).symlink_to(target, target_is_directory=True)
    before = sorted(p.name for p in (state / "runs").iterdir())

    check = retention.prune_runs(state, keep=2, max_age_seconds=int(30 * DAY), check=True, now=NOW)
    assert sorted(p.name for p in (state / "runs").iterdir()) == before  # check removes nothing
    assert check.removed == [d.name for d in reversed(old)]  # newest first

    done = retention.prune_runs(state, keep=2, max_age_seconds=int(30 * DAY), now=NOW)
    assert done.removed == check.removed
    assert not any(d.exists() for d in old)
    assert all(d.is_dir() for d in (locks, crashed, only_web3, *young))
    assert done.kept[locks.name].startswith("left host locks")
    assert done.kept[crashed.name].startswith("unfinished")
    assert done.kept[only_web3.name].startswith("the newest run on one of its hosts")
    assert done.kept[young[0].name] == "younger than the maximum age"
    assert done.kept[young[2].name] == "one of the newest 2"
    assert (state / "runs" / "notes.txt").read_text() == "mine"
    assert (target / "keep-me").exists() and (state / "runs" / run_id(300, "link00")).is_symlink()
    jsonschema.validate(
        jsonout.document("runs-prune", done.as_dict()), jsonout.schema("runs-prune")
    )


def test_runs_retention_settings_come_from_the_environment():
    assert retention.settings({}) == (100, 90 * 86400)
    assert retention.settings({"ROLLBACK_OPS_KEEP_RUNS": "0"})[0] == 0
    assert retention.settings({"ROLLBACK_OPS_KEEP_RUNS_FOR": "2d"})[1] == 172800
    with pytest.raises(ConfigError, match="ROLLBACK_OPS_KEEP_RUNS="):
        retention.settings({"ROLLBACK_OPS_KEEP_RUNS": "many"})
    with pytest.raises(ConfigError, match="ROLLBACK_OPS_KEEP_RUNS_FOR"):
        retention.settings({"ROLLBACK_OPS_KEEP_RUNS_FOR": "90"})


def test_runs_prune_command_json_matches_its_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    state = tmp_path / "state"
    gone = make_run(state, "20200101T000000Z-aaaaaa", ["web1"])
    make_run(state, "20200102T000000Z-bbbbbb", ["web1"])
    argv = ["--state-dir", str(state), "runs", "prune", "--keep", "1", "--max-age", "1d"]
    assert cli.main([*argv, "--check", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    jsonschema.validate(out, jsonout.schema("runs-prune"))
    assert out["removed"] == [gone.name] and gone.exists()
    assert cli.main(argv) == 0
    assert f"removed {gone.name}" in capsys.readouterr().out
    assert not gone.exists()


# ----------------------------------------------------------------------------- env copies

MODULE = "plugins/modules/envfile.py"


def copies(env: Path) -> list[str]:
    return sorted(p.name for p in env.parent.iterdir() if p.name.startswith(env.name + ".backup."))


def test_the_envfile_module_keeps_the_newest_copies_of_the_file(tmp_path: Path):
    env = tmp_path / ".env"
    env.write_text("FLAG=a\nDB_PASSWORD=Rbo-Env-Secret-3141\n")
    old = []
    for i in range(4):  # copies an earlier release made, oldest first
        copy = tmp_path / f".env.backup.2020010{i + 1}T000000Z"
        copy.write_text(f"FLAG=old{i}\n")
        os.utime(copy, (1_600_000_000 + i, 1_600_000_000 + i))
        old.append(copy.name)
    other = tmp_path / ".env.other.backup.20200101T000000Z"  # another file's copy
    other.write_text("x")
    link = tmp_path / ".env.backup.20190101T000000Z"  # a symlink named like a copy
    link.symlink_to(other)

    check = run_module(MODULE, {"path": str(env), "values": {"FLAG": "b"}, "keep_backups": 3}, True)
    assert check["changed"] and check["removed_backups"] == [
        str(tmp_path / old[1]),
        str(tmp_path / old[0]),
    ]
    assert copies(env) == sorted([link.name, *old])  # check mode removes nothing

    done = run_module(MODULE, {"path": str(env), "values": {"FLAG": "b"}, "keep_backups": 3})
    assert done["changed"] and done["removed_backups"] == check["removed_backups"]
    made = Path(done["backup_file"]).name
    assert copies(env) == sorted([link.name, old[2], old[3], made])
    assert other.exists() and link.is_symlink()

    # keep_backups 1: only the copy this change made stays; 0 keeps everything
    one = run_module(MODULE, {"path": str(env), "values": {"FLAG": "c"}, "keep_backups": 1})
    assert copies(env) == sorted([link.name, Path(one["backup_file"]).name])
    assert Path(one["backup_file"]).read_text().startswith("FLAG=b")
    run_module(MODULE, {"path": str(env), "values": {"FLAG": "d"}, "keep_backups": 0})
    assert len(copies(env)) == 3


def test_a_protected_copy_stays_and_no_change_removes_nothing(tmp_path: Path):
    env = tmp_path / "app.env"
    env.write_text("FLAG=a\n")
    names = []
    for i in range(3):
        copy = tmp_path / f"app.env.backup.2020010{i + 1}T000000Z"
        copy.write_text("FLAG=x\n")
        names.append(copy.name)
    same = run_module(MODULE, {"path": str(env), "values": {"FLAG": "a"}, "keep_backups": 1})
    assert not same["changed"] and same["removed_backups"] == []
    protect = [str(tmp_path / names[0])]
    done = run_module(
        MODULE,
        {"path": str(env), "values": {"FLAG": "b"}, "keep_backups": 1, "protect_backups": protect},
    )
    assert sorted(done["removed_backups"]) == sorted(str(tmp_path / n) for n in names[1:])
    assert copies(env) == sorted([names[0], Path(done["backup_file"]).name])


# ----------------------------------------------------------------------------- units


def render(name: str, **variables: object) -> str:
    source = (ROOT / "roles/backup/templates" / name).read_text()
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.from_string(source).render(**variables)


def test_the_units_run_low_priority_with_a_delay_and_notify_on_failure():
    service = render(
        "rollback-ops-backup.service.j2", backup_app="shop", backup_keep=None
    ).splitlines()
    for line in (
        "OnFailure=rollback-ops-backup-failed@%n.service",
        "Nice=19",
        "CPUSchedulingPolicy=batch",
        "IOSchedulingClass=idle",
        "EnvironmentFile=/etc/rollback-ops/backup-shop.env",
    ):
        assert line in service
    assert not any(line.startswith("ExecStartPost=") for line in service)
    assert any(
        line.startswith("ExecStartPost=") and "prune" in line
        for line in render(
            "rollback-ops-backup.service.j2", backup_app="shop", backup_keep=3
        ).splitlines()
    )
    timer = render(
        "rollback-ops-backup.timer.j2",
        backup_app="shop",
        backup_schedule_at="*-*-* 02:00:00",
        backup_schedule_randomized_delay="15min",
    ).splitlines()
    assert {"OnCalendar=*-*-* 02:00:00", "RandomizedDelaySec=15min", "Persistent=true"} <= set(
        timer
    )
    failed = render("rollback-ops-backup-failed@.service.j2")
    assert "ExecStart=/usr/bin/python3 -I -S /usr/local/lib/rollback-ops/backup_failed.py %i" in (
        failed
    )
    assert "http" not in failed + "\n".join(service)  # no URL in a unit file


def notifier() -> ModuleType:
    path = ROOT / "roles/backup/files/backup_failed.py"
    spec = importlib.util.spec_from_file_location("backup_failed", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_notifier_posts_to_a_webhook_and_redacts_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    nf = notifier()
    monkeypatch.setattr(nf, "ETC", tmp_path)  # its config directory, here a temp dir
    unit = "rollback-ops-backup-shop.service"
    assert nf.main(["x", unit]) == 1  # no config: says so, sends nothing
    assert "no notification configured for shop" in capsys.readouterr().out
    (tmp_path / "backup-shop.env").write_text("SHOP_DB_PW=Rbo-Notify-Pw-2718\n")
    with webhook_sink() as (url, bodies):
        hook = f"{url}/Rbo-Hook-Token-1618"
        (tmp_path / "backup-shop.notify.json").write_text(
            json.dumps({"webhook_url": hook, "app": "shop", "host": "web7"})
        )
        assert nf.main(["x", unit]) == 0, capsys.readouterr().out
    (body,) = bodies
    assert (body["host"], body["app"], body["unit"]) == ("web7", "shop", unit)
    assert body["text"].startswith("SCHEDULED BACKUP FAILED: shop on web7")
    out = capsys.readouterr().out
    assert "Rbo-Hook-Token-1618" not in out + json.dumps(body)
    secrets = [hook, "Rbo-Notify-Pw-2718"]
    line = nf.redact(f"psql: password Rbo-Notify-Pw-2718 refused by {hook}" + "x" * 400, secrets)
    assert "Rbo-Notify" not in line and "Rbo-Hook" not in line and len(line) == nf.WIDTH
    assert nf.main(["x", "other.service"]) == 2  # not a backup unit: nothing read or sent


def test_the_notifier_runs_with_the_standard_library_only(tmp_path: Path):
    """As systemd runs it: python3 -I -S (no site-packages, no environment)."""
    script = ROOT / "roles/backup/files/backup_failed.py"
    proc = subprocess.run(
        [sys.executable, "-I", "-S", str(script), "bad name"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and proc.stdout.startswith("usage: backup_failed.py")


def test_every_run_prunes_old_run_dirs_as_it_ends(tmp_path: Path):
    """A real run (the demo sandbox, local connection) with $ROLLBACK_OPS_KEEP_RUNS=1: the
    old finished run goes, the old unfinished one and the run itself stay."""
    state = tmp_path / "state"
    gone = make_run(state, "20200101T000000Z-aaaaaa", [])
    crashed = state / "runs" / "20200102T000000Z-bbbbbb"
    crashed.mkdir(parents=True)
    env = {**os.environ, "ROLLBACK_OPS_KEEP_RUNS": "1", "ROLLBACK_OPS_KEEP_RUNS_FOR": "1d"}
    proc = subprocess.run(
        [sys.executable, "-m", "rollback_ops", "--state-dir", str(state), "demo", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    run_dir = Path(json.loads(proc.stdout)["run_dir"])
    assert not gone.exists()
    assert crashed.is_dir() and (run_dir / "receipt.json").is_file()


def test_the_notifier_sends_email_over_smtp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    nf = notifier()
    monkeypatch.setattr(nf, "ETC", tmp_path)
    with smtp_sink() as (port, mails):
        config = {"app": "shop", "host": "web7", "email": {"host": "127.0.0.1", "port": port}}
        config["email"]["to"] = "oncall@example.com"  # one address written as a string
        (tmp_path / "backup-shop.notify.json").write_text(json.dumps(config))
        assert nf.main(["x", "rollback-ops-backup-shop.service"]) == 0
    (mail,) = mails
    assert mail["Subject"] == "SCHEDULED BACKUP FAILED: shop on web7"
    assert mail["To"] == "oncall@example.com"
    assert "Unit: rollback-ops-backup-shop.service" in mail.get_payload()
