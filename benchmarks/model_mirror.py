"""Benchmark: `model mirror` against the sandbox: a first registration against a replay of the same run.

    python benchmarks/model_mirror.py                    # 3 checkpoints of 40 MB weights (+2x optimizer state)
    python benchmarks/model_mirror.py --megabytes 100 --repeat 5

Prints what training-state exclusion saves (bytes staged / bytes in the final checkpoint), the median wall time
of a first mirror (hash + upload + register) and of a replay (hash + one tagged lookup, nothing uploaded), and
their ratio. The sandbox is real Azurite behind the blob front and the ARM emulator, in this process. It prints,
never asserts.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from cicd_tools.cli.main import main as cli
from cicd_tools.sandbox.runtime import Sandbox


def make_run(root: Path, megabytes: int, checkpoints: int) -> Path:
    block = os.urandom(1 << 20)
    for step in range(1, checkpoints + 1):
        folder = root / f"checkpoint-{step * 500}"
        folder.mkdir(parents=True)
        with open(folder / "model.safetensors", "wb") as fh:
            for _ in range(megabytes):
                fh.write(block)
        with open(folder / "optimizer.pt", "wb") as fh:
            for _ in range(2 * megabytes):
                fh.write(block)
        (folder / "rng_state.pth").write_bytes(block[:16_000])
        (folder / "config.json").write_text(json.dumps({"step": step}))
    (root / "runs").mkdir()
    (root / "runs" / "events.out.tfevents.1.bench").write_bytes(block[:200_000])
    return root


def mirror(run: Path, run_id: str) -> tuple[float, dict[str, object]]:
    out = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = cli(["--output", "json", "model", "mirror", "--from-path", str(run), "--run-id", run_id,
                    "--name", "bench-model"])
    elapsed = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"model mirror exited {code}: {out.getvalue()}")
    return elapsed, dict(json.loads(out.getvalue()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megabytes", type=int, default=40, help="weights per checkpoint (MB)")
    parser.add_argument("--checkpoints", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-mirror-") as tmp, Sandbox(Path(tmp) / "sandbox") as box:
        for name, value in box.env().items():
            os.environ[name] = value
        run = make_run(Path(tmp) / "run", args.megabytes, args.checkpoints)
        final = max((p for p in run.iterdir() if p.name.startswith("checkpoint-")),
                    key=lambda p: int(p.name.split("-")[1]))
        final_bytes = sum(p.stat().st_size for p in final.iterdir())
        firsts, replays = [], []
        staged_bytes = 0
        for index in range(args.repeat):
            seconds, doc = mirror(run, f"bench-run-{index}")
            firsts.append(seconds)
            files = doc["files"]
            assert isinstance(files, list)
            staged_bytes = sum((run / ("" if f.startswith("tensorboard/") else final.name) /
                                f.removeprefix("tensorboard/")).stat().st_size for f in files)
            seconds, doc = mirror(run, f"bench-run-{index}")
            assert doc["reused"] is True
            replays.append(seconds)
    first, replay = statistics.median(firsts), statistics.median(replays)
    print(f"final checkpoint {final.name}: {final_bytes / 1e6:.1f} MB; staged {staged_bytes / 1e6:.1f} MB "
          f"({staged_bytes / final_bytes:.0%}: optimizer/scheduler/RNG state left out)")
    print(f"first mirror  (hash + upload + register): median {first:.2f} s over {args.repeat}")
    print(f"replay        (hash + tagged lookup):     median {replay:.2f} s over {args.repeat}")
    print(f"replay / first: {replay / first:.2f}")


if __name__ == "__main__":
    main()
