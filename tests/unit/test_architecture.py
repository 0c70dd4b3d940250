"""The package's shape: no import circles, lower layers never import the CLI face, and a tree a reader can scan."""

from __future__ import annotations

import ast
from pathlib import Path

import cicd_tools

PACKAGE = Path(cicd_tools.__file__).resolve().parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every cicd_tools module ``name`` imports, at module level or in a function (a lazy import is an edge too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
            # the longest known module that the dotted name starts with (`a.b.func` is an edge to `a.b`)
            parts = target.split(".")
            for cut in range(len(parts), 0, -1):
                candidate = ".".join(parts[:cut])
                if candidate in known:
                    if candidate != name and not name.startswith(candidate + "."):
                        found.add(candidate)
                    break
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    edges = {name: imports_of(name, path, known) for name, path in mods.items()}
    # importing a.b.c runs a/__init__ and a/b/__init__ first; the package inits are not edges of their own here,
    # because a circle through an empty __init__ cannot fail: only module bodies are followed.
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_the_scan_sees_real_import_edges() -> None:
    edges = graph()
    assert "cicd_tools.support.errors" in edges["cicd_tools.cli.main"]
    assert "cicd_tools.pointer.contract" in edges["cicd_tools.cli.pointer"]


def test_no_import_circles_anywhere_in_the_package() -> None:
    found = cycles(graph())
    assert not found, "import circles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_lower_layers_never_import_the_cli_face() -> None:
    offenders = sorted(
        f"{name} -> {target}"
        for name, targets in graph().items()
        if not name.startswith("cicd_tools.cli")
        for target in targets
        if target.startswith("cicd_tools.cli")
    )
    assert not offenders, "\n".join(offenders)


def test_the_tree_stays_scannable() -> None:
    loose = [p.name for p in PACKAGE.glob("*.py")]
    sandbox = [p.name for p in (PACKAGE / "sandbox").glob("*.py")]
    assert len(loose) <= 10, loose
    assert len(sandbox) <= 12, sandbox
