"""Which files of a training run become the model: the final checkpoint, minus training state, plus TensorBoard.

Trainers (Hugging Face ``Trainer``, Lightning, plain loops) write ``checkpoint-N`` folders; the model is
the highest N. A folder without any ``checkpoint-N`` child is the model as a whole (a flat output, like
the shipped ``train.py`` writes). Optimizer, scheduler and RNG state only matter to resume training and
are often larger than the weights, so they are left out by default (``DEFAULT_EXCLUDES``, basename
globs). TensorBoard event files (``events.out.tfevents.*``) found beside the checkpoints are kept under
``tensorboard/``, so the run's curves travel with the model.

Nothing is copied: the plan maps each staged name to its source file, and the content hash is Azure ML's
own (hashVersion 202208, ``codeassets/hashing.py``) over the staged names, so the same files give the
same hash on any machine, whatever folder they sit in.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from cicd_tools.codeassets.hashing import CodeFile, CodeFiles, hash_code_files
from cicd_tools.support.errors import UsageError
from cicd_tools.support.walk import Skipped, inside, walk_files

DEFAULT_EXCLUDES: tuple[str, ...] = ("optimizer.pt", "scheduler.pt", "rng_state*.pth")
TENSORBOARD_GLOB = "events.out.tfevents.*"
TENSORBOARD_DIR = "tensorboard"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(?P<step>\d+)$")


@dataclass(frozen=True)
class StagedModel:
    """The files that make the model version, where they come from, and their Azure ML content hash."""

    source: Path  # the folder the run wrote
    checkpoint: str | None  # ``checkpoint-N`` when one was selected, None for a flat folder
    entries: tuple[CodeFile, ...]  # staged name (``rel``) → source file, in hash order
    skipped: tuple[str, ...]  # source-relative paths left out by the exclude patterns
    content_hash: str
    total_bytes: int
    unsafe: tuple[Skipped, ...] = ()  # entries the walk policy left out: symlinks out of the folder, loops, FIFOs

    @property
    def files(self) -> list[str]:
        return [entry.rel for entry in self.entries]


def select_checkpoint(source: Path) -> tuple[Path, str | None]:
    """The highest ``checkpoint-N`` folder of ``source``, or ``source`` itself when it has none.

    Raises: UsageError when ``source`` is not a folder.
    """
    if not source.is_dir():
        what = "does not exist" if not source.exists() else "is not a folder"
        raise UsageError(f"checkpoint folder {source} {what}",
                         hint="Pass the folder the training run wrote (it holds checkpoint-N folders or the "
                              "model files) to --from-path.", code="CheckpointFolderMissing")
    best: tuple[int, Path] | None = None
    real_source = os.path.realpath(source)
    for child in source.iterdir():
        match = _CHECKPOINT_RE.match(child.name)
        # a checkpoint folder linked from elsewhere is not chosen (the walk lists it as outside the folder)
        if (match and child.is_dir() and inside(os.path.realpath(child), real_source)
                and (best is None or int(match["step"]) > best[0])):
            best = (int(match["step"]), child)
    return (source, None) if best is None else (best[1], best[1].name)


def _excluded(rel: str, patterns: Sequence[str]) -> bool:
    name = PurePosixPath(rel).name
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(rel, p) for p in patterns)


def _walk(top: Path, boundary: Path) -> tuple[list[tuple[str, CodeFile]], list[Skipped]]:
    """Every regular file under ``top`` (sorted), and what the shared walk policy skipped.

    Symlinks are followed only while they stay inside ``boundary`` (the ``--from-path`` folder): a link to
    ``~/.ssh/id_rsa`` or ``/etc`` is listed as skipped, never uploaded; so are loops, FIFOs and devices.
    """
    walked = walk_files(top, boundary=boundary, sort=True)
    return [(f.rel, CodeFile(source=f.source, rel=f.rel, size=f.size)) for f in walked.files], walked.skipped


def _renamed(entry: CodeFile, rel: str) -> CodeFile:
    return CodeFile(source=entry.source, rel=rel, size=entry.size)


def stage_checkpoint(source: Path, *, excludes: Sequence[str] = DEFAULT_EXCLUDES) -> StagedModel:
    """Plan the model's files from a run's folder and hash them.

    Raises: UsageError when the folder is missing, unreadable, or nothing is left to register.
    """
    selected, checkpoint = select_checkpoint(source)
    staged: dict[str, CodeFile] = {}
    skipped: list[str] = []
    unsafe: dict[str, Skipped] = {}
    prefix = f"{checkpoint}/" if checkpoint else ""
    files, refused = _walk(selected, source)
    for entry in refused:
        unsafe[prefix + entry.rel] = Skipped(prefix + entry.rel, entry.reason, entry.detail)
    for rel, file in files:
        if _excluded(rel, excludes):
            skipped.append(prefix + rel)
        else:
            staged[rel] = file
    if checkpoint:
        # TensorBoard logs usually sit beside the checkpoints (``runs/…``), not inside them.
        files, refused = _walk(source, source)
        for entry in refused:
            first, _, rest = entry.rel.partition("/")
            # inside an older checkpoint nothing is uploaded anyway; a checkpoint folder itself is worth naming
            if not _CHECKPOINT_RE.match(first) or not rest or entry.rel.startswith(prefix):
                unsafe.setdefault(entry.rel, entry)
        for rel, file in files:
            if rel.split("/", 1)[0].startswith("checkpoint-") and _CHECKPOINT_RE.match(rel.split("/", 1)[0]):
                continue
            if fnmatch.fnmatchcase(PurePosixPath(rel).name, TENSORBOARD_GLOB):
                staged[f"{TENSORBOARD_DIR}/{rel}"] = _renamed(file, f"{TENSORBOARD_DIR}/{rel}")
    if not staged:
        raise UsageError(
            f"nothing to register in {selected}: it holds no file"
            + (f" besides training state ({', '.join(skipped)})" if skipped else ""),
            hint="Point --from-path at the run's output folder, or narrow --exclude.", code="EmptyCheckpoint")
    entries = sorted(staged.values(), key=lambda e: e.rel.lower())
    digest = hash_code_files(CodeFiles(root=selected, entries=tuple(entries), ignore_file=None, excluded=0))
    return StagedModel(source=source, checkpoint=checkpoint, entries=tuple(entries), skipped=tuple(skipped),
                       content_hash=digest.sha256, total_bytes=digest.total_bytes,
                       unsafe=tuple(unsafe[k] for k in sorted(unsafe)))
