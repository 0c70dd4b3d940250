"""Writing output files: atomically, only over a regular file (or nothing), never creating folders silently.

``write_atomic`` is the one writer behind ``flow --report``, ``--result-file``, ``schema --write`` and the
firewall state file: a temp file in the target's folder, then ``os.replace``. Because a rename replaces
whatever the name points at, the target is checked first: a device (``/dev/full``, ``/dev/stdout``), a FIFO, a
socket, a folder or a symlink to any of those is refused with a usage error and left untouched; a symlink to a
regular file is followed (the file it names is replaced, the link kept). A missing parent folder is created only
inside the working directory (``--report out/evidence.json``) or for one of the tool's documented state folders
(``make_parents``); elsewhere (``/nonexistent/x/y.json``) it is an error naming the folder.
Paths in messages go through ``printable``: a newline or ESC in a file name never reaches the terminal raw.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import tempfile
from pathlib import Path

from cicd_tools.support.errors import UsageError

log = logging.getLogger(__name__)


class OutputRefused(UsageError):
    """An output path names something other than a regular file, or its folder does not exist."""

    default_hint = "Name a regular file (or a new file) in a folder that exists."


def printable(text: str, *, keep: str = "") -> str:
    r"""``text`` with control and format characters escaped (``\n``, ``\x1b``, ``\u202e``), the rest unchanged.

    ``keep`` names characters left as they are (``"\n"`` for a multi-line message whose lines are ours).
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in keep else c.encode("unicode_escape").decode("ascii") for c in text)


def file_kind(mode: int) -> str:
    """What a file mode names, as messages say it (\"a FIFO\", \"a device\")."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def resolve_output(path: Path | str, *, what: str = "output file", make_parents: bool = False) -> Path:
    """The file a write to ``path`` replaces: ``path`` itself, or the regular file a symlink at ``path`` names.

    Raises: OutputRefused (not a regular file, a dangling symlink, a missing parent folder).
    """
    target = Path(path)
    shown = printable(str(path))
    try:
        link = os.lstat(target)
    except (FileNotFoundError, NotADirectoryError):  # the parent check below names the folder
        link = None
    except OSError as exc:
        raise OutputRefused(f"cannot write the {what} {shown}: {exc.strerror or exc}") from None
    if link is not None and stat.S_ISLNK(link.st_mode):
        try:
            mode = os.stat(target).st_mode
        except OSError:
            raise OutputRefused(f"the {what} {shown} is a symlink to {printable(os.readlink(target))},"
                                " which does not exist; nothing was written",
                                hint="Name the file itself, or remove the dangling link.") from None
        if not stat.S_ISREG(mode):
            raise OutputRefused(f"the {what} {shown} is a symlink to {file_kind(mode)}; nothing was written")
        return Path(os.path.realpath(target))
    if link is not None and not stat.S_ISREG(link.st_mode):
        raise OutputRefused(f"the {what} {shown} is {file_kind(link.st_mode)}; nothing was written")
    parent = target.parent
    if not parent.is_dir():
        if not parent.exists() and (make_parents or _inside_cwd(parent)):
            parent.mkdir(parents=True, exist_ok=True)
            log.info("created the folder %s for the %s", printable(str(parent)), what)
        elif parent.exists():
            raise OutputRefused(f"the folder of the {what} {shown} is not a folder: {printable(str(parent))}")
        else:
            raise OutputRefused(f"the folder of the {what} {shown} does not exist: {printable(str(parent))}",
                                hint="Create the folder first: cicd-tools creates missing folders only inside the"
                                     " working directory.")
    return target


def _umask() -> int:
    current = os.umask(0o022)  # the only way to read it; set straight back
    os.umask(current)
    return current


def _inside_cwd(folder: Path) -> bool:
    """Whether ``folder`` (which may not exist yet) lies inside the working directory, symlinks resolved."""
    cwd = Path(os.path.realpath(os.getcwd()))
    return Path(os.path.realpath(folder)).is_relative_to(cwd)


def write_atomic(path: Path | str, text: str, *, what: str = "output file", make_parents: bool = False,
                 mode: int | None = None) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the file written (the link's target for a symlink).

    The file gets ``mode``, else the mode of the file it replaces, else 0666 less the umask (as ``open`` would).
    Raises: OutputRefused (see ``resolve_output``); OSError when the folder is not writable or the disk is full.
    """
    target = resolve_output(path, what=what, make_parents=make_parents)
    if mode is None:
        try:
            mode = stat.S_IMODE(os.stat(target).st_mode)
        except FileNotFoundError:
            mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileNotFoundError):  # swapped for a device or FIFO since the check: refuse
            mode = os.lstat(target).st_mode
            if not stat.S_ISREG(mode):
                raise OutputRefused(f"the {what} {printable(str(path))} is {file_kind(mode)}; nothing was written")
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target
