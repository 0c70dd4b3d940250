"""Every flag and CICD_* variable that a message, hint or help text names exists.

The flags come from walking the real parser, so a hint that names a flag nobody defined (``--retries``,
``--storage-account``) fails here, in any module, including ones added later.
"""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

import pytest

from cicd_tools.cli import main as cli
from cicd_tools.settings.resolve import ENV, Settings
from cicd_tools.support import errors

PACKAGE = Path(cli.__file__).resolve().parent.parent
FLAG = re.compile(r"(?<![\w/-])--[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
VARIABLE = re.compile(r"\bCICD_[A-Z0-9_]*[A-Z0-9]\b")
WHOLE_FLAG = re.compile(r"-{1,2}[\w-]+")  # a constant that IS a flag: a definition, or argv for another program
WHOLE_VARIABLE = re.compile(r"CICD_[A-Z0-9_]+")  # a constant that IS a variable name: where the code reads it


def parser_flags() -> set[str]:
    """Every option string of every parser in the tree."""
    flags: set[str] = set()
    stack: list[argparse.ArgumentParser] = [cli.build_parser()]
    while stack:
        parser = stack.pop()
        for action in parser._actions:
            flags.update(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):
                stack.extend(action.choices.values())
    return flags


def _docstring_ids(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def _flatten(node: ast.AST) -> str | None:
    """The text of a string expression: literals, f-strings (``{}`` for each field) and ``+`` chains."""
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else None
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)  # type: ignore[misc]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _flatten(node.left), _flatten(node.right)
        if left is None and right is None:
            return None
        return (left or "{}") + (right or "{}")
    return None


# Modules that speak for another program: the sandbox's `az` stand-in answers with az's own flags.
FOREIGN_MODULES = {"cicd_tools/sandbox/identity/azcli.py"}
# A flag after one of these names belongs to that program (`az role assignment create --role ...`).
PROGRAMS = re.compile(r"\b(az|pip|git|kubectl|terraform|helm|npm|npx)\s|\bcicd-tools\b")


def ours(text: str) -> list[str]:
    """The flags in ``text`` that cicd-tools must define: those not written after another program's name."""
    flags, owner, at = [], "cicd-tools", 0
    for match in PROGRAMS.finditer(text + " "):
        if owner == "cicd-tools":
            flags += FLAG.findall(text[at:match.start()])
        owner, at = (match.group(1) or "cicd-tools"), match.end()
    if owner == "cicd-tools":
        flags += FLAG.findall(text[at:])
    return flags


def string_constants() -> list[tuple[str, int, str]]:
    """(file, line, text) of every string expression in the package that is not a docstring."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = str(path.relative_to(PACKAGE.parent))
        if rel in FOREIGN_MODULES:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docs = _docstring_ids(tree)
        stack: list[ast.AST] = [tree]
        while stack:
            node = stack.pop()
            text = _flatten(node)
            if text is not None:
                if id(node) not in docs:
                    found.append((rel, getattr(node, "lineno", 0), text))
                continue  # the parts of a string were seen as a whole
            stack.extend(ast.iter_child_nodes(node))
    return found


CONSTANTS = string_constants()


def test_the_scan_sees_the_messages_it_checks() -> None:
    texts = " ".join(text for _, _, text in CONSTANTS)
    # Known messages: if these vanish, the scan is looking at the wrong thing.
    assert "--state-file" in texts and "CICD_STORAGE_CONNECTION_STRING" in texts


def test_every_flag_named_in_a_message_exists_in_the_parser() -> None:
    known = parser_flags()
    unknown = [
        f"{file}:{line}: {flag} in {text[:90]!r}"
        for file, line, text in CONSTANTS
        if not WHOLE_FLAG.fullmatch(text)
        for flag in ours(text)
        if flag not in known
    ]
    assert not unknown, "messages name flags no command has:\n" + "\n".join(unknown)


def test_every_cicd_variable_named_in_a_message_is_read_by_the_code() -> None:
    read = {text for _, _, text in CONSTANTS if WHOLE_VARIABLE.fullmatch(text)} | set(ENV.values())
    unknown = [
        f"{file}:{line}: {var} in {text[:90]!r}"
        for file, line, text in CONSTANTS
        if not WHOLE_VARIABLE.fullmatch(text)
        for var in VARIABLE.findall(text)
        if var not in read
    ]
    assert not unknown, "messages name variables nothing reads:\n" + "\n".join(unknown)


def test_every_flag_and_variable_in_help_texts_exists() -> None:
    known = parser_flags()
    read = {text for _, _, text in CONSTANTS if WHOLE_VARIABLE.fullmatch(text)} | set(ENV.values())
    stack: list[argparse.ArgumentParser] = [cli.build_parser()]
    problems = []
    while stack:
        parser = stack.pop()
        text = parser.format_help()
        problems += [f"{parser.prog}: {flag}" for flag in ours(text) if flag not in known]
        problems += [f"{parser.prog}: {var}" for var in VARIABLE.findall(text) if var not in read]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                stack.extend(action.choices.values())
    assert not problems


def test_missing_configuration_names_the_flags_that_exist() -> None:
    known = parser_flags()
    with pytest.raises(errors.ConfigError) as caught:
        Settings().require(*[name for name in ENV if name not in ("arm_endpoint", "pointer_container")])
    message = caught.value.message
    assert "--account / CICD_STORAGE_ACCOUNT" in message  # the flag is --account, not --storage-account
    assert "--storage-account" not in message
    for flag in FLAG.findall(message):
        assert flag in known, flag
    for var in VARIABLE.findall(message):
        assert var in ENV.values(), var


@pytest.mark.parametrize("cls", [c for c in vars(errors).values() if isinstance(c, type)
                                 and issubclass(c, errors.CicdError)])
def test_default_hints_name_only_flags_that_exist(cls: type[errors.CicdError]) -> None:
    known = parser_flags()
    assert [flag for flag in ours(cls.default_hint) if flag not in known] == []


def test_throttled_hint_does_not_send_users_to_a_retries_flag() -> None:
    assert "--retries" not in errors.Throttled("x").hint


def test_flags_after_another_programs_name_are_not_ours() -> None:
    assert ours("Run `az role assignment create --role X`, then `cicd-tools firewall open --ttl 2h`") == ["--ttl"]
