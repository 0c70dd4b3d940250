"""No bad input is a bug: every subcommand, every flag, malformed values, never exit 70 or a traceback.

The sweep walks the real parser (``cicd_tools.cli.main.build_parser``), so a command added later is swept
without touching this file. Azure is unreachable: endpoints point at a closed local port, the credential
fails at once, and starting a sandbox is replaced by a marker that says "validation passed". FIFOs are not
swept: reading one without a writer blocks, as it does for `cat`; the commands that must never block on one
(state files, code folders, `adf lint`) have tests of their own.
"""

from __future__ import annotations

import argparse
import functools
import json
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

import cicd_tools.doctor as doctor
from cicd_tools.cli import main as cli
from cicd_tools.cli.console import INTERNAL_ERROR
from cicd_tools.support.errors import CicdError, ExitCode

CLOSED = "https://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused at once
HANG_GUARD_SECONDS = 30  # far beyond any fast failure: only a real hang (a FIFO, a network wait) trips it
DEEP_JSON = "[" * 3000 + "]" * 3000
SKIP_FLAGS = {"-h", "--help", "--version"}


class SandboxStartReached(CicdError):
    """Stands in for starting the real sandbox: the command validated its input and would start it now."""

    exit_code = ExitCode.OK


class Hung(BaseException):
    """Raised by the hang guard; a BaseException so the CLI boundary does not turn it into exit 70."""


@dataclass(frozen=True)
class Leaf:
    """One runnable subcommand: its argv prefix and its parser."""

    path: tuple[str, ...]
    parser: argparse.ArgumentParser


def _leaves(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> Iterator[Leaf]:
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if prefix and (not groups or parser.get_default("handler") is not None):
        yield Leaf(prefix, parser)
    seen: set[int] = set()
    for group in groups:
        for name, child in group.choices.items():
            if id(child) not in seen:
                seen.add(id(child))
                yield from _leaves(child, (*prefix, name))


LEAVES = list(_leaves(cli.build_parser()))


def _is_global(action: argparse.Action) -> bool:
    return action.dest in ("sub_output", "sub_ci", "sub_verbose")


def _is_path(action: argparse.Action) -> bool:
    return action.type is Path or getattr(action.type, "__name__", "") == "Path"


def _number_type(action: argparse.Action) -> bool:
    return action.type in (int, float)


@dataclass(frozen=True)
class Files:
    folder: Path
    file: Path
    missing: Path
    unreadable: Path
    binary: Path


def _good_value(action: argparse.Action, files: Files) -> str:
    """A plausible value, so that the malformed value of another flag is what the command meets."""
    if action.choices:
        return str(next(iter(action.choices)))
    if _number_type(action):
        return "1"
    if _is_path(action):
        return str(files.folder)
    if action.metavar and "=" in str(action.metavar):
        return f"a1={files.folder}"
    return "a1"


def _bad_values(action: argparse.Action, files: Files) -> list[str]:
    if action.choices:
        return ["bogus", ""]
    if _number_type(action):
        return ["abc", "-1", "0", "1e999", "nan", "-inf", "99999999999999999999"]
    if _is_path(action):
        return [str(files.missing), str(files.file), str(files.folder), str(files.unreadable), str(files.binary), "",
                str(files.file / "below")]
    return ["", "x" * 5000, "../../etc", "a=", "{not json", DEEP_JSON, f"a={DEEP_JSON}", "99999999d", "-1",
            str(files.missing), str(files.folder)]


def _option(action: argparse.Action) -> str:
    longs = [s for s in action.option_strings if s.startswith("--")]
    return (longs or action.option_strings)[0]


def _baseline(leaf: Leaf, files: Files, *, skip: argparse.Action | None = None) -> tuple[list[str], list[str]]:
    """(options, positionals) for the required flags and the positionals, leaving out ``skip``."""
    options: list[str] = []
    positionals: list[str] = []
    for action in leaf.parser._actions:
        if action is skip or isinstance(action, argparse._SubParsersAction):
            continue
        if not action.option_strings:
            positionals.append(_good_value(action, files))
        elif action.required:
            options += [_option(action), _good_value(action, files)]
    return options, positionals


def _cases(leaf: Leaf, files: Files) -> Iterator[list[str]]:
    options, positionals = _baseline(leaf, files)
    yield [*leaf.path, *options, *positionals]
    for action in leaf.parser._actions:
        if isinstance(action, argparse._SubParsersAction) or _is_global(action):
            continue
        if SKIP_FLAGS & set(action.option_strings):
            continue
        base_options, base_positionals = _baseline(leaf, files, skip=action)
        if action.option_strings and action.nargs == 0:
            yield [*leaf.path, *base_options, _option(action), *base_positionals]
            continue
        for value in _bad_values(action, files):
            if action.option_strings:
                yield [*leaf.path, *base_options, f"{_option(action)}={value}", *base_positionals]
            else:
                index = [a for a in leaf.parser._actions if not a.option_strings and not isinstance(
                    a, argparse._SubParsersAction)].index(action)
                values = list(_baseline(leaf, files)[1])
                values[index] = value
                yield [*leaf.path, *base_options, "--", *values] if value.startswith("-") else [
                    *leaf.path, *base_options, *values]


_IMPORT_CHECK_ONCE = functools.cache(doctor.check_azure_ai_ml_import)


@pytest.fixture(autouse=True)
def _one_azure_ai_ml_import_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """`doctor` checks that azure.ai.ml imports in a child interpreter (1.4 s); the sweep runs doctor once per
    malformed value, and the answer cannot change within this run: the real check runs once, then is reused."""
    monkeypatch.setattr(doctor, "check_azure_ai_ml_import", _IMPORT_CHECK_ONCE)


@pytest.fixture
def files(tmp_path: Path) -> Files:
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "main.py").write_text("print('hello')\n")
    (folder / "pipeline.json").write_text(json.dumps({"name": "p", "properties": {"activities": []}}))
    file = tmp_path / "pipeline.json"
    file.write_text(json.dumps({"name": "p", "properties": {"activities": []}}))
    unreadable = tmp_path / "unreadable.json"
    unreadable.write_text("{}")
    unreadable.chmod(0)
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00garbage\x80")
    return Files(folder, file, tmp_path / "missing" / "nothing.json", unreadable, binary)


@pytest.fixture
def unreachable_azure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Configuration that lets commands get as far as their first Azure call, which then fails at once."""
    monkeypatch.chdir(tmp_path)
    for name, value in {
        "CICD_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
        "CICD_RESOURCE_GROUP": "rg-sweep",
        "CICD_STORAGE_ACCOUNT": "sweepacct",
        "CICD_WORKSPACE": "mlw-sweep",
        "CICD_FACTORY": "adf-sweep",
        "CICD_ARM_ENDPOINT": CLOSED,
        "CICD_BLOB_ENDPOINT": f"{CLOSED}/sweepacct",
        "CICD_IP_ECHO_URLS": CLOSED,
        "CICD_FIREWALL_STATE_FILE": str(tmp_path / "fw" / "firewall-state.json"),
        "CICD_SANDBOX_STATE_DIR": str(tmp_path / "sandbox-state"),
        "CICD_CI": "plain",
    }.items():
        monkeypatch.setenv(name, value)

    from azure.core.exceptions import ClientAuthenticationError

    class Refusing:
        def get_token(self, *scopes: str, **kwargs: Any) -> Any:
            raise ClientAuthenticationError("sweep: no credential here")

        def get_token_info(self, *scopes: str, **kwargs: Any) -> Any:
            raise ClientAuthenticationError("sweep: no credential here")

        def close(self) -> None:
            pass

    import cicd_tools.credentials as credentials
    from cicd_tools.sandbox import process

    monkeypatch.setattr(credentials, "build_credential", lambda *a, **k: Refusing())
    # The SDKs' own retry back-off (azure-storage-blob waits 15 s and more) is not what the sweep is about.
    from azure.core.pipeline.transport import HttpTransport

    monkeypatch.setattr(HttpTransport, "sleep", lambda self, duration: None)

    def no_start(*args: Any, **kwargs: Any) -> Any:
        raise SandboxStartReached("validation passed; the sandbox would start now")

    monkeypatch.setattr(process, "up", no_start)
    # One parser for the whole sweep (the environment above does not change while it runs): building it
    # for each of some 2,000 invocations would double the sweep's time.
    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda only=None: parser)


def _run(argv: list[str], json_mode: bool, capsys: pytest.CaptureFixture[str]) -> tuple[int | str, str, str]:
    def guard(signum: int, frame: FrameType | None) -> None:
        raise Hung()

    previous = signal.signal(signal.SIGALRM, guard)
    signal.alarm(HANG_GUARD_SECONDS)
    try:
        code: int | str = cli.main(["-o", "json", *argv] if json_mode else argv)
    except Hung:
        code = f"no answer within {HANG_GUARD_SECONDS} s"
    except SystemExit as exc:  # argparse exiting on its own (help, version) is not a sweep case
        code = f"SystemExit({exc.code}) escaped main"
    except Exception as exc:  # anything escaping main is a finding
        code = f"{type(exc).__name__} escaped main: {exc}"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    out, err = capsys.readouterr()
    return code, out, err


def _shown(argv: list[str]) -> str:
    return " ".join(a if len(a) < 60 else a[:40] + f"...({len(a)} chars)" for a in argv).replace("\n", "\\n")


@pytest.mark.parametrize("leaf", LEAVES, ids=[" ".join(leaf.path) for leaf in LEAVES])
def test_malformed_values_never_crash_the_command(
    leaf: Leaf, files: Files, unreachable_azure: None, capsys: pytest.CaptureFixture[str]
) -> None:
    findings = []
    cases = list(_cases(leaf, files))
    for number, argv in enumerate(cases):
        json_mode = number % 2 == 1  # half the cases also prove the one-JSON-document rule
        code, out, err = _run(argv, json_mode, capsys)
        problem = None
        if not isinstance(code, int):
            problem = code
        elif code == INTERNAL_ERROR:
            problem = "exit 70: " + (err.strip().splitlines() or [""])[0][:300]
        elif "Traceback (most recent call last)" in out + err:
            problem = "a traceback reached the user"
        elif json_mode:
            try:
                json.loads(out)
            except ValueError:
                problem = f"--output json printed no single JSON document: {out[:200]!r}"
        if problem:
            findings.append(f"cicd-tools {'-o json ' if json_mode else ''}{_shown(argv)}\n    -> {problem[:300]}")
    assert cases
    assert not findings, f"{len(findings)} of {len(cases)} cases:\n" + "\n".join(findings)


def test_the_sweep_reaches_every_command() -> None:
    names = {leaf.path for leaf in LEAVES}
    # A sample the sweep must find; commands added later are found the same way.
    assert {("pointer", "schema"), ("firewall", "close"), ("adf", "eval"), ("sandbox", "up"), ("doctor",)} <= names
