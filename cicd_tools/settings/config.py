"""``cicd-tools.toml``: the configuration, merged from four layers with the source of each value.

Precedence, lowest first (as nox does it): default < config file < environment (``CICD_*``) < command line.
The merged document is validated by one pydantic model; an error names the key path
(``adf.pipelines[0].parameters``), where the bad value came from and, for an unknown key, the key meant. The file
is ``--config`` / ``CICD_CONFIG``, else ``cicd-tools.toml`` in the working directory, else ``[tool.cicd-tools]`` in
``pyproject.toml``. This is the one loader: ``flow`` merges all four layers here, and every other command reads
the file through ``file_values`` (strictly, the same way) for the flags it did not get.
"""

from __future__ import annotations

import contextlib
import copy
import os
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cicd_tools.settings.keys import (
    CONFIG_ENV,
    OVERRIDABLE,
    PATH_KEYS,
    SETTING_KEYS,
    SKIP_ENV,
    STEP_NAMES,
    STEP_SECTIONS,
)
from cicd_tools.settings.validation import describe
from cicd_tools.support.errors import ConfigError

if TYPE_CHECKING:
    from cicd_tools.settings.resolve import Settings

Source = Literal["default", "config file", "environment", "command line"]


def _kebab(name: str) -> str:
    return name.replace("_", "-")


def _duration(value: str) -> str:
    from cicd_tools.storage.lease_tags import parse_duration
    from cicd_tools.support.errors import UsageError

    try:
        parse_duration(value)
    except UsageError:
        raise ValueError(f"{value!r} is not a duration (use seconds or 90s, 30m, 2h, 1d)") from None
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=_kebab, populate_by_name=True, frozen=True)


class AzureSection(_Section):
    subscription_id: str | None = None
    resource_group: str | None = None
    workspace: str | None = None
    factory: str | None = None
    arm_endpoint: str = "https://management.azure.com"


class StorageSection(_Section):
    account: str | None = Field(None, description="the pointer account (also the firewalled one)")
    blob_endpoint: str | None = None
    container: str = "ml-globals"


class FirewallSection(_Section):
    enabled: bool = True
    ip: str | None = None
    ttl: str = "2h"
    timeout: str = "5m"
    lease_id: str | None = None
    state_file: str | None = None

    _durations = field_validator("ttl", "timeout")(_duration)


class SmokeSection(_Section):
    enabled: bool = True


class CodeAsset(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
    path: str = Field(min_length=1)


class CodeSection(_Section):
    enabled: bool = True
    version: str | None = None
    unique: bool = False
    assets: tuple[CodeAsset, ...] = ()

    @field_validator("assets")
    @classmethod
    def _unique_names(cls, assets: tuple[CodeAsset, ...]) -> tuple[CodeAsset, ...]:
        names = [a.name for a in assets]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"asset names must be unique; repeated: {', '.join(dupes)}")
        return assets


class PointerSection(_Section):
    enabled: bool = True


class AdfPipeline(_Section):
    name: str = Field(min_length=1)
    parameters: dict[str, str | int | float | bool | list[Any] | dict[str, Any]] = Field(default_factory=dict)


class AdfSection(_Section):
    enabled: bool = True
    timeout: str = "2h"
    pipelines: tuple[AdfPipeline, ...] = ()

    _durations = field_validator("timeout")(_duration)


class VerifySection(_Section):
    enabled: bool = True
    pointers: tuple[str, ...] | None = Field(None, description="assets to verify (default: every registered one)")


class MirrorSection(_Section):
    """The optional model mirror after verify: off the critical path (a failure is a warning in the report)."""

    enabled: bool = False
    name: str | None = Field(None, description="the model name the validated checkpoint is registered under")
    output_name: str | None = Field(None, description="the training job's output holding the checkpoint (model)")


class ReportSection(_Section):
    path: str | None = None
    summary: bool = True


class FlowConfig(_Section):
    """The whole configuration of ``cicd-tools flow``."""

    azure: AzureSection = AzureSection()
    storage: StorageSection = StorageSection()
    firewall: FirewallSection = FirewallSection()
    smoke: SmokeSection = SmokeSection()
    code: CodeSection = CodeSection()
    pointer: PointerSection = PointerSection()
    adf: AdfSection = AdfSection()
    verify: VerifySection = VerifySection()
    mirror: MirrorSection = MirrorSection()
    report: ReportSection = ReportSection()

    def step_enabled(self, step: str) -> bool:
        section = getattr(self, STEP_SECTIONS[step].replace("-", "_"))
        return bool(section.enabled) if hasattr(section, "enabled") else True


@dataclass(frozen=True)
class LoadedConfig:
    """The validated configuration, the file it came from, and the source of every value."""

    config: FlowConfig
    file: Path | None
    sources: Mapping[str, Source]

    def flat(self) -> list[tuple[str, Any, Source]]:
        """Every leaf as ``(key path, value, source)`` in document order."""
        data = self.config.model_dump(mode="json", by_alias=True)
        rows: list[tuple[str, Any, Source]] = []
        for path, value in _leaves(data, ""):
            rows.append((path, value, self._source(path)))
        return rows

    def _source(self, path: str) -> Source:
        return self.sources.get(path, "default")


def _leaves(data: Any, prefix: str) -> list[tuple[str, Any]]:
    if isinstance(data, dict) and data and prefix.count(".") < 1:
        out: list[tuple[str, Any]] = []
        for key, value in data.items():
            out.extend(_leaves(value, f"{prefix}.{key}" if prefix else key))
        return out
    return [(prefix, data)]


def find_config_file(explicit: str | None, cwd: Path, environ: Mapping[str, str]) -> tuple[Path, dict[str, Any]] | None:
    """The config file and its table, or None when there is none. Raises: ConfigError."""
    named = explicit or environ.get(CONFIG_ENV)
    if named:
        path = Path(named)
        if not path.is_file():
            via = "--config" if explicit else CONFIG_ENV
            raise ConfigError(f"config file {path} (from {via}) does not exist",
                              hint="Fix the path, or drop it to use ./cicd-tools.toml.")
        return path, _read_table(path)
    own = cwd / "cicd-tools.toml"
    if own.is_file():
        return own, _read_table(own)
    pyproject = cwd / "pyproject.toml"
    if pyproject.is_file():
        table = _read_toml(pyproject).get("tool", {}).get("cicd-tools")
        if isinstance(table, dict):
            return pyproject, table
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    from cicd_tools.support.bounded import InputRefused, read_text_bounded

    try:
        return tomllib.loads(read_text_bounded(path, what="settings file"))
    except InputRefused as exc:
        raise ConfigError(exc.message, hint=exc.hint) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}", hint="Check the file's permissions and encoding.") from None
    except RecursionError:  # tomllib parses nested arrays and inline tables recursively
        raise ConfigError(f"{path} nests arrays or tables too deeply", hint="Settings are flat keys.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", hint="Fix the TOML syntax where named.") from None


def _read_table(path: Path) -> dict[str, Any]:
    data = _read_toml(path)
    if path.name == "pyproject.toml":
        table = data.get("tool", {}).get("cicd-tools")
        return table if isinstance(table, dict) else {}
    return data


def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    section, key = path.split(".", 1)
    target = doc.setdefault(section, {})
    if not isinstance(target, dict):
        raise ConfigError(f"{section}: must be a table, not {type(target).__name__}")
    target[key] = value


def load_config(
    *,
    cli: Mapping[str, Any] | None = None,
    cli_assets: Sequence[str] = (),
    cli_skip: Sequence[str] = (),
    config_path: str | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> LoadedConfig:
    """Merge default < file < environment < command line and validate. Raises: ConfigError (exit 2).

    ``cli`` maps key paths (``storage.account``) to flag values (None = flag not given).
    """
    env = os.environ if environ is None else environ
    here = cwd or Path.cwd()
    sources: dict[str, Source] = {}
    doc: dict[str, Any] = {}
    found = find_config_file(config_path, here, env)
    file_path = None
    if found is not None:
        file_path, table = found
        doc = copy.deepcopy(table)
        base = file_path.parent
        for section, body in doc.items():
            if isinstance(body, dict):
                for key in body:
                    sources[f"{section}.{key}"] = "config file"
                for key in PATH_KEYS:
                    sec, name = key.split(".")
                    if sec == section and isinstance(body.get(name), str) and not Path(body[name]).is_absolute():
                        body[name] = str(base / body[name])
                if section == "code" and isinstance(body.get("assets"), list):
                    for asset in body["assets"]:
                        path = asset.get("path") if isinstance(asset, dict) else None
                        if isinstance(path, str) and not Path(path).is_absolute():
                            asset["path"] = str(base / path)
    for path, (var, _flag) in OVERRIDABLE.items():
        if env.get(var):
            _set(doc, path, env[var])
            sources[path] = "environment"
    skip_env = [s.strip() for s in env.get(SKIP_ENV, "").split(",") if s.strip()]
    _apply_skips(doc, sources, skip_env, "environment", SKIP_ENV)
    for path, value in (cli or {}).items():
        if value is not None:
            _set(doc, path, value)
            sources[path] = "command line"
    if cli_assets:
        assets = []
        for raw in cli_assets:
            name, sep, value = raw.partition("=")
            if not sep or not name or not value:
                raise ConfigError(f"--asset {raw!r} is not NAME=PATH", hint="Write --asset training-code=src/train.")
            assets.append({"name": name, "path": value})
        _set(doc, "code.assets", assets)
        sources["code.assets"] = "command line"
    _apply_skips(doc, sources, list(cli_skip), "command line", "--skip")
    try:
        config = FlowConfig.model_validate(doc)
    except ValidationError as exc:
        raise ConfigError(describe(exc, FlowConfig, sources, file_path),
                          hint="Fix the value at the key path named (see `cicd-tools flow --print-config`).") from None
    return LoadedConfig(config, file_path, sources)


def _apply_skips(doc: dict[str, Any], sources: dict[str, Source], steps: list[str], source: Source, via: str) -> None:
    for step in steps:
        if step not in STEP_NAMES:
            raise ConfigError(f"{via}: unknown step {step!r}; steps: {', '.join(STEP_NAMES)}")
        section = STEP_SECTIONS[step]
        _set(doc, f"{section}.enabled", False)
        sources[f"{section}.enabled"] = source


def check_ready(loaded: LoadedConfig, environ: Mapping[str, str] | None = None) -> None:
    """Refuse a configuration that cannot finish, before the firewall is opened. Raises: ConfigError."""
    from cicd_tools.ci import build_id

    cfg = loaded.config
    needs: list[tuple[str, str]] = []
    if cfg.step_enabled("firewall-open"):
        needs += [("azure.subscription-id", "firewall"), ("azure.resource-group", "firewall"),
                  ("storage.account", "firewall")]
    if cfg.step_enabled("smoke") or cfg.step_enabled("pointers"):
        needs += [("storage.account", "smoke/pointers")]
    if cfg.step_enabled("register") or cfg.step_enabled("pointers"):
        needs += [("azure.subscription-id", "register"), ("azure.resource-group", "register"),
                  ("azure.workspace", "register")]
    if cfg.step_enabled("adf-run"):
        needs += [("azure.factory", "adf-run")]
    if cfg.step_enabled("model-mirror"):
        needs += [("mirror.name", "model-mirror")]
    missing = []
    for key, step in {k: s for k, s in reversed(needs)}.items():
        section, name = key.split(".")
        if getattr(getattr(cfg, section), name.replace("-", "_")) in (None, ""):
            var, flag = OVERRIDABLE[key]
            missing.append(f"{key} (for {step}; {flag} / {var})")
    if cfg.step_enabled("register") and not cfg.code.version and build_id(environ) is None:
        missing.append("code.version (for register outside CI, where no build id names the version;"
                       " --code-version / CICD_CODE_VERSION)")
    if cfg.step_enabled("register") and not cfg.code.assets:
        missing.append("code.assets (for register; [[code.assets]] name/path in the config, or --asset NAME=PATH)")
    if cfg.step_enabled("aml-verify") and not cfg.step_enabled("adf-run"):
        missing.append("adf-run (aml-verify checks the jobs of the ADF run; skip aml-verify too, or enable adf)")
    if cfg.step_enabled("adf-run") and not cfg.adf.pipelines:
        missing.append("adf.pipelines (for adf-run; [[adf.pipelines]] name/parameters in the config)")
    for asset in cfg.code.assets if cfg.step_enabled("register") else ():
        if not Path(asset.path).exists():
            missing.append(f"code.assets[{asset.name}].path: {asset.path} does not exist")
    if missing:
        raise ConfigError("the flow cannot run: missing configuration: " + "; ".join(missing),
                          hint="Set each in cicd-tools.toml, or the CICD_* variable or flag named; or --skip the step.")
    # Related values from sources that disagree (an account and another account's endpoint, a workspace id in
    # another subscription): refused here, naming both sources, before the firewall opens.
    settings = settings_of(loaded, environ)
    if settings.storage_account and any(cfg.step_enabled(s) for s in ("firewall-open", "smoke", "pointers")):
        settings.account_url()


@contextlib.contextmanager
def exported(loaded: LoadedConfig, environ: dict[str, str] | None = None) -> Iterator[None]:
    """Export the merged values as ``CICD_*`` for the in-process commands, restoring the environment after."""
    env = os.environ if environ is None else environ
    saved = {var: env.get(var) for var, _ in OVERRIDABLE.values()}
    try:
        for path, (var, _flag) in OVERRIDABLE.items():
            if path.startswith("report."):
                continue
            section, key = path.split(".")
            value = getattr(getattr(loaded.config, section), key.replace("-", "_"))
            if value not in (None, ""):
                env[var] = str(value)
        yield
    finally:
        for var, old in saved.items():
            if old is None:
                env.pop(var, None)
            else:
                env[var] = old


def file_values(explicit: str | None, environ: Mapping[str, str], cwd: Path) -> tuple[dict[str, str], Path | None]:
    """The scalar keys the config file sets (``{"storage.account": "x"}``), validated by the same strict loader as
    the flow's, and the file; ``({}, None)`` when there is no file. Raises: ConfigError."""
    only_file = {CONFIG_ENV: environ[CONFIG_ENV]} if environ.get(CONFIG_ENV) else {}
    loaded = load_config(config_path=explicit, environ=only_file, cwd=cwd)
    values: dict[str, str] = {}
    for path in OVERRIDABLE:
        if loaded.sources.get(path) == "config file":
            section, key = path.split(".")
            value = getattr(getattr(loaded.config, section), key.replace("-", "_"))
            if value is not None:
                values[path] = str(value)
    return values, loaded.file


def settings_of(loaded: LoadedConfig, environ: Mapping[str, str] | None = None) -> Settings:
    """The ``Settings`` of a merged configuration, each value with its true source (flag, variable, file key)."""
    from cicd_tools.settings.resolve import Settings

    cfg, fields = loaded.config, SETTING_KEYS
    values: dict[str, str | None] = {}
    sources: dict[str, str] = {}
    for name, key in fields.items():
        section, attr = key.split(".")
        values[name] = getattr(getattr(cfg, section), attr.replace("-", "_"))
        origin = loaded.sources.get(key, "default")
        var, flag = OVERRIDABLE[key]
        sources[name] = (flag if origin == "command line" else var if origin == "environment"
                         else f"{key} in {loaded.file}" if origin == "config file" and loaded.file
                         else f"{key} ({origin})")
    return Settings.from_env(
        environ, sources=sources, subscription_id=values["subscription_id"], resource_group=values["resource_group"],
        workspace=values["workspace"], factory=values["factory"], arm_endpoint=values["arm_endpoint"],
        storage_account=values["storage_account"], blob_endpoint=values["blob_endpoint"],
        pointer_container=values["pointer_container"])
