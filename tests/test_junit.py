"""`--format junit`: well-formed JUnit XML, one failing testcase per finding at or above --fail-on."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from click.testing import CliRunner

from gradlint.cli import main


def _run(*args: str) -> tuple[int, ET.Element]:
    result = CliRunner().invoke(main, ["check", *args, "--format", "junit", "--no-probe"])
    return result.exit_code, ET.fromstring(result.stdout)


def test_findings_become_failures_and_broken_targets_errors() -> None:
    code, root = _run("fixtures/zoo/deep_sigmoid.py:DeepSigmoidMLP", "fixtures/cases/healthy.py:ReLUHe", "missing.py:Net")
    assert code == 2
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert set(suites) == {"fixtures/zoo/deep_sigmoid.py:DeepSigmoidMLP", "fixtures/cases/healthy.py:ReLUHe", "missing.py:Net"}
    sick = suites["fixtures/zoo/deep_sigmoid.py:DeepSigmoidMLP"]
    failures = sick.findall("testcase/failure")
    assert int(sick.get("failures")) == len(failures) > 0
    assert any("GL101" in case.get("name") for case in sick.iter("testcase"))
    assert all(case.get("file") == "fixtures/zoo/deep_sigmoid.py" for case in sick.iter("testcase"))
    assert suites["fixtures/cases/healthy.py:ReLUHe"].get("failures") == "0"
    assert suites["missing.py:Net"].find("testcase/error").get("type") == "load"


def test_fail_on_error_turns_warnings_into_skipped_cases() -> None:
    _, root = _run("fixtures/zoo/deep_sigmoid.py:DeepSigmoidMLP", "fixtures/cases/failures.py:UnusedParams", "--fail-on", "error")
    sigmoid, unused = list(root.iter("testsuite"))
    assert {f.get("type") for f in sigmoid.iter("failure")} == {"error"}
    assert not list(unused.iter("failure")) and unused.findall("testcase/skipped")  # its warning is below --fail-on
