"""The config file as one layer of the settings resolution (flag > ``CICD_*`` > file > default).

Light on purpose: every command builds one, and only a lookup reads the file (through the one strict loader in
``config.py``, which imports pydantic); a command that needs nothing from the file never reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from cicd_tools.settings.keys import ENV_KEYS


class FileLayer:
    """``cicd-tools.toml`` (or ``--config`` / ``CICD_CONFIG``, or ``[tool.cicd-tools]``), read at the first lookup."""

    def __init__(self, explicit: str | None, environ: Mapping[str, str], cwd: Path | None = None) -> None:
        self._explicit, self._environ, self._cwd = explicit, environ, cwd
        self._values: Mapping[str, str] | None = None
        self._where = ""

    def get(self, key: str) -> tuple[str, str] | None:
        """``(value, "KEY in FILE")`` when the file sets ``key`` (``storage.account``), else None.
        Raises: ConfigError (the file is missing, malformed or holds an unknown key)."""
        if self._values is None:
            from cicd_tools.settings.config import file_values

            self._values, path = file_values(self._explicit, self._environ, self._cwd or Path.cwd())
            self._where = f" in {path}" if path else ""
        return (self._values[key], f"{key}{self._where}") if key in self._values else None

    def __call__(self, var: str) -> tuple[str, str] | None:
        """The file's value of the key that variable ``var`` also sets (``CICD_STORAGE_ACCOUNT``), if any."""
        return self.get(ENV_KEYS[var]) if var in ENV_KEYS else None
