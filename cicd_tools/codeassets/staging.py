"""Stage a code folder with marker files: ``code register --unique`` and ``--name-marker``.

Azure ML dedups by content hash, and the hash lookup matches regardless of name (AZURE_FACTS.md §1), so
unchanged code returns the version registered first, possibly under another asset name.

- ``--unique``: a marker holding the requested version makes the content (and the hash) new for every
  build while the code itself is unchanged; the same build re-run stages the same bytes and gets its own
  version back.
- ``--name-marker``: a marker holding the asset name makes the content differ between names but not
  between runs: dedup still works within a name and never crosses names.

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
from cicd_tools.support.errors import UsageError

log = logging.getLogger(__name__)

MARKER_FILE = ".aml-code-asset-version"
NAME_MARKER_FILE = ".aml-code-asset-name"
_FLAG_OF = {MARKER_FILE: "--unique", NAME_MARKER_FILE: "--name-marker"}


@dataclass(frozen=True)
class StagedCode:
    """A staged copy: where it is, its hash, and whether the ignore file had to re-include a marker."""

    path: Path
    content_hash: ContentHash
    marker: str
    ignore_patched: bool
    markers: tuple[str, ...] = ()


def marker_content(requested_version: str) -> bytes:
    """The version marker's bytes: the requested version and a newline."""
    return f"{requested_version}\n".encode()


def name_marker_content(asset_name: str) -> bytes:
    """The name marker's bytes: the asset name and a newline."""
    return f"{asset_name}\n".encode()


def markers_for(
    *, asset_name: str | None = None, requested_version: str | None = None
) -> dict[str, bytes]:
    """The marker files a registration stages: the name marker and/or the version marker."""
    markers: dict[str, bytes] = {}
    if asset_name is not None:
        markers[NAME_MARKER_FILE] = name_marker_content(asset_name)
    if requested_version is not None:
        markers[MARKER_FILE] = marker_content(requested_version)
    return markers


@contextmanager
def staged_unique(
    files: CodeFiles, requested_version: str, *, parent: Path | None = None
) -> Iterator[StagedCode]:
    """Stage ``files`` with a version marker in a temporary folder, removed on exit (see ``staged_copy``)."""
    with staged_copy(files, markers_for(requested_version=requested_version), parent=parent) as staged:
        yield staged


@contextmanager
def staged_copy(
    files: CodeFiles, markers: dict[str, bytes], *, parent: Path | None = None
) -> Iterator[StagedCode]:
    """Stage ``files`` plus ``markers`` (file name -> bytes) in a temporary folder, removed on exit.

    Raises:
        UsageError: the code path is a single file, or it already holds a marker file.
        CodePathError: the staged copy cannot be hashed (a file vanished while copying).
    """
    flags = " / ".join(_FLAG_OF.get(m, m) for m in markers)
    if not files.root.is_dir():
        raise UsageError(
            f"{flags} needs a code folder; {files.root} is a single file",
            hint=f"Register the folder that holds the file, or drop {flags}.",
        )
    for marker in markers:
        if any(entry.rel == marker for entry in files.entries):
            raise UsageError(
                f"{files.root} already holds {marker}; {_FLAG_OF.get(marker, 'staging')} writes that file itself",
                hint=f"Delete {marker} from the code folder (or list it in .amlignore).",
            )
    workdir = Path(tempfile.mkdtemp(prefix="cicd-code-", dir=parent))
    try:
        yield stage_markers_into(files, markers, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def stage_into(files: CodeFiles, requested_version: str, workdir: Path) -> StagedCode:
    """Copy the hashed files, the ignore file and the version marker into ``workdir/<folder name>``."""
    return stage_markers_into(files, markers_for(requested_version=requested_version), workdir)


def stage_markers_into(files: CodeFiles, markers: dict[str, bytes], workdir: Path) -> StagedCode:
    """Copy the hashed files, the ignore file and ``markers`` into ``workdir/<folder name>``."""
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
        for marker in markers:
            if rules.excludes(marker):
                # A `.*` line would hide the marker and the hash would not change: re-include it, last line wins.
                text = ignore_dest.read_text(encoding="utf-8-sig")
                newline = "" if not text or text.endswith(("\n", "\r")) else "\n"
                with open(ignore_dest, "a", encoding="utf-8") as fh:
                    fh.write(f"{newline}!/{marker}\n")
                ignore_patched = True
                log.info("%s excludes %s; the staged copy re-includes it", files.ignore_file, marker)
    for marker, content in markers.items():
        (target / marker).write_bytes(content)
    staged_files = collect_code_files(target)
    expected = {entry.rel for entry in files.entries} | set(markers)
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
    return StagedCode(path=target, content_hash=digest, marker=next(iter(markers), MARKER_FILE),
                      ignore_patched=ignore_patched, markers=tuple(markers))
