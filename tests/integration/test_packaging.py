"""What pip users and sdist users get: the wheel carries the license its metadata names, the sdist carries every file
the repository tracks (what `make test` and the sandbox need), both pass `twine check`, and the installed wheel's
`sandbox up` without Azurite is one clear error (exit 2), no traceback.

The two distributions are built once per module, offline (`python -m build --no-isolation`, so the venv must hold
the build backend `pyproject.toml` names: setuptools>=77 and wheel, both in the dev extra), from a copy of the
tracked files (or of the unpacked sdist, outside a git checkout), so the build writes nothing into the checkout."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
# Never copied into the build folder when the source is not a git checkout (an unpacked sdist after `make test`).
LOCAL_ONLY = (".git", ".venv", ".venv-oldest", "node_modules", "site", ".sandbox", "dist", "build", "__pycache__",
              ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis", "*.egg-info")


def tracked_files() -> list[str] | None:
    """`git ls-files` of the checkout this file is in, or None outside a git checkout (an unpacked sdist)."""
    if not (REPO / ".git").exists() or shutil.which("git") is None:
        return None
    proc = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        return None
    return [name for name in proc.stdout.split("\0") if name]


def missing_build_backend() -> str | None:
    """Why the venv cannot build offline, or None: `--no-isolation` uses the venv's own setuptools and wheel."""
    try:
        setuptools, _ = version("setuptools"), version("wheel")
        version("build")
    except PackageNotFoundError as missing:
        return f"{missing.name} is not installed (pip install -c constraints.txt -e '.[dev]')"
    if Version(setuptools) < Version("77"):
        return f"setuptools {setuptools} is older than the 77 pyproject.toml needs (PEP 639 license)"
    return None


@dataclass(frozen=True)
class Dists:
    sdist: Path
    wheel: Path
    tracked: list[str] | None


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dists]:
    reason = missing_build_backend()
    if reason:
        pytest.skip(f"cannot build offline: {reason}")
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if run is None:
        yield build_dists(tmp_path_factory.mktemp("packaging"))
        return
    # Under pytest -n the module's tests land on several workers: the first builds, the others reuse its files.
    work = tmp_path_factory.getbasetemp().parent / f"packaging-{run}"
    work.mkdir(exist_ok=True)
    with (work / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = work / "built.json"
        if not done.exists():
            built = build_dists(work)
            done.write_text(json.dumps({"sdist": str(built.sdist), "wheel": str(built.wheel),
                                        "tracked": built.tracked}))
        record = json.loads(done.read_text())
    yield Dists(Path(record["sdist"]), Path(record["wheel"]), record["tracked"])


def build_dists(work: Path) -> Dists:
    source = work / "source"
    tracked = tracked_files()
    if tracked is None:
        shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(*LOCAL_ONLY))
    else:
        for name in tracked:
            if (REPO / name).is_file():  # a tracked file deleted in the working tree is not released
                (source / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / name, source / name)
    # The sdist first, then the wheel from the unpacked sdist: what a release (and pip on an sdist) does.
    proc = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(work / "dist"),
                           str(source)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (sdist,) = (work / "dist").glob("cicd_tools-*.tar.gz")
    (wheel,) = (work / "dist").glob("cicd_tools-*.whl")
    return Dists(sdist, wheel, tracked)


def test_the_wheel_carries_the_license_file_and_metadata(dists: Dists) -> None:
    with zipfile.ZipFile(dists.wheel) as archive:
        names = archive.namelist()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        text = archive.read(metadata).decode()
        license_text = archive.read(next(n for n in names if n.endswith("/licenses/LICENSE"))).decode()
    assert license_text == (REPO / "LICENSE").read_text()
    assert "License-Expression: MIT" in text and "License-File: LICENSE" in text
    assert "Classifier: Programming Language :: Python :: 3.11" in text


def test_the_sdist_carries_every_tracked_file_make_test_needs(dists: Dists) -> None:
    if dists.tracked is None:
        pytest.skip("not a git checkout (an unpacked sdist?): no `git ls-files` to compare the sdist with")
    with tarfile.open(dists.sdist) as archive:
        root = archive.getnames()[0].split("/")[0]
        names = {m.name.removeprefix(root + "/") for m in archive.getmembers() if m.isfile()}
    tracked = set(dists.tracked)
    # What `make test` reads beyond the package: each must be tracked (so the comparison below covers it) ...
    needed = {"Makefile", "constraints.txt", "constraints-oldest.txt", "package.json", "package-lock.json",
              "mkdocs.yml", "pyproject.toml", "action.yml", ".ci/run", "LICENSE", "docs/index.md",
              "scripts/test-sdk-matrix.sh", "scripts/pipelines_check.py", "scripts/mermaid-parse.mjs",
              "tests/conftest.py"}
    assert needed <= tracked, sorted(needed - tracked)
    # ... and the sdist holds every tracked file: tests (and their data), docs, scripts, pipelines, adf/, aml/.
    assert sorted(tracked - names) == []
    assert "PKG-INFO" in names  # the marker the sdist-only skips look for (tests/unit/test_sandbox_coverage.py)


def test_twine_check_passes_on_both_distributions(dists: Dists) -> None:
    proc = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(dists.sdist), str(dists.wheel)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("PASSED") == 2, proc.stdout


def pinned_azurite() -> str:
    """The Azurite version package.json pins: the one the hint must tell a pip user to install."""
    return str(json.loads((REPO / "package.json").read_text(encoding="utf-8"))["dependencies"]["azurite"])


def test_the_installed_wheel_says_how_to_get_azurite_without_a_traceback(dists: Dists, tmp_path: Path) -> None:
    # A pip user: the wheel installed (its dependencies are this venv's), run from a folder with no node_modules
    # above it, no azurite-blob on PATH, CICD_AZURITE_BIN unset.
    target, cwd = tmp_path / "site", tmp_path / "elsewhere"
    cwd.mkdir()
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                              "--target", str(target), str(dists.wheel)], capture_output=True, text=True, timeout=120)
    assert install.returncode == 0, install.stderr
    path = os.pathsep.join(d for d in os.environ.get("PATH", "").split(os.pathsep)
                           if d and not (Path(d) / "azurite-blob").exists())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("CICD_")}
    env.update(PYTHONPATH=str(target), PATH=path)
    where = subprocess.run([sys.executable, "-c", "import cicd_tools; print(cicd_tools.__file__)"], cwd=cwd, env=env,
                           capture_output=True, text=True, timeout=60)
    assert Path(where.stdout.strip()).is_relative_to(target), where.stdout + where.stderr
    assert not any((folder / "node_modules").exists() for folder in (cwd, *cwd.parents))

    proc = subprocess.run([sys.executable, "-m", "cicd_tools.cli", "sandbox", "up"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: Azurite is not installed (azurite-blob not found)."], proc.stderr
    assert f"npm install -g azurite@{pinned_azurite()}" in proc.stderr and "CICD_AZURITE_BIN" in proc.stderr
    assert not (cwd / ".sandbox" / "sandbox.json").exists()  # nothing started
