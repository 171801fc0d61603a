"""The shared env-file code (plugins/module_utils/envfile.py): parser, editor, masking,
and the file operations it re-exports from module_utils/files.py (named for an env file)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tests.conftest import load_module

envfile = load_module("plugins/module_utils/envfile.py")


def edit(text: str, values: dict[str, str], allow_new: bool = False) -> str:
    return envfile.edit(text, values, allow_new)[0]


# ----------------------------------------------------------------------------- the editor


def test_only_the_value_changes_and_comments_order_blank_lines_stay():
    text = "# header\n\nA=1\n# note\nB=true\nC=3\n"
    assert edit(text, {"B": "false"}) == "# header\n\nA=1\n# note\nB=false\nC=3\n"


def test_before_and_changed_keys_are_reported():
    new, before, changed, dups = envfile.edit("A=1\nB=2\n", {"A": "1", "B": "5"})
    assert new == "A=1\nB=5\n"
    assert before == {"A": "1", "B": "2"}
    assert changed == ["B"]
    assert dups == []


@pytest.mark.parametrize(
    ("line", "value", "expected"),
    [
        ('A="true"', "false", 'A="false"'),
        ("A='true'", "false", "A='false'"),
        ('A="x"', 'say "hi"', 'A="say \\"hi\\""'),
        ('A="x"', "$HOME", 'A="\\$HOME"'),
        ("A='x'", "it's", '''A="it's"'''),
        ("A=x", "two words", "A='two words'"),
        ("A=x", "a#b", "A='a#b'"),
        ("A=x", "tab\there", "A='tab\there'"),
    ],
)
def test_quoting_style_is_kept_or_chosen_safely(line, value, expected):
    assert edit(line + "\n", {"A": value}) == expected + "\n"


def test_quoted_value_equal_to_the_new_one_is_left_alone():
    assert edit('A="false"\n', {"A": "false"}) == 'A="false"\n'
    assert envfile.edit('A="false"\n', {"A": "false"})[2] == []


def test_export_prefix_and_indentation_and_spacing_are_kept():
    text = "export A=1\n  export   B = 2\n"
    assert edit(text, {"A": "9", "B": "8"}) == "export A=9\n  export   B = 8\n"


def test_inline_comment_and_its_spacing_are_kept():
    assert edit("A=true   # keep me\n", {"A": "false"}) == "A=false   # keep me\n"
    assert edit('A="on" # c\n', {"A": "off"}) == 'A="off" # c\n'


def test_hash_without_space_is_part_of_the_value():
    _new, before, _c, _d = envfile.edit("URL=http://x/#frag\n", {"URL": "y"})
    assert before == {"URL": "http://x/#frag"}


def test_values_with_equals_signs():
    text = "DSN=postgres://u:p@h/db?a=b&c=d\nA=1\n"
    new, before, _c, _d = envfile.edit(text, {"A": "2"})
    assert before["A"] == "1"
    assert new == "DSN=postgres://u:p@h/db?a=b&c=d\nA=2\n"
    assert envfile.read_values(text)["DSN"] == "postgres://u:p@h/db?a=b&c=d"


def test_crlf_line_endings_are_kept():
    assert edit("A=1\r\nB=2\r\n", {"B": "3"}) == "A=1\r\nB=3\r\n"


def test_missing_final_newline_is_kept():
    assert edit("A=1\nB=2", {"B": "3"}) == "A=1\nB=3"


def test_duplicate_keys_are_all_set_and_reported_and_last_wins_before():
    new, before, changed, dups = envfile.edit("A=1\nB=2\nA=3\n", {"A": "0"})
    assert new == "A=0\nB=2\nA=0\n"
    assert before == {"A": "3"}
    assert dups == ["A"]
    assert changed == ["A"]


def test_missing_key_is_refused_unless_allowed():
    with pytest.raises(envfile.EnvFileError, match="NEW"):
        envfile.edit("A=1\n", {"NEW": "x"})
    assert edit("A=1", {"NEW": "x"}, allow_new=True) == "A=1\nNEW=x\n"
    assert edit("A=1\r\n", {"NEW": "x"}, allow_new=True) == "A=1\r\nNEW=x\r\n"


def test_newlines_in_values_and_bad_keys_are_refused():
    with pytest.raises(envfile.EnvFileError):
        envfile.edit("A=1\n", {"A": "x\ny"})
    with pytest.raises(envfile.EnvFileError):
        envfile.edit("A=1\n", {"1A": "x"})


def test_non_assignment_lines_are_never_touched():
    text = "not an assignment\n=oops\nA=1\n"
    assert edit(text, {"A": "2"}) == "not an assignment\n=oops\nA=2\n"


def test_unterminated_quote_is_taken_literally():
    assert envfile.split_value('"abc') == ("", '"abc', "")
    assert envfile.read_values('A="abc\nB=1\n') == {"A": '"abc', "B": "1"}


def test_diff_holds_only_changed_lines():
    old = "SECRET=hunter2\nA=1\n"
    before, after = envfile.changed_lines(old, edit(old, {"A": "2"}))
    assert before == "2: A=1\n"
    assert after == "2: A=2\n"
    assert "hunter2" not in before + after


# ----------------------------------------------------------------------------- D4: lines


@pytest.mark.parametrize("sep", ["\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"])
def test_only_newline_ends_a_line(sep):
    # str.splitlines() broke these lines apart: FOO=tr\vue became FOO=falseue
    assert edit(f"FOO=tr{sep}ue\n", {"FOO": "false"}) == "FOO=false\n"
    text = f"FOO=true{sep}OTHER=1\n"
    assert envfile.read_values(text) == {"FOO": f"true{sep}OTHER=1"}
    assert edit(text, {"FOO": "false"}) == "FOO=false\n"
    with pytest.raises(envfile.EnvFileError, match="not present in the file: OTHER"):
        envfile.edit(text, {"OTHER": "2"})


@pytest.mark.parametrize(
    "char", ["\v", "\f", "\n", "\r", "\0", "\x1b", "\x7f", "\x85", "\u2028", "\u2029"]
)
def test_control_characters_in_new_values_are_refused_naming_the_key(char):
    problem = envfile.value_problem("FLAG", f"on{char}x")
    assert problem is not None
    assert "FLAG" in problem
    assert f"U+{ord(char):04X}" in problem
    with pytest.raises(envfile.EnvFileError, match="FLAG"):
        envfile.edit("FLAG=off\n", {"FLAG": f"on{char}x"})


def test_tab_and_ordinary_text_are_accepted():
    assert envfile.value_problem("FLAG", "a\tb ü €") is None
    assert envfile.value_problem("1FLAG", "x") == "not a valid env key: '1FLAG'"
    assert envfile.value_problem("FLAG\n", "x") == "not a valid env key: 'FLAG\\n'"


def test_every_problem_is_reported_at_once():
    with pytest.raises(envfile.EnvFileError) as info:
        envfile.edit("A=1\n", {"A": "x\vy", "B": "\0"})
    assert "for A" in str(info.value)
    assert "for B" in str(info.value)


@pytest.mark.parametrize("quote", ['"', "'"])
def test_a_key_inside_another_keys_multiline_value_is_not_an_assignment(quote):
    text = f"A={quote}line1\nB=x\nline3{quote}\nB=real\n"
    assert envfile.read_values(text) == {"A": "line1\nB=x\nline3", "B": "real"}
    assert edit(text, {"B": "new"}) == f"A={quote}line1\nB=x\nline3{quote}\nB=new\n"


@pytest.mark.parametrize("quote", ['"', "'"])
def test_a_key_only_inside_a_multiline_value_is_not_present(quote):
    text = f"A={quote}line1\nB=x\nline3{quote}\nC=1\n"
    assert envfile.keys_in(text) == {"A", "C"}
    with pytest.raises(envfile.EnvFileError, match="not present in the file: B"):
        envfile.edit(text, {"B": "new"})


def test_escaped_quotes_do_not_end_a_multiline_value():
    text = 'A="one \\" two\nB=\\"x\nend"\nB=1\n'
    assert envfile.keys_in(text) == {"A", "B"}
    assert edit(text, {"B": "2"}) == 'A="one \\" two\nB=\\"x\nend"\nB=2\n'


def test_a_multiline_value_of_the_key_itself_is_refused():
    text = 'A="line1\nline2"\nB=1\n'
    with pytest.raises(
        envfile.EnvFileError, match=r"A has a multi-line quoted value \(lines 1-2\)"
    ):
        envfile.edit(text, {"A": "x", "B": "2"})


def test_a_backslash_continued_value_is_refused_and_its_lines_are_not_assignments():
    text = "A=one \\\nB=two\nC=3\n"
    assert envfile.keys_in(text) == {"A", "C"}
    with pytest.raises(envfile.EnvFileError, match="trailing backslash"):
        envfile.edit(text, {"A": "x"})
    assert edit(text, {"C": "4"}) == "A=one \\\nB=two\nC=4\n"
    # an escaped backslash does not continue the line
    assert envfile.keys_in("A=x\\\\\nB=1\n") == {"A", "B"}


def test_crlf_multiline_value_is_kept_byte_for_byte():
    text = 'A="l1\r\nB=x\r\nl3"\r\nB=1\r\n'
    assert edit(text, {"B": "2"}) == 'A="l1\r\nB=x\r\nl3"\r\nB=2\r\n'


def test_changed_lines_split_on_newline_only():
    old = "X=a\vb\nA=1\n"
    assert envfile.changed_lines(old, edit(old, {"A": "2"})) == ("2: A=1\n", "2: A=2\n")


# ----------------------------------------------------------------------------- BOM


def test_a_bom_before_the_first_key_is_ignored_and_kept():
    text = "\ufeffA=1\nB=2\n"
    assert envfile.read_values(text) == {"A": "1", "B": "2"}
    assert edit(text, {"A": "0"}) == "\ufeffA=0\nB=2\n"
    assert envfile.changed_lines(text, "\ufeffA=0\nB=2\n") == ("1: A=1\n", "1: A=0\n")
    data = envfile.encode(edit(envfile.decode(b"\xef\xbb\xbfA=1\n"), {"A": "0"}))
    assert data == b"\xef\xbb\xbfA=0\n"


def test_undecodable_bytes_survive():
    data = b"LATIN=caf\xe9\nA=1\n"
    assert envfile.encode(edit(envfile.decode(data), {"A": "2"})) == b"LATIN=caf\xe9\nA=2\n"


# ----------------------------------------------------------------------------- D12: secrets


def test_mask_is_a_short_hash_and_none_stays_none():
    digest = hashlib.sha256(b"hunter2").hexdigest()[:8]
    assert envfile.mask("hunter2") == f"<secret sha256:{digest}>"
    assert envfile.mask(None) is None


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("API_KEY", True),
        ("GITHUB_TOKEN", True),
        ("DB_PASSWORD", True),
        ("PASSWORD_FILE", True),
        ("CLIENT_SECRET_ID", True),
        ("ENABLE_TIME_WEIGHTING", False),
        ("api_key", False),
        ("KEYS", False),
    ],
)
def test_default_secret_patterns(key, secret):
    assert envfile.is_secret(key, envfile.DEFAULT_SECRET_KEYS) is secret


def test_secret_lines_in_the_diff_show_the_hash_only():
    old = "export API_KEY='old-value'\nA=1\n"
    new = edit(old, {"API_KEY": "new-value", "A": "2"})
    before, after = envfile.changed_lines(old, new, {"API_KEY"})
    assert before == f"1: export API_KEY={envfile.mask('old-value')}\n2: A=1\n"
    assert after == f"1: export API_KEY={envfile.mask('new-value')}\n2: A=2\n"


# ----------------------------------------------------------------------------- D5, D6: files


def test_file_problem_names_hard_links(tmp_path: Path):
    env = tmp_path / ".env"
    env.write_text("A=1\n")
    assert envfile.file_problem(str(env)) is None
    os.link(env, tmp_path / "other")
    problem = envfile.file_problem(str(env))
    assert "has 2 hard links; rollback-ops will not break them apart" in problem
    assert envfile.file_problem(str(tmp_path / "nope")) == f"env file not found: {tmp_path}/nope"
    assert "not a regular file" in envfile.file_problem(str(tmp_path))


def test_safe_write_fails_with_envfileerror_and_leaves_nothing_behind(tmp_path: Path):
    # files.safe_write (tested in test_files_utils.py), its errors as EnvFileError
    env = tmp_path / ".env"
    env.write_bytes(b"A=1\n")

    def refuse(tmp: str) -> None:
        raise PermissionError(13, "context refused", tmp)

    with pytest.raises(envfile.EnvFileError, match=f"could not write the temp file for {env}"):
        envfile.safe_write(str(env), b"A=1\n", b"A=2\n", True, refuse)
    assert issubclass(envfile.EnvFileError, (envfile.FileError, ValueError))
    assert sorted(p.name for p in tmp_path.iterdir()) == [".env"]
    copy = envfile.safe_write(str(env), b"A=1\n", b"A=2\n")
    assert env.read_bytes() == b"A=2\n" and Path(copy).read_bytes() == b"A=1\n"


def test_space_needs_count_the_copy_and_the_temp_file(tmp_path: Path):
    env = tmp_path / ".env"
    env.write_text("A=1\n")
    [(directory, free, needed, parts)] = envfile.space_needs(str(env), 100, 120, 1)
    assert directory == str(tmp_path)
    assert needed == 220 + envfile.MIB
    assert parts == [("backup copy", 100), ("temp file", 120)]
    assert free > 0
    assert envfile.space_problems(str(env), 100, 120, 0) == []


# ----------------------------------------------------------------------------- the parser, exactly


@pytest.mark.parametrize(
    ("line", "value"),
    [
        # double quotes: \" \\ \$ \` \n \t are escapes; any other backslash stays as written
        (r'K="a\"b"', 'a"b'),
        (r'K="a\\b"', "a\\b"),
        (r'K="\$HOME and \`x\`"', "$HOME and `x`"),
        (r'K="one\ntwo\tthree"', "one\ntwo\tthree"),
        (r'K="keep \x and \q"', r"keep \x and \q"),
        (r'K="ends in \\"', "ends in \\"),
        (r'K="a\\\"b"', 'a\\"b'),
        (r'K="\"quoted\""', '"quoted"'),
        (r'K="x" # comment', "x"),
        (r'K="a"b', "a"),
        # single quotes: nothing is an escape, and a backslash does not hide the quote
        (r"K='a\nb'", r"a\nb"),
        (r"K='a\'b", r"a\'b"),  # closed at the second quote: a\ ; suffix b (read below)
        ("K='it''s'", "it"),
        ('K=""', ""),
        ("K=''", ""),
        # unquoted: up to blanks and a comment
        ("K=a b  # c", "a b"),
        ("K=a#b", "a#b"),
        ("K=  spaced  ", "spaced"),
    ],
)
def test_a_value_is_read_as_a_shell_would(line: str, value: str) -> None:
    if line == r"K='a\'b":
        assert envfile.split_value(line[2:]) == ("'", "a\\", "b")
        return
    assert envfile.read_values(line + "\n")["K"] == value


def test_the_suffix_after_a_closing_quote_is_kept_as_written() -> None:
    assert envfile.split_value('"a\\"b" # note') == ('"', 'a"b', " # note")
    assert envfile.split_value("'x'  ") == ("'", "x", "  ")
    assert envfile.split_value("v  # c") == ("", "v", "  # c")
    assert edit('K="a\\"b" # note\n', {"K": "c"}) == 'K="c" # note\n'


def test_a_multiline_quoted_value_is_joined_unescaped_and_its_lines_counted() -> None:
    text = 'A=1\nK="first\nsecond \\" still\nlast" # tail\nB=2\n'
    items = envfile.parse(text)[2]
    k = next(item for item in items if item.key == "K")
    assert (k.first, k.last, k.multiline, k.quote) == (1, 3, "quoted", '"')
    assert k.value == 'first\nsecond " still\nlast'
    assert k.suffix == " # tail"
    assert envfile.read_values(text) == {"A": "1", "K": k.value, "B": "2"}
    assert envfile.multiline_problem(k) == (
        "K has a multi-line quoted value (lines 2-4); rollback-ops rewrites one-line values "
        "only: edit it by hand"
    )
    single = envfile.parse("K='a\nb'\n")[2][0]
    assert (single.value, single.last, single.quote) == ("a\nb", 1, "'")
    # never closed: the opening line is read literally, and the next lines are their own
    literal = envfile.read_values('K="open\nB=2\n')
    assert literal == {"K": '"open', "B": "2"}


def test_a_value_continued_with_backslashes_is_joined_without_them() -> None:
    text = "A=1\nK=one\\\ntwo\\\nthree\nB=2\n"
    k = envfile.parse(text)[2][1]
    assert (k.key, k.first, k.last, k.multiline) == ("K", 1, 3, "continued")
    assert k.value == "onetwothree"
    assert envfile.read_values(text) == {"A": "1", "K": "onetwothree", "B": "2"}
    assert envfile.multiline_problem(k) == (
        "K has a value continued with a trailing backslash (lines 2-4); rollback-ops rewrites "
        "one-line values only: edit it by hand"
    )
    two = envfile.parse("K=a\\\nb\n")[2][0]
    assert (two.value, two.last) == ("ab", 1)
    # an even number of backslashes is an escaped backslash, not a continuation
    even = envfile.parse("K=a\\\\\nB=2\n")[2]
    assert [(i.key, i.value, i.multiline) for i in even] == [("K", "a\\\\", ""), ("B", "2", "")]
    # a continuation on the last line continues nothing
    last = envfile.parse("A=1\nK=a\\")[2][1]
    assert (last.value, last.last, last.multiline) == ("a\\", 1, "")
    assert envfile.multiline_problem(last) is None


def test_a_control_character_is_located_by_its_position() -> None:
    assert envfile.value_problem("K", "ab\x01") == (
        "the value for K holds the control character U+0001 (character 3); an env file value "
        "is one line of text and only TAB is allowed"
    )
    assert "(character 1)" in envfile.value_problem("K", "\x7f")
    assert envfile.value_problem("K", "a\tb") is None
    assert envfile.value_problem("1K", "x") == "not a valid env key: '1K'"
    assert envfile.value_problem(3, "x") == "not a valid env key: 3"


def test_a_new_key_follows_the_files_line_ending_even_without_a_final_newline() -> None:
    assert edit("A=1\r\nB=2", {"C": "3"}, allow_new=True) == "A=1\r\nB=2\r\nC=3\r\n"
    assert edit("A=1\nB=2", {"C": "3"}, allow_new=True) == "A=1\nB=2\nC=3\n"
    assert edit("A=1\r\n", {"C": "3"}, allow_new=True) == "A=1\r\nC=3\r\n"
    assert edit("", {"C": "a b"}, allow_new=True) == "C='a b'\n"
    assert edit("A=1\n", {"C": "it's"}, allow_new=True) == 'A=1\nC="it\'s"\n'


def test_changed_lines_ignore_a_bom_on_either_side_and_count_added_and_removed_lines() -> None:
    bom = envfile.BOM
    assert envfile.changed_lines(bom + "A=1\n", "A=1\n") == ("", "")
    assert envfile.changed_lines("A=1\n", bom + "A=2\n") == ("1: A=1\n", "1: A=2\n")
    assert envfile.changed_lines("A=1\n", "A=1\nB=2\n") == ("", "2: B=2\n")
    assert envfile.changed_lines("A=1\nB=2\n", "A=1\n") == ("2: B=2\n", "")
    assert envfile.changed_lines("\ufffeA=1\n", "A=1\n") == ("1: \ufffeA=1\n", "1: A=1\n")
    assert envfile.changed_lines("A=1\n", "\ufffeA=1\n") == ("1: A=1\n", "1: \ufffeA=1\n")


def test_quoting_a_value_in_every_style() -> None:
    q = envfile.quote_value
    assert q("a b", "'") == "'a b'"
    assert q("it's", "'") == '"it\'s"'
    assert q('a"$b`\\', '"') == '"a\\"\\$b\\`\\\\"'
    assert q("plain-1.2:3@x%y+z,w/v", "") == "plain-1.2:3@x%y+z,w/v"
    assert q("a b", "") == "'a b'"
    assert q("it's $x", "") == '"it\'s \\$x"'
    with pytest.raises(envfile.EnvFileError):
        q("a\nb", "")


def test_three_trailing_backslashes_continue_a_line_and_four_do_not() -> None:
    three = envfile.parse("K=a\\\\\\\nb\n")[2][0]
    assert (three.multiline, three.value) == ("continued", "a\\\\b")
    four = envfile.parse("K=a\\\\\\\\\nB=b\n")[2]
    assert [(i.key, i.multiline) for i in four] == [("K", ""), ("B", "")]


def test_a_quoted_value_with_a_trailing_backslash_after_it_is_one_line() -> None:
    items = envfile.parse('K="x" \\\nB=2\n')[2]
    assert [(i.key, i.value, i.suffix, i.multiline) for i in items] == [
        ("K", "x", " \\", ""),
        ("B", "2", "", ""),
    ]


def test_a_multiline_value_may_close_at_the_start_of_a_line() -> None:
    k, b = envfile.parse('K="a\n" # c\nB=2\n')[2]
    assert (k.value, k.suffix, k.last, b.key) == ("a\n", " # c", 1, "B")


def test_long_files_and_values_past_the_small_integer_cache() -> None:
    """Positions beyond 256 are compared by value (CPython shares small ints only)."""
    assert envfile.split_value('"' + "x" * 300) == ("", '"' + "x" * 300, "")
    assert envfile.read_values('K="' + "x" * 300 + '"\n') == {"K": "x" * 300}
    lines = "".join(f"K{n}=v\n" for n in range(300))
    assert len(envfile.read_values(lines + "LAST=a\\")) == 301
    assert envfile.changed_lines(lines, lines + "NEW=1\n") == ("", "301: NEW=1\n")
    assert envfile.changed_lines(lines + "NEW=1\n", lines) == ("301: NEW=1\n", "")


def test_an_unterminated_value_ending_in_a_backslash_is_read_literally() -> None:
    assert envfile.read_values('K="abc\\\nB=2\n') == {"K": '"abc\\', "B": "2"}


def test_changed_lines_of_files_of_very_different_lengths() -> None:
    assert envfile.changed_lines("A=1\n", "A=1\nB=2\nC=3\n") == ("", "2: B=2\n3: C=3\n")
    assert envfile.changed_lines("A=1\nB=2\nC=3\n", "A=1\n") == ("2: B=2\n3: C=3\n", "")
