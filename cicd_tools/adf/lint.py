"""Lint ADF pipelines: factory folders, pipeline files and ARM templates (rules in ``lint_findings.RULES``).

``lint_paths([Path("adf")]).failed("error")`` is True when a finding is at or above the threshold.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cicd_tools.adf import jsonpos
from cicd_tools.adf.lint_expr import check_expressions
from cicd_tools.adf.lint_findings import RULES, SEVERITY_RANK, Finding, Rule, Severity
from cicd_tools.adf.lint_model import build_model
from cicd_tools.adf.lint_rules import ACTIVITY_RULES, PIPELINE_RULES, Checker
from cicd_tools.adf.loader import Factory, LoadedSet, PipelineDoc, load_paths

__all__ = ["RULES", "Finding", "LintReport", "Rule", "Severity", "lint_loaded", "lint_paths", "lint_pipeline"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LintReport:
    """Every finding of one lint run, sorted by file and line."""

    findings: tuple[Finding, ...]
    files: int
    pipelines: int

    def counts(self) -> dict[str, int]:
        """Findings per severity."""
        out = {"error": 0, "warning": 0, "info": 0}
        for finding in self.findings:
            out[finding.severity] += 1
        return out

    def at_or_above(self, level: Severity) -> list[Finding]:
        """The findings at least as severe as ``level``."""
        floor = SEVERITY_RANK[level]
        return [f for f in self.findings if SEVERITY_RANK[f.severity] >= floor]

    def failed(self, level: Severity = "error") -> bool:
        """True when a finding is at or above ``level`` (what ``--fail-on`` tests)."""
        return bool(self.at_or_above(level))

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON."""
        return {
            "files": self.files,
            "pipelines": self.pipelines,
            "counts": self.counts(),
            "findings": [f.to_dict() for f in self.findings],
        }


def lint_pipeline(doc: PipelineDoc, factory: Factory | None = None) -> list[Finding]:
    """Every finding for one pipeline; ``factory`` enables the checks that need the whole factory."""
    activities_path = jsonpos.join(doc.base_path, ("properties", "activities"))
    model = build_model(doc.properties.get("activities"), activities_path)
    checker = Checker(doc=doc, factory=factory or Factory(), model=model)
    for pipeline_rule in PIPELINE_RULES:
        pipeline_rule(checker)
    for node in model.nodes:
        for activity_rule in ACTIVITY_RULES:
            activity_rule(checker, node)
        check_expressions(checker, node)
    return checker.findings


def lint_loaded(loaded: LoadedSet) -> list[Finding]:
    """Findings for one loaded set: its load problems, then every pipeline."""
    findings = [
        Finding(
            rule=p.rule,
            severity=RULES[p.rule].severity,
            message=p.message,
            fix="Fix the JSON syntax." if p.rule == "ADF000" else "Nothing to do if the file is not a pipeline.",
            file=str(p.file),
            path="$",
            line=p.line,
        )
        for p in loaded.problems
    ]
    for doc in loaded.pipelines:
        findings.extend(lint_pipeline(doc, loaded.factory))
    return findings


def lint_paths(paths: Iterable[Path]) -> LintReport:
    """Lint factory folders, folders of files, and single files."""
    findings: list[Finding] = []
    files: set[str] = set()
    pipelines = 0
    for loaded in load_paths(paths):
        findings.extend(lint_loaded(loaded))
        pipelines += len(loaded.pipelines)
        files.update(str(doc.source.path) for doc in loaded.pipelines)
        files.update(str(p.file) for p in loaded.problems)
    findings.sort(key=Finding.sort_key)
    log.debug("linted %d pipelines in %d files: %d findings", pipelines, len(files), len(findings))
    return LintReport(findings=tuple(findings), files=len(files), pipelines=pipelines)
