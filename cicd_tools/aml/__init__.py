"""Azure ML beyond code assets: jobs on the Kubernetes compute (lint-job, verify), models (mirror)."""
