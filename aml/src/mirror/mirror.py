"""Entry point of the code asset `mirror-code`: `cicd-tools model mirror` inside an Azure ML job.

The factory's optional step after validation (``adf/pipeline/pl_train_validate_mirror.json``) submits this on
the Kubernetes compute, so teams that trigger only from ADF get the same governed model version as CI: the
job's credential is the compute's managed identity (it needs AzureML Data Scientist on the workspace and
Storage Blob Data Contributor on the workspace storage), the workspace comes from the variables Azure ML sets
in every job (``AZUREML_ARM_SUBSCRIPTION``, ``AZUREML_ARM_RESOURCEGROUP``, ``AZUREML_ARM_WORKSPACE_NAME``).
The job's environment must have cicd-tools installed. Every argument is passed on to ``model mirror``; the
step is off the critical path by default (``--best-effort``): the job completes with the warning in its log.
"""

from __future__ import annotations

import os
import sys

WORKSPACE_VARIABLES = {"CICD_SUBSCRIPTION_ID": "AZUREML_ARM_SUBSCRIPTION",
                       "CICD_RESOURCE_GROUP": "AZUREML_ARM_RESOURCEGROUP",
                       "CICD_WORKSPACE": "AZUREML_ARM_WORKSPACE_NAME"}


def main(argv: list[str]) -> int:
    for ours, azureml in WORKSPACE_VARIABLES.items():
        if not os.environ.get(ours) and os.environ.get(azureml):
            os.environ[ours] = os.environ[azureml]
    from cicd_tools.cli.main import main as cicd_tools

    args = argv if "--no-best-effort" in argv or "--best-effort" in argv else [*argv, "--best-effort"]
    return cicd_tools(["--output", "json", "--ci", "plain", "model", "mirror",
                       *[a for a in args if a != "--no-best-effort"]])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
