"""Settings resolved once: flag > environment (CICD_*) > config file > default per field, each value with its
source; related values from sources that disagree are a usage error naming both; one strict loader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cicd_tools.cli._base import resolve_args
from cicd_tools.cli.main import build_parser, main
from cicd_tools.settings.config import load_config, settings_of
from cicd_tools.settings.layers import FileLayer
from cicd_tools.settings.resolve import Settings
from cicd_tools.support.errors import ConfigError

SUB = "00000000-0000-0000-0000-000000000001"
OTHER_SUB = "00000000-0000-0000-0000-000000000002"


def _toml(folder: Path, text: str) -> Path:
    path = folder / "cicd-tools.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_each_flag_value_comes_from_one_source_and_names_it(tmp_path: Path) -> None:
    path = _toml(tmp_path, f'[azure]\nsubscription-id = "{SUB}"\n')
    args = build_parser().parse_args(["firewall", "close", "--account", "flagsa"])
    sources = resolve_args(args, {"CICD_RESOURCE_GROUP": "rg-env"}, tmp_path)
    assert (args.account, sources["account"]) == ("flagsa", "--account")
    assert (args.resource_group, sources["resource_group"]) == ("rg-env", "CICD_RESOURCE_GROUP")
    assert (args.subscription_id, sources["subscription_id"]) == (SUB, f"azure.subscription-id in {path}")
    assert (args.timeout, sources["timeout"]) == ("2m", "default")  # the flag's documented default
    assert "lease_id" not in sources and args.lease_id is None  # nothing gave it


@pytest.mark.parametrize(("argv", "env", "expected"), [
    (["--account", "flagsa"], {"CICD_STORAGE_ACCOUNT": "envsa"}, ("flagsa", "--account")),
    ([], {"CICD_STORAGE_ACCOUNT": "envsa"}, ("envsa", "CICD_STORAGE_ACCOUNT")),
    ([], {}, ("filesa", "storage.account in {file}")),
])
def test_a_flag_beats_the_environment_which_beats_the_file(
        tmp_path: Path, argv: list[str], env: dict[str, str], expected: tuple[str, str]) -> None:
    path = _toml(tmp_path, '[storage]\naccount = "filesa"\ncontainer = "file-container"\n')
    args = build_parser().parse_args(["storage", "smoke", *argv])
    sources = resolve_args(args, env, tmp_path)
    assert (args.account, sources["account"]) == (expected[0], expected[1].format(file=path))
    # the file beats the default
    assert (args.container, sources["container"]) == ("file-container", f"storage.container in {path}")


def test_a_setting_this_command_has_no_flag_for_comes_from_the_variable_then_the_file(tmp_path: Path) -> None:
    path = _toml(tmp_path, '[storage]\nblob-endpoint = "https://127.0.0.1:1/filesa"\n'
                           '[azure]\narm-endpoint = "https://127.0.0.1:2"\n')
    layer = FileLayer(None, {}, tmp_path)
    settings = Settings.from_env({"CICD_ARM_ENDPOINT": "https://127.0.0.1:3"}, file=layer)
    assert (settings.arm_endpoint, settings.source_of("arm_endpoint")) == ("https://127.0.0.1:3", "CICD_ARM_ENDPOINT")
    assert (settings.blob_endpoint, settings.source_of("blob_endpoint")) == (
        "https://127.0.0.1:1/filesa", f"storage.blob-endpoint in {path}")
    assert settings.pointer_container == "ml-globals" and "pointer_container" not in settings.sources


def test_without_a_file_the_default_holds(tmp_path: Path) -> None:
    args = build_parser().parse_args(["storage", "smoke"])
    sources = resolve_args(args, {}, tmp_path)
    assert (args.container, sources["container"]) == ("ml-globals", "default")
    assert args.account is None and "account" not in sources


def test_an_environment_value_the_flag_would_refuse_is_a_usage_error(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CICD_AUTH_MODE", "password")  # --auth-mode takes login or key
    code = main(["-o", "json", "storage", "smoke", "--account", "x"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 2 and "CICD_AUTH_MODE" in doc["message"] and "login, key" in doc["message"]


def test_an_environment_value_the_flags_type_refuses_is_a_usage_error_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CICD_FIREWALL_SUCCESSES", "many")  # --successes takes an int
    code = main(["-o", "json", "firewall", "open", "--account", "x"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 2 and doc["message"].startswith("CICD_FIREWALL_SUCCESSES: 'many' is not a valid value for"
                                                   " --successes")


def test_an_account_flag_and_an_endpoint_from_the_file_that_disagree_name_both_sources(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # Port 1 on loopback: a call that were made would fail with another error.
    path = _toml(tmp_path, '[storage]\nblob-endpoint = "https://127.0.0.1:1/mlopssandboxsa"\n')
    monkeypatch.chdir(tmp_path)
    code = main(["-o", "json", "storage", "smoke", "--account", "mlopssandbox"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 2, doc
    assert "(--account)" in doc["message"] and f"(storage.blob-endpoint in {path})" in doc["message"]
    assert "'mlopssandboxsa'" in doc["message"] and "'mlopssandbox'" in doc["message"]


def test_an_account_from_the_environment_names_the_variable_not_the_flag(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CICD_STORAGE_ACCOUNT", "mlopssandbox")
    code = main(["-o", "json", "storage", "smoke", "--blob-endpoint", "https://127.0.0.1:1/othersa"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 2, doc
    assert "(CICD_STORAGE_ACCOUNT)" in doc["message"] and "(--blob-endpoint)" in doc["message"]


def test_a_workspace_arm_id_in_another_subscription_is_refused_naming_both_sources() -> None:
    workspace = (f"/subscriptions/{OTHER_SUB}/resourceGroups/rg/providers/"
                 "Microsoft.MachineLearningServices/workspaces/mlw")
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"CICD_SUBSCRIPTION_ID": SUB}, workspace=workspace)
    message = info.value.message
    assert OTHER_SUB in message and SUB in message
    assert "(--workspace)" in message and "(CICD_SUBSCRIPTION_ID)" in message
    assert info.value.exit_code == 2


def test_a_workspace_arm_id_gives_its_subscription_and_resource_group() -> None:
    workspace = f"/subscriptions/{SUB}/resourceGroups/rg-ml/providers/Microsoft.MachineLearningServices/workspaces/mlw"
    settings = Settings.from_env({}, workspace=workspace)
    assert (settings.subscription_id, settings.resource_group, settings.workspace) == (SUB, "rg-ml", "mlw")
    assert settings.workspace_id() == workspace
    assert settings.source_of("subscription_id") == "--workspace"


def test_a_pointer_command_with_a_workspace_in_another_subscription_exits_2(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    _toml(tmp_path, f'[azure]\nsubscription-id = "{SUB}"\n')
    workspace = f"/subscriptions/{OTHER_SUB}/resourceGroups/rg/providers/Microsoft.MachineLearningServices/" \
        "workspaces/mlw"
    code = main(["-o", "json", "code", "plan", "--workspace", workspace, "--asset", f"a={tmp_path}"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 2, doc
    assert "azure.subscription-id in" in doc["message"] and "(--workspace)" in doc["message"]


def test_the_flow_names_the_true_sources_of_an_account_and_endpoint_that_disagree(tmp_path: Path) -> None:
    path = _toml(tmp_path, '[storage]\naccount = "mlopssandbox"\n')
    loaded = load_config(environ={"CICD_BLOB_ENDPOINT": "https://127.0.0.1:1/mlopssandboxsa"}, cwd=tmp_path)
    settings = settings_of(loaded, {})
    with pytest.raises(ConfigError) as info:
        settings.account_url()
    assert "(CICD_BLOB_ENDPOINT)" in info.value.message
    assert f"(storage.account in {path})" in info.value.message


def test_the_flow_refuses_an_account_and_endpoint_that_disagree_before_any_step(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from cicd_tools.cli import flow as flow_cmd

    class NoOperations:
        def __getattr__(self, name: str) -> None:
            raise AssertionError(f"{name} ran: the disagreement must be refused before any step")

    monkeypatch.setattr(flow_cmd, "operations", NoOperations)
    path = _toml(tmp_path, '[storage]\naccount = "mlopssandbox"\n[report]\npath = "evidence.json"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CICD_BLOB_ENDPOINT", "https://127.0.0.1:1/mlopssandboxsa")
    skips = [a for s in ("firewall-open", "register", "pointers", "adf-run", "aml-verify") for a in ("--skip", s)]
    code = main(["-o", "json", "flow", *skips])
    doc = json.loads(capsys.readouterr().out)
    assert code == 2, doc
    assert "(CICD_BLOB_ENDPOINT)" in doc["message"] and f"(storage.account in {path})" in doc["message"]
    assert not (tmp_path / "evidence.json").exists()


def test_print_config_shows_each_value_with_its_source(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _toml(tmp_path, '[azure]\nworkspace = "mlw-file"\nfactory = "adf-file"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CICD_FACTORY", "adf-env")
    code = main(["-o", "json", "flow", "--print-config", "--account", "flagsa"])
    values = json.loads(capsys.readouterr().out)["values"]
    assert code == 0
    assert values["azure.workspace"] == {"value": "mlw-file", "source": "config file"}
    assert values["azure.factory"] == {"value": "adf-env", "source": "environment"}
    assert values["storage.account"] == {"value": "flagsa", "source": "command line"}
    assert values["storage.container"] == {"value": "ml-globals", "source": "default"}


# --- one strict loader -----------------------------------------------------------------------------------------

UNKNOWN = '[azure]\nworkspace = "mlw"\nworkspce = "typo"\n'


@pytest.mark.parametrize("argv", [
    ["flow", "--print-config"],
    ["preflight", "--config", "cicd-tools.toml"],
    ["preflight"],
    ["storage", "smoke"],
    ["firewall", "close"],
    ["pointer", "read", "--asset", "training-code"],
])
def test_an_unknown_key_is_refused_the_same_way_by_every_command(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
        argv: list[str]) -> None:
    path = _toml(tmp_path, UNKNOWN)
    monkeypatch.chdir(tmp_path)
    code = main(["-o", "json", *argv])
    doc = json.loads(capsys.readouterr().out)
    assert code == 2, doc
    named = "cicd-tools.toml" if "--config" in argv else str(path)  # the file as the user named it
    assert doc["message"] == ("invalid configuration: azure.workspce: unknown key (did you mean 'workspace'?)"
                              f" (from config file {named})")


@pytest.mark.parametrize(("toml", "expected"), [
    ('[storgae]\naccount = "a"\n', "storgae: unknown key (did you mean 'storage'?)"),
    ('[[adf.pipelines]]\nname = "p"\nparamters = {}\n', "adf.pipelines[0].paramters: unknown key (did you mean"
     " 'parameters'?)"),
    ('[[code.assets]]\nname = "a"\npath = "x"\nversion = "1"\n', "code.assets[0].version: unknown key; this table"
     " has name, path"),
])
def test_an_unknown_key_is_named_by_its_path_with_the_key_meant(tmp_path: Path, toml: str, expected: str) -> None:
    _toml(tmp_path, toml)
    with pytest.raises(ConfigError) as info:
        load_config(environ={}, cwd=tmp_path)
    assert expected in info.value.message


def test_a_command_that_reads_no_setting_does_not_read_the_file(tmp_path: Path) -> None:
    _toml(tmp_path, UNKNOWN)
    args = build_parser().parse_args(["adf", "lint", str(tmp_path)])
    assert resolve_args(args, {}, tmp_path) == {}  # adf lint reads no setting: a broken file is not its concern
