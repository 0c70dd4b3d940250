"""One folder-walk policy (issue 19, point 3): nothing outside the root is read, and every skip has a reason.

The hostile tree of the issue: ``leak.txt -> <tmp>/secret`` and ``passwd -> /etc/passwd`` (files outside the
root), ``ext -> <tmp>/outside`` (a folder outside), ``d/up -> ..`` (a loop), ``pipe`` (a FIFO), next to a
symlink that stays inside (``alias.py -> a.py``), which is followed as the Azure ML SDK follows it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cicd_tools.aml.checkpoints import stage_checkpoint
from cicd_tools.codeassets.hashing import PathOutsideRepo, SymlinkLoop, UnreadableCodeFile, content_hash
from cicd_tools.support.walk import walk_files

SECRET = b"-----BEGIN OPENSSH PRIVATE KEY----- not really"


def hostile_tree(tmp_path: Path) -> Path:
    (tmp_path / "secret").write_bytes(SECRET)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "x.bin").write_bytes(SECRET)
    root = tmp_path / "run"
    (root / "d").mkdir(parents=True)
    (root / "a.py").write_text("print(1)\n")
    (root / "d" / "w.bin").write_bytes(b"weights")
    (root / "alias.py").symlink_to("a.py")
    (root / "leak.txt").symlink_to(tmp_path / "secret")
    (root / "passwd").symlink_to("/etc/passwd")
    (root / "ext").symlink_to(tmp_path / "outside", target_is_directory=True)
    (root / "d" / "up").symlink_to("..", target_is_directory=True)
    os.mkfifo(root / "pipe")
    return root


EXPECTED_SKIPS = {"leak.txt": "outside-root", "passwd": "outside-root", "ext/": "outside-root",
                  "d/up/": "symlink-loop", "pipe": "special-file"}


def test_the_walk_takes_inside_files_and_lists_every_hostile_entry_with_its_reason(tmp_path: Path) -> None:
    root = hostile_tree(tmp_path)
    walked = walk_files(root, boundary=root, sort=True)
    assert sorted(f.rel for f in walked.files) == ["a.py", "alias.py", "d/w.bin"]
    assert {s.rel: s.reason for s in walked.skipped} == EXPECTED_SKIPS
    real_root = os.path.realpath(root)
    assert all(os.path.realpath(f.source).startswith(real_root + os.sep) for f in walked.files)


def test_model_mirror_staging_uploads_nothing_from_outside_and_lists_the_skips(tmp_path: Path) -> None:
    root = hostile_tree(tmp_path)
    staged = stage_checkpoint(root, excludes=())
    assert sorted(staged.files) == ["a.py", "alias.py", "d/w.bin"]
    real_root = os.path.realpath(root)
    assert all(os.path.realpath(e.source).startswith(real_root + os.sep) for e in staged.entries)
    assert {s.rel: s.reason for s in staged.unsafe} == EXPECTED_SKIPS
    assert all(s.detail for s in staged.unsafe)


def test_a_checkpoint_folder_linked_from_outside_is_not_selected(tmp_path: Path) -> None:
    root = tmp_path / "run"
    (root / "checkpoint-1").mkdir(parents=True)
    (root / "checkpoint-1" / "w.bin").write_bytes(b"w1")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "w.bin").write_bytes(SECRET)
    (root / "checkpoint-9").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    staged = stage_checkpoint(root, excludes=())
    assert (staged.checkpoint, staged.files) == ("checkpoint-1", ["w.bin"])
    assert [(s.rel, s.reason) for s in staged.unsafe] == [("checkpoint-9/", "outside-root")]


@pytest.mark.parametrize(("entry", "error", "reason"), [
    ("leak.txt", PathOutsideRepo, "resolves to .*secret, outside the repository root"),
    ("passwd", PathOutsideRepo, "resolves to /etc/passwd, outside the repository root"),
    ("ext", PathOutsideRepo, "ext/ resolves to .*outside, outside the repository root"),
    ("d/up", SymlinkLoop, "d/up/ leads back to"),
    ("pipe", UnreadableCodeFile, "pipe is not a regular file \\(a FIFO"),
])
def test_code_assets_refuse_each_hostile_entry_naming_it(
    tmp_path: Path, entry: str, error: type[Exception], reason: str
) -> None:
    root = hostile_tree(tmp_path)
    for other in EXPECTED_SKIPS:
        if other.rstrip("/") != entry:
            (root / other.rstrip("/")).unlink()
    with pytest.raises(error, match=reason):
        content_hash(root, repo_root=root)
