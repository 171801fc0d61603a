# (it runs on the managed hosts' python3, 3.6 and later, in the modules' style: pyproject.toml
# exempts plugins/ from the rules that need a newer Python)
"""Read and edit dotenv / shell / systemd EnvironmentFile files byte for byte.

Shared host-side code of the envfile and preflight modules, which import it as
``ansible_collections.rollback_ops.rollback.plugins.module_utils.envfile``. Python 3.6+
standard library only; the file operations (checks, space, the safe write) come from
``files.py`` beside it, shared with the other modules that replace files, and are re-exported
here with the env file named.

Parsing rules (one parser for both modules):

- lines end at "\\n" only ("\\r\\n" is kept byte for byte); \\v, \\f, \\x1c-\\x1e, \\x85,
  U+2028 and U+2029 are ordinary characters inside a line, as in shells, systemd and dotenv;
- a UTF-8 byte order mark before the first line is ignored for parsing and kept in the output;
- ``[export ]KEY=VALUE``; a value opened with a double or single quote that closes on a later
  line (dotenv's multi-line values) and an unquoted value ending with a backslash (continued on
  the next line, as systemd and shells read it) span several lines: the lines inside them are
  part of that value, never assignments of their own; an unterminated quote is taken literally;
- the last assignment of a key is its effective value.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fnmatch
import hashlib
import os
import re

# MIB, space_needs and space_problems are re-exported (the envfile and preflight modules and
# their tests import them from here); file_problem and safe_write are wrapped below.
from .files import MIB as MIB
from .files import FileError
from .files import backup_copies as _backup_copies
from .files import file_problem as _file_problem
from .files import safe_write as _safe_write
from .files import space_needs as space_needs
from .files import space_problems as space_problems

BOM = "\ufeff"
# Keys whose values are never shown (fnmatch patterns, case-sensitive).
DEFAULT_SECRET_KEYS = ["*_KEY", "*_TOKEN", "*PASSWORD*", "*SECRET*"]

KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")  # \Z: not before a final newline
ASSIGNMENT = re.compile(
    r"^(?P<lead>[ \t]*(?:export[ \t]+)?)"
    r"(?P<key>[A-Za-z_][A-Za-z0-9_]*)"
    r"(?P<eq>[ \t]*=[ \t]*)"
    r"(?P<raw>.*)$",
    re.DOTALL,
)
SAFE_UNQUOTED = re.compile(r"^[A-Za-z0-9_./:@%+,-]*$")
# Characters a value may not hold: C0 controls but TAB, DEL, NEL and the Unicode line and
# paragraph separators (some readers end a line there).
FORBIDDEN = re.compile("[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
ESCAPES = {"n": "\n", "t": "\t"}


class EnvFileError(FileError, ValueError):
    """A request the file cannot take, or a failed write; the message names the key or file."""


class Assignment:
    """One ``KEY=VALUE`` assignment, on lines first..last (equal unless multiline)."""

    __slots__ = ("eq", "first", "key", "last", "lead", "multiline", "quote", "suffix", "value")

    def __init__(self, key, first, lead, eq):
        self.key = key
        self.first = self.last = first
        self.lead = lead
        self.eq = eq
        self.quote = ""
        self.value = ""
        self.suffix = ""
        # "" for a one-line value, "quoted" or "continued" for one spanning lines
        self.multiline = ""


# ----------------------------------------------------------------------------- text


def decode(data):
    """File bytes as text; every byte survives encode(decode(data))."""
    return data.decode("utf-8", "surrogateescape")


def encode(text):
    return text.encode("utf-8", "surrogateescape")


def split_lines(text):
    """Lines as (body, eol) pairs; eol is '\\r\\n', '\\n' or '' (last line without newline).

    Only "\\n" ends a line (str.splitlines also breaks on \\v, \\f, \\x85, U+2028, ...).
    """
    parts = text.split("\n")
    out = []
    for part in parts[:-1]:
        if part.endswith("\r"):
            out.append((part[:-1], "\r\n"))
        else:
            out.append((part, "\n"))
    if parts[-1]:
        out.append((parts[-1], ""))
    return out


def _closing_quote(text, start, quote):
    """Index of the quote closing a value in text from start, or -1."""
    i = start
    while i < len(text):
        c = text[i]
        if quote == '"' and c == "\\":
            i += 2
            continue
        if c == quote:
            return i
        i += 1
    return -1


def _unescape(inner, quote):
    if quote != '"':
        return inner
    out = []
    i = 0
    while i < len(inner):
        c = inner[i]
        if c == "\\" and i + 1 < len(inner):
            nxt = inner[i + 1]
            out.append(ESCAPES.get(nxt, nxt) if nxt in '"\\$`nt' else c + nxt)
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _continues(body):
    """Whether an unquoted line ends with an odd number of backslashes (continued)."""
    stripped = body.rstrip("\\")
    return (len(body) - len(stripped)) % 2 == 1


def split_value(raw):
    """Split the text after '=' on one line into (quote, value, suffix).

    quote is '"', "'" or ''; suffix keeps trailing blanks and an inline comment.
    """
    if raw[:1] in ('"', "'"):
        end = _closing_quote(raw, 1, raw[0])
        if end < 0:
            # Unterminated quote: take the text literally rather than guess.
            return "", raw, ""
        return raw[0], _unescape(raw[1:end], raw[0]), raw[end + 1 :]
    match = re.search(r"[ \t]+#", raw)
    value = raw[: match.start()] if match else raw.rstrip(" \t")
    return "", value, raw[len(value) :]


def parse(text):
    """(bom, lines, assignments) of an env file's text; lines as from split_lines."""
    bom = BOM if text.startswith(BOM) else ""
    lines = split_lines(text[len(bom) :])
    assignments = []
    i = 0
    while i < len(lines):
        match = ASSIGNMENT.match(lines[i][0])
        if not match:
            i += 1
            continue
        raw = match.group("raw")
        item = Assignment(match.group("key"), i, match.group("lead"), match.group("eq"))
        item.quote, item.value, item.suffix = split_value(raw)
        if raw[:1] in ('"', "'") and not item.quote:
            # No closing quote on this line: a dotenv multi-line value if it closes later.
            # (A line ending in an escaping backslash only escapes its line end, so each
            # following line is scanned from its start.)
            quote, j, end = raw[0], i, -1
            while end < 0 and j + 1 < len(lines):
                j += 1
                end = _closing_quote(lines[j][0], 0, quote)
            if end >= 0:
                head = match.start("raw")
                joined = "\n".join(body for body, _eol in lines[i : j + 1])
                close = len(joined) - len(lines[j][0]) + end
                item.last, item.multiline, item.quote = j, "quoted", quote
                item.value = _unescape(joined[head + 1 : close], quote)
                item.suffix = joined[close + 1 :]
        elif not item.quote and _continues(raw):
            j = i
            while j + 1 < len(lines) and _continues(lines[j][0]):
                j += 1
            if j > i:
                pieces = [raw] + [body for body, _eol in lines[i + 1 : j + 1]]
                item.last, item.multiline = j, "continued"
                item.value = "".join(piece[:-1] for piece in pieces[:-1]) + pieces[-1]
        assignments.append(item)
        i = item.last + 1
    return bom, lines, assignments


def read_values(text):
    """The effective value of every key (the last assignment wins, as in shells and systemd)."""
    return dict((item.key, item.value) for item in parse(text)[2])


def keys_in(text):
    """The keys assigned in text (lines inside another key's multi-line value excluded)."""
    return set(item.key for item in parse(text)[2])


# ----------------------------------------------------------------------------- values


def value_problem(key, value):
    """None, or why value cannot be set for key (the message never holds the value)."""
    if not isinstance(key, str) or not KEY.match(key):
        return "not a valid env key: %r" % (key,)
    bad = FORBIDDEN.search(value)
    if bad:
        return (
            "the value for %s holds the control character U+%04X (character %d); an env "
            "file value is one line of text and only TAB is allowed"
            % (key, ord(bad.group()), bad.start() + 1)
        )
    return None


def multiline_problem(item):
    """None, or why rollback-ops will not rewrite this assignment (a multi-line value)."""
    if not item.multiline:
        return None
    what = (
        "a multi-line quoted value"
        if item.multiline == "quoted"
        else "a value continued with a trailing backslash"
    )
    return (
        "%s has %s (lines %d-%d); rollback-ops rewrites one-line values only: edit it by hand"
        % (
            item.key,
            what,
            item.first + 1,
            item.last + 1,
        )
    )


def key_problems(text, keys):
    """Problems of setting keys in text that do not depend on the new values (multi-line)."""
    problems = []
    for item in parse(text)[2]:
        problem = multiline_problem(item) if item.key in keys else None
        if problem and problem not in problems:
            problems.append(problem)
    return problems


def is_secret(key, patterns):
    """Whether key matches one of the fnmatch patterns (case-sensitive)."""
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in patterns)


def mask(value):
    """What is shown instead of a secret value: a short hash to compare runs (None stays None)."""
    if value is None:
        return None
    return "<secret sha256:%s>" % hashlib.sha256(encode(value)).hexdigest()[:8]


def quote_value(value, style):
    """Render value in the quoting style the line already used, where that is safe."""
    if FORBIDDEN.search(value):
        raise EnvFileError("values cannot hold line breaks or control characters but TAB")
    if style == "'" and "'" not in value:
        return "'" + value + "'"
    if style == '"':
        return '"' + re.sub(r'(["\\$`])', r"\\\1", value) + '"'
    if SAFE_UNQUOTED.match(value):
        return value
    if "'" not in value:
        return "'" + value + "'"
    return '"' + re.sub(r'(["\\$`])', r"\\\1", value) + '"'


def edit(text, values, allow_new_keys=False):
    """Return (new_text, before, changed_keys, duplicates) for setting values in text.

    Every problem is reported at once, in one EnvFileError, before anything is computed.
    """
    values = dict((str(k), str(v)) for k, v in values.items())
    problems = [p for p in (value_problem(k, values[k]) for k in sorted(values)) if p]
    if problems:
        raise EnvFileError("; ".join(problems))
    bom, lines, assignments = parse(text)
    current = dict((item.key, item.value) for item in assignments)
    before = dict((key, current.get(key)) for key in values)
    missing = [key for key in values if key not in current]
    if missing and not allow_new_keys:
        problems.append("keys not present in the file: %s" % ", ".join(missing))
    problems += key_problems(text, values)
    if problems:
        raise EnvFileError("; ".join(problems))
    seen = {}
    changed = set(missing)
    new_lines = list(lines)
    for item in assignments:
        if item.key not in values:
            continue
        seen[item.key] = seen.get(item.key, 0) + 1
        if item.value != values[item.key]:
            body = item.lead + item.key + item.eq + quote_value(values[item.key], item.quote)
            new_lines[item.first] = (body + item.suffix, lines[item.first][1])
            changed.add(item.key)
    out = [body + eol for body, eol in new_lines]
    if missing:
        newline = "\r\n" if lines and lines[0][1] == "\r\n" else "\n"
        if out and not out[-1].endswith("\n"):
            out[-1] += newline
        out.extend(key + "=" + quote_value(values[key], "") + newline for key in missing)
    changed_keys = [key for key in values if key in changed]
    duplicates = sorted(key for key, count in seen.items() if count > 1)
    return bom + "".join(out), before, changed_keys, duplicates


def remove(text, keys):
    """Return (new_text, before, removed_keys) for removing every assignment of keys.

    Each assignment's lines go; every other byte stays. A key that is absent is left alone
    (before: None). A multi-line value is refused, as edit() refuses it.
    """
    keys = [str(k) for k in keys]
    problems = [p for p in (value_problem(k, "") for k in keys) if p]
    problems += key_problems(text, keys)
    if problems:
        raise EnvFileError("; ".join(problems))
    bom, lines, assignments = parse(text)
    current = dict((item.key, item.value) for item in assignments)
    drop = set()
    for item in assignments:
        if item.key in keys:
            drop.update(range(item.first, item.last + 1))
    out = [body + eol for n, (body, eol) in enumerate(lines) if n not in drop]
    before = dict((key, current.get(key)) for key in keys)
    removed = [key for key in keys if key in current]
    return bom + "".join(out), before, removed


def _shown(body, secret):
    match = ASSIGNMENT.match(body)
    if match and match.group("key") in secret:
        value = split_value(match.group("raw"))[1]
        return match.group("lead") + match.group("key") + match.group("eq") + mask(value)
    return body


def changed_lines(old_text, new_text, secret=()):
    """The lines that differ, as 'N: line' texts (appended keys count as new lines).

    Lines split as split_lines does; the line of a key in secret shows KEY=<secret sha256:…>.
    """
    old = [body for body, _eol in split_lines(old_text[1:] if old_text[:1] == BOM else old_text)]
    new = [body for body, _eol in split_lines(new_text[1:] if new_text[:1] == BOM else new_text)]
    before, after = [], []
    for n in range(max(len(old), len(new))):
        a = old[n] if n < len(old) else None
        b = new[n] if n < len(new) else None
        if a != b:
            if a is not None:
                before.append("%d: %s\n" % (n + 1, _shown(a, secret)))
            if b is not None:
                after.append("%d: %s\n" % (n + 1, _shown(b, secret)))
    return "".join(before), "".join(after)


# ----------------------------------------------------------------------------- files
# The file operations are rollback_files'; these two name the env file in their messages.


def file_problem(path):
    """None, or why the env file path cannot be edited in place: missing, not a file,
    hard-linked (rollback_files.file_problem)."""
    return _file_problem(path, what="env file")


def safe_write(path, old_data, new_data, backup=True, before_rename=None):
    """rollback_files.safe_write, failing with EnvFileError (a FileError)."""
    try:
        return _safe_write(path, old_data, new_data, backup, before_rename)
    except FileError as exc:
        raise EnvFileError(str(exc)) from exc


def prune_backups(path, keep, protect=(), dry_run=False):
    """Remove the env file's oldest ``<path>.backup.<stamp>`` copies (each holds the file's
    secrets) beyond the newest ``keep``; never the newest, never one in ``protect`` (the
    copy this change made, copies a run still needs), never a symlink. ``keep`` 0 keeps all.
    With dry_run (check mode: the change's own copy is not made) the copies that the real
    run would remove, its new copy counted. Returns the paths removed (that would be);
    EnvFileError naming the copy when one cannot be removed."""
    if not keep:
        return []
    protected = set(os.path.abspath(p) for p in protect if p)
    removed = []
    start = keep - 1 if dry_run else max(1, keep)
    for copy in _backup_copies(path, follow=False)[start:]:
        if os.path.abspath(copy) in protected:
            continue
        if not dry_run:
            try:
                os.unlink(copy)
            except OSError as exc:
                raise EnvFileError(
                    "could not remove the old backup copy %s: %s" % (copy, exc.strerror)
                ) from exc
        removed.append(copy)
    return removed
