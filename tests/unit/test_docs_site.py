"""The README stays a short entry point whose links resolve, and the exit-code page matches the codes the CLI uses."""

from __future__ import annotations

import re
from pathlib import Path

from cicd_tools.cli.console import BROKEN_PIPE, INTERNAL_ERROR
from cicd_tools.support.errors import ExitCode

REPO = Path(__file__).resolve().parents[2]


def test_readme_is_at_most_250_lines() -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move reference material to docs/"


def test_readme_keeps_the_two_commands_first() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    first_block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    assert [line.split()[:2] for line in first_block.splitlines()] == [["make", "demo"], ["make", "test"]]


def test_exit_codes_page_lists_exactly_the_codes_the_cli_exits_with() -> None:
    page = (REPO / "docs" / "exit-codes.md").read_text(encoding="utf-8")
    documented = [int(m) for m in re.findall(r"^\| (\d+) \|", page, flags=re.MULTILINE)]
    # ExitCode holds the codes errors carry; the CLI adds 70 (a bug in cicd-tools) and 141 (stdout closed early).
    used = {int(code) for code in ExitCode} | {INTERNAL_ERROR, BROKEN_PIPE}
    assert sorted(documented) == sorted(used)
    assert len(documented) == len(set(documented))


def test_readme_links_point_at_files_that_exist() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    targets = [t.split("#", 1)[0] for t in re.findall(r"\]\(([^)\s]+)\)", text) if "://" not in t]
    assert len(targets) > 10
    missing = [t for t in targets if t and not (REPO / t).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


ARCHITECTURE = REPO / "docs" / "architecture.md"
PACKAGE = REPO / "cicd_tools"
_TREE_FOLDER = re.compile(r"^(?P<indent>(?:  ){0,2})(?P<name>[A-Za-z_][\w.-]*)/(?:\s|$)")
_TREE_MODULE_LINE = re.compile(r"^  [A-Za-z_]\w*\.py\s")
_MODULE = re.compile(r"(?<![\w/.-])((?:[A-Za-z_]\w*/)*[A-Za-z_]\w*\.py)(?![\w/])")


def _architecture_tree() -> tuple[str, str]:
    """The page's ``cicd_tools/`` tree (a text block) and the rest of the page."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    head, sep, rest = text.partition("```text\ncicd_tools/\n")
    assert sep, "docs/architecture.md has no ```text block starting with cicd_tools/"
    tree, _, tail = rest.partition("```")
    return tree, head + tail


def modules_named_on_the_architecture_page() -> dict[str, str]:
    """Each ``*.py`` the page names under cicd_tools/ -> how the page spells it.

    In the tree a bare name belongs to the folder it is listed under (``  storage/`` then ``firewall.py``), a
    path with a slash is relative to that folder or else to cicd_tools/; in the prose a path is a package path
    (``storage/operations.py``). Paths into other top-level folders of the repository (``scripts/…``) are skipped.
    """
    tree, prose = _architecture_tree()
    named: dict[str, str] = {}
    top: str | None = ""
    folder: str | None = ""  # relative to cicd_tools/; None: a line about the repository, not the package
    for line in tree.splitlines():
        match = _TREE_FOLDER.match(line)
        if match:
            depth = len(match["indent"]) // 2
            if depth == 0:
                top = folder = None
            elif depth == 1:
                top = folder = match["name"]
            else:
                folder = f"{top}/{match['name']}" if top is not None else None
        elif _TREE_MODULE_LINE.match(line):
            top = folder = ""
        elif line[:1].strip():
            top = folder = None
        if folder is None:
            continue
        for token in _MODULE.findall(line):
            local = f"{folder}/{token}".lstrip("/")
            named[local if (PACKAGE / local).exists() or "/" not in token else token] = token
    for token in _MODULE.findall(prose):
        first = token.split("/", 1)[0]
        if "/" in token and not ((REPO / first).is_dir() and not (PACKAGE / first).is_dir()):
            named[token] = token
    return named


def test_every_module_the_architecture_page_names_exists() -> None:
    named = modules_named_on_the_architecture_page()
    assert len(named) > 100, f"the page names only {len(named)} modules: is the tree still a ```text block?"
    missing = sorted(f"{path} (written {spelled})" for path, spelled in named.items() if not (PACKAGE / path).is_file())
    assert not missing, f"docs/architecture.md names modules that are not in cicd_tools/: {missing}"


def test_every_package_of_cicd_tools_is_on_the_architecture_page() -> None:
    tree, _ = _architecture_tree()
    listed = {m["name"] for line in tree.splitlines() if (m := _TREE_FOLDER.match(line)) and len(m["indent"]) == 2}
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert packages, "no package found under cicd_tools/"
    missing = sorted(packages - listed)
    assert not missing, f"docs/architecture.md does not list these packages of cicd_tools/: {missing}"
