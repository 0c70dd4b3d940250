"""Our gitwildmatch translation is the one azure-ai-ml vendors (pathspec's GitWildMatchPattern), line for line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from azure.ai.ml._utils._pathspec import GitWildMatchPattern
from hypothesis import given, settings
from hypothesis import strategies as st

from cicd_tools.codeassets.ignore import InvalidIgnoreFile, load_ignore_rules, translate_pattern


def sdk_translate(line: str) -> tuple[str | None, bool | None] | str:
    try:
        regex, include = GitWildMatchPattern.pattern_to_regex(line)
    except ValueError:
        return "invalid"
    return regex, include


def ours(line: str) -> tuple[str | None, bool | None] | str:
    try:
        return translate_pattern(line)
    except ValueError:
        return "invalid"


@pytest.mark.parametrize(
    "line",
    ["", "   ", "# comment", "\\#hash", "/", "!", "!/", "*", "**", "**/", "/**", "**/**/x", "a/**/**/b",
     "logs/", "!logs/keep.log", "/top", "dir/name", "*.py", "  *.py  ", "[ab].txt", "[!ab]", "[]x]", "[^a]",
     "[", "a[", "x\\", "\\ ", "a?b", "a/*/b", "a/**", "**/a/", "!*", "\\!bang", "a\\[b"],
)
def test_known_lines_translate_like_sdk(line: str) -> None:
    assert ours(line) == sdk_translate(line)


@settings(max_examples=600, deadline=None, database=None)
@given(st.text(alphabet="ab.*?[]!^\\/# -", max_size=12))
def test_random_lines_translate_like_sdk(line: str) -> None:
    assert ours(line) == sdk_translate(line)


def test_negation_reports_a_reinclude() -> None:
    assert translate_pattern("!keep.log")[1] is False
    assert translate_pattern("keep.log")[1] is True


def test_dir_pattern_matches_contents_but_not_a_file_of_that_name() -> None:
    regex, _ = translate_pattern("logs/")
    assert regex is not None
    assert re.match(regex, "a/logs/x.log")
    assert not re.match(regex, "a/logs")


def test_amlignore_takes_precedence_over_gitignore(tmp_path: Path) -> None:
    (tmp_path / ".amlignore").write_text("*.a\n", encoding="utf-8")
    (tmp_path / ".gitignore").write_text("*.g\n", encoding="utf-8")
    rules = load_ignore_rules(tmp_path)
    assert rules.source == tmp_path / ".amlignore"
    assert rules.excludes("x.a") and not rules.excludes("x.g")


def test_no_ignore_file_excludes_nothing(tmp_path: Path) -> None:
    rules = load_ignore_rules(tmp_path)
    assert rules.source is None and not rules.excludes("anything")


def test_ignore_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_bytes(b"\xff\xfe*.log\n")
    with pytest.raises(InvalidIgnoreFile, match="cannot read ignore file"):
        load_ignore_rules(tmp_path)


def test_symlinked_ignore_file_matches_relative_to_its_target(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / ".amlignore").write_text("*.log\n", encoding="utf-8")
    code = tmp_path / "code"
    code.mkdir()
    (code / ".amlignore").symlink_to(shared / ".amlignore")
    rules = load_ignore_rules(code)
    assert rules.base == str(shared.resolve())
    assert rules.prefix_for(str(code.resolve())) == "../code/"
