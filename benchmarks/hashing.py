"""Benchmark: our code asset content hash against the `cat | sha256sum` floor and azure-ai-ml's own hash.

    python benchmarks/hashing.py                       # ~5,000 files, ~200 MB in a temp dir
    python benchmarks/hashing.py --files 500 --megabytes 20 --repeat 3
    python benchmarks/hashing.py --dir /tmp/codetree   # reuse (or create) a tree there

Every contender runs once as a warm-up, so the page cache is hot for all of them; then the median of
``--repeat`` runs is printed with the ratios ours/floor and sdk/ours. It prints, never asserts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from cicd_tools.codeassets.hashing import content_hash

T = TypeVar("T")

_MARKER = ".bench-tree.json"
_BLOCK_BYTES = 8 << 20  # one seeded random block; files are slices of it at seeded offsets


def file_sizes(files: int, megabytes: int, rng: random.Random) -> list[int]:
    """Mixed sizes like a real code folder with some data: many small files, a few large ones."""
    weights = []
    for _ in range(files):
        bucket = rng.random()
        if bucket < 0.80:
            weights.append(rng.uniform(0.2, 8))  # source files
        elif bucket < 0.98:
            weights.append(rng.uniform(20, 200))  # notebooks, small data
        else:
            weights.append(rng.uniform(1000, 6000))  # checkpoints, parquet
    scale = megabytes * 1_000_000 / sum(weights)
    return [max(1, int(w * scale)) for w in weights]


def generate_tree(root: Path, files: int, megabytes: int, seed: int) -> None:
    """Write a deterministic tree of ``files`` files totalling about ``megabytes`` MB under ``root``."""
    rng = random.Random(seed)
    block = rng.randbytes(_BLOCK_BYTES)
    dirs = [Path(f"pkg{a}/mod{b}") for a in range(10) for b in range(8)] + [Path(".")]
    root.mkdir(parents=True, exist_ok=True)
    for index, size in enumerate(file_sizes(files, megabytes, rng)):
        folder = root / rng.choice(dirs)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"file_{index:05d}.bin", "wb") as fh:
            remaining = size
            while remaining:
                offset = rng.randrange(_BLOCK_BYTES)
                chunk = block[offset : offset + remaining]
                fh.write(chunk)
                remaining -= len(chunk)
    (root / ".amlignore").write_text("*.tmp\n__pycache__/\n", encoding="utf-8")
    (root / _MARKER).write_text(json.dumps({"files": files, "megabytes": megabytes, "seed": seed}))


def ensure_tree(root: Path, files: int, megabytes: int, seed: int) -> None:
    """Reuse the tree in ``root`` when it was generated with the same parameters, else write it."""
    marker = root / _MARKER
    wanted = {"files": files, "megabytes": megabytes, "seed": seed}
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        return
    if root.exists() and any(root.iterdir()):
        raise SystemExit(f"{root} is not empty and holds no matching benchmark tree; pick an empty --dir")
    started = time.perf_counter()
    generate_tree(root, files, megabytes, seed)
    print(f"generated {files} files, ~{megabytes} MB in {root} ({time.perf_counter() - started:.1f} s)")


def median_seconds(run: Callable[[], T], repeat: int) -> tuple[float, T]:
    """Warm up once, then the median wall time of ``repeat`` runs, and the last result."""
    result = run()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def floor_hash(root: Path, hasher: str = "sha256sum") -> str:
    """`cat` every file into a hasher: the cost of reading and hashing the bytes, nothing else."""
    command = f"find {shlex.quote(str(root))} -type f -print0 | sort -z | xargs -0 cat | {hasher}"
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=True)
    return done.stdout.split()[-1]


def compute_floor(total_bytes: int) -> Callable[[], str]:
    """sha256 of as many bytes already in memory: the hashing alone, no file system at all."""
    data = random.Random(1).randbytes(total_bytes)
    return lambda: hashlib.sha256(data).hexdigest()


def sdk_hasher() -> Callable[[Path], str] | None:
    """azure-ai-ml's own hash function, or None when the SDK cannot be imported."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from azure.ai.ml._utils._asset_utils import get_content_hash, get_ignore_file
    except Exception as exc:  # a broken install must not stop the other measurements
        print(f"sdk: unavailable ({type(exc).__name__}: {exc})")
        return None

    def run(root: Path) -> str:
        return str(get_content_hash(str(root), get_ignore_file(root)))

    return run


# --- end-to-end `code register` against an in-process sandbox ----------------------------------------

# Uploads go file by file through the blob front into Azurite: a smaller tree keeps this part in seconds.
_REGISTER_FILES, _REGISTER_MEGABYTES, _REGISTER_SEED = 300, 15, 7


def measure_register_end_to_end(root: Path, repeat: int) -> None:
    """Time `cicd-tools code register` in-process against a sandbox: first upload, dedup hit, --unique."""
    import contextlib
    import io
    import os

    from cicd_tools.cli.main import main as cli_main
    from cicd_tools.sandbox.runtime import Sandbox
    from cicd_tools.support.errors import CicdError

    with tempfile.TemporaryDirectory(prefix="cicd-bench-register-") as tmp:
        work = Path(tmp)
        (work / "repo" / ".git").mkdir(parents=True)
        code = work / "repo" / "train"
        ensure_tree(code, _REGISTER_FILES, _REGISTER_MEGABYTES, _REGISTER_SEED)
        started = time.perf_counter()
        try:
            sandbox = Sandbox(work / "sandbox", propagation_delay=0).start()
        except CicdError as err:
            print(f"register end-to-end: skipped: {err.message}")
            return
        saved = dict(os.environ)
        versions = iter(range(1, 1_000_000))

        def register(*extra: str) -> dict[str, object]:
            argv = ["--output", "json", "--ci", "plain", "code", "register", "--name", "bench-code",
                    "--path", str(code), "--version", str(next(versions)), *extra]
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                rc = cli_main(argv)
            if rc != 0:
                raise SystemExit(f"code register failed with exit {rc}: {err.getvalue()[-2000:]}")
            return dict(json.loads(out.getvalue()))

        try:
            os.environ.update(sandbox.env())
            print(f"register end-to-end (in-process sandbox; {root.name} is too big to upload per run):")
            print(f"  sandbox start                      {time.perf_counter() - started:9.2f} s")
            digest = content_hash(code)
            print(f"  tree: {digest.file_count} files, {digest.total_bytes / 1e6:.1f} MB")
            # What every `code register` process pays once; timed in a fresh interpreter, because this one
            # may already hold the module (the SDK-hash contender above imports it).
            import_started = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import azure.ai.ml"], check=True)
            import_s = time.perf_counter() - import_started
            import azure.ai.ml  # noqa: F401  (kept out of the upload time below)

            print(f"  import azure.ai.ml (fresh process) {import_s * 1000:9.1f} ms")
            first_started = time.perf_counter()
            first = register()
            upload_s = time.perf_counter() - first_started
            hit_s, hit = median_seconds(register, repeat)
            unique_s, unique = median_seconds(lambda: register("--unique"), max(1, repeat // 2))
            hash_s, _ = median_seconds(lambda: content_hash(code), repeat)
            print(f"  first registration (upload)        {upload_s * 1000:9.1f} ms"
                  f"  ({digest.file_count / upload_s:.0f} files/s)")
            print(f"  dedup hit (nothing uploaded)       {hit_s * 1000:9.1f} ms"
                  f"  (requested {hit['requestedVersion']}, got {hit['version']} = first {first['version']})")
            print(f"  --unique (stage + upload)          {unique_s * 1000:9.1f} ms  (got {unique['version']})")
            print(f"  content hash alone                 {hash_s * 1000:9.1f} ms")
            print(f"  upload / dedup hit                 {upload_s / hit_s:8.2f}x")
            print(f"  dedup hit / hash                   {hit_s / hash_s:8.2f}x")
        finally:
            os.environ.clear()
            os.environ.update(saved)
            sandbox.stop()


# -----------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=5000, help="number of files (default 5000)")
    parser.add_argument("--megabytes", type=int, default=200, help="total size in MB (default 200)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per contender (default 5)")
    parser.add_argument("--seed", type=int, default=20220801)
    parser.add_argument("--dir", type=Path, default=None, help="where the tree lives (default: a temp dir)")
    parser.add_argument("--no-sdk", action="store_true", help="skip azure-ai-ml's hash (it is the slow one)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="cicd-bench-") as tmp:
        root = args.dir or Path(tmp) / "code"
        ensure_tree(root, args.files, args.megabytes, args.seed)

        ours_s, ours = median_seconds(lambda: content_hash(root), args.repeat)
        print(f"python {sys.version.split()[0]}, {args.repeat} runs each after a warm-up, median wall time")
        print(f"tree: {ours.file_count} files, {ours.total_bytes / 1e6:.1f} MB")
        print(f"ours  (cicd_tools content_hash)      {ours_s * 1000:9.1f} ms")

        floor_s, _ = median_seconds(lambda: floor_hash(root), args.repeat)
        print(f"floor (find|sort|xargs cat|sha256sum) {floor_s * 1000:8.1f} ms")
        print(f"ours / floor                          {ours_s / floor_s:8.2f}x")
        if shutil.which("openssl"):
            ossl_s, _ = median_seconds(lambda: floor_hash(root, "openssl dgst -sha256"), args.repeat)
            print(f"floor (... xargs cat|openssl sha256)  {ossl_s * 1000:8.1f} ms")
            print(f"ours / openssl floor                  {ours_s / ossl_s:8.2f}x")
        cpu_s, _ = median_seconds(compute_floor(ours.total_bytes), args.repeat)
        print(f"hashlib sha256 of as many bytes in RAM {cpu_s * 1000:7.1f} ms")
        print(f"ours / in-memory hash                 {ours_s / cpu_s:8.2f}x")

        sdk = None if args.no_sdk else sdk_hasher()
        if sdk is not None:
            sdk_s, sdk_digest = median_seconds(lambda: sdk(root), args.repeat)
            print(f"sdk   (azure-ai-ml get_content_hash) {sdk_s * 1000:9.1f} ms")
            print(f"sdk / ours                            {sdk_s / ours_s:8.2f}x")
            print(f"hashes equal                          {sdk_digest == ours.sha256}")

        measure_register_end_to_end(root, args.repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
