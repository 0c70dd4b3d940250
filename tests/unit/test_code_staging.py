"""``--unique`` staging: the copy holds exactly the hashed files, the ignore file and a version marker."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cicd_tools.codeassets.hashing import collect_code_files, content_hash
from cicd_tools.codeassets.staging import MARKER_FILE, staged_unique
from cicd_tools.support.errors import UsageError


def make_code(root: Path) -> Path:
    code = root / "train"
    (code / "pkg").mkdir(parents=True)
    (code / "main.py").write_text("print('train')\n")
    (code / "pkg" / "util.py").write_text("X = 1\n")
    (code / "logs").mkdir()
    (code / "logs" / "run.log").write_text("noise\n")
    (code / ".amlignore").write_text("logs/\n")
    return code


def staged_files(path: Path) -> set[str]:
    return {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}


def test_staged_copy_holds_the_hashed_files_the_ignore_file_and_the_marker(tmp_path: Path) -> None:
    code = make_code(tmp_path)
    with staged_unique(collect_code_files(code), "42") as staged:
        assert staged.path.name == "train"  # the folder name ends up in codeUri: keep it
        assert staged_files(staged.path) == {"main.py", "pkg/util.py", ".amlignore", MARKER_FILE}
        assert (staged.path / MARKER_FILE).read_text() == "42\n"
        assert staged.content_hash.files == tuple(sorted((*content_hash(code).files, MARKER_FILE), key=str.lower))
        assert staged.content_hash == content_hash(staged.path)


def test_the_same_version_stages_the_same_hash_and_another_version_a_new_one(tmp_path: Path) -> None:
    code = make_code(tmp_path)
    files = collect_code_files(code)
    with staged_unique(files, "42") as first, staged_unique(files, "42") as again:
        assert first.content_hash.sha256 == again.content_hash.sha256
    with staged_unique(files, "43") as other:
        assert other.content_hash.sha256 != first.content_hash.sha256
    assert first.content_hash.sha256 != content_hash(code).sha256


def test_the_staging_folder_is_removed_afterwards(tmp_path: Path) -> None:
    code = make_code(tmp_path)
    parent = tmp_path / "work"
    parent.mkdir()
    with staged_unique(collect_code_files(code), "1", parent=parent) as staged:
        assert staged.path.parent.parent == parent
        assert staged.path.exists()
    assert list(parent.iterdir()) == []


def test_an_ignore_file_hiding_dot_files_gets_the_marker_re_included(tmp_path: Path) -> None:
    code = make_code(tmp_path)
    (code / ".amlignore").write_text("logs/\n.*\n")
    with staged_unique(collect_code_files(code), "7") as staged:
        assert staged.ignore_patched
        assert MARKER_FILE in staged.content_hash.files
        assert (staged.path / ".amlignore").read_text().endswith(f"!/{MARKER_FILE}\n")
    # The original is untouched.
    assert (code / ".amlignore").read_text() == "logs/\n.*\n"


def test_an_ignore_file_that_excludes_itself_still_decides_in_the_copy(tmp_path: Path) -> None:
    code = make_code(tmp_path)
    (code / ".gitignore").write_text("x\n")
    (code / ".amlignore").write_text("logs/\n.amlignore\n")
    with staged_unique(collect_code_files(code), "7") as staged:
        assert (staged.path / ".amlignore").exists()
        assert ".amlignore" not in staged.content_hash.files
        assert set(staged.content_hash.files) == {*content_hash(code).files, MARKER_FILE}


@pytest.mark.skipif(os.name == "nt", reason="symlinks")
def test_symlinked_files_are_copied_as_their_content(tmp_path: Path) -> None:
    code = make_code(tmp_path)
    (tmp_path / "shared.py").write_text("SHARED = True\n")
    (code / "shared.py").symlink_to(tmp_path / "shared.py")
    with staged_unique(collect_code_files(code), "3") as staged:
        copied = staged.path / "shared.py"
        assert not copied.is_symlink()
        assert copied.read_text() == "SHARED = True\n"


def test_a_single_file_cannot_be_staged_unique(tmp_path: Path) -> None:
    single = tmp_path / "score.py"
    single.write_text("pass\n")
    with pytest.raises(UsageError, match="needs a code folder"), staged_unique(collect_code_files(single), "1"):
        pass


def test_a_folder_that_already_holds_the_marker_is_refused(tmp_path: Path) -> None:
    code = make_code(tmp_path)
    (code / MARKER_FILE).write_text("old\n")
    with pytest.raises(UsageError, match=MARKER_FILE), staged_unique(collect_code_files(code), "1"):
        pass
