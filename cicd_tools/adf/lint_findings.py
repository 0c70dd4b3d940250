"""Lint findings and the rule catalog (ids, default severities, what each rule means)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Severity = Literal["error", "warning", "info"]
SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "error": 2}


@dataclass(frozen=True)
class Rule:
    """One lint rule: its id, default severity and a one-line title."""

    id: str
    severity: Severity
    title: str


RULES: dict[str, Rule] = {
    r.id: r
    for r in (
        Rule("ADF000", "error", "file is not readable JSON"),
        Rule("ADF001", "info", "file holds no ADF pipeline"),
        Rule("ADF010", "error", "connectVia at the activity root is ignored (call leaves over the public network)"),
        Rule("ADF011", "error", "connectVia names an integration runtime the factory does not have"),
        Rule("ADF020", "error", "managed identity authentication without a resource"),
        Rule("ADF021", "error", "WebActivity without url or method"),
        Rule("ADF030", "error", "expression does not parse"),
        Rule("ADF031", "error", "unknown expression function"),
        Rule("ADF040", "error", "reference to an activity the pipeline does not have"),
        Rule("ADF041", "error", "reference to an activity that is not upstream (not a dependsOn ancestor)"),
        Rule("ADF042", "error", "reference to an undeclared pipeline parameter"),
        Rule("ADF043", "error", "reference to a global parameter the factory does not define"),
        Rule("ADF044", "error", "reference to an undeclared variable"),
        Rule("ADF045", "error", "item() outside a ForEach (or a Filter condition)"),
        Rule("ADF046", "warning", "pipeline().X that is not a pipeline system variable"),
        Rule("ADF050", "error", "dependsOn names an activity that is not in the same scope"),
        Rule("ADF051", "error", "dependsOn cycle"),
        Rule("ADF052", "error", "invalid dependency condition"),
        Rule("ADF060", "error", "SetVariable/AppendVariable on an undeclared variable"),
        Rule("ADF061", "error", "AppendVariable on a variable that is not an Array"),
        Rule("ADF062", "warning", "SetVariable inside a parallel ForEach (variables are pipeline-wide)"),
        Rule("ADF070", "error", "timeout is not a d.hh:mm:ss / hh:mm:ss timespan"),
        Rule("ADF071", "warning", "retryIntervalInSeconds outside 30..86400"),
        Rule("ADF072", "warning", "WebActivity httpRequestTimeout above 10 minutes"),
        Rule("ADF073", "error", "policy retry is not a non-negative integer"),
        Rule("ADF074", "info", "timeout parses but deviates from the documented d.hh:mm:ss pattern"),
        Rule("ADF075", "error", "ForEach batchCount outside 1..50 (the service refuses the pipeline)"),
        Rule("ADF080", "error", "duplicate activity name"),
        Rule("ADF090", "error", "ExecutePipeline names a pipeline the factory does not have"),
    )
}


@dataclass(frozen=True)
class Finding:
    """One problem: which rule, how bad, where (file, JSON path, line), what is wrong, how to fix it."""

    rule: str
    severity: Severity
    message: str
    fix: str
    file: str
    path: str
    pipeline: str | None = None
    activity: str | None = None
    line: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The finding as JSON."""
        return asdict(self)

    def sort_key(self) -> tuple[str, int, str, str]:
        return (self.file, self.line or 0, self.path, self.rule)
