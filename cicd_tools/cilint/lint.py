"""The entry point of `ci lint`: picks the dialect of each file and collects its findings."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cicd_tools.cilint import azure, github
from cicd_tools.cilint.findings import Finding
from cicd_tools.cilint.yamlsrc import load_yaml


def dialect_of(doc: Any) -> str:
    """``github`` (workflow or composite action), ``azure-devops``, or ``unknown``."""
    if not isinstance(doc, dict):
        return "unknown"
    if "runs" in doc and isinstance(doc["runs"], dict):
        return "github"
    jobs = doc.get("jobs")
    if "on" in doc or (isinstance(jobs, dict) and any(isinstance(j, dict) and "runs-on" in j for j in jobs.values())):
        return "github"
    if any(k in doc for k in ("stages", "steps", "trigger", "pool", "schedules", "extends", "resources")) or \
            isinstance(jobs, list):
        return "azure-devops"
    return "unknown"


def lint_files(paths: Sequence[Path], parser: argparse.ArgumentParser) -> list[Finding]:
    """Lint every file. Raises: UsageError for a file that is missing or not YAML."""
    findings: list[Finding] = []
    for path in paths:
        doc = load_yaml(path)
        kind = dialect_of(doc)
        if kind == "github":
            findings += github.lint(path, doc, parser)
        elif kind == "azure-devops":
            findings += azure.lint(path, doc, parser)
        else:
            findings.append(Finding(
                "CI000", str(path), 1, "neither an Azure DevOps pipeline nor a GitHub workflow/action",
                "Pass pipeline YAML files (azure-pipelines.yml, .github/workflows/*.yml, action.yml).",
                severity="warning"))
    unique: dict[tuple[str, int, str], Finding] = {}
    for finding in findings:  # one finding per rule and line: two routes to the same mistake say it once
        unique.setdefault((finding.file, finding.line, finding.rule), finding)
    return sorted(unique.values(), key=lambda f: (f.file, f.line, f.rule))
