"""`rollback-ops completion bash|zsh|fish`: scripts generated from the parser, run by the
real shells. bash completes simulated command lines (COMP_WORDS, as readline fills them);
fish completes with its own ``complete -C``; zsh runs the function with its completion
builtins replaced by ones that print what they were given (a zsh without a terminal has no
completion widget to call). Every command path of the parser is walked, so a command added
later is covered by the same tests.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import pytest

from rollback_ops import cli, completion, operations
from tests.unit.test_display_tty import ensure_tool

ROOT_NODE = completion.tree(cli.build_parser())
PATHS = [node.path for node in ROOT_NODE.walk()]
LEVELS = sorted(operations.rollback_levels())


@functools.cache
def printed(shell: str) -> str:
    """The script as the command prints it (a real process: what a user's shell sources)."""
    argv = [sys.executable, "-m", "rollback_ops", "completion", shell]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def script(shell: str, tmp_path: Path) -> Path:
    path = tmp_path / f"completion.{shell}"
    path.write_text(printed(shell))
    return path


def shell(argv: list[str], cwd: Path) -> str:
    """What a shell printed; it must end well and say nothing on stderr."""
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, check=False)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    return proc.stdout


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A team's project directory: its ./inventories/NAME complete after -i."""
    (tmp_path / "project" / "inventories" / "eu-west").mkdir(parents=True)
    return tmp_path / "project"


class Bash:
    """The bash script sourced by a real bash; ``complete`` simulates a command line whose
    last word is being completed."""

    def __init__(self, tmp_path: Path, cwd: Path) -> None:
        self.script = script("bash", tmp_path)
        self.cwd = cwd

    def run(self, body: str) -> str:
        return shell(
            ["bash", "--norc", "--noprofile", "-c", f"source {self.script}\n{body}"], self.cwd
        )

    def complete(self, *words: str) -> list[str]:
        quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
        return self.run(
            f"COMP_WORDS=(rollback-ops {quoted}); COMP_CWORD={len(words)}; "
            f'COMP_LINE="${{COMP_WORDS[*]}}"; _rollback_ops; printf "%s\\n" "${{COMPREPLY[@]}}"'
        ).split()


@pytest.fixture
def bash(tmp_path: Path, project: Path) -> Bash:
    return Bash(tmp_path, project)


def test_bash_registers_the_function_for_the_command(bash: Bash):
    assert bash.run("complete -p rollback-ops").strip() == "complete -F _rollback_ops rollback-ops"


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (("ap",), ["apply", "approve"]),
        (("apply", "--lev"), ["--level"]),
        (("apply", "--level", ""), LEVELS),
        (("plan", "-L", "c"), ["code", "config"]),
        (("backup", "cr"), ["create"]),
        (("backup", "create", "--ki"), ["--kind"]),
        (("backup", "create", "--kind", ""), ["manual", "predeploy"]),
        (("lab", "status", "--j"), ["--json"]),
        (("completion", ""), ["bash", "fish", "zsh"]),
        (("--state-dir", "/tmp", "hist"), ["history"]),
        # an option's value is not taken for a command: "apply" here is a --reason
        (("apply", "--reason", "apply", "--le"), ["--level"]),
        (("apply", "--reason", ""), []),  # free text: nothing to offer
    ],
)
def test_bash_completes(bash: Bash, words: tuple[str, ...], expected: list[str]):
    assert sorted(bash.complete(*words)) == expected


def test_bash_completes_inventory_names_and_paths_after_i(bash: Bash):
    offered = bash.complete("apply", "-i", "")
    assert {"lab", "local", "eu-west", "inventories"} <= set(offered)  # names, then paths
    assert bash.complete("verify", "--inventory", "eu") == ["eu-west"]


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p or "rollback-ops")
def test_bash_offers_what_the_parser_accepts_at_every_command_path(bash: Bash, path: str):
    node = next(n for n in ROOT_NODE.walk() if n.path == path)
    words = path.split() if path else []
    options = {s for o in node.options for s in o.strings}
    assert set(bash.complete(*words, "-")) == options
    if node.words():
        assert set(bash.complete(*words, "")) == set(node.words())


def test_the_parser_tree_knows_values_and_hides_nothing_visible():
    apply = next(n for n in ROOT_NODE.walk() if n.path == "apply")
    level = next(o for o in apply.options if "--level" in o.strings)
    assert (level.value, level.choices) == ("choices", list(operations.rollback_levels()))
    inventory = next(o for o in apply.options if "-i" in o.strings)
    assert inventory.value == "inventory"
    yes = next(o for o in apply.options if "--yes" in o.strings)
    assert yes.value == ""
    report = ROOT_NODE.subcommands["report"]
    assert next(o for o in report.options if "--templates" in o.strings).value == "file"
    assert "--first-address" not in {
        s for n in ROOT_NODE.walk() for o in n.options for s in o.strings
    }


def test_fish_completes_with_its_own_complete(tmp_path: Path, project: Path):
    fish = ensure_tool("fish", "fish")
    path = script("fish", tmp_path)
    assert subprocess.run([fish, "-n", str(path)], capture_output=True, check=False).returncode == 0

    def complete(line: str) -> list[str]:
        out = shell([fish, "--no-config", "-c", f"source {path}; complete -C {line!r}"], project)
        return [entry.split("\t")[0] for entry in out.splitlines()]

    assert sorted(complete("rollback-ops ap")) == ["apply", "approve"]
    assert complete("rollback-ops apply --lev") == ["--level"]
    assert sorted(complete("rollback-ops apply --level ")) == LEVELS
    assert set(complete("rollback-ops backup ")) == set(ROOT_NODE.subcommands["backup"].subcommands)
    assert complete("rollback-ops lab status --j") == ["--json"]
    assert {"eu-west", "example:staging", "lab"} <= set(complete("rollback-ops apply -i "))
    # the top level's commands are not offered again after one
    assert "plan" not in complete("rollback-ops apply ")


ZSH_STUBS = """
compdef() { :; }
_describe() { local name=${@[-1]}; print -rl -- ${(P)name} | cut -d: -f1; }
compadd() { shift; print -rl -- "$@"; }
_files() { print -r -- '<files>'; }
_message() { print -r -- '<text>'; }
sim() { words=(rollback-ops "$@"); CURRENT=${#words}; _rollback_ops; }
"""


def test_zsh_parses_and_completes(tmp_path: Path, project: Path):
    zsh = ensure_tool("zsh", "zsh")
    path = script("zsh", tmp_path)
    assert subprocess.run([zsh, "-n", str(path)], capture_output=True, check=False).returncode == 0
    assert path.read_text().startswith("#compdef rollback-ops\n")

    def complete(*words: str) -> list[str]:
        quoted = " ".join("'" + w + "'" for w in words)
        return shell(
            [zsh, "-f", "-c", f"{ZSH_STUBS}\nsource {path}\nsim {quoted}"], project
        ).split()

    # zsh's matcher filters by what was typed: the function offers all that fits there
    assert "apply" in complete("ap") and "--level" not in complete("ap")
    assert "--level" in complete("apply", "--lev")
    assert complete("apply", "--level", "") == list(operations.rollback_levels())
    assert set(complete("backup", "")) == set(ROOT_NODE.subcommands["backup"].subcommands)
    assert complete("apply", "-i", "")[-1] == "<files>"
    assert {"eu-west", "example:production"} <= set(complete("apply", "-i", ""))
    assert complete("report", "--templates", "") == ["<files>"]
    assert complete("apply", "--reason", "") == ["<text>"]
