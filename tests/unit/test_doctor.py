"""`doctor`'s verdicts on pins: patch drift warns, larger drift fails, known advisories are flagged."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from cicd_tools import doctor

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    versions: dict[str, str] = {}
    monkeypatch.setattr(doctor, "installed_version", lambda dist: versions.get(dist))
    return versions


def test_a_patch_level_drift_from_a_pin_is_a_warning_not_a_failure(installed: dict[str, str]) -> None:
    installed["requests"] = "2.34.3"
    (check,) = doctor.check_pins({"requests": "2.34.2"}, ["requests"])
    assert (check.ok, check.warning, check.status) == (True, True, "warn")
    assert "patch-level drift" in check.detail and "2.34.3" in check.detail


@pytest.mark.parametrize(("have", "want"), [("2.35.0", "2.34.2"), ("3.0.0", "2.34.2"), ("2.33.9", "2.34.2")])
def test_a_minor_or_major_drift_still_fails(installed: dict[str, str], have: str, want: str) -> None:
    installed["requests"] = have
    (check,) = doctor.check_pins({"requests": want}, ["requests"])
    assert (check.ok, check.status) == (False, "FAIL")


def test_a_missing_pinned_package_fails(installed: dict[str, str]) -> None:
    (check,) = doctor.check_pins({"six": "1.17.0"}, ["six"])
    assert not check.ok and "installed nothing" in check.detail


def test_a_pre_release_drift_within_the_same_minor_warns(installed: dict[str, str]) -> None:
    installed["azure-core-tracing-opentelemetry"] = "1.0.0b14"
    (check,) = doctor.check_pins({"azure-core-tracing-opentelemetry": "1.0.0b13"},
                                 ["azure-core-tracing-opentelemetry"])
    assert check.status == "warn"


def test_a_pin_below_the_marshmallow_fix_is_flagged_with_the_cve(installed: dict[str, str]) -> None:
    installed["marshmallow"] = "3.26.2"
    (check,) = doctor.check_advisories({"marshmallow": "3.18.0"}, "constraints-oldest.txt")
    assert check.status == "warn"
    assert "CVE-2025-68480" in check.detail and "constraints-oldest.txt pins 3.18.0" in check.detail
    assert "installed" not in check.detail  # 3.26.2 carries the fix
    assert check.fix is not None and "marshmallow>=3.26.2,<4" in check.fix and "azure-ai-ml>=1.26.5" in check.fix


def test_an_installed_marshmallow_below_the_fix_is_flagged(installed: dict[str, str]) -> None:
    installed["marshmallow"] = "3.25.1"
    (check,) = doctor.check_advisories({})
    assert check.status == "warn" and "installed 3.25.1" in check.detail


def test_the_fixed_marshmallow_is_not_flagged(installed: dict[str, str]) -> None:
    installed["marshmallow"] = "3.26.2"
    (check,) = doctor.check_advisories({"marshmallow": "3.26.2"})
    assert check.status == "ok"


def test_cli_doctor_exits_0_on_patch_drift_and_lists_the_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cicd_tools.cli.main import main

    have = doctor.installed_version("requests")
    assert have is not None
    major, minor, *_ = have.split(".")
    pins = tmp_path / "constraints.txt"
    pins.write_text(f"requests=={major}.{minor}.999\n")
    code = main(["--output", "json", "--ci", "plain", "doctor", "--skip-import", "--constraints", str(pins)])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["ok"] is True
    (row,) = [c for c in report["checks"] if c["name"] == f"requests=={major}.{minor}.999"]
    assert row["status"] == "warn"
    assert any("patch-level drift" in w for w in report["warnings"])


def test_the_license_is_an_spdx_string_and_the_build_requires_a_setuptools_that_reads_it() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["license"] == "MIT"
    # PEP 639 license expressions need setuptools 77 (older ones refuse a string `license`).
    (setuptools,) = [r for r in project["build-system"]["requires"] if r.startswith("setuptools")]
    assert doctor.release(setuptools.split(">=")[1]) >= (77,)  # type: ignore[operator]


def test_every_declared_runtime_dependency_is_checked_against_its_range(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    from cicd_tools import doctor

    declared = ["PyYAML>=6.0", "tzdata>=2099.1", "no-such-package-cicd>=1", "mkdocs>=1.6; extra == \"docs\""]
    monkeypatch.setattr(metadata, "requires", lambda dist: declared)
    rows = {c.name: c for c in doctor.check_requirements()}
    assert rows["PyYAML >=6.0"].ok  # installed (the package needs it) and in range
    assert not rows["tzdata >=2099.1"].ok and "outside >=2099.1" in rows["tzdata >=2099.1"].detail
    assert not rows["no-such-package-cicd >=1"].ok and rows["no-such-package-cicd >=1"].detail == "not installed"
    assert "pip install 'no-such-package-cicd>=1'" in str(rows["no-such-package-cicd >=1"].fix)
    assert not any(name.startswith("mkdocs") for name in rows)  # an extra's dependency is not a runtime need


def test_the_installed_environment_meets_every_declared_range() -> None:
    from cicd_tools import doctor

    rows = doctor.check_requirements()
    names = {c.name.split()[0] for c in rows}
    # the ones the seams issue found unchecked are among them, read from the package's own metadata
    assert {"azure-mgmt-datafactory", "PyYAML", "cryptography", "tzdata"} <= names
    assert [c for c in rows if not c.ok] == []
