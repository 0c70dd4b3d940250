"""What every command module shares: the invocation context and the result a handler returns.

A command module exposes ``register(subparsers)``; each subcommand sets ``handler`` with
``parser.set_defaults(handler=...)``. A handler takes ``(args, ctx)`` and returns an ``Outcome``.
Handlers must not import azure.ai.ml at module level: only ``code`` commands may load it, lazily.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cicd_tools.ci import CiDialect
from cicd_tools.support.errors import CicdError

if TYPE_CHECKING:
    from cicd_tools.settings.resolve import Settings

OutputFormat = Literal["text", "json"]


@dataclass(frozen=True)
class Context:
    """Global flags of one invocation."""

    output: OutputFormat
    ci: CiDialect
    full_parser: Callable[[], argparse.ArgumentParser] | None = None  # builds the whole CLI's parser (``completion``)


@dataclass(frozen=True)
class Outcome:
    """A handler's result: ``data`` is printed as JSON with ``--output json``, ``text`` otherwise.

    ``error``: a later step failed after the command produced its result (e.g. the pointer write after a
    registration). The CLI prints the result first (evidence), then reports the error on stderr (no
    second JSON document) and exits with the larger of ``exit_code`` and the error's code.
    """

    data: Mapping[str, Any] | list[Any] | str | int | float | bool | None
    text: str = ""
    exit_code: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)
    error: CicdError | None = None


Handler = Callable[[argparse.Namespace, Context], Outcome]


@dataclass(frozen=True)
class EnvDefault:
    """The parse-time default of a flag that has an environment variable: resolved after parsing, so the value
    keeps its source (``resolve_args``). argparse leaves a non-string default as it is (no ``type``, no ``choices``).
    """

    env: str
    default: Any
    flag: str
    convert: Callable[[str], Any] | None = None
    choices: tuple[Any, ...] = ()


class _RecordingStore(argparse._StoreAction):
    """``store``, and note which option string gave the value (the value's source)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        super().__call__(parser, namespace, values, option_string)
        given = getattr(namespace, GIVEN, None)
        if not isinstance(given, dict):
            given = {}
            setattr(namespace, GIVEN, given)
        given[self.dest] = option_string or self.option_strings[-1]


GIVEN = "cicd_given"  # Namespace attribute: dest -> the option string that gave it
SOURCES = "cicd_sources"  # Namespace attribute after ``resolve_args``: dest -> where its value came from
FILE_LAYER = "cicd_file"  # Namespace attribute after ``resolve_args``: the config file layer (read at most once)


def env_default(
    parser: argparse.ArgumentParser,
    *flags: str,
    env: str,
    help: str,
    default: str | None = None,
    required: bool = False,
    **kwargs: Any,
) -> None:
    """Add a flag whose value, when the flag is not given, comes from an environment variable, then the config
    file (when the variable names one of its keys), then ``default``; and say so in ``--help``.

    The value is resolved after parsing (``resolve_args``), so each keeps its source.
    """
    if required:
        raise ValueError("env_default flags are resolved after parsing; check a missing value in the handler")
    long_flag = next((f for f in flags if f.startswith("--")), flags[0])
    parser.add_argument(
        *flags,
        action=_RecordingStore,
        default=EnvDefault(env, default, long_flag, kwargs.get("type"), tuple(kwargs.get("choices") or ())),
        help=f"{help} [env: {env}]",
        **kwargs,
    )


def resolve_args(args: argparse.Namespace, environ: Mapping[str, str] | None = None,
                 cwd: Path | None = None) -> dict[str, str]:
    """Resolve every flag not given on the command line: ``CICD_*`` variable > config file > default.

    Sets each value on ``args`` and returns (and stores as ``args.cicd_sources``) where each came from: the
    option string, the variable's name, ``KEY in FILE`` or ``default``. The config file is read (strictly) only
    when a value is looked up in it. Raises: UsageError (a variable's value the flag would refuse), ConfigError.
    """
    from cicd_tools.settings.keys import ENV_KEYS
    from cicd_tools.settings.layers import FileLayer
    from cicd_tools.support.errors import UsageError

    env = os.environ if environ is None else environ
    given = getattr(args, GIVEN, None) or {}
    sources: dict[str, str] = dict(given)
    explicit = getattr(args, "config", None)
    layer = FileLayer(explicit if isinstance(explicit, str) else None, env, cwd)
    setattr(args, FILE_LAYER, layer)

    for dest, value in list(vars(args).items()):
        if not isinstance(value, EnvDefault):
            continue
        raw, source = env.get(value.env) or None, value.env
        if raw is None and value.env in ENV_KEYS:
            found = layer.get(ENV_KEYS[value.env])
            if found is not None:
                raw, source = found
        if raw is None:
            raw, source = value.default, "default"
        if isinstance(raw, str) and value.convert is not None:
            try:
                raw = value.convert(raw)
            except (TypeError, ValueError, argparse.ArgumentTypeError) as exc:
                raise UsageError(f"{source}: {raw!r} is not a valid value for {value.flag} ({exc})",
                                 hint=f"Fix {source}, or pass {value.flag}.") from None
        if value.choices and source != "default" and raw not in value.choices:
            raise UsageError(f"{source}: {raw!r} is not one of {', '.join(map(str, value.choices))}",
                             hint=f"Fix {source}, or pass {value.flag}.")
        setattr(args, dest, raw)
        if raw is not None:
            sources[dest] = source
    setattr(args, SOURCES, sources)
    return sources


def settings_from_args(args: argparse.Namespace, **fields: str) -> Settings:
    """The ``Settings`` of the flags ``fields`` maps (setting name -> ``args`` dest, ``storage_account="account"``),
    each with its source; a setting whose flag this command lacks comes from its ``CICD_*`` variable, else the
    config file, else its default. Raises: ConfigError (related values that disagree, a bad config file)."""
    from cicd_tools.settings.resolve import Settings

    known: Mapping[str, str] = getattr(args, SOURCES, None) or {}
    values = {name: getattr(args, dest, None) for name, dest in fields.items()}
    sources = {name: known[dest] for name, dest in fields.items() if dest in known}
    return Settings.from_env(sources=sources, file=getattr(args, FILE_LAYER, None), **values)


def missing_subcommand(parser: argparse.ArgumentParser) -> Handler:
    """The handler of a command group run without a subcommand: a usage error showing the group's usage."""

    def handler(args: argparse.Namespace, ctx: Context) -> Outcome:
        from cicd_tools.support.errors import UsageError

        raise UsageError(f"`{parser.prog}` needs a subcommand\n{parser.format_usage().rstrip()}")

    return handler
