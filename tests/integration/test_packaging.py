"""The built wheel is what pip users get: it must carry the license its metadata names."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_wheel_carries_the_license_file_and_metadata(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(REPO)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("cicd_tools-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        text = archive.read(metadata).decode()
        license_text = archive.read(next(n for n in names if n.endswith("/licenses/LICENSE"))).decode()
    assert license_text == (REPO / "LICENSE").read_text()
    assert "License-Expression: MIT" in text and "License-File: LICENSE" in text
    assert "Classifier: Programming Language :: Python :: 3.11" in text
