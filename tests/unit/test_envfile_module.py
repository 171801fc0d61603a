"""The env-file editor (roles/envfile/library/rollback_envfile.py): all but the value kept."""

from __future__ import annotations

import pytest

from tests.conftest import load_module

envfile = load_module("roles/envfile/library/rollback_envfile.py")


def edit(text: str, values: dict[str, str], allow_new: bool = False) -> str:
    return envfile.edit(text, values, allow_new)[0]


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


def test_diff_holds_only_changed_lines():
    old = "SECRET=hunter2\nA=1\n"
    before, after = envfile.changed_lines(old, edit(old, {"A": "2"}))
    assert before == "2: A=1\n"
    assert after == "2: A=2\n"
    assert "hunter2" not in before + after
