"""What a person reads first: `--help` of every command, `levels`, `--version`.

The parser is walked (every command and every action under one, such as ``backup create``,
including commands added later): each shows at least one example under "examples:", each
example parses with the real parser, and no help text cites the documents the levels were
first written from ("seed 002"): help says what a thing means instead.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
import subprocess
import sys
from importlib import metadata

import pytest

from rollback_ops import cli, operations

INTERNAL = re.compile(r"\bseeds?\b|\[seed", re.IGNORECASE)


def parsers(
    parser: argparse.ArgumentParser, path: str = ""
) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += parsers(sub, f"{path} {name}".strip())
    return found


PARSERS = parsers(cli.build_parser())
COMMANDS = [(path, p) for path, p in PARSERS if path]


def examples(help_text: str) -> list[str]:
    _, _, tail = help_text.partition("\nexamples:\n")
    return [line.strip() for line in tail.splitlines() if line.startswith("  ")]


def command_lines(example: str) -> list[list[str]]:
    """The rollback-ops command lines in an example (after `&&`, inside `$(...)`), without
    redirections and comments."""
    inner = re.findall(r"\$\((rollback-ops [^)]*)\)", example)
    found = []
    for part in inner or example.split("&&"):
        words = shlex.split(part, comments=True)
        if ">" in words:
            words = words[: words.index(">")]
        if words and words[0] == "rollback-ops":
            found.append(words[1:])
    return found


def test_the_walk_reaches_every_command_and_action():
    paths = {path for path, _ in COMMANDS}
    assert set(cli.SUBCOMMANDS) <= paths
    assert {"backup create", "backup prune", "lab up", "lab status"} <= paths


@pytest.mark.parametrize(("path", "parser"), COMMANDS, ids=[p for p, _ in COMMANDS])
def test_every_command_shows_examples_that_parse(path: str, parser: argparse.ArgumentParser):
    shown = examples(parser.format_help())
    assert shown, f"`rollback-ops {path} --help` shows no example"
    for example in shown:
        lines = command_lines(example)
        assert lines, f"{example!r}: no rollback-ops command in it"
        for argv in lines:
            err = io.StringIO()
            try:
                with contextlib.redirect_stderr(err):
                    cli.build_parser().parse_args(argv)
            except SystemExit:
                pytest.fail(f"example {example!r} does not parse: {err.getvalue()}")
        assert any(path in " ".join(argv) for argv in lines), (
            f"{example!r} is not an example of {path}"
        )


@pytest.mark.parametrize(("path", "parser"), PARSERS, ids=[p or "rollback-ops" for p, _ in PARSERS])
def test_no_help_cites_internal_documents(path: str, parser: argparse.ArgumentParser):
    text = parser.format_help()
    assert not INTERNAL.search(text), f"`{path} --help` cites internal documents:\n{text}"


def test_levels_says_when_to_choose_each_level(capsys: pytest.CaptureFixture[str]):
    assert cli.main(["levels"]) == 0
    out = capsys.readouterr().out
    assert not INTERNAL.search(out), out
    for name, level in operations.rollback_levels().items():
        assert level.use_when, name
        assert f"{name:<10} {level.summary}\n{'':<10} when: {level.use_when}\n" in out


def test_the_operations_summaries_and_arguments_cite_no_internal_document():
    for name, op in operations.OPERATIONS.items():
        texts = [op.summary, op.use_when, *op.examples]
        texts += [str(arg.options.get("help", "")) for arg in op.arguments]
        for text in texts:
            assert not INTERNAL.search(text), (name, text)


def test_version_names_rollback_ops_ansible_core_and_ansible_runner():
    proc = subprocess.run(
        [sys.executable, "-m", "rollback_ops", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    expected = (
        f"rollback-ops {metadata.version('rollback-ops')} "
        f"(ansible-core {metadata.version('ansible-core')}, "
        f"ansible-runner {metadata.version('ansible-runner')})\n"
    )
    assert proc.stdout == expected
    assert proc.stderr == ""


def test_version_is_listed_in_the_top_level_help():
    assert "--version" in cli.build_parser().format_help()
