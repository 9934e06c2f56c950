"""gradlint on small randomly initialised Hugging Face models (fixtures/hf/models.py): models that plain
torch.fx symbolic tracing cannot follow, checked end to end through the JSON contract."""

from __future__ import annotations

import json
import math
import statistics
from typing import Any

import pytest

pytest.importorskip("transformers", reason="the optional `hf` extra (pip install gradlint[hf]) is not installed")

import jsonschema
from click.testing import CliRunner

from gradlint.cli import main

MODELS = ("bert", "gpt2", "llama", "t5", "bart", "whisper")
TARGETS = [f"fixtures/hf/models.py:{name}" for name in MODELS]
MAX_MEDIAN_DECADES = 0.5


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    """One run over all four targets, as a CI job would call it."""
    result = CliRunner().invoke(main, ["check", *TARGETS, "--format", "json"])
    assert result.exit_code in (0, 1), result.output  # 1 (a warning) is judged per target below
    return json.loads(result.stdout)


def _entry(report: dict[str, Any], target: str) -> dict[str, Any]:
    return next(t for t in report["targets"] if t["target"] == target)


def test_report_validates(report: dict[str, Any], report_schema: dict) -> None:
    jsonschema.validate(report, report_schema)
    assert [t["target"] for t in report["targets"]] == TARGETS
    assert report["summary"]["targets"] == len(TARGETS)


@pytest.mark.parametrize("target", TARGETS)
def test_captured_by_a_named_method(report: dict[str, Any], target: str) -> None:
    entry = _entry(report, target)
    assert entry["status"] == "ok", entry.get("error")
    assert entry["capture"]["method"] in ("torch.export", "eager-recording")
    assert entry["capture"]["weighted_layers"] >= 8


@pytest.mark.parametrize("target", TARGETS)
def test_every_weighted_layer_has_a_finite_estimate(report: dict[str, Any], target: str) -> None:
    entry = _entry(report, target)
    profile = entry["estimate"]["profile"]
    assert len(profile) == entry["capture"]["weighted_layers"]
    for layer in profile:
        assert layer["log10_grad_rms"] is not None and math.isfinite(layer["log10_grad_rms"]), layer


@pytest.mark.parametrize("target", TARGETS)
def test_estimate_agrees_with_probe(report: dict[str, Any], target: str) -> None:
    entry = _entry(report, target)
    assert entry["probe"] is not None, entry.get("probe_skipped")
    measured = {p["module"]: p["log10_grad_rms"] for p in entry["probe"]["profile"]}
    predicted = {p["module"]: p["log10_grad_rms"] for p in entry["estimate"]["profile"]}
    assert predicted.keys() == measured.keys()
    gaps = [abs(predicted[m] - measured[m]) for m in predicted]
    assert statistics.median(gaps) <= MAX_MEDIAN_DECADES, sorted(zip(gaps, predicted), reverse=True)[:5]


@pytest.mark.parametrize("target", TARGETS)
def test_healthy_architecture_has_no_warnings(report: dict[str, Any], target: str) -> None:
    loud = [f for f in _entry(report, target)["findings"] if f["severity"] in ("warning", "error")]
    assert not loud, loud
