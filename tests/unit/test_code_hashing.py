"""Our code asset hash equals azure-ai-ml's own (hashVersion 202208) on every tree shape that matters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import unicodedata
from pathlib import Path

import pytest
from azure.ai.ml._utils._asset_utils import get_content_hash, get_ignore_file, get_upload_files_from_folder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cicd_tools.cli.main import main
from cicd_tools.codeassets.hashing import (
    HASH_VERSION,
    CodePathError,
    CodePathMissing,
    ContentHash,
    EmptyCodeAsset,
    InvalidIgnoreFile,
    PathOutsideRepo,
    SymlinkLoop,
    UnreadableCodeFile,
    collect_code_files,
    content_hash,
    hash_code_files,
)
from cicd_tools.support.errors import ExitCode, UsageError

NFC_E = unicodedata.normalize("NFC", "é")
NFD_E = unicodedata.normalize("NFD", "é")


def write_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return root


def sdk_hash(path: Path) -> str | None:
    """What azure-ai-ml sends as hash_sha256 for a local code path."""
    result: str | None = get_content_hash(str(path), get_ignore_file(path))
    return result


def sdk_files(path: Path) -> tuple[str, ...]:
    """The SDK's own upload list, in its hash order."""
    listed: list[tuple[str, str]] = get_upload_files_from_folder(  # annotated List[str], returns pairs
        os.path.realpath(path), ignore_file=get_ignore_file(path)
    )  # type: ignore[assignment]
    return tuple(rel for _, rel in sorted(listed, key=lambda item: str(item[1]).lower()))


def assert_same_as_sdk(path: Path) -> ContentHash:
    ours = content_hash(path)
    if os.path.isdir(path):
        assert ours.files == sdk_files(path)
    assert ours.sha256 == sdk_hash(path)
    return ours


def test_plain_tree_hash_equals_sdk_and_counts_every_file(tmp_path: Path) -> None:
    write_tree(tmp_path, {"train.py": "print(1)\n", "pkg/__init__.py": "", "pkg/model.py": b"\x00\x01" * 5000})
    ours = assert_same_as_sdk(tmp_path)
    assert ours.file_count == 3
    assert ours.total_bytes == len("print(1)\n") + 10000
    assert len(ours.sha256) == 64


def test_hash_equals_the_hash_the_code_entity_registers(tmp_path: Path) -> None:
    from azure.ai.ml.entities._assets import Code

    write_tree(tmp_path, {"a.py": "a", ".amlignore": "*.log\n", "run.log": "x"})
    assert content_hash(tmp_path).sha256 == Code(name="c", version="1", path=str(tmp_path))._hash_sha256


def test_amlignore_excludes_matching_files_like_sdk(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {".amlignore": "*.log\ndata/\n/top.txt\n", "a.py": "a", "run.log": "l", "data/big.bin": "d",
         "sub/top.txt": "kept", "top.txt": "gone", "sub/data": "a file named data is kept"},
    )
    ours = assert_same_as_sdk(tmp_path)
    assert ours.files == (".amlignore", "a.py", "sub/data", "sub/top.txt")


def test_gitignore_applies_when_there_is_no_amlignore(tmp_path: Path) -> None:
    write_tree(tmp_path, {".gitignore": "__pycache__/\n*.pyc\n", "a.py": "a", "__pycache__/a.pyc": "c"})
    assert assert_same_as_sdk(tmp_path).files == (".gitignore", "a.py")


def test_amlignore_wins_over_gitignore_even_when_empty(tmp_path: Path) -> None:
    write_tree(tmp_path, {".amlignore": "", ".gitignore": "*.py\n", "a.py": "a"})
    assert assert_same_as_sdk(tmp_path).files == (".amlignore", ".gitignore", "a.py")


def test_negation_reincludes_a_file_under_an_ignored_folder_unlike_git(tmp_path: Path) -> None:
    write_tree(tmp_path, {".amlignore": "logs/\n!logs/keep.log\n", "logs/a.log": "a", "logs/keep.log": "k"})
    assert assert_same_as_sdk(tmp_path).files == (".amlignore", "logs/keep.log")


def test_last_matching_line_decides(tmp_path: Path) -> None:
    write_tree(tmp_path, {".gitignore": "!keep.log\n*.log\n", "keep.log": "k", "x.log": "x", "a.py": "a"})
    assert assert_same_as_sdk(tmp_path).files == (".gitignore", "a.py")


def test_ignore_file_syntax_edges_match_sdk(tmp_path: Path) -> None:
    lines = "\ufeff# comment\r\n  *.tmp  \r\n\\#literal\rdeep/**/x.py\n**/cache\n[ab].txt\n?.md\n\n!c.txt\n"
    write_tree(
        tmp_path,
        {".amlignore": lines.encode("utf-8"), "#literal": "h", "a.tmp": "t", "deep/1/2/x.py": "x",
         "deep/x.py": "x0", "q/cache/c": "c", "a.txt": "a", "c.txt": "c", "z.md": "z", "zz.md": "zz"},
    )
    ours = assert_same_as_sdk(tmp_path)
    assert ours.files == (".amlignore", "c.txt", "zz.md")


def test_file_symlink_hashes_target_content_under_link_name(tmp_path: Path) -> None:
    write_tree(tmp_path, {"real.py": "real"})
    (tmp_path / "alias.py").symlink_to("real.py")
    assert assert_same_as_sdk(tmp_path).files == ("alias.py", "real.py")


def test_folder_symlink_is_followed_and_matched_by_its_target_path(tmp_path: Path) -> None:
    # The SDK matches the resolved folder: `real/` also drops link/r.py, while `link/` drops nothing.
    write_tree(tmp_path, {"real/r.py": "r", "other/o.py": "o", ".gitignore": "real/\nlink/\n"})
    (tmp_path / "link").symlink_to("real", target_is_directory=True)
    (tmp_path / "olink").symlink_to("other", target_is_directory=True)
    assert assert_same_as_sdk(tmp_path).files == (".gitignore", "olink/o.py", "other/o.py")


def test_symlinked_root_hashes_like_its_target(tmp_path: Path) -> None:
    real = write_tree(tmp_path / "real", {"a.py": "a", ".amlignore": "*.log\n", "x.log": "x"})
    (tmp_path / "root").symlink_to(real, target_is_directory=True)
    ours = assert_same_as_sdk(tmp_path / "root")
    assert ours == content_hash(real)


def test_unicode_names_nfc_and_nfd_are_distinct_files(tmp_path: Path) -> None:
    write_tree(tmp_path, {f"caf{NFC_E}.py": "nfc", f"caf{NFD_E}.py": "nfd", "日本/データ.txt": "jp", "Ω.md": "o"})
    assert assert_same_as_sdk(tmp_path).file_count == 4


def test_hidden_files_and_git_folder_count(tmp_path: Path) -> None:
    write_tree(tmp_path, {".env.example": "e", ".git/config": "c", ".git/objects/ab/cd": b"\x00", "a.py": "a"})
    assert assert_same_as_sdk(tmp_path).files == (".env.example", ".git/config", ".git/objects/ab/cd", "a.py")


def test_empty_subfolder_does_not_change_the_hash(tmp_path: Path) -> None:
    write_tree(tmp_path, {"a.py": "a"})
    before = content_hash(tmp_path)
    (tmp_path / "empty" / "deeper").mkdir(parents=True)
    assert assert_same_as_sdk(tmp_path) == before


def test_single_file_hashes_as_its_basename(tmp_path: Path) -> None:
    write_tree(tmp_path, {"dir/score.py": "s"})
    assert assert_same_as_sdk(tmp_path / "dir" / "score.py").files == ("score.py",)


def test_single_file_symlink_is_named_after_its_target(tmp_path: Path) -> None:
    write_tree(tmp_path, {"target.py": "t"})
    (tmp_path / "alias.py").symlink_to("target.py")
    assert assert_same_as_sdk(tmp_path / "alias.py").files == ("target.py",)


def test_nested_ignore_files_are_plain_files(tmp_path: Path) -> None:
    write_tree(tmp_path, {"sub/.amlignore": "*\n", "sub/.gitignore": "*\n", "sub/a.py": "a"})
    assert assert_same_as_sdk(tmp_path).files == ("sub/.amlignore", "sub/.gitignore", "sub/a.py")


def test_mixed_case_names_sort_case_insensitively(tmp_path: Path) -> None:
    write_tree(tmp_path, {"b.py": "1", "A.py": "2", "a.py": "3", "C/x": "4", "c/y": "5", "_u": "6", "Z": "7"})
    ours = assert_same_as_sdk(tmp_path)
    assert [name.lower() for name in ours.files] == sorted(name.lower() for name in ours.files)


def test_renaming_a_file_changes_the_hash(tmp_path: Path) -> None:
    write_tree(tmp_path, {"a.py": "same"})
    before = content_hash(tmp_path).sha256
    (tmp_path / "a.py").rename(tmp_path / "b.py")
    assert content_hash(tmp_path).sha256 != before


# --- errors -----------------------------------------------------------------------------------------


def test_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(CodePathMissing, match="does not exist"):
        content_hash(tmp_path / "nope")
    assert CodePathMissing("x").exit_code == ExitCode.USAGE


def test_empty_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "only-dirs").mkdir()
    with pytest.raises(EmptyCodeAsset, match="holds no files"):
        content_hash(tmp_path)


def test_folder_emptied_by_ignore_file_names_the_ignore_file(tmp_path: Path) -> None:
    write_tree(tmp_path, {".amlignore": "*\n", "a.py": "a"})
    with pytest.raises(EmptyCodeAsset, match=r"\.amlignore excludes all 2 files"):
        content_hash(tmp_path)


def test_symlink_escaping_repo_root_is_refused(tmp_path: Path) -> None:
    outside = write_tree(tmp_path / "outside", {"secret.txt": "s"})
    code = write_tree(tmp_path / "repo" / "code", {"a.py": "a"})
    (code / "leak.txt").symlink_to(outside / "secret.txt")
    with pytest.raises(PathOutsideRepo, match=r"leak\.txt resolves to .*outside the repository root"):
        content_hash(code, repo_root=tmp_path / "repo")
    assert_same_as_sdk(code)  # without a boundary it is hashed like the SDK does


def test_folder_symlink_escaping_repo_root_is_refused(tmp_path: Path) -> None:
    write_tree(tmp_path / "outside", {"x.py": "x"})
    code = write_tree(tmp_path / "repo" / "code", {"a.py": "a"})
    (code / "ext").symlink_to(tmp_path / "outside", target_is_directory=True)
    with pytest.raises(PathOutsideRepo, match=r"ext/ resolves to .*outside the repository root"):  # not entered
        content_hash(code, repo_root=tmp_path / "repo")


def test_symlinks_inside_repo_root_are_accepted(tmp_path: Path) -> None:
    code = write_tree(tmp_path / "code", {"a.py": "a", "shared/s.py": "s"})
    (code / "lnk").symlink_to(code / "shared", target_is_directory=True)
    assert content_hash(code, repo_root=tmp_path).files == ("a.py", "lnk/s.py", "shared/s.py")


def test_symlink_loop_is_refused(tmp_path: Path) -> None:
    write_tree(tmp_path, {"d/x.py": "x"})
    (tmp_path / "d" / "up").symlink_to("..", target_is_directory=True)
    with pytest.raises(SymlinkLoop, match="leads back to"):
        content_hash(tmp_path)


def test_broken_symlink_is_unreadable(tmp_path: Path) -> None:
    write_tree(tmp_path, {"a.py": "a"})
    (tmp_path / "gone.py").symlink_to("missing.py")
    with pytest.raises(UnreadableCodeFile, match=r"gone\.py: a broken symlink"):
        content_hash(tmp_path)


def test_fifo_is_refused_instead_of_blocking(tmp_path: Path) -> None:
    write_tree(tmp_path, {"a.py": "a"})
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(UnreadableCodeFile, match="not a regular file"):
        content_hash(tmp_path)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_is_reported(tmp_path: Path) -> None:
    write_tree(tmp_path, {"a.py": "a", "secret.py": "s"})
    (tmp_path / "secret.py").chmod(0)
    try:
        with pytest.raises(UnreadableCodeFile, match=r"cannot read secret\.py"):
            content_hash(tmp_path)
    finally:
        (tmp_path / "secret.py").chmod(0o644)


def test_read_error_is_reported_as_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_tree(tmp_path, {"a.py": "a", "secret.py": "s"})
    real_open = os.open

    def failing_open(path: str, flags: int, *args: int) -> int:
        if str(path).endswith("secret.py"):
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", failing_open)
    with pytest.raises(UnreadableCodeFile, match=r"cannot read secret\.py: Permission denied"):
        content_hash(tmp_path)


def test_reader_without_readv_hashes_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cicd_tools.codeassets import hashing

    write_tree(tmp_path, {"a.py": "a", "big.bin": os.urandom(3 << 20)})
    monkeypatch.setattr(hashing, "_HAS_READV", False)  # the Windows path
    assert assert_same_as_sdk(tmp_path).total_bytes == 1 + (3 << 20)


def test_file_changing_size_while_hashed_is_refused(tmp_path: Path) -> None:
    write_tree(tmp_path, {"a.py": "abc"})
    listed = collect_code_files(tmp_path)
    (tmp_path / "a.py").write_text("abcdef", encoding="utf-8")
    with pytest.raises(UnreadableCodeFile, match="changed while it was hashed"):
        hash_code_files(listed)


def test_non_utf8_file_name_is_refused(tmp_path: Path) -> None:
    write_tree(tmp_path, {"a.py": "a"})
    with open(os.path.join(os.fsencode(tmp_path), b"\xff.py"), "wb") as fh:
        fh.write(b"x")
    with pytest.raises(CodePathError, match="not valid UTF-8"):
        content_hash(tmp_path)
    with pytest.raises(UnicodeEncodeError):
        sdk_hash(tmp_path)


def test_symlinked_ignore_file_matches_relative_to_its_target_like_sdk(tmp_path: Path) -> None:
    # Paths are matched as ../code/...: unanchored `*.log` still applies, anchored `/data/` no longer does.
    write_tree(tmp_path / "shared", {".amlignore": "*.log\n/data/\n"})
    code = write_tree(tmp_path / "code", {"a.py": "a", "x.log": "x", "data/d.csv": "d"})
    (code / ".amlignore").symlink_to(tmp_path / "shared" / ".amlignore")
    assert assert_same_as_sdk(code).files == (".amlignore", "a.py", "data/d.csv")


def test_invalid_ignore_pattern_is_refused_like_sdk_fails(tmp_path: Path) -> None:
    write_tree(tmp_path, {".amlignore": "ok.txt\nbad\\\n", "a.py": "a"})
    with pytest.raises(InvalidIgnoreFile, match=r"\.amlignore:2"):
        content_hash(tmp_path)
    with pytest.raises(ValueError):
        sdk_hash(tmp_path)
    assert issubclass(InvalidIgnoreFile, UsageError)


# --- property: random trees ----------------------------------------------------------------------------

_NAMES = ["a", "A", "b.log", "B.LOG", "keep.log", "x.py", "X.py", "logs", "data", ".hidden",
          f"{NFC_E}t{NFC_E}", f"{NFD_E}t{NFD_E}", "日本", "_", "Z"]
_PATTERNS = ["*.log", "!keep.log", "logs/", "!logs/keep.log", "/a", "data/**", "**/b*", "X.*", "# c", "",
             "  *.py  ", "[ab]", "?", "a/**/x.py", "!*.py", "!a/", "*", "link/", "data", "!data/x.py"]

_paths = st.lists(st.lists(st.sampled_from(_NAMES), min_size=1, max_size=3).map("/".join), max_size=12)
_ignore = st.sampled_from([None, ".amlignore", ".gitignore"])


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    paths=_paths,
    ignore_name=_ignore,
    patterns=st.lists(st.sampled_from(_PATTERNS), max_size=6),
    dir_link=st.booleans(),
    file_link=st.booleans(),
    data=st.data(),
)
def test_random_trees_hash_like_sdk(
    paths: list[str], ignore_name: str | None, patterns: list[str], dir_link: bool, file_link: bool,
    data: st.DataObject,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "code"
        root.mkdir()
        files: list[Path] = []
        for rel in paths:
            target = root / rel
            if any(p.is_file() for p in target.parents) or target.is_dir():
                continue  # a name cannot be both a file and a folder
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(rel.encode() * data.draw(st.integers(0, 3), label="repeat"))
            files.append(target)
        if ignore_name is not None:
            (root / ignore_name).write_text("\n".join(patterns) + "\n", encoding="utf-8")
        subdirs = sorted(p for p in root.rglob("*") if p.is_dir())
        if dir_link and subdirs:  # a link in the root to a subfolder can never loop
            (root / "link").symlink_to(data.draw(st.sampled_from(subdirs), label="dir"), target_is_directory=True)
        if file_link and files:
            (root / "flink").symlink_to(data.draw(st.sampled_from(files), label="file"))
        expected = sdk_hash(root)
        try:
            ours = content_hash(root)
        except EmptyCodeAsset:
            assert sdk_files(root) == ()  # we refuse exactly when the SDK hashes an empty list
            return
        assert ours.sha256 == expected
        assert ours.files == sdk_files(root)


# --- CLI ------------------------------------------------------------------------------------------------


def test_cli_json_prints_hash_document(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_tree(tmp_path, {"a.py": "a", "b/c.py": "cc"})
    assert main(["--output", "json", "code", "hash", str(tmp_path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc == {"path": str(tmp_path), "hash": sdk_hash(tmp_path), "hashVersion": HASH_VERSION,
                   "fileCount": 2, "totalBytes": 3}


def test_cli_list_files_adds_files_in_hash_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_tree(tmp_path, {"b.py": "b", "A.py": "a"})
    assert main(["--output", "json", "code", "hash", "--list-files", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["files"] == ["A.py", "b.py"]


def test_cli_text_prints_hash_and_count(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_tree(tmp_path, {"a.py": "a"})
    assert main(["code", "hash", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{sdk_hash(tmp_path)}  {tmp_path}\n")
    assert "1 files, 1 bytes (hashVersion 202208)" in out


def test_cli_missing_path_exits_with_usage_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["code", "hash", str(tmp_path / "nope")]) == ExitCode.USAGE
    assert "does not exist" in capsys.readouterr().err


def test_cli_repo_root_refuses_escaping_symlink(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = write_tree(tmp_path / "repo", {"a.py": "a"})
    (code / "x").symlink_to(write_tree(tmp_path / "out", {"x": "x"}) / "x")
    assert main(["code", "hash", str(code), "--repo-root", str(code)]) == ExitCode.USAGE
    assert "outside the repository root" in capsys.readouterr().err


def test_cli_code_hash_does_not_import_azure_ai_ml(tmp_path: Path) -> None:
    write_tree(tmp_path, {"a.py": "a"})
    program = (
        "import sys; from cicd_tools.cli.main import main; main(['code','hash',sys.argv[1]]);"
        " print('azure.ai.ml' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", program, str(tmp_path)], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.splitlines()[-1] == "False"
