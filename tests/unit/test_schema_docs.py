"""The app schema's one file (roles/app/meta/argument_specs.yml) is what the README documents,
what ``ansible-doc -t role`` shows and what a plain ``ansible-playbook`` run validates with.

The README's schema table is generated from the spec file:
``python -m tests.unit.test_schema_docs`` rewrites it; the test below fails when it is stale.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollback_ops import appspec, inventory
from tests.conftest import COLLECTIONS, ROOT

README = ROOT / "README.md"
BEGIN = "<!-- schema table: generated from roles/app/meta/argument_specs.yml -->"
END = "<!-- end of schema table -->"
BIN = Path(sys.executable).parent


def _type(opt: dict[str, Any]) -> str:
    kind = str(opt.get("type", "str"))
    if kind == "list" and "elements" in opt:
        return f"list of {opt['elements']}"
    return kind


def _default(opt: dict[str, Any]) -> str:
    if opt.get("required"):
        return "required"
    if "default" not in opt:
        return ""
    return "`" + json.dumps(opt["default"]) + "`"


def _rows(options: dict[str, Any], prefix: str) -> list[str]:
    rows = []
    for name, opt in options.items():
        key = f"{prefix}.{name}" if prefix else name
        choices = f" One of {', '.join(map(str, opt['choices']))}." if "choices" in opt else ""
        text = " ".join(str(opt.get("description", "")).split()) + choices
        text = re.sub(r"\b[CI]\((.*?)\)", r"`\1`", text)  # Ansible's markup
        rows.append(f"| `{key}` | {_type(opt)} | {_default(opt)} | {text} |")
        if "options" in opt:
            rows += _rows(opt["options"], key + ("[]" if opt.get("type") == "list" else ""))
    return rows


def schema_table() -> str:
    """The README's table of every option of the spec file, with its type and default."""
    spec = yaml.safe_load(Path(appspec.SPEC_FILE).read_text())
    options = spec["argument_specs"]["main"]["options"]
    rows = ["| key | type | default | description |", "|---|---|---|---|", *_rows(options, "")]
    return "\n".join(rows)


def readme_with_table(text: str) -> str:
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{schema_table()}\n{END}{tail}"


def test_the_readme_table_is_the_spec_file():
    text = README.read_text()
    assert text == readme_with_table(text), "run: python -m tests.unit.test_schema_docs"


def test_every_option_has_a_type_and_a_description():
    def walk(options: dict[str, Any], path: str) -> None:
        for name, opt in options.items():
            assert opt.get("description"), f"{path}{name}"
            assert opt.get("type"), f"{path}{name}"
            if "options" in opt:
                walk(opt["options"], f"{path}{name}.")

    walk(appspec.validator.load_spec(), "")


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
    }


def test_ansible_doc_documents_the_schema():
    proc = subprocess.run(
        [BIN / "ansible-doc", "-t", "role", "--json", "rollback_ops.rollback.app"],
        capture_output=True,
        text=True,
        env=_env(),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)["rollback_ops.rollback.app"]["entry_points"]["main"]
    app = doc["options"]["rollback_app"]["options"]
    assert app["health"]["options"]["retries"]["default"] == 30
    assert app["databases"]["options"]["engine"]["choices"] == ["postgresql", "sqlite", "mysql"]


def _playbook(tmp_path: Path, app: dict[str, Any], playbook: Path) -> Any:
    inv = tmp_path / "hosts.yml"
    host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    data = {"rollback_environment": "staging", "rollback_app": app}
    inv.write_text(yaml.safe_dump({"all": {"vars": data, "hosts": {"localhost": host}}}))
    return subprocess.run(
        [BIN / "ansible-playbook", "-i", str(inv), str(playbook)],
        capture_output=True,
        text=True,
        env=_env(),
        check=False,
        timeout=120,
    )


GOOD = {
    "name": "shop",
    "env_file": "/nonexistent/shop/.env",
    "emergency": {"APP_MODE": "research", "N": 3},
    "code": {"path": "/nonexistent/shop", "files": {"restore": ["a.py"]}},
    "databases": [{"name": "ev", "engine": "sqlite", "path": "/nonexistent/ev.db"}],
}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        # refused by Ansible's own validation on entry to the role, naming the key
        ({"heath": {}}, "rollback_app.heath"),
        # refused by the strict validation of the role's first task, naming the key
        ({"drain_timeout": -1}, "rollback_app.drain_timeout: must be a whole number >= 0"),
        ({"config": {"files": ["/etc/x"]}}, "rollback_app.config.files[0]: /etc/x is not in"),
    ],
)
def test_a_plain_playbook_run_fails_at_the_start_naming_the_key(
    tmp_path: Path, change: dict[str, Any], expected: str
):
    proc = _playbook(tmp_path, {**GOOD, **change}, ROOT / "playbooks" / "verify.yml")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert expected in out
    # nothing ran on the host after it (only the run's start: the request and the guard)
    assert "Check the host can take the rollback" not in out


def test_the_playbook_and_rollback_ops_see_the_same_normalized_app(tmp_path: Path):
    """The values the roles get come from the spec file's defaults, the same on the
    controller (rollback_ops.appspec) and in a plain ansible-playbook run."""
    dump = tmp_path / "app.json"
    playbook = tmp_path / "dump.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Dump the app",
                    "hosts": "all",
                    "gather_facts": False,
                    "tasks": [
                        {"ansible.builtin.import_role": {"name": "rollback_ops.rollback.app"}},
                        {
                            "ansible.builtin.copy": {
                                "content": "{{ __app_spec.app | to_json }}",
                                "dest": str(dump),
                                "mode": "0600",
                            }
                        },
                    ],
                }
            ]
        )
    )
    proc = _playbook(tmp_path, GOOD, playbook)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    controller = appspec.parse_inventory(inventory.load(str(tmp_path / "hosts.yml"), tmp_path))
    seen = json.loads(dump.read_text())
    assert seen == json.loads(json.dumps(controller["localhost"].normalized))
    assert seen["emergency"] == {"APP_MODE": "research", "N": "3"}


if __name__ == "__main__":
    README.write_text(readme_with_table(README.read_text()))
