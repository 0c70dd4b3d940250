"""Example validation entry point: the code asset `validation-code`."""

import json
import os


def main() -> None:
    print(json.dumps({"step": "validate", "run": os.environ.get("AZUREML_RUN_ID")}))


if __name__ == "__main__":
    main()
