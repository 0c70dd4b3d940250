"""cicd-tools.toml: precedence default < file < environment < command line, sources, key-path errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from cicd_tools.settings.config import load_config
from cicd_tools.support.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_each_layer_overrides_the_one_below_and_records_its_source(tmp_path: Path) -> None:
    (tmp_path / "cicd-tools.toml").write_text('[azure]\nworkspace = "from-file"\nfactory = "f-file"\n'
                                              '[storage]\naccount = "a-file"\n')
    env = {"CICD_FACTORY": "f-env", "CICD_STORAGE_ACCOUNT": "a-env"}
    loaded = load_config(cli={"storage.account": "a-flag"}, environ=env, cwd=tmp_path)
    rows = {key: (value, source) for key, value, source in loaded.flat()}
    assert rows["azure.workspace"] == ("from-file", "config file")
    assert rows["azure.factory"] == ("f-env", "environment")
    assert rows["storage.account"] == ("a-flag", "command line")
    assert rows["storage.container"] == ("ml-globals", "default")
    assert loaded.file == tmp_path / "cicd-tools.toml"


def test_pyproject_tool_table_is_read_when_there_is_no_cicd_tools_toml(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n[tool.cicd-tools.azure]\nworkspace = "w"\n')
    loaded = load_config(environ={}, cwd=tmp_path)
    assert loaded.config.azure.workspace == "w" and loaded.file == tmp_path / "pyproject.toml"


def test_relative_paths_in_the_file_are_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "c.toml").write_text('[[code.assets]]\nname = "a"\npath = "src"\n[report]\npath = "e.json"\n')
    loaded = load_config(config_path=str(tmp_path / "cfg" / "c.toml"), environ={}, cwd=tmp_path)
    assert loaded.config.code.assets[0].path == str(tmp_path / "cfg" / "src")
    assert loaded.config.report.path == str(tmp_path / "cfg" / "e.json")


@pytest.mark.parametrize(("toml", "expected"), [
    ('[[adf.pipelines]]\nname = "p"\nparameters = "x"\n', "adf.pipelines[0].parameters: Input should be a valid dict"),
    ('[adf]\npipline = 1\n', "adf.pipline: unknown key (did you mean 'pipelines'?)"),
    ('[firewall]\nttl = "soon"\n', "firewall.ttl: 'soon' is not a duration"),
    ('[[code.assets]]\nname = "a"\n', "code.assets[0].path: Field required"),
    ('[code]\nassets = [{name = "a", path = "x"}, {name = "a", path = "y"}]\n', "repeated: a"),
    ('[azure]\n', None),
])
def test_a_bad_value_names_its_key_path_and_source(tmp_path: Path, toml: str, expected: str | None) -> None:
    (tmp_path / "cicd-tools.toml").write_text(toml)
    if expected is None:
        load_config(environ={}, cwd=tmp_path)
        return
    with pytest.raises(ConfigError) as info:
        load_config(environ={}, cwd=tmp_path)
    assert expected in info.value.message and "config file" in info.value.message
    assert info.value.exit_code == 2


def test_a_bad_environment_value_says_it_came_from_the_environment(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(environ={"CICD_ADF_TIMEOUT": "never"}, cwd=tmp_path)
    assert "adf.timeout" in info.value.message and "(from environment)" in info.value.message


def test_skips_come_from_the_environment_and_flags_and_unknown_steps_are_refused(tmp_path: Path) -> None:
    loaded = load_config(environ={"CICD_FLOW_SKIP": "smoke, aml-verify"}, cli_skip=["adf-run"], cwd=tmp_path)
    cfg = loaded.config
    assert not cfg.step_enabled("smoke") and not cfg.step_enabled("aml-verify") and not cfg.step_enabled("adf-run")
    assert cfg.step_enabled("register")
    assert dict((k, s) for k, _, s in loaded.flat())["adf.enabled"] == "command line"
    with pytest.raises(ConfigError, match="unknown step 'smok'"):
        load_config(environ={"CICD_FLOW_SKIP": "smok"}, cwd=tmp_path)


def test_malformed_toml_and_a_missing_explicit_file_are_usage_errors(tmp_path: Path) -> None:
    (tmp_path / "cicd-tools.toml").write_text("[azure\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(environ={}, cwd=tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(environ={"CICD_CONFIG": str(tmp_path / "nope.toml")}, cwd=tmp_path)
    with pytest.raises(ConfigError, match="not NAME=PATH"):
        load_config(cli_assets=["no-equals"], environ={}, cwd=tmp_path / "elsewhere")


def test_the_shipped_example_config_is_valid_and_names_the_sandbox_demo() -> None:
    loaded = load_config(environ={}, cwd=REPO)
    cfg = loaded.config
    assert [(a.name, Path(a.path).relative_to(REPO).as_posix()) for a in cfg.code.assets] == [
        ("training-code", "aml/src/train"), ("validation-code", "aml/src/validate")]
    assert cfg.storage.account == "mlopssandboxsa" and cfg.adf.pipelines[0].name == "pl_train_and_validate"
    assert cfg.verify.enabled and all(Path(a.path).is_dir() for a in cfg.code.assets)
    assert (REPO / "adf" / "pipeline" / f"{cfg.adf.pipelines[0].name}.json").is_file()
