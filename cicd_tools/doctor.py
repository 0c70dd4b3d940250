"""Environment checks: does azure.ai.ml import, is marshmallow < 4, do installed versions meet the pins.

Each check runs in a subprocess of the *same* interpreter where an import could poison this process
(a failed azure.ai.ml import leaves half-initialised modules behind) and to keep start-up cheap.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from cicd_tools.credentials import HINTS, describe_credential
from cicd_tools.errors import CicdError

_REQ_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._\-]*)\s*==\s*([^\s;#]+)")


@dataclass(frozen=True)
class Check:
    """One row of the doctor's table."""

    name: str
    ok: bool
    detail: str
    fix: str | None = None


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def read_pins(path: Path) -> dict[str, str]:
    """``name==version`` lines of a constraints file (comments and markers ignored)."""
    pins: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _REQ_RE.match(line)
        if match:
            pins[_normalise(match[1])] = match[2]
    return pins


def check_marshmallow() -> Check:
    version = installed_version("marshmallow")
    if version is None:
        fix = f"{sys.executable} -m pip install 'marshmallow>=3.18,<4'"
        return Check("marshmallow < 4", False, "not installed", fix)
    major = int(version.split(".")[0])
    if major >= 4:
        return Check(
            "marshmallow < 4",
            False,
            f"marshmallow {version} is installed; azure-ai-ml fails to import with 4.x "
            "(cannot import name 'FieldInstanceResolutionError')",
            f"{sys.executable} -m pip install 'marshmallow>=3.18,<4'",
        )
    return Check("marshmallow < 4", True, f"marshmallow {version}")


def check_azure_ai_ml_import(python: str = sys.executable) -> Check:
    proc = subprocess.run(
        [python, "-c", "from azure.ai.ml import MLClient; import azure.ai.ml as m; print(m.__version__)"],
        capture_output=True, text=True, timeout=120,
    )
    if proc.returncode == 0:
        return Check("azure.ai.ml imports", True, f"azure-ai-ml {proc.stdout.strip()}")
    last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
    fix = f"{python} -m pip install 'marshmallow>=3.18,<4' six"
    if "No module named 'azure.ai" in last or "No module named 'azure'" in last:
        fix = f"{python} -m pip install azure-ai-ml -c constraints.txt"
    return Check("azure.ai.ml imports", False, last, fix)


def check_pins(pins: dict[str, str], names: Iterable[str]) -> list[Check]:
    checks: list[Check] = []
    for name in names:
        want = pins.get(_normalise(name))
        have = installed_version(name)
        if want is None:
            continue
        if have == want:
            checks.append(Check(f"{name}=={want}", True, f"installed {have}"))
        else:
            checks.append(
                Check(
                    f"{name}=={want}",
                    False,
                    f"installed {have or 'nothing'}, constraints.txt pins {want}",
                    f"{sys.executable} -m pip install -c constraints.txt '{name}=={want}'",
                )
            )
    return checks


KEY_PACKAGES = (
    "azure-ai-ml", "azure-core", "azure-identity", "azure-storage-blob", "azure-mgmt-storage",
    "marshmallow", "six", "pydantic", "requests",
)


def find_constraints(start: Path | None = None) -> Path | None:
    """constraints.txt of the checkout this package runs from, or of the current folder."""
    here = Path(__file__).resolve().parents[1] / "constraints.txt"
    if here.exists():
        return here
    cwd = (start or Path.cwd()) / "constraints.txt"
    return cwd if cwd.exists() else None


def check_credential() -> Check:
    """Which azure-identity class the commands will use, and why; a mode lacking its variables fails."""
    try:
        choice = describe_credential()
    except CicdError as err:
        return Check("credential", False, err.message, err.hint)
    if not choice.usable:
        return Check("credential", False, f"{choice.name}: {choice.reason}", HINTS.get(choice.mode))
    return Check("credential", True, f"{choice.name}: {choice.reason}")


def run_checks(constraints: Path | None = None, *, import_check: bool = True) -> list[Check]:
    """All doctor checks, in display order."""
    checks = [Check("python", sys.version_info >= (3, 11), f"{sys.version.split()[0]} at {sys.executable}",
                    None if sys.version_info >= (3, 11) else "use Python 3.11 or newer")]
    checks.append(check_marshmallow())
    if import_check:
        checks.append(check_azure_ai_ml_import())
    if constraints is not None:
        checks.extend(check_pins(read_pins(constraints), KEY_PACKAGES))
    else:
        checks.append(Check("constraints.txt", True, "not found next to the package; pin check skipped"))
    checks.append(check_credential())
    return checks
