"""Stage a code folder for ``code register --unique``: a copy whose hash differs per requested version.

Azure ML dedups by name + content hash, so unchanged code returns the version registered first. A
marker file holding the requested version makes the content (and the hash) new for every build while
the code itself is unchanged; the same build re-run stages the same bytes and gets its own version back.

The copy holds exactly the files the hash includes (resolved through symlinks) plus the ignore file,
so the staged folder hashes like the original with one file more. The folder keeps its name: the
SDK appends it to the uploaded ``codeUri``.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cicd_tools.codeassets.hashing import CodeFiles, ContentHash, collect_code_files, hash_code_files
from cicd_tools.codeassets.ignore import load_ignore_rules
from cicd_tools.errors import UsageError

log = logging.getLogger(__name__)

MARKER_FILE = ".aml-code-asset-version"


@dataclass(frozen=True)
class StagedCode:
    """A staged copy: where it is, its hash, and whether the ignore file had to re-include the marker."""

    path: Path
    content_hash: ContentHash
    marker: str
    ignore_patched: bool


def marker_content(requested_version: str) -> bytes:
    """The marker file's bytes: the requested version and a newline."""
    return f"{requested_version}\n".encode()


@contextmanager
def staged_unique(
    files: CodeFiles, requested_version: str, *, parent: Path | None = None
) -> Iterator[StagedCode]:
    """Stage ``files`` with a version marker in a temporary folder, removed on exit.

    Raises:
        UsageError: the code path is a single file, or it already holds a marker file.
        CodePathError: the staged copy cannot be hashed (a file vanished while copying).
    """
    if not files.root.is_dir():
        raise UsageError(
            f"--unique needs a code folder; {files.root} is a single file",
            hint="Register the folder that holds the file, or drop --unique.",
        )
    if any(entry.rel == MARKER_FILE for entry in files.entries):
        raise UsageError(
            f"{files.root} already holds {MARKER_FILE}; --unique writes that file itself",
            hint=f"Delete {MARKER_FILE} from the code folder (or list it in .amlignore).",
        )
    workdir = Path(tempfile.mkdtemp(prefix="cicd-code-", dir=parent))
    try:
        yield stage_into(files, requested_version, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def stage_into(files: CodeFiles, requested_version: str, workdir: Path) -> StagedCode:
    """Copy the hashed files, the ignore file and the marker into ``workdir/<folder name>``."""
    target = workdir / files.root.name
    target.mkdir(parents=True)
    for entry in files.entries:
        dest = target / entry.rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        # copyfile reads through symlinks: the staged file holds the bytes the hash read.
        shutil.copyfile(entry.source, dest)
    ignore_patched = False
    if files.ignore_file is not None:
        ignore_dest = target / files.ignore_file.name
        if not ignore_dest.exists():  # it may be excluded by its own patterns, yet it must keep deciding
            shutil.copyfile(files.ignore_file, ignore_dest)
        rules = load_ignore_rules(target)
        if rules.excludes(MARKER_FILE):
            # A `.*` line would hide the marker and the hash would not change: re-include it, last line wins.
            text = ignore_dest.read_text(encoding="utf-8-sig")
            newline = "" if not text or text.endswith(("\n", "\r")) else "\n"
            with open(ignore_dest, "a", encoding="utf-8") as fh:
                fh.write(f"{newline}!/{MARKER_FILE}\n")
            ignore_patched = True
            log.info("%s excludes %s; the staged copy re-includes it", files.ignore_file, MARKER_FILE)
    (target / MARKER_FILE).write_bytes(marker_content(requested_version))
    staged_files = collect_code_files(target)
    expected = {entry.rel for entry in files.entries} | {MARKER_FILE}
    actual = {entry.rel for entry in staged_files.entries}
    if actual != expected:
        # Patterns match a symlinked folder under its target's path; the copy has no symlinks, so a
        # pattern naming the target could select other files. Refuse rather than register other code.
        differ = sorted(expected ^ actual)
        raise UsageError(
            f"the staged copy of {files.root} would not hold the same files ({len(differ)} differ, e.g. "
            f"{', '.join(differ[:3])}): an ignore pattern matches a symlinked folder by its target's path",
            hint="Replace the folder symlink with a real folder, or register without --unique.",
            code="staging-mismatch",
        )
    digest = hash_code_files(staged_files)
    log.debug("staged %s into %s (%d files)", files.root, target, digest.file_count)
    return StagedCode(path=target, content_hash=digest, marker=MARKER_FILE, ignore_patched=ignore_patched)
