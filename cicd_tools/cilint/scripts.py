"""What a step's script does: the ``cicd-tools`` commands it runs (parsed by the real parser), the outputs
they set, ``pip install .``, and code versions taken from the build id. Shared by both CI dialects."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from cicd_tools.cilint.findings import Finding

# ${{ expr }} (both systems), $[ expr ] (ADO runtime), $(name) (ADO macro): opaque values inside a command.
_EXPR = re.compile(r"\$\{\{.*?\}\}|\$\[.*?\]|\$\((?:[A-Za-z_][\w.]*)\)")
BUILD_ID_MARKERS = re.compile(
    r"Build\.BuildId|BUILD_BUILDID|Build\.BuildNumber|BUILD_BUILDNUMBER|github\.run_id|GITHUB_RUN_ID|"
    r"github\.run_number|GITHUB_RUN_NUMBER", re.IGNORECASE)
_VERSION_ASSIGN = re.compile(r"(?<![-\w])([A-Za-z_]\w*version\w*)\s*=\s*[\"']?([^\s\"';]*)", re.IGNORECASE)
_SET_VARIABLE = re.compile(r"##vso\[task\.setvariable variable=([^;\]]+)[^\]]*\](.*)", re.IGNORECASE)
_GITHUB_OUTPUT = re.compile(r"""["']?([A-Za-z_][\w-]*)=[^\n]*>>\s*["']?\$\{?GITHUB_OUTPUT""")
_PIP_INSTALL = re.compile(r"(?:^|[\s;&|])(?:python3?\s+-m\s+)?pip3?\s+install\s+([^\n;&|]*)")


@dataclass(frozen=True)
class Command:
    """One ``cicd-tools`` invocation in a script."""

    argv: tuple[str, ...]  # after ``cicd-tools``, placeholders restored
    line: int
    args: argparse.Namespace | None  # None when the parser refused it


@dataclass
class Script:
    text: str
    line: int
    commands: list[Command] = field(default_factory=list)
    outputs: set[str] | None = field(default_factory=set)  # None: this step may set outputs we cannot know


def _logical_lines(text: str, first_line: int) -> Iterator[tuple[int, str]]:
    """Lines with ``\\`` continuations joined, each with its first line number; comments dropped."""
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        start, buf = i, lines[i]
        while buf.rstrip().endswith(("\\", "`")) and i + 1 < len(lines):
            i += 1
            buf = buf.rstrip()[:-1] + " " + lines[i]
        i += 1
        if buf.strip().startswith("#"):
            continue
        yield first_line + start, buf


def _is_operator(token: str) -> bool:
    return re.fullmatch(r"[();<>|&]+", token) is not None


def _tokens(line: str) -> list[str] | None:
    placeholders: list[str] = []

    def hide(match: re.Match[str]) -> str:
        placeholders.append(match.group(0))
        return f"CICDPH{len(placeholders) - 1}X"

    hidden = _EXPR.sub(hide, line)
    lexer = shlex.shlex(hidden, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        raw = list(lexer)
    except ValueError:  # unbalanced quotes: not ours to judge
        return None
    return [re.sub(r"CICDPH(\d+)X", lambda m: placeholders[int(m.group(1))], t) for t in raw]


def find_commands(text: str, first_line: int, parser: argparse.ArgumentParser) -> tuple[list[Command], list[str]]:
    """The cicd-tools invocations in ``text`` and, for each the parser refused, its message."""
    commands: list[Command] = []
    errors: list[str] = []
    for line_no, line in _logical_lines(text, first_line):
        if "cicd-tools" not in line:
            continue
        tokens = _tokens(line)
        if tokens is None:
            continue
        at_start = True
        i = 0
        while i < len(tokens):
            tok = tokens[i]
            if _is_operator(tok) or tok.endswith(("$", "`")):
                at_start = True
            elif at_start and re.fullmatch(r"[A-Za-z_]\w*=.*", tok):
                pass  # VAR=value before a command
            elif at_start and tok == "cicd-tools":
                j = i + 1
                while j < len(tokens) and not _is_operator(tokens[j]):
                    j += 1
                argv = tuple(tokens[i + 1:j])
                args, error = parse(parser, argv)
                commands.append(Command(argv, line_no, args))
                if error:
                    errors.append(f"{line_no}\0`cicd-tools {shlex.join(argv)}`: {error}")
                i = j
                continue
            else:
                at_start = tok in ("env", "exec", "time", "sudo", "then", "do", "else", "!")
            i += 1
    return commands, errors


def parse(parser: argparse.ArgumentParser, argv: tuple[str, ...]) -> tuple[argparse.Namespace | None, str | None]:
    """Parse with the real CLI parser; the argparse message when it refuses."""
    if any(a in ("-h", "--help", "--version") for a in argv):
        return None, None
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            return parser.parse_args(list(argv)), None
    except SystemExit as exc:
        # cli.CliParser hands its message over on the exception (cli.main prints it); plain argparse prints it.
        handed = getattr(exc, "message", None)
        message = [handed] if isinstance(handed, str) else stderr.getvalue().strip().splitlines()
        text = message[-1] if message else "refused"
        text = re.sub(r"^cicd-tools[^:]*: error: ", "", text)
        if _EXPR.search(text):
            return None, None  # a CI expression stands where a choice is checked: cannot judge
        return None, text


def command_outputs(args: argparse.Namespace | None) -> set[str] | None:
    """The CI outputs a parsed command sets (None: cannot know statically)."""
    if args is None:
        return None
    command = (getattr(args, "command", None), next(
        (getattr(args, k) for k in vars(args) if k.endswith("_command") and getattr(args, k)), None))
    if command == ("firewall", "open"):
        return {"agentIp", "leaseId"}
    if command in (("pointer", "write"), ("pointer", "rollback")):
        return {"pointerVersion"}
    if command == ("code", "register"):
        if args.asset:
            names = [re.sub(r"[^A-Za-z0-9_]", "_", a.split("=", 1)[0]) for a in args.asset]
            return {f"{n}_{v}" for n in names for v in (args.output_var_version, args.output_var_asset_id)}
        return {args.output_var_version, args.output_var_asset_id}
    if command[0] in ("flow", "adf", "aml"):
        return None  # depend on the config file / the run
    return set()


def analyse(text: str, first_line: int, parser: argparse.ArgumentParser, file: str) -> tuple[Script, list[Finding]]:
    """Commands, outputs and the script-level findings (CI001 in scripts, CI006, CI007)."""
    script = Script(text, first_line)
    findings: list[Finding] = []
    commands, errors = find_commands(text, first_line, parser)
    script.commands = commands
    for err in errors:
        line, message = err.split("\0", 1)
        findings.append(Finding("CI006", file, int(line), message,
                                "Use the commands and flags of `cicd-tools --help` / `cicd-tools COMMAND --help`."))
    outputs: set[str] | None = set()
    for cmd in commands:
        produced = command_outputs(cmd.args)
        outputs = None if produced is None or outputs is None else outputs | produced
        findings += _version_from_build_id(cmd, file)
    if outputs is not None:
        for match in _SET_VARIABLE.finditer(text):
            if "isoutput=true" in match.group(0).lower():
                outputs.add(match.group(1).strip())
        outputs |= {m.group(1) for m in _GITHUB_OUTPUT.finditer(text)}
        if "GITHUB_OUTPUT" in text and not _GITHUB_OUTPUT.search(text):
            outputs = None  # written in a way we do not read
    script.outputs = outputs
    for line_no, line in _logical_lines(text, first_line):
        compact = _EXPR.sub(lambda m: m.group(0).replace(" ", ""), line)
        for match in _VERSION_ASSIGN.finditer(compact):
            name, value = match.groups()
            if BUILD_ID_MARKERS.search(value) and "requested" not in name.lower():
                findings.append(build_id_finding(file, line_no, f"`{name}` is set from the build id ({value})"))
        for match in _SET_VARIABLE.finditer(line):
            if "version" in match.group(1).lower() and BUILD_ID_MARKERS.search(match.group(2)):
                findings.append(build_id_finding(file, line_no, f"output `{match.group(1)}` is the build id"))
        for match in _PIP_INSTALL.finditer(line):
            tokens = _tokens(match.group(1)) or []
            if any(t in (".", "./") or re.fullmatch(r"\.\[[\w,-]+\]", t) for t in tokens):
                findings.append(Finding(
                    "CI007", file, line_no,
                    "`pip install … .` installs the project in the working directory (your repository), not cicd-tools",
                    "Install cicd-tools itself, pinned: the cicd-tools action or the setup.yml template install it"
                    " from their own ref with its constraints.txt; by hand, `pip install -c <that constraints.txt>"
                    " <that checkout>` (or `cicd-tools==X.Y.Z`)."))
    return script, findings


def build_id_finding(file: str, line: int, what: str) -> Finding:
    return Finding(
        "CI001", file, line,
        f"{what}: the code version must be the one registration returned (dedup can return an older one)",
        "Read the registration step's output (e.g. `training_code_codeVersion`), or let ADF read latest.json.")


def _version_from_build_id(cmd: Command, file: str) -> list[Finding]:
    argv = list(cmd.argv)
    out: list[Finding] = []

    def value_of(flag: str) -> list[str]:
        return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag] + \
            [a.split("=", 1)[1] for a in argv if a.startswith(flag + "=")]

    if argv[:2] == ["pointer", "write"]:
        out += [build_id_finding(file, cmd.line, f"`pointer write --version {v}` publishes the build id")
                for v in value_of("--version") if BUILD_ID_MARKERS.search(v)]
    if argv[:2] == ["pointer", "rollback"]:
        out += [build_id_finding(file, cmd.line, f"`pointer rollback --to {v}` names the build id")
                for v in value_of("--to") if BUILD_ID_MARKERS.search(v)]
    for param in value_of("--param"):
        key, _, value = param.partition("=")
        if "version" in key.lower() and BUILD_ID_MARKERS.search(value):
            out.append(build_id_finding(file, cmd.line, f"`--param {param}` passes the build id as a version"))
    return out


def version_entries(mapping: Any) -> Iterator[tuple[str, str]]:
    """``(key, value)`` pairs of a mapping whose key names a version and whose value holds the build id."""
    if not isinstance(mapping, dict):
        return
    for key, value in mapping.items():
        if isinstance(key, str) and isinstance(value, str) and "version" in key.lower() \
                and "requested" not in key.lower() and BUILD_ID_MARKERS.search(value):
            yield key, value
