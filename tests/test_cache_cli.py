"""`gradlint check` answers an unchanged target from .gradlint_cache/ and is never stale: an edited helper
module, other options or configuration check it again; --no-cache, `gradlint clean` and `cache-dir`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

NET = """\
from torch import nn
from helpers import WIDTH
print("building at import")


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(*[m for _ in range(6) for m in (nn.Linear(WIDTH, WIDTH), nn.Sigmoid())])

    def forward(self, x):
        return self.body(x)
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "helpers.py").write_text("WIDTH = 16\n")
    (tmp_path / "net.py").write_text(NET)
    return tmp_path


def _run(project: Path, *args: str, command: str = "check") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "GRADLINT_NO_CACHE"}
    extra = ["net.py:Net", "--input", "float32[4,16]", "--no-probe", "--format", "json"] if command == "check" else []
    return subprocess.run([sys.executable, "-m", "gradlint.cli", command, *extra, *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300)


def _entry(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    entry = json.loads(proc.stdout)["targets"][0]
    entry.pop("seconds", None)
    return entry


def _ran(proc: subprocess.CompletedProcess[str]) -> bool:
    return "net.py:Net | building at import" in proc.stderr


def test_an_unchanged_target_is_answered_from_the_cache(project: Path) -> None:
    first, second = _run(project), _run(project)
    assert _ran(first) and not _ran(second)
    assert "answered from the cache" in second.stderr
    assert _entry(second) == _entry(first) and _entry(first)["findings"]
    assert first.returncode == second.returncode == 1
    assert (project / ".gradlint_cache" / ".gitignore").read_text() == "*\n"


def test_an_edited_helper_module_checks_the_target_again(project: Path) -> None:
    _run(project)
    (project / "helpers.py").write_text("WIDTH = 16  # edited\n")
    assert _ran(_run(project))


def test_other_options_or_configuration_are_a_miss(project: Path) -> None:
    _run(project)
    assert _ran(_run(project, "--select", "GL101"))
    (project / "pyproject.toml").write_text("[tool.gradlint]\nfail-on = \"error\"\n")
    assert _ran(_run(project))
    assert not _ran(_run(project))


def test_no_cache_and_clean(project: Path) -> None:
    _run(project)
    assert _ran(_run(project, "--no-cache"))
    cleaned = _run(project, command="clean")
    assert cleaned.returncode == 0 and "Removed" in cleaned.stderr and not (project / ".gradlint_cache").exists()
    assert _ran(_run(project))


def test_cache_dir_setting(project: Path) -> None:
    (project / "pyproject.toml").write_text('[tool.gradlint]\ncache-dir = "build/gl-cache"\n')
    _run(project)
    assert (project / "build" / "gl-cache").is_dir() and not (project / ".gradlint_cache").exists()
    assert not _ran(_run(project))


def test_an_error_is_never_cached(project: Path) -> None:
    (project / "helpers.py").write_text("WIDTH = 16\nraise RuntimeError('broken helper')\n")
    first = _run(project)
    assert json.loads(first.stdout)["targets"][0]["status"] == "error"
    (project / "helpers.py").write_text("WIDTH = 16\n")
    assert _ran(_run(project))


def test_a_run_of_unchanged_targets_imports_no_torch_and_prints_the_same(project: Path) -> None:
    fresh = _run(project, "--format", "text", "--no-cache")
    _run(project, "--format", "text")  # fills the cache
    env = {k: v for k, v in os.environ.items() if k != "GRADLINT_NO_CACHE"}
    script = ("import sys\nfrom gradlint.cli import main\nsys.argv = ['gradlint', 'check', 'net.py:Net', '--input', "
              "'float32[4,16]', '--no-probe']\ntry:\n    main.main(prog_name='gradlint')\nexcept SystemExit as exc:\n"
              "    print('torch' in sys.modules, exc.code, file=sys.stderr)\n")
    cached = subprocess.run([sys.executable, "-c", script], cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert cached.stderr.strip().endswith("False 1"), cached.stderr
    assert "answered from the cache" in cached.stderr and not _ran(cached)
    assert cached.stdout == fresh.stdout and "gradient profile" in cached.stdout


def test_configured_thresholds_move_the_text_chart_fresh_and_cached(project: Path) -> None:
    (project / "pyproject.toml").write_text("[tool.gradlint.thresholds.GL103]\nmin_log10 = -5.0\n")
    fresh, cached = _run(project, "--format", "text"), _run(project, "--format", "text")
    assert not _ran(cached)
    for proc in (fresh, cached):
        assert "GL103 below -5.00" in proc.stdout
