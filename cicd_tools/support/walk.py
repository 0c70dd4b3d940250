"""One policy for every folder walk that decides what gets hashed or uploaded.

``walk_files(top, boundary=...)`` goes down ``top`` in ``os.walk(followlinks=True)`` order (the order Azure ML's
content hash ties keep, AZURE_FACTS.md §1) and sorts every entry into a file to take, or a ``Skipped`` entry
with its reason:

- ``outside-root``: a file or folder symlink whose target resolves outside ``boundary`` (``leak.txt ->
  ~/.ssh/id_rsa``, ``etc -> /etc``): taking it would copy a file of the build machine into a registry;
- ``symlink-loop``: a folder symlink that leads back to one of its own ancestors (the walk would not end);
- ``special-file``: a FIFO, socket or device (reading it blocks or never ends; registries hold regular files);
- ``broken-symlink`` and ``unreadable``: nothing there to read.

Symlinks that stay inside the boundary are followed, as the Azure ML SDK follows them (its upload and hash
both walk with ``followlinks=True``). The walk never reads a skipped entry. Callers decide what a skip means:
``model mirror --from-path`` lists them in its result and goes on; ``code register`` / ``code plan`` refuse
(the asset's content hash must describe exactly what Azure ML would upload).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

OUTSIDE_ROOT = "outside-root"
SYMLINK_LOOP = "symlink-loop"
SPECIAL_FILE = "special-file"
BROKEN_SYMLINK = "broken-symlink"
UNREADABLE = "unreadable"


@dataclass(frozen=True)
class WalkedFile:
    rel: str  # POSIX path relative to ``top``
    source: str  # the path read (a symlink resolved)
    size: int


@dataclass(frozen=True)
class Skipped:
    rel: str  # POSIX path relative to ``top`` (a folder ends with ``/``)
    reason: str  # one of the constants above
    detail: str  # for people: where the link points, what kind of file it is

    def to_dict(self) -> dict[str, str]:
        return {"path": self.rel, "reason": self.reason, "detail": self.detail}

    def __str__(self) -> str:
        return f"{self.rel} ({self.reason}: {self.detail})"


@dataclass
class WalkResult:
    files: list[WalkedFile] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    excluded: int = 0  # files the caller's ``keep`` left out


def inside(real: str, boundary: str) -> bool:
    """Whether the resolved path ``real`` is ``boundary`` or below it (both resolved)."""
    return real == boundary or real.startswith(boundary if boundary.endswith(os.sep) else boundary + os.sep)


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def classify_file(joined: str, rel: str, boundary: str | None, real_dir: str | None = None) -> WalkedFile | Skipped:
    """One directory entry that is not a folder: the file to read, or why it is skipped.

    ``real_dir``: the resolved folder holding it, when the caller knows it is inside ``boundary`` (a plain
    file there needs no check of its own; the walk checks every folder symlink it follows).
    """
    try:
        info = os.lstat(joined)
    except OSError as exc:
        return Skipped(rel, UNREADABLE, exc.strerror or str(exc))
    source = joined if real_dir is None else os.path.join(real_dir, os.path.basename(joined))
    if stat.S_ISLNK(info.st_mode):
        source = os.path.realpath(joined)
        if boundary is not None and not inside(source, boundary):
            return Skipped(rel, OUTSIDE_ROOT, f"resolves to {source}, outside {boundary}")
        try:
            info = os.stat(source)
        except OSError as exc:
            if isinstance(exc, FileNotFoundError):
                return Skipped(rel, BROKEN_SYMLINK, f"links to {os.readlink(joined)}, which does not exist")
            return Skipped(rel, UNREADABLE, exc.strerror or str(exc))
    elif boundary is not None and real_dir is None and not inside(os.path.realpath(joined), boundary):
        return Skipped(rel, OUTSIDE_ROOT, f"resolves to {os.path.realpath(joined)}, outside {boundary}")
    if not stat.S_ISREG(info.st_mode):
        return Skipped(rel, SPECIAL_FILE, f"{_kind(info.st_mode)}: only regular files are taken")
    return WalkedFile(rel=rel, source=source, size=info.st_size)


def walk_files(
    top: Path | str,
    *,
    boundary: Path | str | None = None,
    keep: Callable[[str, str, str], bool] | None = None,
    sort: bool = False,
) -> WalkResult:
    """Every file below ``top`` that the policy lets through, and every entry it skipped (with the reason).

    ``boundary``: entries resolving outside it are skipped (None: no boundary, e.g. ``code hash`` without
    ``--repo-root``, to match the SDK). ``keep(real_dir, name, rel)``: a caller's filter (ignore files,
    exclude patterns), asked before a file is looked at, so an ignored FIFO is neither read nor listed.
    ``sort``: folders and names in sorted order instead of the file system's.
    """
    top_str = os.fspath(top)
    real_boundary = None if boundary is None else os.path.realpath(boundary)
    if real_boundary is not None and not inside(os.path.realpath(top_str), real_boundary):
        raise ValueError(f"{top_str} is not inside {real_boundary}")  # callers check the top themselves
    result = WalkResult()
    chains: dict[str, tuple[str, ...]] = {}

    def unlistable(exc: OSError) -> None:
        rel = Path(exc.filename or top_str).relative_to(top_str).as_posix() if exc.filename else "."
        result.skipped.append(Skipped(f"{rel}/", UNREADABLE, f"cannot list: {exc.strerror or exc}"))

    for walk_dir, dirs, names in os.walk(top_str, onerror=unlistable, followlinks=True):
        real_dir = os.path.realpath(walk_dir)
        ancestors = (*(chains.get(os.path.dirname(walk_dir), ()) if walk_dir != top_str else ()), real_dir)
        chains[walk_dir] = ancestors
        prefix = "" if walk_dir == top_str else Path(walk_dir).relative_to(top_str).as_posix() + "/"
        if sort:
            dirs.sort()
            names.sort()
        for name in list(dirs):
            joined = os.path.join(walk_dir, name)
            if not os.path.islink(joined):
                continue
            target = os.path.realpath(joined)
            reason = None
            if target in ancestors:
                reason = Skipped(f"{prefix}{name}/", SYMLINK_LOOP,
                                 f"leads back to {target}, one of its own parent folders")
            elif real_boundary is not None and not inside(target, real_boundary):
                reason = Skipped(f"{prefix}{name}/", OUTSIDE_ROOT, f"resolves to {target}, outside {real_boundary}")
            if reason is not None:
                dirs.remove(name)
                result.skipped.append(reason)
        for name in names:
            rel = prefix + name
            if keep is not None and not keep(real_dir, name, rel):
                result.excluded += 1
                continue
            entry = classify_file(os.path.join(walk_dir, name), rel, real_boundary, real_dir)
            if isinstance(entry, Skipped):
                result.skipped.append(entry)
            else:
                result.files.append(entry)
    return result
