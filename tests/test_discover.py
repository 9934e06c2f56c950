"""Paths as targets, as a user runs them on a small model repository: a package with relative imports,
a factory, a class that needs arguments, and a configuration in the parent folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from textwrap import dedent

import pytest
from click.testing import CliRunner, Result

from gradlint.cli import main
from gradlint.discover import definitions, expand, is_path_target

BLOCKS = '''
from torch import nn


class Block(nn.Module):
    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, dim)

    def forward(self, x):
        return self.fc(x).relu()


class NeedsWidth(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.fc = nn.Linear(width, width)

    def forward(self, x):
        return self.fc(x)


class _Private(nn.Module):
    def forward(self, x):
        return x


def not_a_model(x: int = 1) -> int:
    return x + 1
'''

NET = '''
from torch import nn

from .blocks import Block


class Deep(Block):
    """A subclass of a user class imported relatively: discovered through the import."""

    def __init__(self, depth: int = 24) -> None:
        super().__init__()
        self.body = nn.Sequential(*[m for _ in range(depth) for m in (nn.Linear(16, 16), nn.Sigmoid())])

    def forward(self, x):
        return self.body(super().forward(x))


def make_small() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))


def make_wide(width):
    return nn.Linear(width, width)
'''

MLP = '''
import torch.nn as nn
from .blocks import Block  # imported, not defined here: not a target of this file


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(16, 16)
        self.b = nn.Linear(16, 4)

    def forward(self, x):
        return self.b(self.a(x).relu())
'''


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """proj/ with pyproject.toml and package models/ (relative imports, an __init__ that re-exports)."""
    root = tmp_path / "proj"
    models = root / "models"
    models.mkdir(parents=True)
    (models / "__init__.py").write_text("from .net import Deep\n")
    (models / "blocks.py").write_text(dedent(BLOCKS))
    (models / "net.py").write_text(dedent(NET))
    (models / "mlp.py").write_text(dedent(MLP))
    (root / "scratch").mkdir()
    (root / "scratch" / "wip.py").write_text("from torch import nn\n\n\nclass Wip(nn.Linear):\n    pass\n")
    (root / "pyproject.toml").write_text('[tool.gradlint]\nexclude = ["scratch"]\nselect = ["GL101", "GL103"]\n')
    return root


def _check(*args: str) -> Result:
    return CliRunner().invoke(main, ["check", "--no-probe", *args])


def test_static_definitions_without_importing(repo: Path) -> None:
    targets, skipped = definitions(repo / "models" / "blocks.py", "models/blocks.py")
    assert targets == ["models/blocks.py:Block"]
    assert {s.target: s.reason for s in skipped} == {
        "models/blocks.py:NeedsWidth": "needs arguments: width",
        "models/blocks.py:_Private": "private name (leading underscore)",
    }
    targets, skipped = definitions(repo / "models" / "net.py", "models/net.py")
    assert targets == ["models/net.py:Deep", "models/net.py:make_small"]
    assert [s.target for s in skipped] == ["models/net.py:make_wide"]
    assert definitions(repo / "models" / "mlp.py", "m.py")[0] == ["m.py:MLP"]  # Block is imported there, not defined


def test_path_target_syntax() -> None:
    assert is_path_target("models/") and is_path_target(".") and is_path_target("models/mlp.py")
    assert not is_path_target("models/mlp.py:MLP") and not is_path_target("models.mlp:MLP")


def test_check_a_folder_discovers_and_lists_the_skipped(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo)
    result = _check(".", "--format", "json")
    assert result.exit_code == 1, result.output  # Deep's sigmoid chain
    by_target = {t["target"]: t for t in json.loads(result.stdout)["targets"]}
    assert sorted(by_target) == ["models/blocks.py:Block", "models/mlp.py:MLP", "models/net.py:Deep", "models/net.py:make_small"]
    assert all(t["status"] == "ok" for t in by_target.values()), by_target  # relative imports worked
    assert [f["rule"] for f in by_target["models/net.py:Deep"]["findings"]][:1] == ["GL101"]
    assert "scratch" not in result.stdout  # excluded by the configuration
    assert "Skipped 3 definitions" in result.stderr and "needs arguments" in result.stderr
    verbose = _check("models", "--format", "json", "--verbose")
    assert "models/blocks.py:NeedsWidth: needs arguments: width" in verbose.stderr


def test_check_one_file_of_a_package(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo / "models")
    result = _check("net.py", "--format", "json")
    targets = [t["target"] for t in json.loads(result.stdout)["targets"]]
    assert targets == ["net.py:Deep", "net.py:make_small"]
    assert all(t["status"] == "ok" for t in json.loads(result.stdout)["targets"])


def test_discovered_class_that_cannot_be_fed_is_skipped_not_an_error(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (repo / "models" / "odd.py").write_text(dedent('''
        from torch import nn


        class TakesAMask(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 4)

            def forward(self, x, mask):
                return self.fc(x) * mask["keep"]
        '''))
    monkeypatch.chdir(repo)
    result = _check("models/odd.py", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["targets"] == []
    assert "Skipped 1 definition (1 input)" in result.stderr


def test_configured_targets_rule_over_discovery(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (repo / "pyproject.toml").write_text('[tool.gradlint]\ntargets = ["models/mlp.py:MLP", "models.net:make_small"]\n')
    monkeypatch.chdir(repo)
    result = _check("models/mlp.py", "--format", "json")
    assert [t["target"] for t in json.loads(result.stdout)["targets"]] == ["models/mlp.py:MLP"]
    empty = _check("models/blocks.py")
    assert empty.exit_code == 0 and "No targets in the given paths" in empty.stderr


@pytest.mark.parametrize("workers", ["fork", "spawn"])
def test_config_in_the_parent_folder(repo: Path, monkeypatch: pytest.MonkeyPatch, workers: str) -> None:
    """Targets, baseline and rule directories are relative to the configuration, not the working directory.
    With spawned workers too (the fallback when another thread runs): a worker read the configured baseline
    itself before the parent had written it, and every target ended in a load error."""
    if workers == "spawn":
        monkeypatch.setenv("GRADLINT_WORKERS", "spawn")
    (repo / "pyproject.toml").write_text(dedent('''
        [tool.gradlint]
        targets = ["models/net.py:Deep", "models.mlp:MLP"]
        select = ["GL101"]
        baseline = "gradlint-baseline.json"
        '''))
    monkeypatch.chdir(repo / "models")
    first = _check("--write-baseline", "../gradlint-baseline.json", "--format", "json")
    assert first.exit_code == 0, first.output
    assert all(t["status"] == "ok" for t in json.loads(first.stdout)["targets"]), first.stdout
    again = _check("--format", "json")  # the configured baseline, found from a subfolder
    assert again.exit_code == 0, again.output
    assert "1 finding baselined" in again.stderr
    monkeypatch.chdir(repo.parent)
    other = _check("--config", "proj/pyproject.toml", "--format", "json")
    assert other.exit_code == 0, other.output
    assert "1 finding baselined" in other.stderr


@pytest.mark.parametrize("body, words", [
    ('[tool.gradlint]\nselcet = ["GL1"]\n', ["selcet", "Did you mean `select`"]),
    ('[tool.gradlint]\nselect = ["GL999"]\n', ["GL999", "[tool.gradlint] select"]),
    ('[tool.gradlint]\nignore = ["saturating-chian"]\n', ["saturating-chian", "Did you mean `saturating-chain`"]),
    ('[tool.gradlint.thresholds.GL101]\nmin_lenght = 3\n', ["min_lenght", "Did you mean `min_length`"]),
    ('[tool.gradlint.thresholds.GL998]\nx = 3\n', ["GL998", "thresholds"]),
    ('[tool.gradlint.per-module-ignores]\n"body.*" = ["GL10l"]\n', ["GL10l", "per-module-ignores"]),
])
def test_misspelt_configuration_is_a_usage_error(repo: Path, monkeypatch: pytest.MonkeyPatch, body: str, words: list[str]) -> None:
    (repo / "pyproject.toml").write_text(body)
    monkeypatch.chdir(repo)
    result = _check("models/mlp.py:MLP")
    assert result.exit_code == 2, result.output
    for word in words:
        assert word in result.output
    assert "Traceback" not in result.output


def test_cli_ignore_adds_to_the_configured_ignore(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (repo / "pyproject.toml").write_text('[tool.gradlint]\nignore = ["GL103"]\n')
    monkeypatch.chdir(repo)
    result = _check("models/net.py:Deep", "--ignore", "GL102,GL104", "--extend-ignore", "GL002", "--format", "json")
    rules = {f["rule"] for f in json.loads(result.stdout)["targets"][0]["findings"]}
    assert "GL101" in rules and not rules & {"GL103", "GL102", "GL104", "GL002"}
    chosen = _check("models/net.py:Deep", "--select", "GL1", "--format", "json")  # --select replaces, ignore stays
    rules = {f["rule"] for f in json.loads(chosen.stdout)["targets"][0]["findings"]}
    assert "GL101" in rules and "GL103" not in rules and all(r.startswith("GL1") for r in rules)


def test_console_script_on_a_package_folder(repo: Path) -> None:
    """The installed command, in a fresh process, from the repository root: package imports as pytest does."""
    exe = Path(sys.executable).with_name("gradlint")
    if not exe.exists():
        pytest.skip("the gradlint console script is not installed next to this interpreter")
    env = {**os.environ, "COLUMNS": "300"}
    result = subprocess.run([str(exe), "check", "models", "--no-probe", "--format", "json"], cwd=repo, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["summary"]["errors"] == 0
    assert len(report["targets"]) == 4


def test_expand_with_affected_follows_imports(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo)
    changed = expand(["models/blocks.py"], [], base=repo, affected=True)
    assert sorted(changed.targets) == ["models/blocks.py:Block", "models/mlp.py:MLP", "models/net.py:Deep", "models/net.py:make_small"]
    alone = expand(["models/mlp.py"], [], base=repo, affected=True)
    assert alone.targets == ["models/mlp.py:MLP"]  # nothing imports mlp.py


def test_a_file_that_does_not_parse_is_an_error_beside_the_others(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (repo / "models" / "broken.py").write_text("class Oops(nn.Module:\n    pass\n")
    monkeypatch.chdir(repo)
    result = _check("models", "--format", "json")
    assert result.exit_code == 2
    by_target = {t["target"]: t for t in json.loads(result.stdout)["targets"]}
    assert by_target["models/broken.py:*"]["error"]["message"].startswith("models/broken.py:1: syntax error")
    assert by_target["models/mlp.py:MLP"]["status"] == "ok"  # one bad file never hides the others


def test_missing_path_is_a_usage_error(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo)
    result = _check("modles/")
    assert result.exit_code == 2 and "modles/: no such file or directory" in result.output
    assert "Traceback" not in result.output


def test_a_change_without_models_exits_before_importing_torch(repo: Path) -> None:
    (repo / "tools.py").write_text("def helper():\n    return 1\n")
    script = ("import sys\nfrom gradlint.cli import main\n"
              "try:\n    main.main(['check', '--affected', 'tools.py'], standalone_mode=False)\nexcept SystemExit as exc:\n"
              "    print('exit', exc.code)\nprint('torch imported:', 'torch' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=repo, capture_output=True, text=True, timeout=120)
    assert "exit 0" in result.stdout and "torch imported: False" in result.stdout, result.stdout + result.stderr
    assert "No targets in the given paths" in result.stderr
