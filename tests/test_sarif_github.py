"""`--format sarif` carries what GitHub code scanning requires, and `--format github` emits workflow
commands with file, line and title."""

from __future__ import annotations

import json
import re

from click.testing import CliRunner

from gradlint.cli import main

TARGETS = ["fixtures/zoo/deep_sigmoid.py:DeepSigmoidMLP(depth=8)", "fixtures/cases/mlp.py:MLP(depth=12, act='tanh')"]


def _run(fmt: str, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["check", *TARGETS, "--no-probe", "--select", "GL101", "--format", fmt, *extra])
    return result.exit_code, result.stdout


def test_sarif_required_fields() -> None:
    code, out = _run("sarif")
    assert code == 1
    doc = json.loads(out)
    assert doc["version"] == "2.1.0"
    driver = doc["runs"][0]["tool"]["driver"]
    assert driver["name"] == "gradlint"
    assert [r["id"] for r in driver["rules"]] == ["GL101"]
    for rule in driver["rules"]:
        for key in ("shortDescription", "fullDescription", "help"):
            assert isinstance(rule[key]["text"], str) and rule[key]["text"], (rule["id"], key)
    results = doc["runs"][0]["results"]
    assert len(results) == 2
    ids = {r["id"] for r in driver["rules"]}
    for result in results:
        assert result["ruleId"] in ids
        assert result["level"] in {"error", "warning", "note"}
        assert result["message"]["text"]
        location = result["locations"][0]["physicalLocation"]
        uri = location["artifactLocation"]["uri"]
        assert not uri.startswith("/") and not re.match(r"^[A-Za-z]:", uri), uri
        assert uri in {"fixtures/zoo/deep_sigmoid.py", "fixtures/cases/mlp.py"}
        assert isinstance(location["region"]["startLine"], int) and location["region"]["startLine"] >= 1


def test_sarif_reports_a_broken_target_as_a_notification() -> None:
    result = CliRunner().invoke(main, ["check", "fixtures/nope.py:Net", "--no-probe", "--format", "sarif"])
    assert result.exit_code == 2
    run = json.loads(result.stdout)["runs"][0]
    assert run["results"] == []
    assert run["invocations"][0]["executionSuccessful"] is False
    assert run["invocations"][0]["toolExecutionNotifications"][0]["level"] == "error"


def test_github_annotations() -> None:
    code, out = _run("github")
    assert code == 1
    lines = out.strip().splitlines()
    assert len(lines) == 2
    pattern = re.compile(r"^::(error|warning|notice) file=(?P<file>[^,]+),line=(?P<line>\d+),title=GL101 saturating-chain::(?P<msg>.+)$")
    for line in lines:
        match = pattern.match(line)
        assert match, line
        assert match["file"] in {"fixtures/zoo/deep_sigmoid.py", "fixtures/cases/mlp.py"}
        assert "\n" not in match["msg"]


def test_github_escapes_newlines_and_reports_target_errors() -> None:
    result = CliRunner().invoke(main, ["check", "fixtures/nope.py:Net", "--no-probe", "--format", "github"])
    assert result.exit_code == 2
    [line] = result.stdout.strip().splitlines()
    assert line.startswith("::error title=gradlint load error::fixtures/nope.py:Net: ")
