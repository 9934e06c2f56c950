"""Every `[tool.gradlint]` value and numeric option is checked for type and range before any target runs:
one line naming the key and what it expects, exit status 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from gradlint.cli import main

TARGET = "model.py:Small"
MODEL = '''
from torch import nn


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x)
'''


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pyproject: bytes | str | None, *args: str) -> tuple[int, str]:
    (tmp_path / "model.py").write_text(MODEL)
    if pyproject is not None:
        data = pyproject.encode() if isinstance(pyproject, str) else pyproject
        (tmp_path / "pyproject.toml").write_bytes(data)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["check", TARGET, "--no-probe", "--format", "json", *args])
    return result.exit_code, result.output


@pytest.mark.parametrize("body, says", [
    ('probe-timeout = "x"', ["`probe-timeout`", "positive number of seconds", "a string ('x')"]),
    ("probe-timeout = 0", ["`probe-timeout`", "positive number"]),
    ("probe-timeout = -5.0", ["`probe-timeout`", "positive number"]),
    ("probe-timeout = nan", ["`probe-timeout`", "positive number"]),
    ("probe-batch = 0", ["`probe-batch`", "positive integer"]),
    ("probe-batch = 2.5", ["`probe-batch`", "positive integer"]),
    ("probe-batch = true", ["`probe-batch`", "positive integer", "boolean"]),
    ("probe-max-params = -1", ["`probe-max-params`", "positive integer"]),
    ("select = 1", ["`select`", "array of strings"]),
    ('ignore = "GL101"', ["`ignore`", "array of strings", 'ignore = ["GL101"]']),
    ("extend-select = [1]", ["`extend-select`", "array of strings"]),
    ('targets = "model.py:Small"', ["`targets`", "array of strings", 'targets = ["model.py:Small"]']),
    ("inputs = 1", ["`inputs`", "table of target"]),
    ('inputs = { "model.py:Small" = 3 }', ['`inputs."model.py:Small"`', "input spec string"]),
    ('inputs = { "model.py:Small" = "float99[3]" }', ["[tool.gradlint.inputs]", "float99[3]", "DTYPE"]),
    ("thresholds = 1", ["`thresholds`", "table of rule code"]),
    ("thresholds = { GL101 = 3 }", ["`thresholds.GL101`", "table of its options"]),
    ('thresholds = { GL101 = { min_length = "3" } }', ["thresholds.GL101", "`min_length`", "an integer (default 3)"]),
    ("thresholds = { GL101 = { min_decades = true } }", ["`min_decades`", "a number"]),
    ("per-module-ignores = 1", ["`per-module-ignores`", "table of module path glob"]),
    ('per-module-ignores = { "enc.*" = "GL101" }', ['`per-module-ignores."enc.*"`', "array of rule codes"]),
    ('probe = "no"', ["`probe`", "true or false"]),
    ("probe = 0", ["`probe`", "true or false"]),
    ("fail-on = 2", ["`fail-on`", "'error', 'warning', 'info'"]),
    ("output-format = 1", ["`output-format`", "format name"]),
    ("baseline = 3", ["`baseline`", "file path"]),
    ("rule-dirs = 'rules'", ["`rule-dirs`", "array of strings"]),
    ("exclude = {}", ["`exclude`", "array of strings"]),
    ('format = "json"\noutput-format = "sarif"', ["`output-format`", "`format`"]),
    ('outputformat = "json"', ["outputformat", "output-format", "Valid:"]),
])
def test_wrong_value_is_one_line_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str, says: list[str]) -> None:
    code, output = _run(tmp_path, monkeypatch, f"[tool.gradlint]\n{body}\n")
    assert code == 2, output
    assert "Traceback" not in output and '"targets"' not in output  # no report: nothing ran
    message = output.strip()
    assert len(message.splitlines()) == 1, message
    for part in says:
        assert part in message, (part, message)


@pytest.mark.parametrize("pyproject, says", [
    ("[tool]\ngradlint = 1\n", "`tool.gradlint` must be a table"),
    ("tool = 1\n", "`tool` must be a table"),
    (b"[tool.gradlint]\nselect = [\"GL1\xff\"]\n", "pyproject.toml:2: cannot read configuration: the file is not UTF-8"),
])
def test_malformed_sections(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pyproject: str | bytes, says: str) -> None:
    code, output = _run(tmp_path, monkeypatch, pyproject)
    assert code == 2 and says in output and "Traceback" not in output, output


@pytest.mark.parametrize("option, value, says", [
    ("--probe-timeout", "0", "--probe-timeout must be a positive number of seconds; got 0.0."),
    ("--probe-timeout", "-3", "--probe-timeout must be a positive number of seconds; got -3.0."),
    ("--probe-timeout", "inf", "--probe-timeout must be a positive number"),
    ("--probe-batch", "0", "--probe-batch must be a positive integer; got 0."),
    ("--probe-batch", "-4", "--probe-batch must be a positive integer; got -4."),
    ("--probe-max-params", "0", "--probe-max-params must be a positive integer"),
])
def test_nonpositive_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, option: str, value: str, says: str) -> None:
    code, output = _run(tmp_path, monkeypatch, None, option, value)
    assert code == 2 and says in output and "Traceback" not in output and '"targets"' not in output, output


def test_valid_values_still_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks accept what the documentation shows, integers where a number is expected included."""
    body = ('[tool.gradlint]\ntargets = ["model.py:Small"]\nprobe = false\nprobe-timeout = 5\nprobe-batch = 8\n'
            'fail-on = "error"\nformat = "json"\n[tool.gradlint.inputs]\n"model.py:Small" = ["float32[3,4]"]\n'
            '[tool.gradlint.thresholds.GL101]\nmin_decades = 3\n[tool.gradlint.per-module-ignores]\n"fc" = ["GL301"]\n')
    (tmp_path / "model.py").write_text(MODEL)
    (tmp_path / "pyproject.toml").write_text(body)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["check"])
    assert result.exit_code == 0, result.output
    import json

    report = json.loads(result.stdout)  # `format`, the old name of `output-format`, is honoured
    assert report["targets"][0]["status"] == "ok" and report["targets"][0]["capture"]["input"] == "--input"
