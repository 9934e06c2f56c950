"""Exit codes and usage errors (ruff's conventions: 0 clean, 1 findings, 2 usage or target errors)."""

from __future__ import annotations

import json
import pytest
from click.testing import CliRunner, Result

from gradlint.cli import main

HEALTHY = "fixtures/cases/healthy.py:ReLUHe"
SIGMOID = "fixtures/zoo/deep_sigmoid.py:DeepSigmoidMLP"
TINY = "fixtures/tests/core_models.py:TinyMLP"


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, ["check", *args])


def test_healthy_model_exits_0() -> None:
    result = _run(HEALTHY, "--format", "json")
    assert result.exit_code == 0, result.output
    (target,) = json.loads(result.stdout)["targets"]
    assert target["probe"] is not None
    assert not [f for f in target["findings"] if f["severity"] != "info"]


def test_deep_sigmoid_exits_1() -> None:
    result = _run(SIGMOID, "--select", "GL101", "--no-probe", "--format", "json")
    assert result.exit_code == 1
    findings = json.loads(result.stdout)["targets"][0]["findings"]
    assert any(f["rule"] == "GL101" and f["severity"] in ("warning", "error") for f in findings)


def test_missing_file_exits_2() -> None:
    result = _run("fixtures/tests/missing.py:Net", "--no-probe")
    assert result.exit_code == 2
    assert "missing.py" in result.stdout and "Traceback" not in result.output


def test_input_option_makes_an_lstm_model_checkable() -> None:
    target = "fixtures/tests/core_models.py:LSTMFirst"
    assert _run(target, "--no-probe").exit_code == 2
    result = _run(target, "--no-probe", "--select", "GL101", "--input", "float32[4,6,5]", "--format", "json")
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(result.stdout)["targets"]
    assert entry["capture"]["input"] == "--input"
    assert [p["module"] for p in entry["estimate"]["profile"]] == ["rnn", "head"]


def test_target_error_beats_findings() -> None:
    assert _run(SIGMOID, "fixtures/tests/missing.py:Net", "--select", "GL101", "--no-probe").exit_code == 2


def test_exit_zero() -> None:
    result = _run(SIGMOID, "--select", "GL101", "--no-probe", "--exit-zero")
    assert result.exit_code == 0
    assert "GL101" in result.stdout
    assert _run("fixtures/tests/missing.py:Net", "--exit-zero").exit_code == 2


@pytest.mark.parametrize("fail_on, expected", [("error", 0), ("warning", 1), ("info", 1)])
def test_fail_on_with_a_warning(user_rule_dir, fail_on: str, expected: int) -> None:
    rules = user_rule_dir("GL904", "WARNING")
    result = _run(TINY, "--rule-dir", str(rules), "--select", "GL904", "--no-probe", "--fail-on", fail_on)
    assert result.exit_code == expected, result.output


@pytest.mark.parametrize("fail_on, expected", [("error", 0), ("warning", 0), ("info", 1)])
def test_fail_on_with_an_info(user_rule_dir, fail_on: str, expected: int) -> None:
    rules = user_rule_dir("GL905", "INFO")
    result = _run(TINY, "--rule-dir", str(rules), "--select", "GL905", "--no-probe", "--fail-on", fail_on)
    assert result.exit_code == expected, result.output


def test_fail_on_error_with_an_error() -> None:
    assert _run(SIGMOID, "--select", "GL101", "--no-probe", "--fail-on", "error").exit_code == 1


@pytest.mark.parametrize("args, word", [
    (["--select", "GL999"], "GL999"),
    (["--ignore", "no-such-rule"], "no-such-rule"),
    (["--input", "float32(3)"], "float32(3)"),
    (["--rule-dir", "fixtures/tests/no_rules_here"], "no_rules_here"),
])
def test_usage_errors_exit_2_without_traceback(args: list[str], word: str) -> None:
    result = _run(TINY, "--no-probe", *args)
    assert result.exit_code == 2
    assert word in result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""  # nothing analysed


def test_bad_format_is_a_usage_error() -> None:
    assert _run(TINY, "--format", "xml").exit_code == 2


def test_rules_and_explain() -> None:
    listing = CliRunner().invoke(main, ["rules"])
    assert listing.exit_code == 0 and "GL101" in listing.stdout and "saturating-chain" in listing.stdout
    explained = CliRunner().invoke(main, ["explain", "saturating-chain"])
    assert explained.exit_code == 0 and "Why is this bad?" in explained.stdout
    assert CliRunner().invoke(main, ["explain", "GL999"]).exit_code == 2
