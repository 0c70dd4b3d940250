"""Environment checks: does azure.ai.ml import, is marshmallow < 4, do installed versions meet the pins.

A patch-level drift from a pin (same major.minor) is a warning: pip resolvers and base images move
patches, and the toolkit's contracts do not hang on them. Anything larger fails. Pins and installed
versions with a known advisory are flagged (a warning naming the advisory and the fixed version).

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

from cicd_tools.credentials import HINTS, describe_credential, probe_token
from cicd_tools.support.errors import CicdError

_REQ_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._\-]*)\s*==\s*([^\s;#]+)")


@dataclass(frozen=True)
class Check:
    """One row of the doctor's table: failed (``ok`` False), a warning (``ok`` and ``warning``) or fine."""

    name: str
    ok: bool
    detail: str
    fix: str | None = None
    warning: bool = False

    @property
    def status(self) -> str:
        return "FAIL" if not self.ok else "warn" if self.warning else "ok"


@dataclass(frozen=True)
class Advisory:
    """A known vulnerability of a package below ``fixed``."""

    package: str
    fixed: str
    id: str
    note: str = ""
    requirement: str = ""  # what to install instead (default ``package>=fixed``)


ADVISORIES: tuple[Advisory, ...] = (
    Advisory("marshmallow", "3.26.2", "CVE-2025-68480",
             "azure-ai-ml works with marshmallow 3.26.2 from azure-ai-ml 1.26.5 on",
             "marshmallow>=3.26.2,<4' 'azure-ai-ml>=1.26.5"),
)

_RELEASE_RE = re.compile(r"^\s*v?(\d+(?:\.\d+)*)")


def release(version: str) -> tuple[int, ...] | None:
    """The numeric release part of a version (``1.0.0b13`` -> (1, 0, 0)), or None when there is none."""
    match = _RELEASE_RE.match(version)
    return tuple(int(part) for part in match[1].split(".")) if match else None


def is_patch_drift(have: str, want: str) -> bool:
    """Same major.minor, other patch (or pre-release): a drift that warns instead of failing."""
    have_r, want_r = release(have), release(want)
    if have_r is None or want_r is None:
        return False
    pad = (0, 0)
    return (have_r + pad)[:2] == (want_r + pad)[:2]


def below(version: str, fixed: str) -> bool:
    """Whether ``version``'s release is lower than ``fixed``'s (unparsable: not flagged)."""
    have_r, fixed_r = release(version), release(fixed)
    if have_r is None or fixed_r is None:
        return False
    width = max(len(have_r), len(fixed_r))
    return have_r + (0,) * (width - len(have_r)) < fixed_r + (0,) * (width - len(fixed_r))


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
    from cicd_tools.support.bounded import read_text_bounded

    for line in read_text_bounded(path, what="constraints file").splitlines():
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
        elif have is not None and is_patch_drift(have, want):
            checks.append(
                Check(
                    f"{name}=={want}",
                    True,
                    f"installed {have}: a patch-level drift from the pin {want} (tested: {want})",
                    f"{sys.executable} -m pip install -c constraints.txt '{name}=={want}'",
                    warning=True,
                )
            )
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


def check_advisories(pins: dict[str, str], source: str = "constraints.txt") -> list[Check]:
    """Flag a pin or an installed version below an advisory's fixed version (warnings)."""
    checks: list[Check] = []
    for advisory in ADVISORIES:
        pinned = pins.get(_normalise(advisory.package))
        have = installed_version(advisory.package)
        found: list[str] = []
        if pinned and below(pinned, advisory.fixed):
            found.append(f"{source} pins {pinned}")
        if have and below(have, advisory.fixed):
            found.append(f"installed {have}")
        name = f"{advisory.package} advisories"
        if not found:
            checks.append(Check(name, True, f"none known for {have or pinned or 'this version'}"))
            continue
        note = f"; {advisory.note}" if advisory.note else ""
        checks.append(
            Check(
                name,
                True,
                f"{' and '.join(found)}: below {advisory.fixed}, which fixes {advisory.id}{note}",
                f"{sys.executable} -m pip install '{advisory.requirement or f'{advisory.package}>={advisory.fixed}'}'",
                warning=True,
            )
        )
    return checks


KEY_PACKAGES = (
    "azure-ai-ml", "azure-core", "azure-identity", "azure-storage-blob", "azure-mgmt-storage",
    "azure-mgmt-datafactory", "marshmallow", "six", "pydantic", "requests", "PyYAML", "cryptography", "tzdata",
    "jmespath", "shtab",
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


def check_token(arm_endpoint: str) -> Check:
    """Acquire an ARM token with the credential the commands use: which class answered, or why each failed."""
    scope = arm_endpoint.rstrip("/") + "/.default"
    probe = probe_token(scope)
    if probe.ok:
        return Check("ARM token", True, f"{probe.credential}: {probe.detail}")
    choice = describe_credential()
    return Check("ARM token", False, f"{probe.credential}: {probe.detail}",
                 HINTS.get(choice.mode, "Log in (az login, azure/login, AzureCLI@2) or choose another --credential."))


def check_requirements(dist: str = "cicd-tools") -> list[Check]:
    """Every runtime dependency the installed package declares: present, and within the declared range.

    The ranges come from the package's own metadata (pyproject's ``dependencies``), so a pip user without the
    repository's constraints.txt gets the same verdicts as a checkout.
    """
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        declared = metadata.requires(dist) or []
    except metadata.PackageNotFoundError:
        return [Check("dependencies", True, f"{dist} is not installed as a distribution; dependency check skipped",
                      warning=True)]
    checks: list[Check] = []
    for raw in declared:
        try:
            req = Requirement(raw)
        except InvalidRequirement:
            continue
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue  # an extra's dependency (dev, docs): not needed to run the commands
        wanted = str(req.specifier) or "any version"
        have = installed_version(req.name)
        fix = f"{sys.executable} -m pip install '{req.name}{req.specifier}'"
        if have is None:
            checks.append(Check(f"{req.name} {wanted}", False, "not installed", fix))
        elif req.specifier and not req.specifier.contains(have, prereleases=True):
            checks.append(Check(f"{req.name} {wanted}", False, f"installed {have}, outside {wanted}", fix))
        else:
            checks.append(Check(f"{req.name} {wanted}", True, f"installed {have}"))
    return checks


def run_checks(constraints: Path | None = None, *, import_check: bool = True,
               online_arm_endpoint: str | None = None) -> list[Check]:
    """All doctor checks, in display order."""
    checks = [Check("python", sys.version_info >= (3, 11), f"{sys.version.split()[0]} at {sys.executable}",
                    None if sys.version_info >= (3, 11) else "use Python 3.11 or newer")]
    checks.append(check_marshmallow())
    checks.extend(check_requirements())
    if import_check:
        checks.append(check_azure_ai_ml_import())
    if constraints is not None:
        pins = read_pins(constraints)
        checks.extend(check_pins(pins, KEY_PACKAGES))
        checks.extend(check_advisories(pins, constraints.name))
    else:
        checks.append(Check("constraints.txt", True, "not found next to the package; pin check skipped"))
        checks.extend(check_advisories({}))
    checks.append(check_credential())
    if online_arm_endpoint is not None and checks[-1].ok:
        checks.append(check_token(online_arm_endpoint))
    return checks
