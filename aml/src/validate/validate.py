"""Validation entry point of the code asset `validation-code` (standard library only).

Loads the checkpoint the training job wrote (``--model-dir``, the job's ``${{inputs.model}}``),
scores it on a held-out synthetic set, writes ``metrics.json`` and ``code.json`` (the content hash of
this folder) into ``--metrics-dir`` (``${{outputs.metrics}}``), and exits 1 when the error is above
``--max-mse`` or the checkpoint is missing or not the expected format.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from codehash import evidence

TRUE_W, TRUE_B = 3.0, -1.5


def holdout(seed: int, size: int) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    return [(x, TRUE_W * x + TRUE_B) for x in (rng.uniform(-2.0, 2.0) for _ in range(size))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--metrics-dir", type=Path, default=Path("outputs/metrics"))
    parser.add_argument("--max-mse", type=float, default=0.5)
    args = parser.parse_args()
    checkpoint = args.model_dir / "model.json"
    if not checkpoint.is_file():
        print(f"no checkpoint at {checkpoint}: was --model-dir the training job's model output?", file=sys.stderr)
        return 1
    model = json.loads(checkpoint.read_text())
    if model.get("format") != "linear-v1":
        print(f"{checkpoint} has format {model.get('format')!r}, expected 'linear-v1'", file=sys.stderr)
        return 1
    points = holdout(11, 128)
    error = sum((model["w"] * x + model["b"] - y) ** 2 for x, y in points) / len(points)
    trained_by = {}
    if (args.model_dir / "code.json").is_file():
        trained_by = json.loads((args.model_dir / "code.json").read_text())
    metrics = {"validation_mse": error, "max_mse": args.max_mse, "passed": error <= args.max_mse,
               "trainedByCodeHash": trained_by.get("codeHash")}
    code = evidence(Path(__file__).parent)
    args.metrics_dir.mkdir(parents=True, exist_ok=True)
    (args.metrics_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (args.metrics_dir / "code.json").write_text(json.dumps(code, indent=2))
    print(json.dumps({"step": "validate", **metrics, "codeHash": code["codeHash"], "run": code["runId"]}))
    return 0 if metrics["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
