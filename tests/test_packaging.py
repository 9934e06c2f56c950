"""`pip install .` (not only editable) ships every module of the package and the built-in rules."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_contains_every_module_and_rule(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)],
                   check=True, capture_output=True)
    [wheel] = tmp_path.glob("gradlint-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {p.relative_to(ROOT).as_posix() for p in (ROOT / "gradlint").rglob("*.py")}
    expected |= {f"gradlint/rules/{p.name}" for p in (ROOT / "rules").glob("*.py")}
    assert expected - names == set()
    assert any(n.endswith("entry_points.txt") for n in names)
    assert "gradlint/py.typed" in names  # PEP 561 marker: mypy reads the package's type hints
