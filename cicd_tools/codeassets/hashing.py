"""The Azure ML code asset content hash (hashVersion 202208), reimplemented without importing azure.ai.ml.

Azure ML deduplicates code assets by name + this hash, so it must equal the SDK's own
(``azure.ai.ml._utils._asset_utils.get_content_hash`` with ``get_ignore_file``) byte for byte.
The algorithm (AZURE_FACTS.md §1), as the SDK runs it:

1. a symlinked root is resolved; a single file hashes as one entry named by its basename;
2. ignore rules come from the root's `.amlignore`, else its `.gitignore` (see ``ignore.py``);
3. ``os.walk(root, followlinks=True)``; hidden files and `.git/` count like any other file;
4. the list is stable-sorted by ``rel.lower()``, so same-name-but-case ties keep ``os.walk`` order;
5. sha256 over ``str(N)``, then per file ``"#" + rel + "#"`` and ``str(size)``, then every file's bytes.

Where the SDK would crash, block or silently produce a useless hash, this module raises instead: a
missing path, an empty folder (or one the ignore file empties), a symlink loop (the SDK recurses until the
kernel's ELOOP and then fails), a FIFO or device (the SDK blocks reading it), an unlistable folder (the SDK
skips it silently), a file that changes size while it is hashed, a file name that is not UTF-8. With
``repo_root``, a file whose resolved path leaves the repository (a symlink pointing outside) is refused too:
it would not exist on another checkout, and it could leak a file from the build agent into the asset.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cicd_tools.codeassets.ignore import IgnoreRules, InvalidIgnoreFile, load_ignore_rules
from cicd_tools.support.errors import UsageError
from cicd_tools.support.walk import (
    BROKEN_SYMLINK,
    OUTSIDE_ROOT,
    SPECIAL_FILE,
    SYMLINK_LOOP,
    Skipped,
    classify_file,
    walk_files,
)

__all__ = [
    "HASH_VERSION",
    "CodeFile",
    "CodeFiles",
    "CodePathError",
    "CodePathMissing",
    "ContentHash",
    "EmptyCodeAsset",
    "InvalidIgnoreFile",
    "PathOutsideRepo",
    "SymlinkLoop",
    "UnreadableCodeFile",
    "collect_code_files",
    "content_hash",
    "hash_code_files",
]

HASH_VERSION = "202208"

# Large reads into one reused buffer: few syscalls and no per-file allocation (the SDK reads 1 KiB at a time).
_CHUNK_BYTES = 1 << 20

_HAS_READV = hasattr(os, "readv")

log = logging.getLogger(__name__)


class CodePathError(UsageError):
    """A code asset path cannot be hashed as Azure ML would hash it."""

    default_hint = "Point at the folder that holds the code to register (the job's `code:` folder)."


class CodePathMissing(CodePathError):
    """The code path (or the repository root) does not exist, or is neither a file nor a folder."""


class EmptyCodeAsset(CodePathError):
    """Nothing is left to hash: the folder has no files, or its ignore file excludes all of them."""

    default_hint = "Azure ML would register an empty code asset: check the path and the ignore file."


class PathOutsideRepo(CodePathError):
    """A file of the code asset resolves (through a symlink) to a path outside the repository root."""

    default_hint = "Copy the file into the repository, or drop the symlink; --repo-root sets the boundary."


class UnreadableCodeFile(CodePathError):
    """A file or folder of the code asset cannot be listed or read (permissions, broken symlink, FIFO...)."""

    default_hint = "Fix the file's permissions or remove it (or list it in .amlignore)."


# A FIFO, socket or device is no permissions problem: chmod would not help, only removing or ignoring it.
NOT_A_FILE_HINT = "Remove it from the code folder or list it in .amlignore: Azure ML uploads regular files only."


class SymlinkLoop(CodePathError):
    """A folder symlink points back to one of its own ancestors, so the walk would never end."""

    default_hint = "Remove or retarget the symlink: an ignore pattern does not stop the walk into a folder."


@dataclass(frozen=True)
class CodeFile:
    """One file of a code asset."""

    source: str  # the resolved path whose bytes are hashed (and uploaded)
    rel: str  # POSIX path relative to the code root: the name Azure ML hashes and stores
    size: int


@dataclass(frozen=True)
class CodeFiles:
    """The files of a code asset in hash order, and what decided them."""

    root: Path  # the file or folder hashed, a symlinked root resolved
    entries: tuple[CodeFile, ...]
    ignore_file: Path | None  # the `.amlignore` / `.gitignore` in force, as found in the root
    excluded: int  # how many files the ignore file left out


@dataclass(frozen=True)
class ContentHash:
    """A code asset's content hash and what went into it."""

    sha256: str
    file_count: int
    total_bytes: int
    files: tuple[str, ...]  # POSIX relative paths in hash order


def content_hash(path: Path, *, repo_root: Path | None = None) -> ContentHash:
    """The Azure ML content hash (hashVersion 202208) of a code folder or file.

    Raises:
        CodePathMissing: ``path`` (or ``repo_root``) does not exist.
        EmptyCodeAsset: no file is left to hash (the message names the ignore file that excluded them all).
        PathOutsideRepo: with ``repo_root``, a file resolves outside it (a symlink pointing out of the repo).
        SymlinkLoop: a folder symlink points back to one of its ancestors.
        UnreadableCodeFile: a file or folder cannot be read, or a file changed while it was hashed.
        InvalidIgnoreFile: the ignore file cannot be read or holds an invalid pattern.
    """
    return hash_code_files(collect_code_files(path, repo_root=repo_root))


def collect_code_files(path: Path, *, repo_root: Path | None = None) -> CodeFiles:
    """The files Azure ML would hash and upload for ``path``, in hash order, with their sizes.

    Raises:
        The errors of ``content_hash``, except a file changing while it is read.
    """
    path = Path(path)
    repo = _real_repo_root(repo_root)
    if not os.path.exists(path):
        raise CodePathMissing(
            f"code path {path} does not exist (or is a broken symlink)", code="path-missing"
        )
    actual = Path(os.path.realpath(path)) if os.path.islink(path) else path
    if repo is not None:
        _check_inside(os.path.realpath(actual), repo, shown=str(path))
    if os.path.isdir(actual):
        rules = load_ignore_rules(actual)
        if repo is not None and rules.source is not None:
            _check_inside(os.path.realpath(rules.source), repo, shown=str(rules.source))
        found, excluded = _walk(actual, rules, repo)
    elif os.path.isfile(actual):
        rules, excluded = None, 0
        single = classify_file(os.path.realpath(actual), actual.name, repo)
        if isinstance(single, Skipped):
            raise _refusal([single])
        found = [CodeFile(source=single.source, rel=single.rel, size=single.size)]
    else:
        raise UnreadableCodeFile(
            f"code path {path} is neither a regular file nor a folder", code="not-a-file", hint=NOT_A_FILE_HINT
        )
    if not found:
        raise _empty_error(path, rules, excluded)
    found.sort(key=lambda entry: entry.rel.lower())  # stable, like the SDK's sorted()
    ignore_file = rules.source if rules is not None else None
    log.debug("%s: %d files, %d excluded by %s", path, len(found), excluded, ignore_file or "no ignore file")
    return CodeFiles(root=actual, entries=tuple(found), ignore_file=ignore_file, excluded=excluded)


def hash_code_files(files: CodeFiles) -> ContentHash:
    """Hash collected files: every header (count, names, sizes) first, then every file's bytes, one pass.

    Raises:
        UnreadableCodeFile: a file cannot be read, or its size changed since it was listed.
        CodePathError: a file name is not valid UTF-8 (Azure ML cannot name it either).
    """
    digest = hashlib.sha256()
    header = [str(len(files.entries)).encode()]
    for entry in files.entries:
        try:
            header.append(f"#{entry.rel}#{entry.size}".encode())
        except UnicodeEncodeError:
            raise CodePathError(
                f"file name {entry.rel!r} in {files.root} is not valid UTF-8; Azure ML cannot hash it",
                code="non-utf8-name",
            ) from None
    digest.update(b"".join(header))
    view = memoryview(bytearray(_CHUNK_BYTES))
    total = 0
    for entry in files.entries:
        total += _hash_content(entry, digest, view)
    return ContentHash(
        sha256=digest.hexdigest(),
        file_count=len(files.entries),
        total_bytes=total,
        files=tuple(entry.rel for entry in files.entries),
    )


def _hash_content(entry: CodeFile, digest: hashlib._Hash, view: memoryview) -> int:
    try:
        read = _read_into(entry.source, digest, view)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UnreadableCodeFile(f"cannot read {entry.rel}: {reason}", code="unreadable") from None
    if read != entry.size:
        # The header already committed to the listed size: the hash would describe no real snapshot.
        raise UnreadableCodeFile(
            f"{entry.rel} changed while it was hashed ({entry.size} bytes listed, {read} read)",
            code="changed-while-hashing",
            hint="Hash a checkout nothing else writes to (build outputs belong outside the code folder).",
        )
    return read


def _read_into(path: str, digest: hashlib._Hash, view: memoryview) -> int:
    read = 0
    if not _HAS_READV:  # Windows
        with open(path, "rb", buffering=0) as fh:
            while count := fh.readinto(view):
                digest.update(view[:count])
                read += count
        return read
    # os.open/os.readv rather than open(): no file object per file, measurably faster on many small files.
    fd = os.open(path, os.O_RDONLY)
    try:
        while count := os.readv(fd, [view]):
            digest.update(view[:count])
            read += count
    finally:
        os.close(fd)
    return read


def _walk(top: Path, rules: IgnoreRules, repo: str | None) -> tuple[list[CodeFile], int]:
    """Every non-ignored file below ``top`` in ``os.walk`` order (the order ties keep after sorting).

    The walk is the shared policy (``cicd_tools/support/walk.py``); a code asset refuses what it skips: the
    hash must describe exactly what Azure ML would upload, so nothing may be left out silently.
    """

    def keep(real_dir: str, name: str, rel: str) -> bool:
        # The SDK matches the *resolved* folder: files under a folder symlink match as the target's files.
        return not (rules.patterns and rules.excludes(rules.prefix_for(real_dir) + name))

    walked = walk_files(top, boundary=repo, keep=keep)
    if walked.skipped:
        raise _refusal(walked.skipped)
    return [CodeFile(source=f.source, rel=f.rel, size=f.size) for f in walked.files], walked.excluded


def _refusal(skipped: list[Skipped]) -> CodePathError:
    first = skipped[0]
    more = f" (and {len(skipped) - 1} more: {', '.join(str(s) for s in skipped[1:4])})" if len(skipped) > 1 else ""
    if first.reason == SYMLINK_LOOP:
        return SymlinkLoop(f"{first.rel} {first.detail}{more}", code="symlink-loop")
    if first.reason == OUTSIDE_ROOT:
        detail = first.detail.replace(", outside ", ", outside the repository root ", 1)
        return PathOutsideRepo(f"{first.rel} {detail}{more}", code="outside-repo")
    if first.reason == SPECIAL_FILE:
        return UnreadableCodeFile(
            f"{first.rel} is not a regular file ({first.detail.split(':')[0]}; a FIFO, socket or device cannot be"
            f" part of a code asset){more}",
            code="not-a-file",
            hint=NOT_A_FILE_HINT,
        )
    reason = "a broken symlink" if first.reason == BROKEN_SYMLINK else first.detail
    return UnreadableCodeFile(f"cannot read {first.rel}: {reason}{more}", code="unreadable")


def _real_repo_root(repo_root: Path | None) -> str | None:
    if repo_root is None:
        return None
    if not os.path.isdir(repo_root):
        raise CodePathMissing(f"repository root {repo_root} is not a folder", code="path-missing")
    return os.path.realpath(repo_root)


def _check_inside(real: str, repo: str, *, shown: str) -> None:
    inside = real == repo or real.startswith(repo if repo.endswith(os.sep) else repo + os.sep)
    if not inside:
        raise PathOutsideRepo(
            f"{shown} resolves to {real}, outside the repository root {repo}", code="outside-repo"
        )


def _empty_error(path: Path, rules: IgnoreRules | None, excluded: int) -> EmptyCodeAsset:
    if rules is not None and rules.source is not None and excluded:
        return EmptyCodeAsset(
            f"nothing to hash in {path}: {rules.source} excludes all {excluded} files", code="empty"
        )
    return EmptyCodeAsset(f"nothing to hash in {path}: the folder holds no files", code="empty")
