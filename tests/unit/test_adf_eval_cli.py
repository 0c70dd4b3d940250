"""``cicd-tools adf eval``: text and JSON output, typed KEY=VALUE inputs, exit code 2 with a position."""

from __future__ import annotations

import json

import pytest

from cicd_tools.cli import main as cli

REGISTERED = cli.COMMAND_MODULES  # read before the fixture below narrows it


@pytest.fixture(autouse=True)
def _only_adf_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    # Other command modules are developed in parallel; these tests exercise the adf group alone.
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("cicd_tools.cli.adf",))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_adf_commands_are_registered_in_the_cli() -> None:
    assert "cicd_tools.cli.adf" in REGISTERED


def test_eval_prints_a_string_result_raw(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "adf",
        "eval",
        "Run @{pipeline().RunId} for @{pipeline().parameters.env}",
        "--run-id",
        "r-1",
        "--param",
        "env=dev",
    )
    assert (code, out) == (0, "Run r-1 for dev\n")


def test_eval_prints_non_strings_as_json_and_params_parse_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "adf",
        "eval",
        "@createArray(pipeline().parameters.n, pipeline().parameters.o)",
        "--param",
        "n=5",
        "--param",
        'o={"a": [true]}',
    )
    assert code == 0
    assert json.loads(out) == [5, {"a": [True]}]


def test_eval_json_output_prints_the_resulting_json_value(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--output", "json", "adf", "eval", "@add(pipeline().parameters.n, 1)", "--param", "n=41")
    assert (code, json.loads(out)) == (0, 42)
    code, out, _ = run(capsys, "--output", "json", "adf", "eval", "@concat('a', 'b')")
    assert (code, json.loads(out)) == (0, "ab")


def test_eval_reads_strings_that_are_not_json_as_strings(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "adf",
        "eval",
        "@concat(pipeline().parameters.s, '|', pipeline().globalParameters.g)",
        "--param",
        "s=hello world",
        "--global",
        'g="5"',
    )
    assert (code, out) == (0, "hello world|5\n")


def test_eval_uses_variables_activity_outputs_item_and_now(capsys: pytest.CaptureFixture[str]) -> None:
    value = "@{variables('v')} @{activity('Look up').output.firstRow.id} @{item().n} @{utcNow('yyyy-MM-dd')}"
    code, out, _ = run(
        capsys,
        "adf",
        "eval",
        value,
        "--variable",
        "v=x",
        "--activity-output",
        'Look up={"firstRow": {"id": 7}}',
        "--item",
        '{"n": 3}',
        "--now",
        "2024-05-01T06:00:00Z",
    )
    assert (code, out) == (0, "x 7 3 2024-05-01\n")


def test_eval_of_an_escaped_literal_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "adf", "eval", "@@literal")[:2] == (0, "@literal\n")


def test_eval_parse_error_exits_2_with_the_position(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "adf", "eval", "@concat('a', ")
    assert code == 2
    assert out == ""
    assert "at position 13" in err
    assert "[ExpressionError]" in err


def test_eval_parse_error_in_json_mode_prints_the_error_document(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--output", "json", "adf", "eval", "@nope(")
    assert code == 2
    assert json.loads(out)["code"] == "ExpressionError"


def test_eval_unknown_function_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "adf", "eval", "@fooBar(1)")
    assert code == 2
    assert "'fooBar' is not defined" in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--param", "novalue"], "--param takes NAME=VALUE"),
        (["--activity-output", "A=not json"], "--activity-output A: the value is not JSON"),
        (["--now", "tomorrow"], "--now takes an ISO 8601 time"),
    ],
)
def test_eval_bad_flags_exit_2(capsys: pytest.CaptureFixture[str], flags: list[str], message: str) -> None:
    code, _, err = run(capsys, "adf", "eval", "@utcNow()", *flags)
    assert code == 2
    assert message in err
