"""CI dialects: Azure DevOps, GitHub Actions and plain. Outputs, masks, groups, annotations, summaries.

Escaping follows the reference clients (azure-pipelines-task-lib, @actions/core 3.0.1): see
AZURE_FACTS.md §7. Logging commands go to stderr by default so that stdout stays one JSON
document with ``--output json``; both runners parse workflow commands on either stream.
``CICD_CI_STREAM=stdout`` sends them to stdout instead.
"""

from __future__ import annotations

import os
import re
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TextIO

from cicd_tools.support.cisafe import defuse_segment
from cicd_tools.support.redact import register_secret


class CiKind(StrEnum):
    AZURE_DEVOPS = "azure-devops"
    GITHUB = "github"
    PLAIN = "plain"


def detect_kind(environ: Mapping[str, str] | None = None) -> CiKind:
    """The CI system this process runs in, from ``TF_BUILD`` / ``GITHUB_ACTIONS``."""
    env = os.environ if environ is None else environ
    if env.get("TF_BUILD", "").lower() == "true":
        return CiKind.AZURE_DEVOPS
    if env.get("GITHUB_ACTIONS", "").lower() == "true":
        return CiKind.GITHUB
    return CiKind.PLAIN


def build_id(environ: Mapping[str, str] | None = None) -> str | None:
    """This CI run's id: ``BUILD_BUILDID`` (Azure DevOps), else ``GITHUB_RUN_ID-GITHUB_RUN_ATTEMPT``."""
    env = os.environ if environ is None else environ
    if env.get("BUILD_BUILDID"):
        return env["BUILD_BUILDID"]
    if env.get("GITHUB_RUN_ID"):
        return f"{env['GITHUB_RUN_ID']}-{env.get('GITHUB_RUN_ATTEMPT') or '1'}"
    return None


def run_provenance(environ: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """Build id, branch and commit of this CI run, keyed as the pointer contract names them."""
    env = os.environ if environ is None else environ
    if env.get("BUILD_BUILDID"):
        branch, commit = env.get("BUILD_SOURCEBRANCH"), env.get("BUILD_SOURCEVERSION")
    elif env.get("GITHUB_RUN_ID"):
        branch, commit = env.get("GITHUB_REF"), env.get("GITHUB_SHA")
    else:
        branch = commit = None
    return {"buildId": build_id(env), "sourceBranch": branch, "sourceVersion": commit}


# --- escaping -------------------------------------------------------------------------------------


def ado_escape_property(value: str) -> str:
    """Escape a ``##vso[...]`` property value exactly as azure-pipelines-task-lib does."""
    return (
        value.replace("%", "%AZP25")
        .replace(";", "%3B")
        .replace("\r", "%0D")
        .replace("\n", "%0A")
        .replace("]", "%5D")
    )


def ado_escape_data(value: str) -> str:
    """Escape the message after ``]``: only ``%``, CR and LF (``;`` and ``]`` go out as they are)."""
    return value.replace("%", "%AZP25").replace("\r", "%0D").replace("\n", "%0A")


def ado_unescape(value: str) -> str:
    """Inverse of the ADO escapes (what the agent does when it reads a command)."""
    return (
        value.replace("%0D", "\r")
        .replace("%0A", "\n")
        .replace("%3B", ";")
        .replace("%5D", "]")
        .replace("%AZP25", "%")
    )


def gha_escape_data(value: str) -> str:
    """Escape a GitHub workflow command's data (after ``::``)."""
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def gha_escape_property(value: str) -> str:
    """Escape a GitHub workflow command's property value (also ``:`` and ``,``)."""
    return gha_escape_data(value).replace(":", "%3A").replace(",", "%2C")


def gha_unescape(value: str) -> str:
    """Inverse of the GitHub escapes (what the runner does when it reads a command)."""
    return (
        value.replace("%0D", "\r")
        .replace("%0A", "\n")
        .replace("%3A", ":")
        .replace("%2C", ",")
        .replace("%25", "%")
    )


def parse_github_output_file(text: str) -> dict[str, str]:
    """Read a ``$GITHUB_OUTPUT`` file the way the runner does (``k=v`` and heredoc forms).

    The runner reads lines with .NET ``ReadLine``, which ends a line at CR, LF or CRLF: a lone CR
    inside a value comes out as a line break. That is the runner's limit, not an escaping choice.
    """
    out: dict[str, str] = {}
    lines = re.split(r"\r\n|\r|\n", text)
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line:
            continue
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delim = line.split("<<", 1)
            body: list[str] = []
            while i < len(lines) and lines[i] != delim:
                body.append(lines[i])
                i += 1
            if i >= len(lines):
                raise ValueError(f"unterminated heredoc for output {name!r}")
            i += 1
            out[name] = "\n".join(body)
        else:
            name, _, value = line.partition("=")
            out[name] = value
    return out


_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _inert(value: str) -> str:
    """Control bytes other than CR/LF (which the dialects escape) as ``\\u001b``: no colours or cursor moves."""
    return _CONTROLS.sub(lambda m: f"\\u{ord(m.group(0)):04x}", value)


# --- the dialect ----------------------------------------------------------------------------------


@dataclass
class CiDialect:
    """Writes CI logging commands for one CI system."""

    kind: CiKind
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)

    @classmethod
    def create(cls, name: str = "auto", stream: TextIO | None = None) -> CiDialect:
        """Build the dialect for ``--ci`` (``auto`` detects from the environment)."""
        kind = detect_kind() if name == "auto" else CiKind(name)
        if stream is None:
            stream = sys.stdout if os.environ.get("CICD_CI_STREAM") == "stdout" else sys.stderr
        return cls(kind=kind, stream=stream)

    def _emit(self, line: str) -> None:
        # Our own commands pass the CLI's guard (cicd_tools/support/cisafe.py) that defuses every other line;
        # plain lines carry user text and go through it.
        command = getattr(self.stream, "write_command", None)
        if command is not None and self.kind is not CiKind.PLAIN:
            command(line + "\n")
            return
        self.stream.write(line + "\n")
        self.stream.flush()

    def set_output(self, name: str, value: str, *, secret: bool = False) -> None:
        """Publish an output variable that later steps and jobs can read."""
        if secret:
            self.mask(value)
        if self.kind is CiKind.AZURE_DEVOPS:
            self._emit(
                f"##vso[task.setvariable variable={ado_escape_property(name)};isOutput=true;"
                f"issecret={'true' if secret else 'false'};]{ado_escape_data(value)}"
            )
        elif self.kind is CiKind.GITHUB:
            path = self.environ.get("GITHUB_OUTPUT")
            if not path:
                # Old runners: the deprecated command still works and is better than losing the value.
                self._emit(f"::set-output name={gha_escape_property(name)}::{gha_escape_data(value)}")
                return
            delim = f"ghadelimiter_{uuid.uuid4()}"
            if delim in name or delim in value:  # pragma: no cover - astronomically unlikely
                raise ValueError("output delimiter collides with the value")
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(f"{name}<<{delim}\n{value}\n{delim}\n")
        else:
            self._emit(f"output {name}={'***' if secret else value}")

    def mask(self, value: str) -> None:
        """Tell the CI system (and our own logger) never to print ``value``."""
        if not value:
            return
        register_secret(value)
        if self.kind is CiKind.AZURE_DEVOPS:
            self._emit(f"##vso[task.setsecret]{ado_escape_data(value)}")
        elif self.kind is CiKind.GITHUB:
            for part in value.splitlines() or [value]:
                if part:
                    self._emit(f"::add-mask::{gha_escape_data(part)}")

    @contextmanager
    def group(self, title: str) -> Iterator[None]:
        """A collapsible log group."""
        if self.kind is CiKind.AZURE_DEVOPS:
            # the agent acts on the first ``##vso[`` anywhere in a line: a title must not carry one
            self._emit(f"##[group]{defuse_segment(ado_escape_data(_inert(title)))}")
        elif self.kind is CiKind.GITHUB:
            self._emit(f"::group::{gha_escape_data(_inert(title))}")
        else:
            self._emit(f"== {title}")
        try:
            yield
        finally:
            if self.kind is CiKind.AZURE_DEVOPS:
                self._emit("##[endgroup]")
            elif self.kind is CiKind.GITHUB:
                self._emit("::endgroup::")

    def annotate(
        self,
        level: str,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        title: str | None = None,
    ) -> None:
        """An error/warning annotation attached to a file and line where known."""
        level = "warning" if level == "warning" else "error" if level == "error" else "notice"
        if self.kind is not CiKind.PLAIN:
            # user text (file names, pipeline names, error text): CR/LF are escaped below per dialect; other
            # control bytes (ESC colours, cursor moves) are written as \u001b so the log shows them, inert
            message = _inert(message)
            file = _inert(file) if file else file
            title = _inert(title) if title else title
        if self.kind is CiKind.AZURE_DEVOPS:
            ado_level = "warning" if level != "error" else "error"
            props = [f"type={ado_level}"]
            if file:
                props.append(f"sourcepath={ado_escape_property(file)}")
            if line is not None:
                props.append(f"linenumber={line}")
            msg = f"{title}: {message}" if title else message
            self._emit(f"##vso[task.logissue {';'.join(props)};]{ado_escape_data(msg)}")
        elif self.kind is CiKind.GITHUB:
            props = []
            if file:
                props.append(f"file={gha_escape_property(file)}")
            if line is not None:
                props.append(f"line={line}")
            if title:
                props.append(f"title={gha_escape_property(title)}")
            head = f"::{level} {','.join(props)}" if props else f"::{level}"
            self._emit(f"{head}::{gha_escape_data(message)}")
        else:
            where = f"{file}:{line}: " if file and line is not None else f"{file}: " if file else ""
            self._emit(f"{level}: {where}{message}")

    def summary(self, markdown: str) -> Path | None:
        """Append Markdown to the job summary; returns the file written, if any."""
        if self.kind is CiKind.GITHUB:
            summary_file = self.environ.get("GITHUB_STEP_SUMMARY")
            if not summary_file:
                return None
            with open(summary_file, "a", encoding="utf-8") as fh:
                fh.write(markdown.rstrip("\n") + "\n")
            return Path(summary_file)
        if self.kind is CiKind.AZURE_DEVOPS:
            folder = Path(self.environ.get("AGENT_TEMPDIRECTORY") or ".")
            path = folder / f"cicd-tools-summary-{uuid.uuid4().hex[:8]}.md"
            path.write_text(markdown, encoding="utf-8")
            self._emit(f"##vso[task.uploadsummary]{ado_escape_data(str(path.resolve()))}")
            return path
        target = self.environ.get("CICD_SUMMARY_FILE")
        if target:
            with open(target, "a", encoding="utf-8") as fh:
                fh.write(markdown.rstrip("\n") + "\n")
            return Path(target)
        return None
