"""Azure ML asset names: the one rule every command that takes a name checks before anything else.

The pattern is the ``name`` path parameter of ``CodeVersions_CreateOrUpdate`` (Microsoft.MachineLearningServices
REST spec). A name also lands in blob paths (``code-assets/{name}/latest.json``) and CI variable names, so a
name like ``../../etc`` must be refused as a name, not discovered later as a missing container.
"""

from __future__ import annotations

import argparse
import re

from cicd_tools.support.errors import UsageError

AML_NAME_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9\-_]{0,254}$"
_NAME_RE = re.compile(AML_NAME_PATTERN)


def name_problem(name: str) -> str | None:
    """Why Azure ML would refuse ``name`` as an asset name, or None when it is fine."""
    if _NAME_RE.fullmatch(name):
        return None
    return (
        f"invalid asset name {name!r}: 1-255 letters, digits, '-' and '_', starting with a letter or digit"
        " (Azure ML's rule)"
    )


def validate_asset_name(name: str) -> str:
    """Raises: UsageError when Azure ML would refuse the name."""
    problem = name_problem(name)
    if problem:
        raise UsageError(problem, hint="e.g. training-code; the name is the one you register in Azure ML.")
    return name


def asset_name_arg(value: str) -> str:
    """An argparse ``type=`` for flags that take an asset name (a bad one is a usage error, exit 2)."""
    problem = name_problem(value)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return value
