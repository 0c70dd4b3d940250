"""CLI boundary: start-up stays light, errors map to exit codes, JSON output is one document."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cicd_tools.cli.main import main
from cicd_tools.support.errors import (
    AzureError,
    CicdError,
    ConfigError,
    ContractViolation,
    ExitCode,
    Interrupted,
    RunFailed,
    TimeoutExpired,
)

PROBE = (
    "import sys\n"
    "from cicd_tools.cli.main import main\n"
    "try:\n"
    "    main({argv!r})\n"
    "except SystemExit:\n"
    "    pass\n"
    "sys.stderr.write('AZURE_AI_ML_LOADED=%s' % ('azure.ai.ml' in sys.modules))\n"
)


@pytest.mark.parametrize("argv", [["--help"], ["pointer", "read", "--help"], ["preflight", "--help"], ["--version"]])
def test_help_does_not_import_azure_ai_ml(argv: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True)
    assert "AZURE_AI_ML_LOADED=False" in proc.stderr, proc.stderr


def test_every_error_class_has_a_distinct_documented_exit_code() -> None:
    assert ConfigError("x").exit_code == ExitCode.USAGE == 2
    assert AzureError("x").exit_code == 3
    assert RunFailed("x").exit_code == 4
    assert ContractViolation("x").exit_code == 5
    assert TimeoutExpired("x").exit_code == 6
    assert Interrupted("x").exit_code == 130
    assert all(cls("x").hint for cls in (ConfigError, AzureError, RunFailed, ContractViolation, TimeoutExpired))


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage:" in capsys.readouterr().err


def test_errors_in_json_mode_print_one_json_document(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import cicd_tools.cli.pointer as pointer_cmd

    def boom(args: object, ctx: object) -> None:
        raise ContractViolation("pointer is foreign", code="PointerMalformed")

    monkeypatch.setattr(pointer_cmd, "_read", boom)
    code = main(["--output", "json", "pointer", "read", "--asset", "a"])
    out, err = capsys.readouterr()
    assert code == 5
    doc = json.loads(out)
    assert doc["code"] == "PointerMalformed" and doc["exitCode"] == 5 and doc["hint"]
    assert "error [PointerMalformed]: pointer is foreign" in err


def test_unexpected_exception_is_an_internal_error_with_a_crash_log(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import cicd_tools.cli.pointer as pointer_cmd

    def bug(args: object, ctx: object) -> None:
        raise KeyError("oops")

    monkeypatch.setattr(pointer_cmd, "_schema", bug)
    assert main(["pointer", "schema"]) == 70
    err = capsys.readouterr().err
    assert "internal error: KeyError" in err and "crash log" in err and "Traceback" not in err


def test_azure_sdk_error_escaping_the_library_is_classified(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.core.exceptions import HttpResponseError

    import cicd_tools.cli.pointer as pointer_cmd

    def denied(args: object, ctx: object) -> None:
        exc = HttpResponseError(message="This request is not authorized to perform this operation.")
        exc.error_code = "AuthorizationFailure"  # what azure-storage-blob sets
        raise exc

    monkeypatch.setattr(pointer_cmd, "_schema", denied)
    assert main(["pointer", "schema"]) == 3
    assert "storage firewall" in capsys.readouterr().err


def test_cicd_error_base_defaults_to_azure_exit() -> None:
    assert CicdError("x").exit_code == 3


def test_storage_error_code_enum_is_classified_by_its_value() -> None:
    from azure.core.exceptions import HttpResponseError
    from azure.storage.blob import StorageErrorCode

    from cicd_tools.support.azerrors import classify_azure_error, error_code_of
    from cicd_tools.support.errors import NetworkDenied

    exc = HttpResponseError(message="denied")
    exc.error_code = StorageErrorCode.AUTHORIZATION_FAILURE  # what a blob HEAD leaves behind
    assert error_code_of(exc) == "AuthorizationFailure"
    assert isinstance(classify_azure_error(exc), NetworkDenied)
