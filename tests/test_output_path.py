"""`-o` to a path that cannot take the report (a /proc file, a full device, a missing folder): one line
naming the path and the reason, exit status 2, no traceback, whatever the format."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from gradlint.cli import main

HEALTHY = "fixtures/cases/healthy.py:ReLUHe"
PATHS = [p for p in ("/proc/version", "/dev/full") if os.path.exists(p)]


@pytest.mark.parametrize("fmt", ["text", "json", "junit"])
@pytest.mark.parametrize("path", [*PATHS, "missing-folder/report.out"])
def test_unwritable_output(tmp_path: Path, path: str, fmt: str) -> None:
    target = path if path.startswith("/") else str(tmp_path / path)
    result = CliRunner().invoke(main, ["check", HEALTHY, "--no-probe", "--output-format", fmt, "-o", target])
    assert result.exit_code == 2, result.output
    assert f"Cannot write the report to {target}: " in result.output
    assert "Traceback" not in result.output and not isinstance(result.exception, OSError)
