"""The evidence report as pictures: the chain (code -> returned version -> pointer -> ADF run -> jobs) and the
steps' timeline, as Mermaid sources that GitHub's and Azure DevOps' Markdown render natively.

A reviewer asks one question of the report: did the jobs run the version we registered? The chain answers it at a
glance, each link green where the evidence holds and red where it breaks. Every label that comes from user data
(asset names, paths, run ids, error text) goes through ``label``: Mermaid entity codes for the characters its
grammar or Markdown would read (quotes, brackets, backticks, ``#``, ``;``), no newline.
"""

from __future__ import annotations

import re
from datetime import datetime

from cicd_tools.report.model import AssetEvidence, EvidenceReport, JobEvidence

OK, BAD, UNKNOWN = "ok", "bad", "unknown"
_STYLE = {OK: "stroke:#2da44e,stroke-width:2px", BAD: "stroke:#cf222e,stroke-width:3px",
          UNKNOWN: "stroke:#8c959f,stroke-dasharray:4"}
_CLASSES = ("    classDef ok fill:#dafbe1,stroke:#2da44e", "    classDef bad fill:#ffebe9,stroke:#cf222e",
            "    classDef unknown fill:#f6f8fa,stroke:#8c959f")
# Mermaid's entity codes (``#quot;``) are read inside quoted labels; these characters would end a label, start
# Markdown inside it, or end the fenced block around it.
_ENTITIES = {"#": "#35;", '"': "#quot;", "`": "#96;", "<": "#lt;", ">": "#gt;", "[": "#91;", "]": "#93;",
             "{": "#123;", "}": "#125;", "(": "#40;", ")": "#41;", "|": "#124;", ";": "#59;", "&": "#38;",
             "\\": "#92;", "*": "#42;", "_": "#95;", "~": "#126;"}
_MAX_LABEL = 80


def label(value: object) -> str:
    """User data made safe inside a quoted Mermaid label: one line, at most 80 characters, entity-coded."""
    text = " ".join(str(value).split())  # newlines, tabs and other whitespace runs become one space
    if len(text) > _MAX_LABEL:
        text = text[: _MAX_LABEL - 1] + "…"
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return "".join(_ENTITIES.get(ch, ch) for ch in text)


def _state(value: bool | None) -> str:
    return UNKNOWN if value is None else OK if value else BAD


class _Chart:
    def __init__(self) -> None:
        self.lines = ["flowchart LR"]
        self.links: list[str] = []
        self.nodes: dict[str, str] = {}

    def node(self, key: str, *parts: object, state: str) -> str:
        ident = self.nodes.setdefault(key, f"n{len(self.nodes)}")
        text = "<br/>".join(label(p) for p in parts if p not in (None, ""))
        self.lines.append(f'    {ident}["{text}"]:::{state}')
        return ident

    def link(self, a: str, b: str, state: str, what: str = "") -> None:
        arrow = f'-- "{label(what)}" -->' if what else "-->"
        self.lines.append(f"    {a} {arrow} {b}")
        self.links.append(state)

    def render(self) -> str:
        styles = [f"    linkStyle {i} {_STYLE[s]}" for i, s in enumerate(self.links)]
        return "\n".join([*self.lines, *_CLASSES, *styles])


def _asset_state(asset: AssetEvidence) -> str:
    return BAD if asset.error is not None else OK if asset.version else UNKNOWN


def _jobs(report: EvidenceReport) -> list[JobEvidence]:
    return [job for ver in report.verify for job in ver.jobs]


def chain_diagram(report: EvidenceReport) -> str:
    """code folder -> the version Azure ML returned -> the pointer -> each ADF run -> each job's code id."""
    chart = _Chart()
    pointers: list[tuple[str, AssetEvidence]] = []
    for i, asset in enumerate(report.assets):
        folder = chart.node(f"folder{i}", "code folder", asset.path or asset.name, state=OK)
        returned = f"{asset.returnedName or asset.name}:{asset.version}" if asset.version else "not registered"
        reg = chart.node(f"asset{i}", "returned by Azure ML", returned, asset.error.message if asset.error else None,
                         state=_asset_state(asset))
        chart.link(folder, reg, _asset_state(asset), "dedup: older version" if asset.dedup else "")
        pointer = asset.pointer
        if pointer is None:
            continue
        published = pointer.after is not None and pointer.after == asset.version and pointer.error is None
        state = OK if published else BAD if (pointer.error is not None or pointer.after is not None) else UNKNOWN
        pnode = chart.node(f"pointer{i}", f"pointer {asset.name}/latest.json", pointer.after or "not written",
                           pointer.error.message if pointer.error else None, state=state)
        chart.link(reg, pnode, state)
        pointers.append((pnode, asset))
    jobs = _jobs(report)
    for r, run in enumerate(report.adfRuns):
        succeeded = None if run.status in (None, "Queued", "InProgress") else run.status == "Succeeded"
        rnode = chart.node(f"run{r}", f"ADF {run.pipeline}", run.status or "not started", run.runId,
                           state=_state(succeeded))
        for pnode, _asset in pointers:
            chart.link(pnode, rnode, _state(succeeded), "read by")
        for j, job in enumerate(jobs):
            state = _state(job.ok if job.ok is not None else job.codeIdMatches)
            code = job.codeId.rsplit("/codes/", 1)[-1].replace("/versions/", ":") if job.codeId else "code id unknown"
            jnode = chart.node(f"job{r}.{j}", f"job {job.name}", job.status, f"ran {code}", state=state)
            chart.link(rnode, jnode, state, "matches registration" if state == OK else
                       "does NOT match" if state == BAD else "")
    if len(chart.lines) == 1:
        chart.node("empty", "no step produced evidence yet", state=UNKNOWN)
    return chart.render()


def _epoch_ms(stamp: str | None) -> int | None:
    if not stamp:
        return None
    try:
        return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


_GANTT_STATE = {"ok": "done", "failed": "crit", "interrupted": "crit", "running": "active"}


def timeline_diagram(report: EvidenceReport) -> str:
    """A Gantt of the steps that ran (start and duration from the report), failed ones marked critical."""
    lines = ["gantt", "    title cicd-tools flow: step timeline", "    dateFormat x", "    axisFormat %M:%S",
             "    section steps"]
    for i, step in enumerate(report.steps):
        start = _epoch_ms(step.startedAtUtc)
        if start is None or step.durationSeconds is None:
            continue
        tag = _GANTT_STATE.get(step.status)
        # a task name ends at ':' and a line at '#' or ';', and knows no entity codes: keep plain characters only
        name = re.sub(r"[^A-Za-z0-9 ._-]+", " ", step.name).strip()[:_MAX_LABEL] or f"step {i}"
        duration = max(1, round(step.durationSeconds * 1000))
        lines.append(f"    {name} :{tag + ', ' if tag else ''}s{i}, {start}, {duration}ms")
    if len(lines) == 5:
        lines.append(f"    no step finished :s0, {_epoch_ms(report.startedAtUtc) or 0}, 1ms")
    return "\n".join(lines)


def diagrams_markdown(report: EvidenceReport) -> list[str]:
    """The two diagrams as fenced ``mermaid`` blocks, ready to open the Markdown report."""
    return ["### The chain", "", "```mermaid", chain_diagram(report), "```", "",
            "### Timeline", "", "```mermaid", timeline_diagram(report), "```"]
