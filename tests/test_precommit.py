"""The published pre-commit hook: its manifest passes pre-commit's own schema, and the same hook (as a
`repo: local`, `language: system` copy, so pre-commit does not build a virtualenv with a CUDA torch)
fails a commit of a broken model and passes a healthy one in a real temporary git repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from textwrap import dedent

import pytest

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / ".pre-commit-hooks.yaml"

clientlib = pytest.importorskip("pre_commit.clientlib", reason="pre-commit is not installed (pip install pre-commit)")

BROKEN = """
from torch import nn


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layers = []
        for i in range(20):
            layers += [nn.Linear(32 if i == 0 else 64, 64), nn.Sigmoid()]
        self.net = nn.Sequential(*layers, nn.Linear(64, 10))

    def forward(self, x):
        return self.net(x)
"""

HEALTHY = """
from torch import nn


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x):
        return self.net(x)
"""


def _hook() -> dict:
    hooks = clientlib.load_manifest(str(MANIFEST))
    return next(h for h in hooks if h["id"] == "gradlint")


def test_manifest_validates_and_declares_the_hook() -> None:
    hook = _hook()
    assert hook["name"] == "gradlint"
    assert hook["entry"] == "gradlint check"
    assert hook["language"] == "python"
    assert hook["types"] == ["python"]
    assert hook["pass_filenames"] is False
    assert hook["require_serial"] is True


def _run_hook(tmp_path: Path, model_source: str) -> subprocess.CompletedProcess[str]:
    executable = shutil.which("pre-commit") or shutil.which("pre-commit", path=str(Path(sys.executable).parent))
    gradlint = shutil.which("gradlint") or shutil.which("gradlint", path=str(Path(sys.executable).parent))
    if executable is None or gradlint is None or shutil.which("git") is None:
        pytest.skip("pre-commit, gradlint or git is not on PATH")
    hook = _hook()
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "model.py").write_text(dedent(model_source))
    (repo / "pyproject.toml").write_text('[tool.gradlint]\ntargets = ["model.py:Net"]\n')
    (repo / ".pre-commit-config.yaml").write_text(dedent(f"""\
        repos:
          - repo: local
            hooks:
              - id: {hook['id']}
                name: {hook['name']}
                entry: {hook['entry']}
                language: system
                types: {hook['types']}
                pass_filenames: {str(hook['pass_filenames']).lower()}
                require_serial: {str(hook['require_serial']).lower()}
        """))
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "cache"),
           "PATH": os.pathsep.join([str(Path(gradlint).parent), os.environ.get("PATH", "")]),
           "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True, env=env)
    subprocess.run(["git", "add", "."], cwd=repo, check=True, env=env)
    return subprocess.run([executable, "run", "gradlint", "--all-files"], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=300)


def test_hook_fails_on_a_broken_model(tmp_path: Path) -> None:
    result = _run_hook(tmp_path, BROKEN)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Failed" in result.stdout
    assert "GL101" in result.stdout


def test_hook_passes_on_a_healthy_model(tmp_path: Path) -> None:
    result = _run_hook(tmp_path, HEALTHY)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Passed" in result.stdout
