"""The activity tree of one pipeline as the linter sees it: scopes, containers, dependencies, ancestors.

A *scope* is one list of activities: the pipeline's top level, or a container's inner list (ForEach and
Until ``activities``, IfCondition ``ifTrueActivities`` / ``ifFalseActivities``, each Switch case and
``defaultActivities``). ``dependsOn`` only links activities of the same scope.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from cicd_tools.adf import jsonpos

# typeProperties keys that hold inner activity lists (any activity type: Synapse adds its own types).
INNER_LIST_KEYS = ("activities", "ifTrueActivities", "ifFalseActivities", "defaultActivities")


@dataclass(eq=False)
class ActivityNode:
    """One activity with where it sits: its JSON path, its scope, and its enclosing container."""

    name: str
    type: str
    obj: Mapping[str, Any]
    path: str
    scope: int
    parent: ActivityNode | None
    children: list[ActivityNode] = field(default_factory=list)

    @property
    def type_properties(self) -> Mapping[str, Any]:
        props = self.obj.get("typeProperties")
        return props if isinstance(props, Mapping) else {}

    def depends_on(self) -> list[tuple[int, str, list[Any]]]:
        """``(index, activity name, conditions)`` for every well-formed ``dependsOn`` entry."""
        deps = self.obj.get("dependsOn")
        out: list[tuple[int, str, list[Any]]] = []
        for index, dep in enumerate(deps if isinstance(deps, list) else []):
            if isinstance(dep, Mapping) and isinstance(dep.get("activity"), str):
                conds = dep.get("dependencyConditions")
                out.append((index, dep["activity"], conds if isinstance(conds, list) else []))
        return out

    def containers(self) -> Iterator[ActivityNode]:
        """The enclosing containers, innermost first."""
        node = self.parent
        while node is not None:
            yield node
            node = node.parent

    def descendants(self) -> Iterator[ActivityNode]:
        """Every activity nested inside this one, at any depth."""
        for child in self.children:
            yield child
            yield from child.descendants()


def inner_lists(obj: Mapping[str, Any]) -> list[tuple[tuple[jsonpos.PathPart, ...], list[Any]]]:
    """The inner activity lists of a container activity, with their path relative to the activity."""
    type_props = obj.get("typeProperties")
    if not isinstance(type_props, Mapping):
        return []
    found: list[tuple[tuple[jsonpos.PathPart, ...], list[Any]]] = []
    for key in INNER_LIST_KEYS:
        if isinstance(type_props.get(key), list):
            found.append((("typeProperties", key), type_props[key]))
    cases = type_props.get("cases")
    if isinstance(cases, list):
        for index, case in enumerate(cases):
            if isinstance(case, Mapping) and isinstance(case.get("activities"), list):
                found.append((("typeProperties", "cases", index, "activities"), case["activities"]))
    return found


def without_inner_lists(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A shallow copy of an activity without its inner activities (they are checked as activities)."""
    copy = dict(obj)
    type_props = obj.get("typeProperties")
    if isinstance(type_props, Mapping):
        tp = {k: v for k, v in type_props.items() if k not in INNER_LIST_KEYS}
        if isinstance(tp.get("cases"), list):
            tp["cases"] = [
                {k: v for k, v in case.items() if k != "activities"} if isinstance(case, Mapping) else case
                for case in tp["cases"]
            ]
        copy["typeProperties"] = tp
    return copy


@dataclass
class PipelineModel:
    """Every activity of a pipeline, by scope and by name."""

    nodes: list[ActivityNode] = field(default_factory=list)
    scopes: dict[int, list[ActivityNode]] = field(default_factory=dict)
    scope_paths: dict[int, str] = field(default_factory=dict)

    def by_name(self) -> dict[str, list[ActivityNode]]:
        out: dict[str, list[ActivityNode]] = {}
        for node in self.nodes:
            out.setdefault(node.name, []).append(node)
        return out

    def scope_index(self, scope: int) -> dict[str, ActivityNode]:
        """Name -> node within one scope (the first one when names repeat)."""
        out: dict[str, ActivityNode] = {}
        for node in self.scopes.get(scope, []):
            out.setdefault(node.name, node)
        return out

    def ancestors_in_scope(self, node: ActivityNode) -> list[ActivityNode]:
        """Activities reachable through ``dependsOn`` (transitively) within the node's own scope."""
        index = self.scope_index(node.scope)
        seen: dict[str, ActivityNode] = {}
        stack = [name for _, name, _ in node.depends_on()]
        while stack:
            name = stack.pop()
            if name in seen or name not in index:
                continue
            seen[name] = index[name]
            stack.extend(dep for _, dep, _ in index[name].depends_on())
        return list(seen.values())

    def visible_activities(self, node: ActivityNode) -> set[str]:
        """Activities whose output ``node`` may read.

        Its ancestors and those of every enclosing container, plus the activities nested inside those
        ancestors: reading an Until's inner activity after the Until (its last iteration) is a common,
        working pattern (Microsoft's own templates use it).
        """
        ancestors = self.ancestors_in_scope(node)
        for container in node.containers():
            ancestors.extend(self.ancestors_in_scope(container))
        visible = {a.name for a in ancestors}
        for ancestor in ancestors:
            visible.update(inner.name for inner in ancestor.descendants())
        return visible


def build_model(activities: Any, base_path: str) -> PipelineModel:
    """Walk the activity lists of a pipeline (``properties.activities`` at ``base_path``)."""
    model = PipelineModel()
    counter = 0

    def visit(items: Any, path: str, parent: ActivityNode | None) -> None:
        nonlocal counter
        scope = counter
        counter += 1
        model.scopes[scope] = []
        model.scope_paths[scope] = path
        for index, obj in enumerate(items if isinstance(items, list) else []):
            if not isinstance(obj, Mapping):
                continue
            node = ActivityNode(
                name=str(obj.get("name", "")),
                type=str(obj.get("type", "")),
                obj=obj,
                path=jsonpos.child(path, index),
                scope=scope,
                parent=parent,
            )
            model.nodes.append(node)
            model.scopes[scope].append(node)
            if parent is not None:
                parent.children.append(node)
            for rel, inner in inner_lists(obj):
                visit(inner, jsonpos.join(node.path, rel), node)

    visit(activities, base_path, None)
    return model


def find_cycles(nodes: list[ActivityNode]) -> list[list[str]]:
    """Dependency cycles within one scope, each as the list of names along the cycle."""
    index = {n.name: n for n in nodes}
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    cycles: list[list[str]] = []
    seen_cycles: set[frozenset[str]] = set()

    def visit(name: str, stack: list[str]) -> None:
        state[name] = 1
        stack.append(name)
        for _, dep, _ in index[name].depends_on():
            if dep not in index:
                continue
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep) :]
                if frozenset(cycle) not in seen_cycles:
                    seen_cycles.add(frozenset(cycle))
                    cycles.append([*cycle, dep])
            elif dep not in state:
                visit(dep, stack)
        stack.pop()
        state[name] = 2

    for node in nodes:
        if node.name not in state:
            visit(node.name, [])
    return cycles
