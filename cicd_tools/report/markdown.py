"""The evidence report as Markdown: the CI job summary, and what ``cicd-tools report show`` prints.

Reviewers read this page to answer one question: did runtime systems consume exactly the version that
was registered? So the versions, the pointer and the jobs' code ids sit next to each other.
"""

from __future__ import annotations

from typing import Any

from cicd_tools.report.mermaid import diagrams_markdown
from cicd_tools.report.model import EvidenceReport

_MARK = {"running": "⏳",
         "ok": "✅", "failed": "❌", "interrupted": "⛔", "skipped": "⏭️", "not-available": "⚠️", "not-run": "·"}


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(head: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines.extend("| " + " | ".join(_cell(c) for c in row) + " |" for row in rows)
    return lines


def render_markdown(report: EvidenceReport) -> str:
    """The whole report for people."""
    out = [f"## cicd-tools flow: {report.status}" + (f" (exit {report.exitCode})" if report.exitCode else ""), ""]
    prov = report.provenance
    out.append(f"Started {report.startedAtUtc}, finished {report.finishedAtUtc or '–'}; build "
               f"{prov.get('buildId') or '–'}, commit {prov.get('sourceVersion') or '–'}; {report.tool}.")
    out += ["", *diagrams_markdown(report)]
    out += ["", "### Steps", ""]
    out += _table(["step", "status", "seconds", "detail"], [
        [s.name, f"{_MARK.get(s.status, '')} {s.status}",
         None if s.durationSeconds is None else f"{s.durationSeconds:.1f}",
         (f"[{s.error.code or s.error.type}] {s.error.message}" if s.error else s.note)]
        for s in report.steps
    ])
    fw = report.firewall
    if fw is not None:
        out += ["", "### Firewall rule", ""]
        out += _table(["IP", "lease", "opened", "reachable after (s)", "closed", "rule removed"], [[
            fw.ip, fw.leaseId, fw.skipped or fw.opened,
            None if fw.reachableAfterSeconds is None else f"{fw.reachableAfterSeconds:.1f}",
            fw.closeNote or fw.closed, fw.ruleRemoved,
        ]])
    if report.smoke is not None:
        sm = report.smoke
        out += ["", f"### Storage smoke: {'usable' if sm.usable else 'NOT usable'}", ""]
        out += _table(["check", "ok", "ms", "code"], [
            [s.step, "skipped" if s.skipped else s.ok, None if s.latencyMs is None else f"{s.latencyMs:.0f}", s.code]
            for s in sm.steps
        ])
        if sm.fix:
            out.append(f"\nFix: {sm.fix}")
    if report.assets:
        out += ["", "### Code assets and pointers", ""]
        rows = []
        for a in report.assets:
            p = a.pointer
            rows.append([a.name, a.requestedVersion, a.version,
                         a.returnedName if a.returnedName != a.name else None, a.dedup,
                         p.before if p else None, p.after if p else None,
                         (p.historyBlob if p and p.historyBlob else (p.error.message if p and p.error else None)),
                         a.error.message if a.error else None])
        out += _table(["asset", "requested", "returned", "returned name", "dedup", "pointer before",
                       "pointer after", "history", "error"], rows)
    for run in report.adfRuns:
        out += ["", f"### ADF run {run.pipeline}: {run.status or '–'}", ""]
        out.append((f"Run id `{run.runId}`" if run.runId else "No run id (the run was not created)")
                   + f" on {run.factory or '–'}"
                   + (f", {run.durationInMs / 1000:.1f} s" if run.durationInMs is not None else "")
                   + (f": {run.message}" if run.message else "") + "\n")
        out += _table(["activity", "type", "status", "error"], [
            [a.activityName, a.activityType, a.status,
             (f"[{a.error.get('errorCode')}] {a.error.get('message')}" if a.error else None)]
            for a in run.activities
        ])
    for ver in report.verify:
        out += ["", f"### Verify {', '.join(ver.pointers)} in run {ver.adfRunId}: {'ok' if ver.ok else 'FAILED'}", ""]
        if ver.expectedCodeId:
            out.append(f"Expected code id `{ver.expectedCodeId}`\n")
        out += _table(["job", "status", "code id", "matches", "hash matches", "ok"], [
            [j.name, j.status, j.codeId, j.codeIdMatches, j.hashMatches, j.ok] for j in ver.jobs
        ])
    for m in report.mirror:
        state = "reused" if m.reused else ("registered" if m.ok else "FAILED (not blocking)")
        out += ["", f"### Model mirror of run {m.adfRunId}: {state}", ""]
        out += _table(["model", "version", "training job", "code id", "warning"], [
            [m.modelName, m.modelVersion, m.trainingJob, m.codeId, m.warning]])
    if report.outputs:
        out += ["", "### CI outputs", ""]
        out += _table(["name", "value"], [[k, v] for k, v in report.outputs.items()])
    return "\n".join(out) + "\n"
