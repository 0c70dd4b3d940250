"""Writing evidence files: atomically, so a reader never sees half a document, and only over a regular file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cicd_tools.support.outpath import write_atomic


def write_json_atomic(path: Path, data: Any, *, what: str = "result file") -> None:
    """Write JSON to ``path`` atomically, only over a regular file or nothing. Raises: OutputRefused, OSError."""
    write_atomic(path, json.dumps(data, indent=2) + "\n", what=what)
