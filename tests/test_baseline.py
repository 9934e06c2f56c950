"""`--write-baseline` records findings by target, rule and module (no lines); `--baseline` reports only
the rest and says how many were baselined."""

from __future__ import annotations

import json
from pathlib import Path
from textwrap import dedent

from click.testing import CliRunner

from gradlint import baseline
from gradlint.cli import main
from gradlint.pipeline import TargetReport
from gradlint.types import Finding, Risk, Severity

SIGMOID = "fixtures/zoo/deep_sigmoid.py:DeepSigmoidMLP"
TANH = "fixtures/cases/mlp.py:MLP(depth=24, act='tanh')"  # fails even with Adam (bench/trainability.py)
MODEL = """
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(*[m for _ in range(12) for m in (nn.Linear(32, 32), nn.Sigmoid())])

    def forward(self, x):
        return self.net(x)
"""


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["check", "--no-probe", "--select", "GL101", *args])  # click >= 8.2 keeps stderr apart
    return result.exit_code, result.stdout, result.stderr


def test_write_baseline_records_rule_and_module_without_lines(tmp_path: Path) -> None:
    file = tmp_path / "baseline.json"
    code, _, err = _run(SIGMOID, "--write-baseline", str(file))
    assert code == 0
    assert "Wrote 1 finding to baseline" in err
    document = json.loads(file.read_text())
    magnitude = document.pop("magnitudes")[SIGMOID]["GL101"]["net.1"]
    assert document == {"gradlint_baseline": 1, "targets": {SIGMOID: {"GL101": {"net.1": 1}}}}
    assert magnitude > 5  # decades the chain loses, from the finding's evidence


def test_baseline_hides_known_findings_and_reports_new_ones(tmp_path: Path) -> None:
    file = tmp_path / "baseline.json"
    assert _run(SIGMOID, "--write-baseline", str(file))[0] == 0
    code, out, err = _run(SIGMOID, TANH, "--baseline", str(file), "--format", "json")
    assert code == 1
    assert "1 finding baselined" in err
    targets = {t["target"]: [f["rule"] for f in t["findings"]] for t in json.loads(out)["targets"]}
    assert targets[SIGMOID] == []
    assert targets[TANH] == ["GL101"]


def test_baseline_survives_line_shifts(tmp_path: Path) -> None:
    model = tmp_path / "model.py"
    model.write_text(dedent(MODEL))
    target, file = f"{model}:Net", tmp_path / "baseline.json"
    assert _run(target, "--write-baseline", str(file))[0] == 0
    model.write_text("# a new header\n\n\n" + dedent(MODEL))
    code, _, err = _run(target, "--baseline", str(file))
    assert code == 0, err
    assert "1 finding baselined" in err


def test_missing_or_foreign_baseline_is_a_usage_error(tmp_path: Path) -> None:
    assert _run(SIGMOID, "--baseline", str(tmp_path / "nope.json"))[0] == 2
    foreign = tmp_path / "other.json"
    foreign.write_text('{"results": []}')
    code, _, err = _run(SIGMOID, "--baseline", str(foreign))
    assert code == 2
    assert "not a gradlint baseline" in err


def _finding(module: str) -> Finding:
    return Finding("GL101", "saturating-chain", Severity.WARNING, Risk.VANISHING, "m", module, "f.py", 3)


def test_extra_findings_beyond_the_baselined_count_are_kept() -> None:
    report = TargetReport("t", findings=[_finding("a"), _finding("a"), _finding("b")])
    known = baseline.load_document(baseline.build([TargetReport("t", findings=[_finding("a")])]))
    assert baseline.apply([report], known) == 1
    assert [f.module for f in report.findings] == ["a", "b"]


def test_baselined_finding_is_reported_again_when_materially_worse(tmp_path: Path) -> None:
    """24 -> 60 saturating layers must not stay baselined: a finding `WORSE_BY` decades beyond its recorded
    magnitude is reported again; a small drift (one more layer) stays baselined."""
    model = tmp_path / "model.py"
    model.write_text(dedent(MODEL).replace("range(12)", "range(DEPTH)").replace("from torch import nn", "from torch import nn\nDEPTH = 12"))
    target, file = f"{model}:Net", tmp_path / "baseline.json"
    assert _run(target, "--write-baseline", str(file))[0] == 0
    recorded = json.loads(file.read_text())["magnitudes"][target]["GL101"]["net.1"]
    model.write_text(model.read_text().replace("DEPTH = 12", "DEPTH = 13"))
    code, _, err = _run(target, "--baseline", str(file))
    assert code == 0 and "1 finding baselined" in err
    model.write_text(model.read_text().replace("DEPTH = 13", "DEPTH = 30"))
    code, out, err = _run(target, "--baseline", str(file), "--format", "json")
    assert code == 1, err
    (finding,) = json.loads(out)["targets"][0]["findings"]
    assert finding["evidence"]["baseline_magnitude"] == recorded
    assert abs(finding["evidence"]["estimated_decades"]) >= recorded + baseline.WORSE_BY
    assert "reported again" in finding["message"]
