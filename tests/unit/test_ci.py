"""CI dialects: escaping exactly as the reference clients do, outputs, masks, groups, annotations."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from cicd_tools.ci import (
    CiDialect,
    CiKind,
    ado_escape_data,
    ado_escape_property,
    ado_unescape,
    detect_kind,
    gha_escape_data,
    gha_escape_property,
    gha_unescape,
    parse_github_output_file,
)

TRICKY = ["100%", "a;b", "x]y", "cr\rhere", "lf\nhere", "ns::value", "%AZP25 literal", "%25 literal", "a,b:c"]


def test_detect_kind_reads_tf_build_and_github_actions() -> None:
    assert detect_kind({"TF_BUILD": "True"}) is CiKind.AZURE_DEVOPS
    assert detect_kind({"GITHUB_ACTIONS": "true"}) is CiKind.GITHUB
    assert detect_kind({}) is CiKind.PLAIN


def test_ado_property_escapes_percent_semicolon_bracket_cr_lf() -> None:
    assert ado_escape_property("100%;a]b\r\n") == "100%AZP25%3Ba%5Db%0D%0A"


def test_ado_message_escapes_only_percent_cr_lf() -> None:
    assert ado_escape_data("a;b x]y 5%\r\n::") == "a;b x]y 5%AZP25%0D%0A::"


@pytest.mark.parametrize("value", TRICKY)
def test_ado_escaping_round_trips(value: str) -> None:
    assert ado_unescape(ado_escape_property(value)) == value
    assert ado_unescape(ado_escape_data(value)) == value


def test_gha_data_and_property_escaping() -> None:
    assert gha_escape_data("5% a:b,c\r\n") == "5%25 a:b,c%0D%0A"
    assert gha_escape_property("5% a:b,c\r\n") == "5%25 a%3Ab%2Cc%0D%0A"


@pytest.mark.parametrize("value", TRICKY)
def test_gha_escaping_round_trips(value: str) -> None:
    assert gha_unescape(gha_escape_property(value)) == value
    assert gha_unescape(gha_escape_data(value)) == value


def test_ado_set_output_is_one_line_even_with_newlines() -> None:
    out = io.StringIO()
    CiDialect(CiKind.AZURE_DEVOPS, stream=out, environ={}).set_output("code;Version]", "v1\nv2%;]")
    line = out.getvalue()
    assert line == (
        "##vso[task.setvariable variable=code%3BVersion%5D;isOutput=true;issecret=false;]v1%0Av2%AZP25;]\n"
    )


@pytest.mark.parametrize("value", [*TRICKY, "multi\nline\nvalue", "", "ends with newline\n", "=leading"])
def test_gha_outputs_round_trip_through_the_heredoc_form(tmp_path: Path, value: str) -> None:
    output_file = tmp_path / "out"
    ci = CiDialect(CiKind.GITHUB, stream=io.StringIO(), environ={"GITHUB_OUTPUT": str(output_file)})
    ci.set_output("codeVersion", value)
    ci.set_output("other", "x")
    text = output_file.read_bytes().decode("utf-8")
    assert "<<ghadelimiter_" in text
    # What the runner hands to later steps: a lone CR reads back as a line break (its ReadLine).
    expected = value.replace("\r\n", "\n").replace("\r", "\n")
    assert parse_github_output_file(text) == {"codeVersion": expected, "other": "x"}


def test_mask_emits_the_dialect_command_and_redacts_our_logs() -> None:
    from cicd_tools.support.redact import redact

    out = io.StringIO()
    CiDialect(CiKind.GITHUB, stream=out, environ={}).mask("s3cr3t-value%")
    assert out.getvalue() == "::add-mask::s3cr3t-value%25\n"
    out = io.StringIO()
    CiDialect(CiKind.AZURE_DEVOPS, stream=out, environ={}).mask("an0ther-secret")
    assert out.getvalue() == "##vso[task.setsecret]an0ther-secret\n"
    assert redact("token an0ther-secret and s3cr3t-value%") == "token *** and ***"


def test_annotations_escape_file_and_message() -> None:
    out = io.StringIO()
    CiDialect(CiKind.GITHUB, stream=out, environ={}).annotate(
        "error", "bad: 5%\nnext", file="a,b:c.json", line=3, title="T:1"
    )
    assert out.getvalue() == "::error file=a%2Cb%3Ac.json,line=3,title=T%3A1::bad: 5%25%0Anext\n"
    out = io.StringIO()
    CiDialect(CiKind.AZURE_DEVOPS, stream=out, environ={}).annotate("warning", "x;y]", file="p;q.json", line=7)
    assert out.getvalue() == "##vso[task.logissue type=warning;sourcepath=p%3Bq.json;linenumber=7;]x;y]\n"


def test_group_closes_even_when_the_body_raises() -> None:
    out = io.StringIO()
    ci = CiDialect(CiKind.AZURE_DEVOPS, stream=out, environ={})
    with pytest.raises(RuntimeError), ci.group("step"):
        raise RuntimeError("boom")
    assert out.getvalue() == "##[group]step\n##[endgroup]\n"


def test_summary_appends_markdown_to_the_step_summary(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    ci = CiDialect(CiKind.GITHUB, stream=io.StringIO(), environ={"GITHUB_STEP_SUMMARY": str(summary)})
    ci.summary("# one")
    ci.summary("| a | b |")
    assert summary.read_text() == "# one\n| a | b |\n"


def test_ado_summary_uploads_a_markdown_file(tmp_path: Path) -> None:
    out = io.StringIO()
    ci = CiDialect(CiKind.AZURE_DEVOPS, stream=out, environ={"AGENT_TEMPDIRECTORY": str(tmp_path)})
    path = ci.summary("# hello")
    assert path is not None and path.read_text() == "# hello"
    assert out.getvalue() == f"##vso[task.uploadsummary]{path.resolve()}\n"


def test_build_id_and_provenance_agree_for_both_ci_systems() -> None:
    from cicd_tools.ci import build_id, run_provenance

    ado = {"BUILD_BUILDID": "812", "BUILD_SOURCEBRANCH": "refs/heads/main", "BUILD_SOURCEVERSION": "abc"}
    assert build_id(ado) == "812"
    assert run_provenance(ado) == {"buildId": "812", "sourceBranch": "refs/heads/main", "sourceVersion": "abc"}
    # an empty attempt counts as the first one, in the version default and the pointer alike
    gha = {"GITHUB_RUN_ID": "99", "GITHUB_RUN_ATTEMPT": "", "GITHUB_REF": "refs/heads/x", "GITHUB_SHA": "def"}
    assert build_id(gha) == "99-1" == run_provenance(gha)["buildId"]
    assert run_provenance({}) == {"buildId": None, "sourceBranch": None, "sourceVersion": None}
