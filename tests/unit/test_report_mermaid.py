"""The report's chain and timeline diagrams, checked with Mermaid's own parser (the renderer GitHub and Azure
DevOps use), for a green flow, a flow whose job ran another version, and labels made of hostile user data."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cicd_tools.report.markdown import render_markdown
from cicd_tools.report.mermaid import chain_diagram, label, timeline_diagram
from cicd_tools.report.model import (
    AdfRunEvidence,
    AssetEvidence,
    ErrorInfo,
    EvidenceReport,
    JobEvidence,
    PointerEvidence,
    StepRecord,
    VerifyEvidence,
)

REPO = Path(__file__).resolve().parents[2]
WS = ("/subscriptions/0000/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/mlw"
      "/codes/training-code/versions/")


def mermaid_parse(*sources: str) -> list[dict[str, object]]:
    """Mermaid's verdict on each source (scripts/mermaid-parse.mjs under Node, with the pinned mermaid + jsdom)."""
    node = shutil.which("node")
    assert node, "Node is needed (make test installs the pinned mermaid with npm ci)"
    assert (REPO / "node_modules" / "mermaid").is_dir(), "run `npm ci` (make test does)"
    proc = subprocess.run([node, str(REPO / "scripts" / "mermaid-parse.mjs")], input=json.dumps(list(sources)),
                          capture_output=True, text=True, timeout=120, cwd=REPO, check=True)
    result: list[dict[str, object]] = json.loads(proc.stdout)
    return result


def report(*, job_version: str = "10", asset_name: str = "training-code", path: str = "aml/src/train",
           error: str | None = None) -> EvidenceReport:
    rep = EvidenceReport(tool="cicd-tools test", startedAtUtc="2026-12-07T10:00:00Z", status="succeeded")
    rep.steps = [StepRecord(name=n, status="ok", startedAtUtc=f"2026-12-07T10:00:{i:02d}Z", durationSeconds=1.5)
                 for i, n in enumerate(("firewall-open", "smoke", "register", "pointers", "adf-run", "aml-verify"))]
    asset = AssetEvidence(name=asset_name, path=path, requestedVersion="11", version="10", dedup=True,
                          assetId=WS + "10", pointer=PointerEvidence(before="9", after="10"))
    if error:
        asset.error = ErrorInfo(type="AssetNameMismatch", message=error, exitCode=5)
    rep.assets = [asset]
    rep.adfRuns = [AdfRunEvidence(pipeline="pl_train_and_validate", runId="run-1", status="Succeeded")]
    matches = job_version == "10"
    rep.verify = [VerifyEvidence(adfRunId="run-1", pointers=[asset_name], ok=matches, jobs=[JobEvidence(
        name="train-ci-run-1", status="Completed", codeId=WS + job_version, expectedCodeId=WS + "10",
        codeIdMatches=matches, ok=matches)])]
    return rep


HOSTILE = ['evil"] --> x["pwned', "line\nbreak", "```\n# heading", "a;b#c%%comment", "<script>alert(1)</script>",
           "back`tick` *bold* _it_ [link](http://x)", "{curly} (paren) |pipe| \\ & ~"]
EMPTY = EvidenceReport(tool="t", startedAtUtc="2026-12-07T10:00:00Z")
SOURCES = {
    "green": [chain_diagram(report()), timeline_diagram(report())],
    "red": [chain_diagram(report(job_version="9"))],
    "empty": [chain_diagram(EMPTY), timeline_diagram(EMPTY)],
    **{f"hostile{i}": [chain_diagram(report(path=t, error=t))] for i, t in enumerate(HOSTILE)},
}


@pytest.fixture(scope="module")
def verdicts() -> dict[str, list[dict[str, object]]]:
    """Every diagram of this module parsed in one Node process (start-up is most of the cost)."""
    flat = [(key, src) for key, sources in SOURCES.items() for src in sources]
    results = mermaid_parse(*(src for _, src in flat))
    out: dict[str, list[dict[str, object]]] = {}
    for (key, _), result in zip(flat, results, strict=True):
        out.setdefault(key, []).append(result)
    return out


def test_the_parser_refuses_a_broken_diagram() -> None:
    # the check can fail: a label left unescaped breaks the grammar
    assert mermaid_parse('flowchart LR\n    n0["unclosed --> n1')[0]["ok"] is False


def test_a_green_flow_draws_an_all_green_chain_that_mermaid_accepts(
        verdicts: dict[str, list[dict[str, object]]]) -> None:
    chain, gantt = SOURCES["green"]
    assert verdicts["green"] == [{"ok": True, "type": "flowchart-v2", "error": None},
                                 {"ok": True, "type": "gantt", "error": None}]
    assert ":::bad" not in chain and "#cf222e,stroke-width:3px" not in chain
    assert "training-code:10" in chain and "ran training-code:10" in chain
    assert len(re.findall(r"^    \S+ :done, s\d+, \d+, 1500ms$", gantt, re.M)) == 6


def test_a_job_that_ran_another_version_is_a_red_link(verdicts: dict[str, list[dict[str, object]]]) -> None:
    (chain,) = SOURCES["red"]
    assert verdicts["red"][0]["ok"] is True
    assert "ran training-code:9" in chain and ":::bad" in chain
    assert re.search(r"linkStyle \d+ stroke:#cf222e", chain)


@pytest.mark.parametrize(("index", "text"), list(enumerate(HOSTILE)))
def test_user_data_in_labels_cannot_break_the_diagram_or_the_markdown(
        index: int, text: str, verdicts: dict[str, list[dict[str, object]]]) -> None:
    rep = report(path=text, error=text)
    (chain,) = SOURCES[f"hostile{index}"]
    assert verdicts[f"hostile{index}"][0]["ok"] is True, chain
    # valid is not enough (`evil"] --> x["pwned` would parse as an extra node): every line keeps our shape
    shapes = (r'    n\d+\["[^"\n]*"\]:::(ok|bad|unknown)', r'    n\d+ (-- "[^"\n]*" )?--> n\d+',
              r"    linkStyle \d+ [^\n]+", r"    classDef \w+ [^\n]+", "flowchart LR")
    assert all(any(re.fullmatch(p, line) for p in shapes) for line in chain.splitlines()), chain
    assert "\n" not in label(text) and "`" not in label(text) and '"' not in label(text)
    markdown = render_markdown(rep)
    # the fenced blocks stay closed: exactly the fences we opened, each on its own line
    assert [ln for ln in markdown.splitlines() if ln.startswith("```")] == ["```mermaid", "```"] * 2


def test_the_markdown_report_opens_with_both_diagrams() -> None:
    markdown = render_markdown(report())
    chain_at, gantt_at, steps_at = (markdown.index("```mermaid\nflowchart LR"), markdown.index("```mermaid\ngantt"),
                                    markdown.index("### Steps"))
    assert chain_at < gantt_at < steps_at


def test_a_report_with_no_evidence_yet_still_draws_valid_diagrams(
        verdicts: dict[str, list[dict[str, object]]]) -> None:
    assert [v["ok"] for v in verdicts["empty"]] == [True, True]
