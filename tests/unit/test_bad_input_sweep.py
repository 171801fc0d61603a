"""A sweep of bad inputs through the CLI (defect 11): each ends with an exit code, a one-line
error and nothing changed; none with a traceback, an internal error or a hang.

Every case runs ``rollback_ops.cli.main`` in process against a sandbox in ``tmp_path``: an
app whose env file is on this machine, reached through Ansible's local connection, and a
state dir of its own. Most are refused before Ansible runs (fast); the env-file and
templating cases run the real playbook (about 3 s each). A YAML alias bomb runs in a child
process with a time and memory limit, so that a regression cannot take the suite down.

Cases that fail today because of work in progress elsewhere are ``xfail(strict=True)`` with
the owner in the reason; they must pass (and lose the mark) when that work lands.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollback_ops import cli, history
from tests.requirements import need

LOADER = "lead: inventory via ansible-core"

ENV_TEXT = b"# sweep app\nENABLE_A=true\nENABLE_B=true\nMASTER=on\nAPP_MODE=normal\n"
ERROR_LINE = re.compile(r"^rollback-ops(?: [\w-]+)*: (?:internal )?error: ")
BAD, REFUSED, STATE = frozenset({2}), frozenset({3}), frozenset({4})
HOST_FAILED = frozenset({1, 3})  # failed on the host (1) or in preflight (3)
RUN_S = 30.0  # a case that runs the playbook; the others must end within 10 s


# ---------------------------------------------------------------------------------------
# the sandbox


def app_vars(tmp: Path) -> dict[str, Any]:
    """A complete description of the sandbox app (flag, emergency and code levels)."""
    return {
        "name": "sweep",
        "env_file": str(tmp / "app" / ".env"),
        "master_switch": "MASTER",
        "flags": ["ENABLE_A", "ENABLE_B"],
        "emergency": {"APP_MODE": "research"},
        "units": [],
        "health": {},
        "log": {"path": str(tmp / "log" / "app.log"), "error_pattern": "ERROR"},
        "code": {"path": str(tmp / "code"), "git": {"mode": "revert", "release_tags": "v*"}},
    }


def inventory_data(tmp: Path, environment: Any = "staging") -> dict[str, Any]:
    return {
        "all": {
            "vars": {"rollback_environment": environment, "rollback_app": app_vars(tmp)},
            "hosts": {
                "localhost": {
                    "ansible_connection": "local",
                    "ansible_python_interpreter": sys.executable,
                }
            },
        }
    }


# an inventory change: mutate the data in place (return None), or return the file's content
Mutation = Callable[[dict[str, Any], Path], "str | bytes | None"]


@dataclass
class Case:
    id: str
    argv: list[str]
    codes: frozenset[int] = BAD
    expect: str = ""  # a substring of stderr
    inventory: Mutation | None = None
    env: dict[str, str] = field(default_factory=dict)
    setup: Callable[[Path], None] | None = None  # after the sandbox is built
    state: str = ""  # "", "file", "ro", "full", "immutable"
    unchanged: bool = True
    check: Callable[[Path, str, str], None] | None = None  # extra assertions (tmp, out, err)
    xfail: str = ""
    subprocess: bool = False
    limit_s: float = 10.0


def build(tmp: Path, case: Case) -> None:
    (tmp / "app").mkdir()
    (tmp / "log").mkdir()
    (tmp / "code").mkdir()
    (tmp / "inv").mkdir()
    (tmp / "app" / ".env").write_bytes(ENV_TEXT)
    (tmp / "log" / "app.log").write_text("started\n")
    data = inventory_data(tmp)
    content = case.inventory(data, tmp) if case.inventory else None
    if content is None:
        content = yaml.safe_dump(data, sort_keys=False)
    hosts = tmp / "inv" / "hosts.yml"
    if isinstance(content, bytes):
        hosts.write_bytes(content)
    else:
        hosts.write_text(content)
    if case.setup:
        case.setup(tmp)


def snapshot(tmp: Path) -> dict[str, Any]:
    """Every path under the sandbox but the state dir: its kind and its bytes."""
    seen: dict[str, Any] = {}
    for path in sorted(tmp.rglob("*")):
        rel = path.relative_to(tmp)
        if rel.parts[0] == "state":
            continue
        if path.is_symlink():
            seen[str(rel)] = ("link", os.readlink(path))
        elif path.is_file():
            seen[str(rel)] = ("file", path.read_bytes(), path.stat().st_mode)
        else:
            seen[str(rel)] = ("dir", path.stat().st_mode)
    return seen


def expand(argv: list[str], tmp: Path) -> list[str]:
    places = {
        "<INV>": str(tmp / "inv" / "hosts.yml"),
        "<INVDIR>": str(tmp / "inv"),
        "<TMP>": str(tmp),
        "<STATE>": str(tmp / "state"),
    }
    out = []
    for arg in argv:
        for token, value in places.items():
            arg = arg.replace(token, value)
        out.append(arg)
    return out


@pytest.fixture
def state_dir_kind(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[None]:
    """Make tmp_path/state a file, a read-only or full file system, or immutable."""
    case: Case = request.node.callspec.params["case"]
    state = tmp_path / "state"
    if case.state == "file":
        state.write_text("not a directory\n")
    elif case.state in ("ro", "full"):
        state.mkdir()
        options = "size=64k,ro" if case.state == "ro" else "size=64k"
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(state)])
        need(mounted.returncode == 0, "cannot mount a tmpfs here (needs root)")
        request.addfinalizer(lambda: _run_quietly("umount", "-l", str(state)))
        if case.state == "full":
            fd = os.open(state / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                while os.write(fd, bytes(4096)):
                    pass
            except OSError:  # ENOSPC: full
                pass
            finally:
                os.close(fd)
    elif case.state == "immutable":
        state.mkdir()
        immutable = (
            shutil.which("chattr") and not subprocess.run(["chattr", "+i", str(state)]).returncode
        )
        need(bool(immutable), "chattr +i is not available here")
        request.addfinalizer(lambda: _run_quietly("chattr", "-i", str(state)))
    yield


def _run_quietly(*argv: str) -> None:
    subprocess.run(argv, check=False, capture_output=True)


# ---------------------------------------------------------------------------------------
# the cases

PLAN = ["plan", "-L", "flag", "-i", "<INV>"]
APPLY = ["apply", "-L", "flag", "-i", "<INV>", "--yes"]
CHECK = ["apply", "-L", "flag", "-i", "<INV>", "--check"]


def on_dir(argv: list[str]) -> list[str]:
    """The same command on the case's inventory directory instead of the base inventory
    (a repeated -i would merge both sources, as in Ansible)."""
    return ["<INVDIR>" if part == "<INV>" else part for part in argv]


FAST_FLAG = ["-f", "ENABLE_A=false"]
CASES: list[Case] = []


def add(*cases: Case) -> None:
    CASES.extend(cases)


# 1. CLI values ---------------------------------------------------------------------------

BAD_FLAGS: dict[str, list[str]] = {
    "empty-key": ["=x"],
    "blank-before-key": [" ENABLE_A=x"],
    "blank-after-key": ["ENABLE_A =x"],
    "newline-in-key": ["ENABLE_A\n=x"],
    "newline-in-value": ["ENABLE_A=a\nb"],
    "vt-in-value": ["ENABLE_A=a\x0bb"],
    "ff-in-value": ["ENABLE_A=a\x0cb"],
    "cr-in-value": ["ENABLE_A=a\rb"],
    "nul-value": ["ENABLE_A=\x00"],
    "escape-in-value": ["ENABLE_A=a\x1b[2Jb"],
    "nel-in-value": ["ENABLE_A=a\x85b"],
    "u2028-in-value": ["ENABLE_A=a\u2028b"],
    "latin-key": ["ÉNABLE_A=x"],
    "cyrillic-key": ["ENABLE_\u0410=x"],
    "fullwidth-key": ["\uff21=x"],
    "no-equals": ["NOEQUALS"],
    "empty": [""],
    "only-equals": ["="],
    "digit-first-key": ["1ABC=x"],
    "dash-key": ["A-B=x"],
    "export-prefix": ["export ENABLE_A=x"],
    "10k-key": ["K" * 10_000 + "=x"],
    "10k-value-undeclared": ["UNDECLARED=" + "v" * 10_000],
    "undeclared": ["NOT_DECLARED=1"],
    "duplicate-different": ["ENABLE_A=true", "ENABLE_A=false"],
}
for name, values in BAD_FLAGS.items():
    flags = [a for v in values for a in ("--flag", v)]
    for command, argv in (("plan", PLAN), ("apply", APPLY), ("check", CHECK)):
        add(Case(f"flag-{name}-{command}", [*argv, *flags]))
for command, argv in (("plan", PLAN), ("apply", APPLY)):
    emergency = [*argv[:2], "emergency", *argv[3:]]
    add(Case(f"flag-on-emergency-{command}", [*emergency, *FAST_FLAG], expect="--flag"))

BAD_LEVELS = {
    "empty": "",
    "upper": "FLAG",
    "trailing-blank": "flag ",
    "unknown": "nope",
    "10k": "x" * 10_000,
    "newline": "flag\n",
    "nul": "\x00",
    "path": "../flag",
    "shell": "code;rm -rf /",
}
for name, level in BAD_LEVELS.items():
    add(Case(f"level-{name}-plan", ["plan", "-L", level, "-i", "<INV>"]))
    add(Case(f"level-{name}-apply", ["apply", "-L", level, "-i", "<INV>", "--yes"]))

BAD_LIMITS = {
    "no-such-host": "nohost",
    "empty": "",
    "blank": " ",
    "excluded": "!localhost",
    "no-match": "*nomatch*",
    "10k": "h" * 10_000,
    "newline": "local\nhost",
    "nul": "local\x00host",
    "bracket": "[",
    "all-but-all": "all:!all",
    "intersection-none": "localhost:&nomatch",
    "regex-bad": "~(",
}
for name, limit in BAD_LIMITS.items():
    add(Case(f"limit-{name}-plan", [*PLAN, "--limit", limit]))
    add(Case(f"limit-{name}-apply", [*APPLY, *FAST_FLAG, "--limit", limit]))

WRONG_LEVEL_OPTIONS = {
    "to": ["--to", "v1"],
    "backup-stamp": ["--backup-stamp", "20250101T000000Z"],
    "force": ["--force"],
    "backup-id": ["--backup-id", "20250101T000000Z-predeploy"],
}
for level in ("flag", "emergency"):
    for name, option in WRONG_LEVEL_OPTIONS.items():
        for command in ("plan", "apply"):
            argv = [command, "-L", level, "-i", "<INV>", *option]
            add(Case(f"{name}-on-{level}-{command}", argv + ["--yes"] * (command == "apply")))
add(
    Case("backup-id-on-code-plan", ["plan", "-L", "code", "-i", "<INV>", "--backup-id", "x"]),
    Case("flag-on-code-plan", ["plan", "-L", "code", "-i", "<INV>", *FAST_FLAG]),
)

BAD_RUN_IDS = {
    "300-chars": "r" * 300,
    "path-up": "../../etc/passwd",
    "slash": "a/b",
    "dot": ".hidden",
    "dotdot": "..",
    "nul": "run\x00id",
    "newline": "R1\n",
    "glob": "*",
    "tilde": "~root",
    "shell": "$(touch MARKER)",
    "blank-inside": "a b",
    "well-formed-unknown": "20250101T000000Z-abcdef",
    "escape": "\x1b[2J",
    "10k": "2" * 10_000,
}
for name, run_id in BAD_RUN_IDS.items():
    add(Case(f"resume-{name}", ["apply", "--resume", run_id, "--yes"]))
    add(Case(f"report-{name}", ["report", run_id], expect="no receipt for run"))
    add(Case(f"undo-{name}", ["undo", run_id, "--yes"], expect="no receipt for run"))
add(Case("resume-with-level", ["apply", "--resume", "x", "-L", "flag"], expect="--resume"))
add(Case("resume-empty", ["apply", "--resume", "", "--yes"]))


def receipt_setup(content: bytes | str, run_id: str = "20250101T000000Z-abcdef") -> Any:
    def setup(tmp: Path) -> None:
        run_dir = tmp / "state" / "runs" / run_id
        run_dir.mkdir(parents=True)
        target = run_dir / "receipt.json"
        if content == "<DIR>":
            target.mkdir()
        elif isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)

    return setup


def receipt_json(**over: Any) -> str:
    data = {
        "run_id": "20250101T000000Z-abcdef",
        "level": "flag",
        "result": "ok",
        "started": "2025-01-01T00:00:00Z",
        "duration": 1.0,
        "hosts": {},
        **over,
    }
    return json.dumps({k: v for k, v in data.items() if v != "<DROP>"})


BAD_RECEIPTS: dict[str, bytes | str] = {
    "empty-object": "{}",
    "list": "[]",
    "not-json": "not json at all",
    "empty-file": "",
    "not-utf8": b"\xff\xfe{\x00",
    "deep": "[" * 100_000,
    "a-directory": "<DIR>",
    "run-id-int": receipt_json(run_id=5),
    "hosts-list": receipt_json(hosts=[]),
    "host-string": receipt_json(hosts={"h": "ok"}),
    "steps-not-list": receipt_json(hosts={"h": {"steps": "x"}}),
    "step-without-keys": receipt_json(hosts={"h": {"steps": [{}]}}),
    "flag-changed-string": receipt_json(
        hosts={"h": {"flags": [{"key": "A", "before": "1", "after": "2", "changed": "yes"}]}}
    ),
    "duration-string": receipt_json(duration="long"),
    "authorization-list": receipt_json(authorization=[]),
    "backups-strings": receipt_json(backups=["x"]),
    "no-level": receipt_json(level="<DROP>"),
}
for name, content in BAD_RECEIPTS.items():
    add(
        Case(
            f"report-receipt-{name}",
            ["report", "20250101T000000Z-abcdef"],
            setup=receipt_setup(content),
            expect="receipt",
        )
    )
    for command, argv in (("undo", ["undo"]), ("resume", ["apply", "--resume"])):
        add(
            Case(
                f"{command}-receipt-{name}",
                [*argv, "20250101T000000Z-abcdef", "--yes"],
                setup=receipt_setup(content),
                expect="receipt",
            )
        )
# receipts whose inner values undo reads are odd: refused in one line, naming the run
ODD_UNDO_RECEIPTS = {
    "code-snapshot-string": receipt_json(level="code", hosts={"h": {"code": {"snapshot": "x"}}}),
    "code-head-not-sha": receipt_json(
        level="code", hosts={"h\x1b[2J": {"code": {"snapshot": {"kind": "git-ref", "head": "-x"}}}}
    ),
    "full-data-list": receipt_json(level="full", hosts={"h": {"data": [], "code": {"current": 1}}}),
    "redo-env-remove-string": receipt_json(
        request={"undo": {"h": {"env_remove": "ABC"}}, "flags": 1},
        hosts={"h": {"flags": [{"key": "A", "before": "1", "after": "2", "changed": True}]}},
    ),
    "flag-key-odd": receipt_json(
        hosts={"h": {"flags": [{"key": "A B", "before": "1", "after": "2", "changed": True}]}}
    ),
    "flag-before-newline": receipt_json(
        hosts={"h": {"flags": [{"key": "A", "before": "1\n2", "after": "2", "changed": True}]}}
    ),
}
for name, content in ODD_UNDO_RECEIPTS.items():
    add(
        Case(
            f"undo-odd-{name}",
            ["undo", "20250101T000000Z-abcdef", "--yes"],
            setup=receipt_setup(content),
            expect="20250101T000000Z-abcdef",
        )
    )
add(
    Case(
        "report-receipt-odd-values-render",
        ["report", "20250101T000000Z-abcdef"],
        codes=frozenset({0}),
        setup=receipt_setup(
            receipt_json(duration=1e308, started="yesterday", authorization={"reason": "\x1b[2J"})
        ),
        check=lambda tmp, out, err: _no_escape(out),
    )
)


def _no_escape(out: str) -> None:
    assert "\x1b" not in out and "Rollback Log" in out


BAD_LAST = ["-1", "0", "-99999999999999999999", "x", "1.5", "", "nan", "9" * 5000]
for value in BAD_LAST:
    add(Case(f"history-last-{value[:12] or 'empty'}", ["history", "--last", value]))
add(
    Case("history-last-huge", ["history", "--last", "9" * 30], codes=frozenset({0})),
    Case("backup-prune-no-option", ["backup", "prune", "-i", "<INV>"], expect="--keep"),
    Case("backup-prune-negative", ["backup", "prune", "-i", "<INV>", "--keep", "-1"]),
)
for name in ("300-chars", "path-up", "nul"):
    run_id = BAD_RUN_IDS[name]
    add(
        Case(
            f"unlock-run-{name}",
            ["unlock", "-i", "<INV>", "--run", run_id, "--yes"],
        )
    )

for option in ("--error-rate", "--p95-ms", "--for-minutes", "--users-affected", "--memory-mb"):
    for value in ("nan", "inf", "-1"):
        add(Case(f"recommend{option}-{value}", ["recommend", option, value]))
add(Case("recommend-not-a-number", ["recommend", "--error-rate", "lots"]))


# 2. inventory shapes and types -------------------------------------------------------------


def app_set(key: str, value: Any) -> Mutation:
    def mutate(data: dict[str, Any], tmp: Path) -> None:
        data["all"]["vars"]["rollback_app"][key] = value

    return mutate


def app_drop(key: str) -> Mutation:
    def mutate(data: dict[str, Any], tmp: Path) -> None:
        del data["all"]["vars"]["rollback_app"][key]

    return mutate


def vars_set(key: str, value: Any) -> Mutation:
    def mutate(data: dict[str, Any], tmp: Path) -> None:
        data["all"]["vars"][key] = value

    return mutate


def raw(content: str | bytes) -> Mutation:
    return lambda data, tmp: content


def no_app(data: dict[str, Any], tmp: Path) -> None:
    del data["all"]["vars"]["rollback_app"]


def no_hosts(data: dict[str, Any], tmp: Path) -> None:
    del data["all"]["hosts"]


def group_vars(name: str, content: str) -> Mutation:
    def mutate(data: dict[str, Any], tmp: Path) -> None:
        (tmp / "inv" / "group_vars").mkdir(exist_ok=True)
        (tmp / "inv" / "group_vars" / name).write_text(content)

    return mutate


def alias_bomb(data: dict[str, Any], tmp: Path) -> str:
    """``flags`` as 9 levels of 9 aliases: 387 million strings once expanded."""
    app = {k: v for k, v in data["all"]["vars"]["rollback_app"].items() if k != "flags"}
    lines = ["bombs:", '  l0: &l0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    body = yaml.safe_dump(
        {"all": {**data["all"], "vars": {"rollback_environment": "staging", "rollback_app": app}}},
        sort_keys=False,
    )
    body = body.replace("    rollback_app:\n", "    rollback_app:\n      flags: *l8\n", 1)
    return "\n".join(lines) + "\n" + body


INVENTORIES: dict[str, tuple[Mutation, str]] = {
    "app-missing": (no_app, ""),
    "app-list": (vars_set("rollback_app", ["x"]), ""),
    "app-string": (vars_set("rollback_app", "sweep"), ""),
    "app-int": (vars_set("rollback_app", 3), ""),
    "app-null": (vars_set("rollback_app", None), ""),
    "env-file-missing": (app_drop("env_file"), ""),
    "env-file-int": (app_set("env_file", 3), ""),
    "env-file-list": (app_set("env_file", ["/a"]), ""),
    "env-file-null": (app_set("env_file", None), ""),
    "env-file-relative": (app_set("env_file", "app/.env"), ""),
    "flags-string": (app_set("flags", "ENABLE_A"), ""),
    "flags-mapping": (app_set("flags", {"ENABLE_A": True}), ""),
    "flags-int-item": (app_set("flags", [1]), ""),
    "flags-null-item": (app_set("flags", [None]), ""),
    "flags-bad-key": (app_set("flags", ["A B"]), ""),
    "master-switch-off-null": (app_set("master_switch_off", None), ""),
    "master-switch-off-list": (app_set("master_switch_off", ["false"]), ""),
    "master-switch-off-mapping": (app_set("master_switch_off", {"a": "b"}), ""),
    "emergency-value-null": (app_set("emergency", {"APP_MODE": None}), ""),
    "emergency-value-list": (app_set("emergency", {"APP_MODE": ["r"]}), ""),
    "emergency-value-mapping": (app_set("emergency", {"APP_MODE": {"a": "b"}}), ""),
    "emergency-list": (app_set("emergency", ["APP_MODE"]), ""),
    "health-string": (app_set("health", "http://x"), ""),
    "health-list": (app_set("health", []), ""),
    "units-string": (app_set("units", "api"), ""),
    "units-int-item": (app_set("units", [1]), ""),
    "unknown-app-key": (app_set("heath", {}), ""),
    "empty-file": (raw(""), ""),
    "non-utf8": (raw(b"all:\n  vars:\n    rollback_app: \xff\xfe\n"), ""),
    "invalid-yaml": (raw("all: {vars: [\n"), ""),
    "tabs-yaml": (raw("all:\n\tvars: {}\n"), ""),
    "no-hosts": (no_hosts, ""),
    "json-group-vars-broken": (group_vars("all.json", '{"rollback_app": '), ""),
    "json-group-vars-app-list": (group_vars("all.json", '{"rollback_app": []}'), ""),
}
for name, (mutation, xfail) in INVENTORIES.items():
    add(Case(f"inventory-{name}-plan", on_dir(PLAN), inventory=mutation, xfail=xfail))
    add(
        Case(
            f"inventory-{name}-apply",
            [*on_dir(APPLY), *FAST_FLAG],
            inventory=mutation,
            xfail=xfail,
        )
    )
for name, value in {
    "null": None,
    "list": ["production"],
    "mapping": {"name": "production"},
    "int": 1,
    "upper": "PRODUCTION",
    "padded": " production ",
    "template": "{{ 'produc' ~ 'tion' }}",
    "empty": "",
}.items():
    # not recognisably staging: refused as bad input (2) or guarded as production (3)
    add(
        Case(
            f"environment-{name}-apply",
            [*APPLY, *FAST_FLAG],
            codes=frozenset({2, 3}),
            inventory=vars_set("rollback_environment", value),
        )
    )
add(Case("inventory-missing", ["plan", "-L", "flag", "-i", "<TMP>/nope.yml"]))
add(Case("inventory-empty-dir", ["plan", "-L", "flag", "-i", "<TMP>/code"]))
for command in ("plan", "apply"):
    argv = PLAN if command == "plan" else [*APPLY, *FAST_FLAG]
    add(
        Case(
            f"inventory-alias-bomb-{command}",
            argv,
            inventory=alias_bomb,
            subprocess=True,
        )
    )


# 3. env file contents (these run the playbook) ------------------------------------------


def env_setup(content: bytes | None = None, how: str = "") -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        env = tmp / "app" / ".env"
        if content is not None:
            env.write_bytes(content)
        if how == "symlink":
            target = tmp / "app" / "real.env"
            env.rename(target)
            env.symlink_to(target)
        elif how == "hardlink":
            os.link(env, tmp / "app" / "other-name.env")
        elif how == "directory":
            env.unlink()
            env.mkdir()
        elif how == "missing":
            env.unlink()

    return setup


def env_applied(before: bytes, after: bytes, file: str = ".env") -> Callable[..., None]:
    def check(tmp: Path, out: str, err: str) -> None:
        assert (tmp / "app" / file).read_bytes() == after
        assert before != after

    return check


def env_refusal(name: str, setup: Callable[[Path], None]) -> Case:
    return Case(
        f"envfile-{name}",
        [*APPLY, *FAST_FLAG],
        codes=HOST_FAILED,
        setup=setup,
        limit_s=RUN_S,
    )


def env_success(name: str, before: bytes, after: bytes, how: str = "") -> Case:
    return Case(
        f"envfile-{name}",
        [*APPLY, *FAST_FLAG],
        codes=frozenset({0}),
        setup=env_setup(before, how),
        unchanged=False,
        check=env_applied(before, after, "real.env" if how == "symlink" else ".env"),
        limit_s=RUN_S,
    )


add(
    env_refusal("hard-link", env_setup(how="hardlink")),
    env_refusal(
        "key-inside-multiline-value",
        env_setup(b'NOTE="first line\nENABLE_A=true\nlast line"\nENABLE_B=true\n'),
    ),
    env_refusal("a-directory", env_setup(how="directory")),
    env_refusal("missing", env_setup(how="missing")),
    env_success("symlink", ENV_TEXT, ENV_TEXT.replace(b"A=true", b"A=false"), how="symlink"),
    env_success("bom", b"\xef\xbb\xbfENABLE_A=true\nB=1\n", b"\xef\xbb\xbfENABLE_A=false\nB=1\n"),
    env_success(
        "vt-ff-in-values",
        b"NOTE=a\x0bENABLE_A=true\x0cz\nENABLE_A=true\n",
        b"NOTE=a\x0bENABLE_A=true\x0cz\nENABLE_A=false\n",
    ),
    env_success("crlf", b"ENABLE_A=true\r\nB=1\r\n", b"ENABLE_A=false\r\nB=1\r\n"),
    env_success("no-final-newline", b"B=1\nENABLE_A=true", b"B=1\nENABLE_A=false"),
)


# 4. state dir states -------------------------------------------------------------------------

STATE_COMMANDS: dict[str, list[str]] = {
    "apply": [*APPLY, *FAST_FLAG],
    "check": [*CHECK, *FAST_FLAG],
    "unlock": ["unlock", "-i", "<INV>", "--yes"],
    "verify": ["verify", "-i", "<INV>"],
    "demo": ["demo"],
    "backup-list": ["backup", "list", "-i", "<INV>"],
}
for kind in ("file", "ro", "full", "immutable"):
    for name, argv in STATE_COMMANDS.items():
        add(Case(f"state-{kind}-{name}", argv, codes=STATE, expect="state dir", state=kind))
for name, argv in {"history": ["history"], "report": ["report", "20250101T000000Z-abcdef"]}.items():
    add(Case(f"state-file-{name}", argv, codes=STATE, expect="state dir", state="file"))
add(
    Case(
        "state-history-is-a-directory",
        ["history"],
        codes=STATE,
        expect="history.jsonl is a directory",
        setup=lambda tmp: (tmp / "state" / "history.jsonl").mkdir(parents=True),
    ),
    Case(
        "state-history-is-a-directory-apply",
        [*APPLY, *FAST_FLAG],
        codes=STATE,
        expect="history.jsonl is a directory",
        setup=lambda tmp: (tmp / "state" / "history.jsonl").mkdir(parents=True),
    ),
    Case(
        "state-nul-in-path",
        ["--state-dir", "bad\x00dir", *CHECK, *FAST_FLAG],
        codes=STATE,
        expect="state dir",
    ),
)


# 5. guard attempts: all exit 3 and change nothing ---------------------------------------


def production(data: dict[str, Any], tmp: Path) -> None:
    data["all"]["vars"]["rollback_environment"] = "production"


def production_in_group_vars(data: dict[str, Any], tmp: Path) -> None:
    del data["all"]["vars"]["rollback_environment"]
    (tmp / "inv" / "group_vars").mkdir()
    (tmp / "inv" / "group_vars" / "all.json").write_text('{"rollback_environment": "production"}')


GUARD: dict[str, tuple[list[str], dict[str, str], Mutation]] = {
    "yes-without-approval": ([], {}, production),
    "break-glass-no-reason": (["--break-glass"], {}, production),
    "break-glass-blank-reason": (["--break-glass", "--reason", " \t"], {}, production),
    "operator-blank": (
        ["--break-glass", "--reason", "P0"],
        {"ROLLBACK_OPS_OPERATOR": " "},
        production,
    ),
    "operator-empty": (
        ["--break-glass", "--reason", "P0"],
        {"ROLLBACK_OPS_OPERATOR": ""},
        production,
    ),
    "operator-blank-staging": ([], {"ROLLBACK_OPS_OPERATOR": "\t"}, vars_set("x", 1)),
    "production-in-group-vars-json": ([], {}, production_in_group_vars),
}
for name, (extra, env, mutation) in GUARD.items():
    add(
        Case(
            f"guard-{name}",
            [*on_dir(APPLY), *FAST_FLAG, *extra],
            codes=REFUSED,
            env=env,
            inventory=mutation,
        )
    )
add(
    Case(
        "guard-break-glass-on-code",
        ["apply", "-L", "code", "-i", "<INV>", "--break-glass", "--reason", "fire", "--yes"],
        codes=REFUSED,
        inventory=production,
        expect="--break-glass",
    ),
    Case(  # a name typed approves nothing: there is no --approved-by (approvals: host records)
        "guard-approved-by-is-no-option",
        [*on_dir(APPLY), *FAST_FLAG, "--approved-by", "bob"],
        codes=BAD,
        inventory=production,
        expect="--approved-by",
    ),
    Case(
        "guard-unlock-production-yes",
        ["unlock", "-i", "<INV>", "--yes"],
        codes=REFUSED,
        inventory=production,
    ),
)


# 6. templating: never rendered, written byte for byte -------------------------------------

PAYLOADS = {
    "arith": "{{ 7*7 }}",
    "lookup": "{{ lookup('pipe', 'touch <TMP>/MARKER') }}",
}


def no_marker(tmp: Path, out: str, err: str) -> None:
    assert not (tmp / "MARKER").exists()
    assert not list(tmp.rglob("MARKER"))
    assert not Path("MARKER").exists()


def written_verbatim(payload: str) -> Callable[[Path, str, str], None]:
    def check(tmp: Path, out: str, err: str) -> None:
        no_marker(tmp, out, err)
        value = payload.replace("<TMP>", str(tmp))
        env = (tmp / "app" / ".env").read_bytes()
        assert any(f"NEW_FLAG={q}{value}{q}\n".encode() in env for q in ("", "'", '"')), env
        (row,) = history.read(tmp / "state")  # who and why, recorded as given
        assert (row.operator, row.reason) == (value, value)

    return check


def planned_verbatim(payload: str) -> Callable[[Path, str, str], None]:
    def check(tmp: Path, out: str, err: str) -> None:
        no_marker(tmp, out, err)
        assert f"ENABLE_A={payload.replace('<TMP>', str(tmp))}" in out

    return check


for name, payload in PAYLOADS.items():
    add(
        Case(
            f"template-{name}-applied",
            [
                *APPLY,
                "--allow-new-flag",
                "--flag",
                f"NEW_FLAG={payload}",
                "--reason",
                payload,
            ],
            codes=frozenset({0}),
            env={"ROLLBACK_OPS_OPERATOR": payload},
            unchanged=False,
            check=written_verbatim(payload),
            limit_s=RUN_S,
        )
    )
    for field_name, extra, env in (
        ("flag", ["--flag", f"ENABLE_A={payload}"], {}),
        ("reason", ["--reason", payload, *FAST_FLAG], {}),
        ("operator", [*FAST_FLAG], {"ROLLBACK_OPS_OPERATOR": payload}),
    ):
        # against production without approval: refused, nothing rendered on the way
        add(
            Case(
                f"template-{name}-{field_name}-production",
                [*APPLY, *extra],
                codes=REFUSED,
                env=env,
                inventory=production,
                check=no_marker,
            )
        )
    add(
        Case(
            f"template-{name}-plan",
            [*PLAN, "--flag", f"ENABLE_A={payload}"],
            codes=frozenset({0}),
            check=planned_verbatim(payload),
        )
    )


# ---------------------------------------------------------------------------------------
# the test


def _params() -> list[Any]:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    return [
        pytest.param(
            c, id=c.id, marks=[pytest.mark.xfail(strict=True, reason=c.xfail)] if c.xfail else []
        )
        for c in CASES
    ]


def test_the_sweep_has_at_least_300_cases() -> None:
    assert len(CASES) >= 300
    assert sum(c.limit_s == RUN_S for c in CASES) <= 25  # the ones that run the playbook


@pytest.mark.parametrize("case", _params())
def test_bad_input(
    case: Case,
    state_dir_kind: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    build(tmp_path, case)
    before = snapshot(tmp_path)
    argv = expand(case.argv, tmp_path)
    if "--state-dir" not in argv:
        argv = ["--state-dir", str(tmp_path / "state"), *argv]
    monkeypatch.delenv("ROLLBACK_OPS_STATE_DIR", raising=False)
    monkeypatch.delenv("ROLLBACK_OPS_TEMPLATES", raising=False)
    monkeypatch.setenv("ROLLBACK_OPS_OPERATOR", "ana")
    for key, value in case.env.items():
        monkeypatch.setenv(key, expand([value], tmp_path)[0])
    monkeypatch.chdir(tmp_path)
    if case.subprocess:  # a hang fails at limit_s (the child is killed)
        code, out, err = _child(argv, case.env, tmp_path, case.limit_s)
    else:
        monkeypatch.setattr("sys.stdin.isatty", lambda: False)
        code = cli.main(argv)
        out, err = capsys.readouterr()

    assert "Traceback" not in err and "Traceback" not in out, err[-3000:]
    assert "internal error" not in err, err[-3000:]
    assert code in case.codes, (code, err[-3000:])
    errors = [line for line in err.splitlines() if ERROR_LINE.match(line)]
    if code in (2, 3, 4) and "RECAP run" not in err:  # refused before any host: one error
        assert len(errors) == 1, err[-3000:]
        assert len(errors[0]) <= 1200 and len(err) <= 64_000, err[:3000]
    if case.expect:
        assert case.expect in err, err[-3000:]
    if case.unchanged:
        assert snapshot(tmp_path) == before
    if case.check:
        case.check(tmp_path, out, err)


def _child(argv: list[str], env: dict[str, str], tmp: Path, limit_s: float) -> tuple[int, str, str]:
    """Run the CLI in a child process with at most ``limit_s`` seconds and 2 GiB."""

    def limits() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    child_env = {**os.environ, "ROLLBACK_OPS_OPERATOR": "ana", **env}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "rollback_ops", *argv],
            capture_output=True,
            text=True,
            timeout=limit_s,
            env=child_env,
            cwd=tmp,
            stdin=subprocess.DEVNULL,
            preexec_fn=limits,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {limit_s} s (not failing fast)")
    return proc.returncode, proc.stdout, proc.stderr
