"""Which code is this? The Azure ML content hash (hashVersion 202208) of this folder, standard library only.

Azure ML registers a code asset under the sha256 of its files (count, then ``#rel#size`` per file, then
every file's bytes, files sorted by lower-cased relative path, ``.amlignore`` else ``.gitignore``
honoured). A job that records this hash in its outputs proves which registered code ran.
The ignore matcher covers the patterns these folders use (names, globs, ``dir/``, ``!negation``).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
from pathlib import Path


def _rules(root: Path) -> list[tuple[str, bool]]:
    for name in (".amlignore", ".gitignore"):
        path = root / name
        if path.is_file():
            rules = []
            for line in path.read_text(encoding="utf-8").splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    rules.append((line[1:], True) if line.startswith("!") else (line, False))
            return rules
    return []


def _ignored(rel: str, rules: list[tuple[str, bool]]) -> bool:
    parts = rel.split("/")
    verdict = False
    for pattern, negated in rules:
        directory = pattern.endswith("/")
        body = pattern.strip("/")
        if "/" in body:
            hit = fnmatch.fnmatchcase(rel, body) or any(
                fnmatch.fnmatchcase("/".join(parts[:i]), body) for i in range(1, len(parts)))
        elif directory:
            hit = any(fnmatch.fnmatchcase(p, body) for p in parts[:-1])
        else:
            hit = any(fnmatch.fnmatchcase(p, body) for p in parts)
        if hit:
            verdict = not negated
    return verdict


def code_files(root: Path) -> list[tuple[str, Path]]:
    """``(relative POSIX path, path)`` of every file Azure ML hashes, in its order."""
    rules = _rules(root)
    found = []
    for top, _dirs, names in os.walk(root, followlinks=True):
        for name in names:
            path = Path(top) / name
            rel = path.relative_to(root).as_posix()
            if not _ignored(rel, rules):
                found.append((rel, path))
    return sorted(found, key=lambda item: item[0].lower())


def content_hash(root: Path) -> str:
    """The sha256 Azure ML stores as the code version's ``hash_sha256``."""
    files = code_files(root.resolve())
    digest = hashlib.sha256(str(len(files)).encode())
    for rel, path in files:
        digest.update(f"#{rel}#{path.stat().st_size}".encode())
    for _rel, path in files:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def evidence(root: Path) -> dict[str, object]:
    """What a job writes into its outputs so ``cicd-tools aml verify`` can compare it with the registration."""
    files = code_files(root.resolve())
    return {"codeHash": content_hash(root), "hashVersion": 202208, "fileCount": len(files),
            "codeId": os.environ.get("AZUREML_CODE_ID"), "runId": os.environ.get("AZUREML_RUN_ID")}
