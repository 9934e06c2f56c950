"""`[tool.gradlint]` configuration: parsed as data, and honoured by `gradlint check` without targets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gradlint.cli import main
from gradlint.config import Config, find_pyproject, load_config
from gradlint.types import ErrorKind, GradlintError, Severity

MODEL = '''
import torch
from torch import nn


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.fc2 = nn.Linear(8, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


class Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(3, 8, batch_first=True)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1])
'''

RULE = '''
from gradlint.rule import Rule
from gradlint.types import Severity


class PerLayer(Rule):
    code = "GL950"
    name = "per-layer"
    severity = Severity.WARNING
    options = {"max_findings": 100}

    def check(self, ctx):
        for layer in ctx.graph.weighted_layers[: self.opts["max_findings"]]:
            yield self.finding(ctx, layer.module, f"layer {layer.module}")
'''

PYPROJECT = '''
[project]
name = "user-project"

[tool.gradlint]
targets = ["cfg_model.py:Small", "cfg_model.py:Recurrent"]
select = ["GL950"]
ignore = ["GL1"]
rule-dirs = ["myrules"]
fail-on = "error"
probe = false

[tool.gradlint.inputs]
"cfg_model.py:Recurrent" = "float32[4,5,3]"

[tool.gradlint.thresholds.GL950]
max_findings = 2

[tool.gradlint.per-module-ignores]
"fc2" = ["GL950"]
'''


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "cfg_model.py").write_text(MODEL)
    (tmp_path / "myrules").mkdir()
    (tmp_path / "myrules" / "GL950_per_layer.py").write_text(RULE)
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    (tmp_path / "sub").mkdir()
    return tmp_path


def test_load_config(project: Path) -> None:
    config = load_config(project / "pyproject.toml")  # read from elsewhere: targets are relative to the file
    model = str((project / "cfg_model.py").resolve())
    assert config.targets == [f"{model}:Small", f"{model}:Recurrent"]
    assert config.inputs == {f"{model}:Recurrent": ["float32[4,5,3]"]}
    assert config.select == ["GL950"] and config.ignore == ["GL1"] and config.extend_select == []
    assert config.fail_on is Severity.ERROR
    assert config.probe is False
    assert config.thresholds == {"GL950": {"max_findings": 2}}
    assert config.per_module_ignores == {"fc2": ["GL950"]}
    assert config.rule_dirs == [str((project / "myrules").resolve())]


def test_find_pyproject_walks_up(project: Path) -> None:
    assert find_pyproject(project / "sub") == project / "pyproject.toml"


def test_defaults_without_section(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    config = load_config(tmp_path / "pyproject.toml")
    assert config == Config()


@pytest.mark.parametrize("body, word", [
    ("[tool.gradlint]\nselct = ['GL1']\n", "selct"),
    ("[tool.gradlint]\nfail-on = 'fatal'\n", "fail-on"),
    ("[tool.gradlint\n", "pyproject.toml"),
])
def test_bad_config(tmp_path: Path, body: str, word: str) -> None:
    (tmp_path / "pyproject.toml").write_text(body)
    with pytest.raises(GradlintError) as info:
        load_config(tmp_path / "pyproject.toml")
    assert info.value.kind is ErrorKind.LOAD
    assert word in info.value.message


def test_check_without_targets_uses_config(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    result = CliRunner().invoke(main, ["check", "--format", "json"])
    assert result.exit_code == 0, result.output  # warnings only, fail-on = "error"
    report = json.loads(result.stdout)
    by_target = {t["target"]: t for t in report["targets"]}
    assert list(by_target) == ["cfg_model.py:Small", "cfg_model.py:Recurrent"]
    small, recurrent = by_target.values()
    assert small["status"] == "ok" and recurrent["status"] == "ok", recurrent.get("error")
    # thresholds cap findings at 2 layers; per-module-ignores drops fc2
    assert [f["module"] for f in small["findings"]] == ["fc1"]
    assert small["suppressed"] == 1
    assert sorted(f["module"] for f in recurrent["findings"]) == ["head", "rnn"]
    assert recurrent["capture"]["input"] == "--input"
    assert small["probe"] is None and recurrent["probe"] is None


def test_cli_overrides_config(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    result = CliRunner().invoke(main, ["check", "--fail-on", "warning", "--format", "json"])
    assert result.exit_code == 1, result.output
    result = CliRunner().invoke(main, ["check", "cfg_model.py:Small", "--ignore", "GL950", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["targets"][0]["findings"] == []


def test_missing_configured_input_is_an_input_error(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (project / "pyproject.toml").read_text().replace('"cfg_model.py:Recurrent" = "float32[4,5,3]"', "")
    (project / "pyproject.toml").write_text(text)
    monkeypatch.chdir(project)
    result = CliRunner().invoke(main, ["check", "cfg_model.py:Recurrent", "--format", "json"])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["targets"][0]["error"]["kind"] == "input"


def test_unknown_key_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.gradlint]\ntargetz = []\n")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["check", "x.py:Net"])
    assert result.exit_code == 2
    assert "targetz" in result.output and "Traceback" not in result.output


def test_no_targets_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.gradlint]\nselect = ['ALL']\n")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["check"])
    assert result.exit_code == 2
    assert "No targets" in result.output
