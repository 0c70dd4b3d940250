"""Example training entry point: the code asset `training-code` that ADF dispatches to the AKS compute."""

import argparse
import json
import os


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    # Evidence for the verification step: which code version ran (Azure ML sets these for a job).
    print(json.dumps({"step": "train", "epochs": args.epochs, "run": os.environ.get("AZUREML_RUN_ID")}))


if __name__ == "__main__":
    main()
