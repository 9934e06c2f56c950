"""The Python API: `gradlint.check(model_or_target)`."""

from __future__ import annotations

import jsonschema
import pytest
import torch
from torch import nn

import gradlint
from gradlint.pipeline import TargetReport
from gradlint.types import ErrorKind, Finding, GradlintError

REQUIRED = ("target", "status", "findings", "capture", "estimate", "probe")


def _validate_entry(entry: dict, schema: dict) -> None:
    jsonschema.validate(entry, {**schema["$defs"]["target"], "$defs": schema["$defs"]})


def test_check_model_object(report_schema) -> None:
    model = nn.Sequential(*[m for _ in range(12) for m in (nn.Linear(16, 16), nn.Sigmoid())], nn.Linear(16, 2))
    report = gradlint.check(model, probe=False)
    assert isinstance(report, TargetReport) and report.ok
    assert report.target == "Sequential"
    assert all(isinstance(f, Finding) for f in report.findings)
    assert any(f.rule == "GL101" for f in report.findings)
    entry = report.to_dict()
    _validate_entry(entry, report_schema)
    for key in REQUIRED:
        assert key in entry
    assert entry["status"] == "ok" and entry["probe"] is None
    assert len(entry["estimate"]["profile"]) == 13


def test_check_target_string_with_probe(report_schema) -> None:
    report = gradlint.check("fixtures/tests/core_models.py:TinyMLP(depth=3)")
    assert report.ok
    entry = report.to_dict()
    _validate_entry(entry, report_schema)
    assert entry["target"] == "fixtures/tests/core_models.py:TinyMLP(depth=3)"
    assert entry["probe"] is not None and len(entry["probe"]["profile"]) == 4
    assert entry["capture"]["input"].startswith("inferred")


def test_tensor_inputs_are_used() -> None:
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2))
    x = torch.randn(3, 7, 5)
    report = gradlint.check(model, inputs=x, probe=False)
    assert report.ok and report.input_source == "given"
    first = report.graph[report.graph.weighted_layers[0].output]
    assert first.shape == (3, 7, 4)


def test_tuple_and_shape_string_inputs() -> None:
    model = nn.Bilinear(3, 4, 2)
    report = gradlint.check(model, inputs=(torch.ones(6, 3), torch.ones(6, 4)), probe=False)
    assert report.ok and report.graph[report.graph.output].shape == (6, 2)
    report = gradlint.check(nn.Linear(5, 2), inputs="float32[9,5]", probe=False)
    assert report.ok and report.input_source == "--input"
    assert report.graph[report.graph.output].shape == (9, 2)


def test_select_and_ignore() -> None:
    model = nn.Sequential(*[m for _ in range(12) for m in (nn.Linear(16, 16), nn.Sigmoid())])
    only = gradlint.check(model, probe=False, select=["GL101"]).findings
    assert only and {f.rule for f in only} == {"GL101"}
    assert "GL101" not in {f.rule for f in gradlint.check(model, probe=False, ignore=["GL101"]).findings}


def test_errors_are_reported_not_raised(report_schema) -> None:
    report = gradlint.check(nn.ReLU())
    assert not report.ok and report.error.kind is ErrorKind.CONSTRUCT
    entry = report.to_dict()
    _validate_entry(entry, report_schema)
    assert entry["status"] == "error" and entry["error"]["kind"] == "construct"
    lstm = gradlint.check(nn.Sequential(nn.LSTM(3, 4)), probe=False)
    assert lstm.error is not None and lstm.error.kind is ErrorKind.INPUT
    missing = gradlint.check("fixtures/tests/missing.py:Net", probe=False)
    assert missing.error is not None and missing.error.kind is ErrorKind.LOAD


def test_unknown_selector_raises() -> None:
    with pytest.raises(GradlintError) as info:
        gradlint.check(nn.Linear(2, 2), select=["GL999"], probe=False)
    assert "GL999" in info.value.message


def test_notebook_views() -> None:
    model = nn.Sequential(*[m for _ in range(12) for m in (nn.Linear(16, 16), nn.Sigmoid())], nn.Linear(16, 2))
    report = gradlint.check(model, probe=False)
    short = repr(report)
    assert short.startswith("<gradlint report 'Sequential': ") and "error" in short and len(short) < 200
    assert "13 weighted layers" in short
    page = report._repr_html_()
    assert page.startswith('<div class="gradlint-report">') and "<svg" in page and "GL101" in page
    assert "<html" not in page and "body{" not in page  # inline, styles scoped to the report
    rendered = str(report)
    assert "GL101" in rendered and "gradient profile" in rendered and "\x1b[" not in rendered
    assert any(len(line) > 100 for line in rendered.splitlines())  # not wrapped
    failed = gradlint.check("fixtures/tests/missing.py:Net", probe=False)
    assert repr(failed) == "<gradlint report 'fixtures/tests/missing.py:Net': error (load)>"
