"""The config level end to end (seed 002 strategy 2) on three lab hosts: a backup set holds
the good settings.yml; a bad config is deployed and the app caches answers made with it;
`apply --level config` keeps a copy of the bad file, restores the set's, clears the cache,
restarts and verifies; a second run changes nothing; check mode changes nothing.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest

from tests.integration.conftest import LabHosts

SETTINGS = "/etc/analyticbot/settings.yml"


@pytest.fixture
def config(lab: LabHosts) -> Iterator[LabHosts]:
    for host in lab.names:
        lab.sh(host, "lab-release reset")
    yield lab
    for host in lab.names:
        lab.sh(host, "lab-release reset")


def recommendation(lab: LabHosts, host: str, user: int) -> dict:
    url = f"http://{lab.address(host)}:10300/recommendations?user={user}"
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def apply(lab: LabHosts, *extra: str):
    argv = ["apply", "--level", "config", "--inventory", lab.inventory, "--yes", "--json"]
    return lab.cli(*argv, *extra)


def test_config_rollback_restores_the_file_clears_the_cache_restarts_and_verifies(
    config: LabHosts,
):
    made = config.cli("backup", "create", "--inventory", config.inventory, "--json")
    assert made.code == 0, made.stderr
    good = {h: config.read(h, SETTINGS) for h in config.names}
    for host in config.names:
        config.sh(host, "lab-release deploy-bad-config")
        assert config.health(host)["status"] == "degraded"
        assert recommendation(config, host, 1)["model"] == "v2-experimental"
    bad = config.read("web1", SETTINGS)

    run = apply(config)
    assert run.code == 0, run.stderr
    for host in config.names:
        assert config.read(host, SETTINGS) == good[host]
        assert config.sh(host, f"stat -c '%a %U' {SETTINGS}") == "640 root\n"
        health = config.health(host)
        assert health["status"] == "healthy"
        assert health["settings"]["recommendation_model"] == "v1"
        # the cache was cleared: the answer is computed again with the good model
        answer = recommendation(config, host, 1)
        assert answer["model"] == "v1" and not answer.get("cached")
        result = run.receipt["hosts"][host]
        (copy,) = [b for b in result["backups"] if b.startswith(f"{SETTINGS}.backup.")]
        assert config.read(host, copy) == bad  # the bad file is kept
        steps = {s["step"]: s["status"] for s in result["steps"]}
        assert any("cache" in name and status == "changed" for name, status in steps.items())

    again = apply(config)
    assert again.code == 0, again.stderr
    assert again.receipt["changed"] == 0, json.dumps(again.receipt["hosts"], indent=1)


def test_config_check_mode_shows_the_changed_lines_and_changes_nothing(config: LabHosts):
    assert config.cli("backup", "create", "--inventory", config.inventory).code == 0
    for host in config.names:
        config.sh(host, "lab-release deploy-bad-config")
    before = config.fingerprint()
    run = apply(config, "--check", "--diff")
    assert run.code == 0, run.stderr
    assert "recommendation_model: v2-experimental" in run.stderr
    assert "recommendation_model: v1" in run.stderr
    # no file, cache entry, unit, backup set or database changed on any host
    config.assert_unchanged(before)


def test_config_without_a_set_holding_the_file_fails_naming_it(config: LabHosts):
    for host in config.names:
        config.sh(host, "lab-release deploy-bad-config")
    before = config.fingerprint()
    run = apply(config)
    assert run.code == 3, run.stderr  # refused at preflight: nothing changed
    for host in config.names:
        assert "no verified backup set of analyticbot" in run.receipt["hosts"][host]["message"]
    config.assert_unchanged(before)  # the bad settings, their cache and the units stay
