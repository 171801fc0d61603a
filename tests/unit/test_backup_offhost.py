"""plugins/module_utils/backupset/offhost.py: what a host holds of a set, checked file by file
(a backup host's copy reads like the database host's own set, one level down); and the app
schema's backup.offhost.host, which must be a host of the inventory."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from rollback_ops import appspec, inventory
from rollback_ops.exceptions import ConfigError
from tests.conftest import load_module
from tests.unit.test_backupset import make_db, sqlite_spec

rbs = load_module("plugins/module_utils/backupset")


@pytest.fixture
def shop(tmp_path: Path) -> dict:
    """A SQLite app's database and env file, and a backup root."""
    (tmp_path / "srv").mkdir()
    make_db(tmp_path / "srv" / "app.db")
    (tmp_path / "srv" / ".env").write_text("A=1\n")
    return {
        "root": str(tmp_path / "backups"),
        "files": [str(tmp_path / "srv" / ".env")],
        "spec": sqlite_spec(tmp_path / "srv" / "app.db"),
    }


def create(shop: dict, kind: str = "predeploy") -> dict:
    return rbs.create_set(shop["root"], "shop", kind, [shop["spec"]], shop["files"])


def test_a_copy_is_verified_file_by_file_and_the_manifest_comes_last(shop: dict, tmp_path: Path):
    manifest = create(shop)
    source = rbs.describe(shop["root"], "shop")
    assert source["set_id"] == manifest["set_id"] and source["verified"], source
    assert source["files"][-1] == "manifest.json"
    assert "db/main.sqlite3" in source["files"] and len(source["files"]) == 3

    offroot = tmp_path / "offhost" / "db1"
    copy = offroot / "shop" / manifest["set_id"]
    assert rbs.describe(str(offroot), "shop", manifest["set_id"])["present"] is False
    shutil.copytree(Path(shop["root"]) / "shop" / manifest["set_id"], copy)
    there = rbs.describe(str(offroot), "shop", manifest["set_id"])
    assert there["verified"] and there["manifest_sha256"] == source["manifest_sha256"]

    with (copy / "db" / "main.sqlite3").open("ab") as f:
        f.write(b"x")
    damaged = rbs.describe(str(offroot), "shop")
    assert damaged["present"] and not damaged["verified"]
    assert "db/main.sqlite3: sha256" in damaged["problems"][0]


def test_without_an_id_the_newest_verified_set_of_the_kinds(shop: dict):
    assert rbs.describe(shop["root"], "shop")["problems"] == [
        f"no verified backup set of shop under {shop['root']}"
    ]
    first = create(shop, kind="predeploy")
    create(shop, kind="manual")
    assert rbs.describe(shop["root"], "shop", kinds=["predeploy"])["set_id"] == first["set_id"]


def test_the_backup_host_must_be_in_the_inventory(tmp_path: Path):
    app = {"name": "shop", "units": ["shop"], "backup": {"offhost": {"host": "backup9"}}}
    (tmp_path / "hosts.yml").write_text(
        yaml.safe_dump(
            {
                "all": {
                    "hosts": {"db1": None, "backup1": None},
                    "vars": {"rollback_environment": "staging", "rollback_app": app},
                }
            }
        )
    )
    with pytest.raises(ConfigError) as err:
        appspec.parse_inventory(inventory.load(str(tmp_path), tmp_path / "state"))
    assert (
        "rollback_app.backup.offhost.host: 'backup9' is not a host of the inventory (host db1)"
        in str(err.value)
    )
    app["backup"]["offhost"]["host"] = "backup1"
    (tmp_path / "hosts.yml").write_text(
        yaml.safe_dump(
            {
                "all": {
                    "hosts": {"db1": None, "backup1": None},
                    "vars": {"rollback_environment": "staging", "rollback_app": app},
                }
            }
        )
    )
    specs = appspec.parse_inventory(inventory.load(str(tmp_path), tmp_path / "state2"))
    assert specs["db1"].backup.offhost_host == "backup1"
