"""Shell completion for bash, zsh and fish, generated from the command-line parser.

:func:`tree` walks an ``argparse`` parser into :class:`Node` s (a command path such as
``""``, ``apply`` or ``backup create``, with its subcommands, options and the values those
take); :func:`script` writes one shell's completion function from it. Nothing is written by
hand per command, so a new command or option completes as soon as it is in the parser.

What completes: subcommands at every depth, the options of the command typed so far, an
option's choices (``--level``'s levels), inventory names after ``-i``/``--inventory`` (the
team's ``./inventories`` and ``$ROLLBACK_OPS_INVENTORIES`` directories, ``lab``, ``local``,
and in zsh and fish the shipped ``example:`` inventories, whose colon bash would split
on) as well as paths, and paths after options that take a file or directory.

Written here rather than taken from ``shtab`` or ``argcomplete``: shtab covers bash and zsh
only, argcomplete runs Python at every Tab press; these scripts are plain shell code.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path

SHELLS = ("bash", "zsh", "fish")
PROG = "rollback-ops"


@dataclass
class Option:
    """One option: its spellings, help, and what its value is (``""``: it takes none)."""

    strings: list[str]
    help: str
    value: str = ""  # "", "text", "choices", "inventory", "file"
    choices: list[str] = field(default_factory=list)


@dataclass
class Node:
    """A command path and what may follow it."""

    path: str
    help: str = ""
    subcommands: dict[str, Node] = field(default_factory=dict)
    options: list[Option] = field(default_factory=list)
    choices: list[str] = field(default_factory=list)  # a positional's choices

    def walk(self) -> list[Node]:
        return [self, *(n for sub in self.subcommands.values() for n in sub.walk())]

    def words(self) -> list[str]:
        return [*self.subcommands, *self.choices]


def _value(action: argparse.Action) -> tuple[str, list[str]]:
    if action.nargs == 0:
        return "", []
    if action.choices:
        return "choices", [str(c) for c in action.choices]
    if action.dest == "inventory":
        return "inventory", []
    if action.type is Path or action.metavar in ("FILE", "DIR", "PATH"):
        return "file", []
    return "text", []


def tree(parser: argparse.ArgumentParser, path: str = "", help: str = "") -> Node:
    """The parser as a tree of command paths (hidden options left out)."""
    node = Node(path, help)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                node.subcommands[name] = tree(
                    sub, f"{path} {name}".strip(), str(helps.get(name, ""))
                )
        elif action.help == argparse.SUPPRESS:
            continue
        elif action.option_strings:
            value, choices = _value(action)
            node.options.append(
                Option(list(action.option_strings), action.help or "", value, choices)
            )
        elif action.choices:
            node.choices += [str(c) for c in action.choices]
    return node


def script(shell: str, parser: argparse.ArgumentParser) -> str:
    """The completion script for ``shell`` (one of :data:`SHELLS`)."""
    return {"bash": bash, "zsh": zsh, "fish": fish}[shell](tree(parser))


def _quote(text: str) -> str:
    """A single-quoted word for bash, zsh and fish (fish also reads ``\\`` in quotes)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "'\\''") + "'"


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _oneline(text: str) -> str:
    text = " ".join(text.replace("%%", "%").split())
    return re.sub(r"%\((\w+)\)s", r"\1", text)


def _case_values(root: Node) -> list[str]:
    """``case`` arms (bash and zsh): "path|option" -> what completes its value."""
    arms = []
    for node in root.walk():
        for opt in node.options:
            if not opt.value:
                continue
            keys = "|".join(_quote(f"{node.path}|{s}") for s in opt.strings)
            what = " ".join([opt.value, *opt.choices])
            arms.append(f"    {keys}) echo {_quote(what)} ;;")
    return arms


def _case_subcommands(root: Node) -> list[str]:
    keys = [f"{n.path}|{name}" for n in root.walk() for name in n.subcommands]
    return [f"    {' | '.join(_quote(k) for k in keys)}) return 0 ;;"] if keys else []


def _walker(shell: str) -> str:
    """The loop (bash and zsh) that finds the command path typed so far and whether the
    word being completed is an option's value (words[1..current-1] are done)."""
    first, words, current = ("1", "COMP_WORDS", "COMP_CWORD")
    if shell == "zsh":
        first, words, current = ("2", "words", "CURRENT")
    return f"""  local cmd_path='' value_of='' word i={first}
  while (( i < {current} )); do
    word=${{{words}[i]}}
    if [[ $word == -* ]]; then
      if [[ $word != *=* ]] && _rollback_ops_value "$cmd_path|$word" >/dev/null; then
        (( i + 1 == {current} )) && value_of="$cmd_path|$word"
        (( i++ ))
      fi
    elif _rollback_ops_is_sub "$cmd_path|$word"; then
      cmd_path=${{cmd_path:+$cmd_path }}$word
    fi
    (( i++ ))
  done"""


def _shared_functions(root: Node, shell: str) -> str:
    dirs, glob = "${ROLLBACK_OPS_INVENTORIES//:/ }", ""
    if shell == "zsh":  # zsh splits with (s.:.), and (N) lets a glob match nothing
        dirs, glob = "${(s.:.)ROLLBACK_OPS_INVENTORIES}", "(N)"
    return "\n".join(
        [
            "_rollback_ops_value() {  # 'path|option': what its value is, or status 1",
            '  case "$1" in',
            *_case_values(root),
            "    *) return 1 ;;",
            "  esac",
            "}",
            "_rollback_ops_is_sub() {  # 'path|word': is word a subcommand at path",
            '  case "$1" in',
            *_case_subcommands(root),
            "  esac",
            "  return 1",
            "}",
            "_rollback_ops_inventories() {  # named inventories: ./inventories and more dirs",
            "  local dir entry",
            "  echo lab local",
            f"  for dir in inventories {dirs}; do",
            f'    for entry in "$dir"/*{glob}; do [[ -e $entry ]] && echo "${{entry##*/}}"; done',
            "  done",
            "  return 0",
            "}",
        ]
    )


def bash(root: Node) -> str:
    words = [
        f"    {_quote(n.path)}) printf '%s\\n' {_quote(' '.join(n.words()))}"
        f" {_quote(' '.join(s for o in n.options for s in o.strings))} ;;"
        for n in root.walk()
    ]
    return "\n".join(
        [
            f"# bash completion for {PROG}, generated from its parser by",
            f"#   {PROG} completion bash",
            f'# use: eval "$({PROG} completion bash)" in ~/.bashrc, or save it as',
            f"#   ~/.local/share/bash-completion/completions/{PROG}",
            _shared_functions(root, "bash"),
            "_rollback_ops_words() {  # 'path': its subcommands and choices, then its options",
            '  case "$1" in',
            *words,
            "  esac",
            "}",
            "_rollback_ops() {",
            "  local cur=${COMP_WORDS[COMP_CWORD]} value subs opts",
            _walker("bash"),
            "  if [[ -n $value_of ]]; then",
            '    value=$(_rollback_ops_value "$value_of")',
            "    case $value in",
            '      choices\\ *) COMPREPLY=($(compgen -W "${value#choices }" -- "$cur")) ;;',
            "      inventory)",
            "        compopt -o filenames 2>/dev/null",
            '        COMPREPLY=($(compgen -W "$(_rollback_ops_inventories)" -- "$cur")'
            ' $(compgen -f -- "$cur")) ;;',
            '      file) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur")) ;;',
            "      *) COMPREPLY=() ;;",
            "    esac",
            "    return 0",
            "  fi",
            '  { read -r subs; read -r opts; } < <(_rollback_ops_words "$cmd_path")',
            "  if [[ $cur == -* || -z $subs ]]; then",
            '    COMPREPLY=($(compgen -W "$opts" -- "$cur"))',
            "  else",
            '    COMPREPLY=($(compgen -W "$subs" -- "$cur"))',
            "  fi",
            "}",
            f"complete -F _rollback_ops {PROG}",
            "",
        ]
    )


def _zsh_described(items: list[tuple[str, str]]) -> str:
    return " ".join(_quote(f"{w.replace(':', chr(92) + ':')}:{_oneline(h)}") for w, h in items)


def zsh(root: Node) -> str:
    arms = []
    for n in root.walk():
        subs = [(name, sub.help) for name, sub in n.subcommands.items()]
        subs += [(c, "") for c in n.choices]
        opts = [(s, o.help) for o in n.options for s in o.strings]
        arms.append(
            f"    {_quote(n.path)}) subs=({_zsh_described(subs)}); opts=({_zsh_described(opts)}) ;;"
        )
    return "\n".join(
        [
            f"#compdef {PROG}",
            f"# zsh completion for {PROG}, generated from its parser by",
            f"#   {PROG} completion zsh",
            f"# use: save it as _{PROG} in a directory on $fpath (before compinit runs), or",
            f'#   eval "$({PROG} completion zsh)" after compinit in ~/.zshrc',
            _shared_functions(root, "zsh"),
            "_rollback_ops() {",
            "  local value; local -a subs opts",
            _walker("zsh"),
            "  if [[ -n $value_of ]]; then",
            '    value=$(_rollback_ops_value "$value_of")',
            "    case $value in",
            "      choices\\ *) compadd -- ${=value#choices } ;;",
            "      inventory) compadd -- $(_rollback_ops_inventories) example:staging"
            " example:production; _files ;;",
            "      file) _files ;;",
            "      *) _message 'a value' ;;",
            "    esac",
            "    return 0",
            "  fi",
            '  case "$cmd_path" in',
            *arms,
            "  esac",
            "  if [[ ${words[CURRENT]} == -* || ${#subs} -eq 0 ]]; then",
            "    _describe -t options option opts",
            "  else",
            "    _describe -t commands command subs",
            "  fi",
            "}",
            f'if [[ $zsh_eval_context[-1] == loadautofunc ]]; then _rollback_ops "$@"; '
            f"else compdef _rollback_ops {PROG}; fi",
            "",
        ]
    )


def fish(root: Node) -> str:
    subs = " ".join(_fish_quote(f"{n.path}|{name}") for n in root.walk() for name in n.subcommands)
    takes = " ".join(
        _fish_quote(f"{n.path}|{s}")
        for n in root.walk()
        for o in n.options
        if o.value
        for s in o.strings
    )
    lines = [
        f"# fish completion for {PROG}, generated from its parser by",
        f"#   {PROG} completion fish",
        f"# use: {PROG} completion fish > ~/.config/fish/completions/{PROG}.fish",
        f"complete -c {PROG} -e",
        "function __rollback_ops_path --description 'the command path typed so far'",
        f"    set -l subs {subs}",
        f"    set -l takes {takes}",
        "    set -l cmd_path ''",
        "    set -l skip 0",
        "    set -l words (commandline -opc)",
        "    set -e words[1]",
        "    for word in $words",
        "        if test $skip = 1",
        "            set skip 0",
        "        else if string match -q -- '-*' $word",
        '            contains -- "$cmd_path|$word" $takes; and set skip 1',
        '        else if contains -- "$cmd_path|$word" $subs',
        '            set cmd_path (string trim -- "$cmd_path $word")',
        "        end",
        "    end",
        '    echo "@$cmd_path"  # never an empty line',
        "end",
        "function __rollback_ops_inventories",
        "    printf '%s\\n' lab local example:staging example:production",
        '    for dir in inventories (string split : -- "$ROLLBACK_OPS_INVENTORIES")',
        '        test -n "$dir"; and for entry in $dir/*; basename -- $entry; end',
        "    end",
        "end",
    ]
    for n in root.walk():
        at = f"-n {_fish_quote(f'test (__rollback_ops_path) = {_fish_quote(chr(64) + n.path)}')}"
        for name, sub in n.subcommands.items():
            described = f"-d {_fish_quote(_oneline(sub.help))}"
            lines.append(f"complete -c {PROG} -f {at} -a {_fish_quote(name)} {described}")
        for choice in n.choices:
            lines.append(f"complete -c {PROG} -f {at} -a {_fish_quote(choice)}")
        for opt in n.options:
            spell = []
            for s in opt.strings:
                if s.startswith("--"):
                    spell.append(f"-l {_fish_quote(s[2:])}")
                elif len(s) == 2:
                    spell.append(f"-s {_fish_quote(s[1:])}")
                else:
                    spell.append(f"-o {_fish_quote(s[1:])}")
            value = ""
            if opt.value == "choices":
                value = f" -x -a {_fish_quote(' '.join(opt.choices))}"
            elif opt.value == "inventory":
                value = " -r -a '(__rollback_ops_inventories)'"
            elif opt.value == "file":
                value = " -r -F"
            elif opt.value:
                value = " -x"
            described = f"-d {_fish_quote(_oneline(opt.help))}"
            lines.append(f"complete -c {PROG} {at} {' '.join(spell)}{value} {described}")
    return "\n".join([*lines, ""])
