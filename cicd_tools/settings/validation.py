"""How the one strict configuration loader words a refusal: the key path, where the value came from, and for an
unknown key the key meant (``azure.workspce: unknown key (did you mean 'workspace'?)``)."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, ValidationError


def describe(exc: ValidationError, root: type[BaseModel], sources: Mapping[str, str], file: Path | None) -> str:
    """One line per error: ``KEY.PATH: what is wrong (from SOURCE)``; ``root`` is the model validated."""
    lines = []
    for err in exc.errors():
        path = ""
        for part in err["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        top = ".".join(path.split(".")[:2]).split("[")[0]
        origin = sources.get(top, "default")
        where = f"{origin} {file}" if origin == "config file" and file else origin
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key" + did_you_mean(root, err["loc"])
        lines.append(f"{path}: {message} (from {where})")
    return "invalid configuration: " + "; ".join(lines)


def did_you_mean(root: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    """`` (did you mean 'pipelines'?)`` for an unknown key, from the keys its table has; else the keys it has."""
    model = root
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = next((f for n, f in model.model_fields.items() if part in (n, f.alias)), None)
        inner = _model_in(field.annotation) if field is not None else None
        if inner is None:
            return ""
        model = inner
    keys = [f.alias or n for n, f in model.model_fields.items()]
    close = difflib.get_close_matches(str(loc[-1]), keys, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f"; {'this table has' if loc[:-1] else 'tables:'} " + ", ".join(keys)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model an annotation holds (``AdfSection``, ``tuple[AdfPipeline, ...]``), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((m for m in map(_model_in, get_args(annotation)) if m is not None), None)
