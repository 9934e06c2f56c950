"""Output as ruff prints it: no hard wrapping when piped, `--output-format` (and `--format`), `concise`,
`-q`, `--color`, `--statistics`, `gradlint rule CODE`, `rules --output-format json`, severities with
their escalation."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from gradlint.cli import main

SIGMOID = "fixtures/zoo/deep_sigmoid.py:DeepSigmoidMLP"
HEALTHY = "fixtures/cases/healthy.py:ReLUHe"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _check(*args: str) -> Result:
    return CliRunner().invoke(main, ["check", "--no-probe", *args])


def test_piped_output_is_not_hard_wrapped() -> None:
    """A real pipe, as CI logs, pre-commit and `| grep` see it, with a narrow COLUMNS that rich would obey."""
    env = {**os.environ, "COLUMNS": "60", "TERM": "xterm"}
    result = subprocess.run([sys.executable, "-m", "gradlint.cli", "check", SIGMOID, "--no-probe", "--select", "GL101"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 1, result.stderr
    (line,) = [l for l in result.stdout.splitlines() if "GL101 [" in l]
    assert len(line) > 120 and line.rstrip().endswith("(error).")  # the whole message on its line
    assert not ANSI.search(result.stdout)  # no colour into a pipe
    assert all(l.startswith(("  ", "    ")) or not l or ":" in l or l.startswith(("Checked", "fixtures"))
               for l in result.stdout.splitlines())  # no unindented continuation lines


def test_report_file_is_not_wrapped(tmp_path: Path) -> None:
    out = tmp_path / "report.txt"
    assert _check(SIGMOID, "--select", "GL101", "-o", str(out)).exit_code == 1
    (line,) = [l for l in out.read_text().splitlines() if "GL101 [" in l]
    assert len(line) > 120 and not ANSI.search(out.read_text())


def test_concise_format_and_format_alias() -> None:
    for flag in ("--output-format", "--format"):
        result = _check(SIGMOID, "--select", "GL101", flag, "concise")
        assert result.exit_code == 1
        lines = result.stdout.splitlines()
        assert re.fullmatch(r"fixtures/zoo/deep_sigmoid\.py:\d+:1: GL101 \[(warning|error)\] .+", lines[0]), lines[0]
        assert lines[-1] == "Found 1 finding in 1 target."


def test_output_format_from_the_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "model.py").write_text(Path(SIGMOID.split(":", maxsplit=1)[0]).read_text())
    (tmp_path / "pyproject.toml").write_text('[tool.gradlint]\noutput-format = "concise"\ntargets = ["model.py:DeepSigmoidMLP"]\n')
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["check", "--no-probe", "--select", "GL101"])
    assert result.exit_code == 1 and result.stdout.startswith("model.py:"), result.output
    (tmp_path / "pyproject.toml").write_text('[tool.gradlint]\noutput-format = "consice"\ntargets = ["model.py:DeepSigmoidMLP"]\n')
    bad = CliRunner().invoke(main, ["check", "--no-probe"])
    assert bad.exit_code == 2 and "Did you mean `concise`" in bad.output


def test_quiet_prints_the_findings_only() -> None:
    result = _check(SIGMOID, HEALTHY, "--select", "GL101", "-q")
    assert result.exit_code == 1
    assert "GL101" in result.stdout
    assert "Checked" not in result.stdout and "gradient profile" not in result.stdout and "no findings" not in result.stdout
    assert HEALTHY not in result.stdout
    assert _check(HEALTHY, "--select", "GL101", "-q").stdout == ""


def test_color_always_and_never() -> None:
    always = _check(SIGMOID, "--select", "GL101", "--color", "always")
    assert ANSI.search(always.stdout)
    never = _check(SIGMOID, "--select", "GL101", "--color", "never")
    assert not ANSI.search(never.stdout)
    plain = ANSI.sub("", always.stdout).splitlines()  # the same text (numbers vary: each run builds the model anew)
    assert [l[:8] for l in plain] == [l[:8] for l in never.stdout.splitlines()]


def test_statistics_as_ruff_prints_them() -> None:
    result = _check(SIGMOID, "fixtures/cases/mlp.py:MLP(depth=12, act='tanh')", "--select", "GL101,GL103", "--statistics")
    assert result.exit_code == 1
    rows = [l.split("\t") for l in result.stdout.splitlines()]
    assert rows and all(len(r) == 3 for r in rows), result.stdout
    counts = [int(r[0]) for r in rows]
    assert counts == sorted(counts, reverse=True)
    assert [rows[0][1].strip(), rows[0][2]] == ["GL101", "saturating-chain"] or any(r[1].strip() == "GL101" for r in rows)
    assert int(next(r for r in rows if r[1].strip() == "GL101")[0]) == 2
    as_json = json.loads(_check(SIGMOID, "--select", "GL101", "--statistics", "--output-format", "json").stdout)
    assert as_json == [{"code": "GL101", "name": "saturating-chain", "count": 1, "severity": as_json[0]["severity"]}]


def test_rule_is_an_alias_of_explain() -> None:
    rule = CliRunner().invoke(main, ["rule", "GL101"])
    explain = CliRunner().invoke(main, ["explain", "GL101"])
    assert rule.exit_code == 0 and rule.stdout == explain.stdout
    assert "error when" in ANSI.sub("", rule.stdout)  # the escalation, next to the severity


def test_rules_json_and_piped_table() -> None:
    rules = json.loads(CliRunner().invoke(main, ["rules", "--output-format", "json"]).stdout)
    by_code = {r["code"]: r for r in rules}
    assert by_code["GL101"]["severity"] == "warning" and "error when" in by_code["GL101"]["escalation"]
    assert by_code["GL103"]["options"]["min_log10"] == -3.0
    table = CliRunner().invoke(main, ["rules"]).stdout  # not a terminal: nothing truncated
    for rule in rules:
        assert re.search(rf"{rule['code']}\s+{re.escape(rule['name'])}\s", table), rule["name"]
    assert "downgraded to info" in table


def test_terminal_chart_shares_one_scale_and_agrees_with_the_verdict() -> None:
    from gradlint.pipeline import CheckOptions, check_target
    from gradlint.registry import all_rules, select_rules
    from gradlint.report import text
    from gradlint.report.bands import bands, scale

    options = CheckOptions(rules=select_rules(all_rules(), ["GL1"]), probe=False)
    healthy, broken = check_target(HEALTHY, options), check_target(SIGMOID, options)
    lines = bands()
    span = scale([healthy, broken], lines)
    alone, shared = text.profile_chart(healthy, lines=lines), text.profile_chart(healthy, span=span, lines=lines)
    longest = lambda chart: max(len(l.split(" ")[-1]) for l in chart.plain.splitlines()[1:])  # noqa: E731
    assert longest(shared) < longest(alone)  # beside the broken MLP, the healthy model's bars are short
    assert not any(span.style == "red" for span in shared.spans)  # no finding: never red
    assert any(span.style == "red" for span in text.profile_chart(broken, span=span, lines=lines).spans)
