"""Inventory loading (Ansible's precedence, origins) and validation of rollback_app."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollback_ops import appspec, inventory
from rollback_ops.exceptions import ConfigError
from tests.conftest import FIXTURES

INV = FIXTURES / "inventories"


def test_hosts_and_vars_follow_ansible_precedence(state_dir: Path):
    inv = inventory.load(str(INV / "good"), state_dir)
    assert sorted(inv.hosts) == ["web1", "web2"]
    web1 = inv.hosts["web1"]
    # group_vars/<group> beats group_vars/all beats vars in the hosts file
    assert web1.vars["team"] == "web-group-vars"
    assert web1.origin("team").endswith("group_vars/web.yml")
    assert web1.vars["ansible_host"] == "127.0.0.1"
    assert inv.hosts["web2"].vars["rollback_environment"] == "production"
    assert inv.is_production


def test_a_valid_app_is_parsed(state_dir: Path):
    specs = appspec.parse_inventory(inventory.load(str(INV / "good"), state_dir))
    app = specs["web1"]
    assert app.name == "shop"
    assert app.declared_keys == ["SHOP_NEW_CHECKOUT", "SHOP_FAST_PATH", "APP_MODE"]
    assert app.health.expect == {"status": "ok"}
    assert app.units == ("shop",)


def test_yaml_errors_name_the_file_and_line(state_dir: Path):
    with pytest.raises(ConfigError, match=r"bad_yaml/hosts.yml:\d+:\d+: YAML parsing failed"):
        inventory.load(str(INV / "bad_yaml"), state_dir)


def test_every_problem_is_reported_with_its_file_and_key(state_dir: Path):
    with pytest.raises(ConfigError) as err:
        appspec.parse_inventory(inventory.load(str(INV / "bad_app"), state_dir))
    text = str(err.value)
    where = "bad_app/group_vars/all.yml"
    assert f"{where}: rollback_environment: 'prodution' is not one of" in text
    assert f"{where}: rollback_app.env_file: must be an absolute path" in text
    assert f"{where}: rollback_app.flags[1]: 'bad-flag' is not a valid env key" in text
    assert f"{where}: rollback_app.heath: unknown key" in text
    assert f"{where}: rollback_app.health.expect: must be a mapping" in text
    assert f"{where}: rollback_app.log.error_pattern: not a valid regular expression" in text


def test_unknown_names_and_missing_paths_are_refused(state_dir: Path):
    with pytest.raises(ConfigError, match=r"no-such-inventory'?: no such file or directory nor "):
        inventory.load("no-such-inventory", state_dir)
    with pytest.raises(ConfigError, match="no such example"):
        inventory.load("example:qa", state_dir)
    with pytest.raises(ConfigError, match="rollback-ops lab up"):
        inventory.load("lab", state_dir)
    with pytest.raises(ConfigError, match="rollback-ops demo"):
        inventory.load("local", state_dir)


def test_ini_inventories_are_read_as_ansible_reads_them(state_dir: Path):
    inv = inventory.load(str(INV / "ini" / "hosts.ini"), state_dir)
    assert sorted(inv.hosts) == ["web1"]


def test_group_with_unknown_key_is_refused(tmp_path: Path, state_dir: Path):
    # ansible-playbook would warn and run without web1; rollback-ops refuses the inventory
    bad = tmp_path / "hosts.yml"
    bad.write_text("all:\n  host:\n    web1:\n")
    with pytest.raises(ConfigError, match=r"Skipping unexpected key \(host\) in group \(all\)"):
        inventory.load(str(bad), state_dir)


def test_every_file_ansible_reads_counts_for_the_guard(tmp_path: Path, state_dir: Path):
    """A JSON group_vars file (which rollback-ops' own reader skipped) makes the inventory
    production; so does a templated value, resolved as Ansible resolves it."""
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "hosts.yml").write_text(
        "all:\n  vars:\n    rollback_environment: staging\n  hosts:\n    web1:\n    web2:\n"
    )
    assert not inventory.load(str(tmp_path), state_dir).is_production
    (tmp_path / "group_vars" / "all.json").write_text('{"rollback_environment": "production"}')
    inv = inventory.load(str(tmp_path), state_dir)
    assert inv.is_production
    assert inv.hosts["web1"].origin("rollback_environment").endswith("group_vars/all.json")
    (tmp_path / "group_vars" / "all.json").unlink()
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "host_vars" / "web2").mkdir()
    (tmp_path / "host_vars" / "web2" / "env.yaml").write_text(
        "tier: prod\n"
        "rollback_environment: \"{{ 'production' if tier == 'prod' else 'staging' }}\"\n"
    )
    inv = inventory.load(str(tmp_path), state_dir)
    assert inv.hosts["web2"].vars["rollback_environment"] == "production"
    assert inv.hosts["web1"].vars["rollback_environment"] == "staging"


def test_limit_takes_ansible_patterns(state_dir: Path):
    inv = inventory.load(str(INV / "good"), state_dir)
    assert inv.select("web:!web2") == ["web1"]
    assert inv.select("web*") == ["web1", "web2"]
    assert inv.select(None) == ["web1", "web2"]
    with pytest.raises(ConfigError, match="matches no host"):
        inv.select("db")


def test_vault_values_load_as_opaque_strings(tmp_path: Path, state_dir: Path):
    f = tmp_path / "hosts.yml"
    f.write_text(
        "all:\n  hosts:\n    w:\n      pw: !vault |\n"
        "        $ANSIBLE_VAULT;1.1;AES256\n        3132\n"
    )
    assert inventory.load(str(f), state_dir).hosts["w"].vars["pw"].startswith("<vault>")


def test_shipped_inventories_are_valid(state_dir: Path):
    for name in ("example:staging", "example:production", "example:prod"):
        inv = inventory.load(name, state_dir)
        specs = appspec.parse_inventory(inv)
        assert specs, name
    assert inventory.load("example:prod", state_dir).is_production
    assert not inventory.load("example:staging", state_dir).is_production


def test_a_path_given_to_i_wins_over_a_bundled_example(
    tmp_path: Path, state_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    """`-i prod` in a team's directory holding ./prod is that inventory, never the example
    shipped with rollback-ops (which lists prod-api-*.example.internal)."""
    (tmp_path / "prod").mkdir()
    (tmp_path / "prod" / "hosts.yml").write_text(
        "all:\n  vars: {rollback_environment: production}\n  hosts:\n    team-web1:\n"
    )
    monkeypatch.chdir(tmp_path)
    assert sorted(inventory.load("prod", state_dir).hosts) == ["team-web1"]
    # a name resolves inside the team's project before the examples
    (tmp_path / "prod").rename(tmp_path / "elsewhere")
    (tmp_path / "inventories").mkdir()
    (tmp_path / "elsewhere").rename(tmp_path / "inventories" / "production")
    assert sorted(inventory.load("prod", state_dir).hosts) == ["team-web1"]
    # never silently the example: a name the project lacks is an error naming where it looked
    with pytest.raises(ConfigError, match=r"staging'?: no such file or directory nor inventories/"):
        inventory.load("staging", state_dir)
    assert inventory.load("example:staging", state_dir).hosts  # the example, asked by name
    # more project directories through $ROLLBACK_OPS_INVENTORIES
    (tmp_path / "more" / "qa").mkdir(parents=True)
    (tmp_path / "more" / "qa" / "hosts.yml").write_text("all:\n  hosts:\n    qa-web1:\n")
    monkeypatch.setenv("ROLLBACK_OPS_INVENTORIES", str(tmp_path / "more"))
    assert sorted(inventory.load("qa", state_dir).hosts) == ["qa-web1"]


def test_several_sources_merge_as_ansible_merges_them(tmp_path: Path, state_dir: Path):
    """-i a -i b: the hosts of both, a later source's group vars winning, as in Ansible."""
    (tmp_path / "a.yml").write_text("all:\n  hosts:\n    web1:\n  vars: {x: 1}\n")
    (tmp_path / "b.ini").write_text("[web]\nweb2\n\n[all:vars]\nx=2\n")
    inv = inventory.load([str(tmp_path / "a.yml"), str(tmp_path / "b.ini")], state_dir)
    assert sorted(inv.hosts) == ["web1", "web2"]
    assert inv.sources == (tmp_path / "a.yml", tmp_path / "b.ini")
    assert inv.name == f"{tmp_path / 'a.yml'},{tmp_path / 'b.ini'}"


def test_an_inventory_plugin_config_and_constructed_groups(tmp_path: Path, state_dir: Path):
    """A `plugin:` config file (read by the `auto` plugin) and the `constructed` plugin over a
    YAML source: the groups it builds are usable in --limit, and the guard sees production
    set through `compose`, exactly as ansible-playbook would."""
    (tmp_path / "hosts.yml").write_text(
        "all:\n  hosts:\n    web1: {tier: front}\n    web2: {tier: front}\n    db1: {tier: data}\n"
    )
    (tmp_path / "zz.constructed.yml").write_text(
        "plugin: ansible.builtin.constructed\nstrict: true\n"
        "keyed_groups:\n  - key: tier\n    prefix: tier\n"
        "compose:\n  rollback_environment: \"'production' if tier == 'data' else 'staging'\"\n"
    )
    inv = inventory.load(
        [str(tmp_path / "hosts.yml"), str(tmp_path / "zz.constructed.yml")], state_dir
    )
    assert inv.select("tier_front") == ["web1", "web2"]
    assert inv.select("all:!tier_front") == ["db1"]
    assert inv.hosts["db1"].vars["rollback_environment"] == "production"
    assert inv.environments == {"production", "staging"}
