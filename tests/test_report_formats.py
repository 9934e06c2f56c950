"""Every output format is a view of the JSON contract; JSON validates against the schema."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner, Result

from gradlint.cli import main

MODELS = "fixtures/tests/core_models.py"
TARGETS = [
    f"{MODELS}:TinyMLP",  # inferred input
    f"{MODELS}:WithExample",  # example_input_array
    f"{MODELS}:make_mlp(width=5)",  # factory, call syntax
    f"{MODELS}:TinyMLP(depth=3, width=4)",  # class, call syntax
    f"{MODELS}:Branchy",  # value-dependent branch: eager-recording fallback
]


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, ["check", *args])


@pytest.fixture(scope="module")
def json_run() -> tuple[int, dict]:
    result = _run(*TARGETS, "--format", "json")
    return result.exit_code, json.loads(result.stdout)


def test_json_validates_with_probe(json_run, report_schema) -> None:
    code, report = json_run
    jsonschema.validate(report, report_schema)
    assert code in (0, 1)
    assert [t["target"] for t in report["targets"]] == TARGETS
    assert all(t["status"] == "ok" for t in report["targets"])
    assert report["summary"]["targets"] == len(TARGETS) and report["summary"]["errors"] == 0
    by_name = {t["target"]: t for t in report["targets"]}
    assert by_name[f"{MODELS}:WithExample"]["capture"]["input"] == "example_input_array"
    assert by_name[f"{MODELS}:TinyMLP"]["capture"]["input"].startswith("inferred from net.0")
    assert by_name[f"{MODELS}:Branchy"]["capture"]["method"] == "eager-recording"
    assert by_name[f"{MODELS}:Branchy"]["capture"]["fallback"] is True
    for t in report["targets"]:
        assert t["probe"] is not None
        assert [p["module"] for p in t["estimate"]["profile"]] == [p["module"] for p in t["probe"]["profile"]]
        assert t["estimate"]["log10_grad_ratio"] == t["estimate"]["profile"][0]["log10_grad_rms"]
    assert [p["module"] for p in by_name[f"{MODELS}:TinyMLP(depth=3, width=4)"]["estimate"]["profile"]] == [
        "net.0", "net.2", "net.4", "net.6"]


def test_summary_counts_findings(json_run) -> None:
    _, report = json_run
    for severity, count in report["summary"]["findings"].items():
        assert count == sum(f["severity"] == severity for t in report["targets"] for f in t["findings"])


def test_broken_target_in_the_middle(report_schema) -> None:
    targets = [f"{MODELS}:TinyMLP", "fixtures/tests/missing.py:Net", f"{MODELS}:LSTMFirst", f"{MODELS}:WithExample"]
    result = _run(*targets, "--format", "json", "--no-probe")
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    jsonschema.validate(report, report_schema)
    assert [t["status"] for t in report["targets"]] == ["ok", "error", "error", "ok"]
    assert [t.get("error", {}).get("kind") for t in report["targets"]] == [None, "load", "input", None]
    assert report["summary"]["errors"] == 2
    assert report["targets"][3]["estimate"]["profile"]
    assert "missing.py" in result.stderr


@pytest.fixture(scope="module")
def warning_rule(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fmt_rules")
    (folder / "GL903_always.py").write_text(
        "from gradlint.rule import Rule\nfrom gradlint.types import Severity\n\n\n"
        "class AlwaysWarn(Rule):\n"
        "    code = 'GL903'\n    name = 'always-warn'\n    severity = Severity.WARNING\n"
        "    summary = 'Always warns.'\n    why = 'Tests need a finding.'\n    fix = 'None.'\n\n"
        "    def check(self, ctx):\n"
        "        layer = ctx.graph.weighted_layers[0]\n"
        "        yield self.finding(ctx, layer.module, 'first layer, with a comma, a colon: and 100% text')\n"
    )
    return folder


def test_sarif(warning_rule: Path) -> None:
    result = _run("fixtures/zoo/deep_sigmoid.py:DeepSigmoidMLP", f"{MODELS}:TinyMLP", "--rule-dir", str(warning_rule),
                  "--select", "GL101,GL903", "--no-probe", "--format", "sarif")
    assert result.exit_code == 1
    sarif = json.loads(result.stdout)
    assert sarif["version"] == "2.1.0"
    (run,) = sarif["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "gradlint"
    assert sorted(r["id"] for r in driver["rules"]) == ["GL101", "GL903"]
    for rule in driver["rules"]:
        for key in ("shortDescription", "fullDescription", "help"):
            assert rule[key]["text"]
    results = run["results"]
    assert {r["ruleId"] for r in results} == {"GL101", "GL903"}
    for r in results:
        assert r["level"] in ("error", "warning", "note") and r["message"]["text"]
        (loc,) = r["locations"]
        uri = loc["physicalLocation"]["artifactLocation"]["uri"]
        line = loc["physicalLocation"]["region"]["startLine"]
        assert uri in ("fixtures/zoo/deep_sigmoid.py", MODELS)  # relative to the repo root
        assert isinstance(line, int) and 1 <= line <= len(Path(uri).read_text().splitlines())
    gl903 = [r for r in results if r["ruleId"] == "GL903"]
    assert [r["level"] for r in gl903] == ["warning", "warning"]
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in gl903}
    assert uris == {"fixtures/zoo/deep_sigmoid.py", MODELS}


def test_github(warning_rule: Path) -> None:
    result = _run(f"{MODELS}:TinyMLP", "--rule-dir", str(warning_rule), "--select", "GL903", "--no-probe",
                  "--format", "github")
    assert result.exit_code == 1
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    match = re.fullmatch(r"::warning file=(?P<file>[^,]+),line=(?P<line>\d+),title=(?P<title>[^:]+)::(?P<msg>.+)", lines[0])
    assert match, lines[0]
    assert match["file"] == MODELS and int(match["line"]) > 0
    assert match["title"] == "GL903 always-warn"
    assert "100%25 text" in match["msg"]  # workflow-command escaping


def test_github_reports_target_errors() -> None:
    result = _run("fixtures/tests/missing.py:Net", "--no-probe", "--format", "github")
    assert result.exit_code == 2
    assert result.stdout.startswith("::error ")


@pytest.mark.parametrize("fmt", ["json", "sarif", "github", "text"])
def test_output_file(tmp_path: Path, fmt: str, warning_rule: Path) -> None:
    out = tmp_path / f"report.{fmt}"
    result = _run(f"{MODELS}:TinyMLP", "--rule-dir", str(warning_rule), "--select", "GL903", "--no-probe",
                  "--format", fmt, "-o", str(out))
    assert result.exit_code == 1
    assert result.stdout == ""
    body = out.read_text()
    assert "GL903" in body
    if fmt == "json":
        assert json.loads(body)["targets"][0]["findings"][0]["rule"] == "GL903"
    if fmt == "text":
        assert "Checked 1 target" in body and "\x1b[" not in body
