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
from typing import Any, Literal

from cicd_tools.ci import CiDialect
from cicd_tools.support.errors import CicdError

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


def env_default(
    parser: argparse.ArgumentParser,
    *flags: str,
    env: str,
    help: str,
    default: str | None = None,
    required: bool = False,
    **kwargs: Any,
) -> None:
    """Add a flag whose default comes from an environment variable, and say so in ``--help``."""
    value = os.environ.get(env) or default
    parser.add_argument(
        *flags,
        default=value,
        required=required and value is None,
        help=f"{help} [env: {env}]",
        **kwargs,
    )


def missing_subcommand(parser: argparse.ArgumentParser) -> Handler:
    """The handler of a command group run without a subcommand: a usage error showing the group's usage."""

    def handler(args: argparse.Namespace, ctx: Context) -> Outcome:
        from cicd_tools.support.errors import UsageError

        raise UsageError(f"`{parser.prog}` needs a subcommand\n{parser.format_usage().rstrip()}")

    return handler
