"""The published pre-commit hook, run by pre-commit itself in a real temporary git repository: its manifest
passes pre-commit's schema; `pre-commit try-repo` against a local clone of this repository uses it as
published (`language: system`, so no hook environment and no CUDA torch is built, offline); and with the
changed files pre-commit passes, only the targets defined in or importing them are checked."""

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

from .parts import head


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), head())

    def forward(self, x):
        return self.net(x)
"""

PARTS = """
from torch import nn


def head(width: int = 64):
    return nn.Linear(width, 10)
"""


def _hook() -> dict:
    hooks = clientlib.load_manifest(str(MANIFEST))
    return next(h for h in hooks if h["id"] == "gradlint")


def test_manifest_validates_and_declares_the_hook() -> None:
    hook = _hook()
    assert hook["name"] == "gradlint"
    assert hook["entry"].startswith("gradlint check") and "--affected" in hook["entry"]
    assert hook["language"] in ("system", "unsupported")  # the project's environment (pre-commit 4.4 renamed system)
    assert set(hook["types_or"]) == {"python", "toml"}
    assert hook["pass_filenames"] is True  # pre-commit's default: the changed files
    assert hook["require_serial"] is True


def _tools() -> tuple[str, str]:
    executable = shutil.which("pre-commit") or shutil.which("pre-commit", path=str(Path(sys.executable).parent))
    gradlint = shutil.which("gradlint") or shutil.which("gradlint", path=str(Path(sys.executable).parent))
    if executable is None or gradlint is None or shutil.which("git") is None:
        pytest.skip("pre-commit, gradlint or git is not on PATH")
    return executable, gradlint


def _env(tmp_path: Path, gradlint: str) -> dict[str, str]:
    return {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "cache"), "COLUMNS": "200",
            "PATH": os.pathsep.join([str(Path(gradlint).parent), os.environ.get("PATH", "")]),
            "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.com", "PIP_NO_INDEX": "1"}  # nothing may be downloaded


def _git(repo: Path, env: dict[str, str], *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, env=env, capture_output=True)


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A local clone of this repository at a commit holding the working tree's hook manifest."""
    if shutil.which("git") is None:
        pytest.skip("git is not on PATH")
    target = tmp_path / "gradlint-clone"
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{ROOT}", str(target)], check=True, env=env, capture_output=True)
    shutil.copy(MANIFEST, target / MANIFEST.name)  # the manifest under test, committed or not
    _git(target, env, "add", MANIFEST.name)
    _git(target, env, "commit", "-q", "--allow-empty", "-m", "manifest under test")
    return target


def _project(tmp_path: Path, env: dict[str, str]) -> Path:
    repo = tmp_path / "repo"
    (repo / "models").mkdir(parents=True)
    (repo / "models" / "__init__.py").write_text("")
    (repo / "models" / "broken.py").write_text(dedent(BROKEN))
    (repo / "models" / "healthy.py").write_text(dedent(HEALTHY))
    (repo / "models" / "parts.py").write_text(dedent(PARTS))
    (repo / "README.md").write_text("a model zoo\n")
    (repo / "pyproject.toml").write_text('[tool.gradlint]\nselect = ["GL1"]\nprobe = false\n')
    _git(repo, env, "init", "-q")
    _git(repo, env, "add", ".")
    return repo


def _try_repo(executable: str, clone: Path, repo: Path, env: dict[str, str], *files: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([executable, "try-repo", str(clone), "gradlint", "--files", *files], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=600)


def test_published_hook_checks_only_what_the_changed_files_affect(tmp_path: Path, clone: Path) -> None:
    executable, gradlint = _tools()
    env = _env(tmp_path, gradlint)
    repo = _project(tmp_path, env)

    broken = _try_repo(executable, clone, repo, env, "models/broken.py")
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "Failed" in broken.stdout and "GL101" in broken.stdout
    assert "models/healthy.py" not in broken.stdout  # not changed, not importing the change

    healthy = _try_repo(executable, clone, repo, env, "models/healthy.py")
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "Passed" in healthy.stdout

    # parts.py defines no model, but healthy.py imports it: that model is checked (and passes)
    parts = _try_repo(executable, clone, repo, env, "models/parts.py", "-v")
    assert parts.returncode == 0, parts.stdout + parts.stderr
    assert "models/healthy.py:Net" in parts.stdout and "models/broken.py" not in parts.stdout

    # a change to the configuration re-checks everything
    config = _try_repo(executable, clone, repo, env, "pyproject.toml")
    assert config.returncode == 1, config.stdout + config.stderr
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").glob("*/py_env-*"))  # no environment built


def test_local_hook_on_a_commit(tmp_path: Path) -> None:
    """The same hook as a `repo: local` entry, on `git commit` itself: a commit that touches only the healthy
    model passes although another model in the repository is broken (and baselined nowhere)."""
    executable, gradlint = _tools()
    env = _env(tmp_path, gradlint)
    repo = _project(tmp_path, env)
    hook = _hook()
    (repo / ".pre-commit-config.yaml").write_text(dedent(f"""\
        repos:
          - repo: local
            hooks:
              - id: {hook['id']}
                name: {hook['name']}
                entry: {hook['entry']}
                language: system
                types_or: {hook['types_or']}
                require_serial: true
        """))
    _git(repo, env, "add", ".")
    subprocess.run(["git", "commit", "-q", "--no-verify", "-m", "initial"], cwd=repo, env=env, check=True, capture_output=True)
    subprocess.run([executable, "install"], cwd=repo, env=env, check=True, capture_output=True)
    (repo / "models" / "healthy.py").write_text(dedent(HEALTHY) + "\n# a harmless edit\n")
    _git(repo, env, "add", "models/healthy.py")
    ok = subprocess.run(["git", "commit", "-m", "edit the healthy model"], cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    (repo / "models" / "broken.py").write_text(dedent(BROKEN) + "\n# an edit to the broken one\n")
    _git(repo, env, "add", "models/broken.py")
    blocked = subprocess.run(["git", "commit", "-m", "edit the broken model"], cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert blocked.returncode == 1, blocked.stdout + blocked.stderr
    assert "GL101" in blocked.stdout + blocked.stderr
