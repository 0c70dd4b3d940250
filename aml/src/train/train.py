"""Training entry point of the code asset `training-code` (standard library only).

Fits y = w·x + b to a fixed synthetic data set by gradient descent, then writes into ``--model-dir``
(the job's ``${{outputs.model}}``, a custom_model: a plain checkpoint, not MLflow) the checkpoint
``model.json``, ``metrics.json`` and ``code.json`` (the content hash of this folder: which code ran).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from codehash import evidence

TRUE_W, TRUE_B = 3.0, -1.5


def dataset(seed: int, size: int) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    points = []
    for _ in range(size):
        x = rng.uniform(-2.0, 2.0)
        points.append((x, TRUE_W * x + TRUE_B + rng.gauss(0.0, 0.1)))
    return points


def mse(points: list[tuple[float, float]], w: float, b: float) -> float:
    return sum((w * x + b - y) ** 2 for x, y in points) / len(points)


def fit(points: list[tuple[float, float]], epochs: int, learning_rate: float) -> tuple[float, float]:
    w = b = 0.0
    for _ in range(epochs):
        for x, y in points:
            error = w * x + b - y
            w -= learning_rate * error * x
            b -= learning_rate * error
    return w, b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--model-dir", type=Path, default=Path("outputs/model"))
    args = parser.parse_args()
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    points = dataset(args.seed, 256)
    w, b = fit(points, args.epochs, args.learning_rate)
    metrics = {"train_mse": mse(points, w, b), "epochs": args.epochs}
    code = evidence(Path(__file__).parent)
    args.model_dir.mkdir(parents=True, exist_ok=True)
    (args.model_dir / "model.json").write_text(json.dumps({"format": "linear-v1", "w": w, "b": b}, indent=2))
    (args.model_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (args.model_dir / "code.json").write_text(json.dumps(code, indent=2))
    print(json.dumps({"step": "train", **metrics, "codeHash": code["codeHash"], "run": code["runId"]}))


if __name__ == "__main__":
    main()
