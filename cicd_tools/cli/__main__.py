"""`python -m cicd_tools.cli`: the same entry point as the `cicd-tools` script."""

from cicd_tools.cli.main import entry

entry()
