"""The real-world zoo (fixtures/real/): every torchvision classification model, a broad timm sample and
transformers architectures of every kind, built at their libraries' defaults with no downloads.

Each model must be read (status ok), estimated at every weighted layer, and estimated within 0.25 decades
of the probe at the median layer. Models that fail today are `xfail(strict=True)` with the measured cause
(bench/zoo.py measures them; /work-independent notes in KNOWN_FAILURES): when a fix lands the test passes,
strict xfail turns that into a failure, and the entry must be deleted, so nothing stays hidden.

Run with `python -m pytest -m zoo` in an environment with the `zoo` extra (torchvision, timm, transformers);
without a library its models are skipped with the reason.
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "fixtures" / "real"))

from catalog import ZooModel, all_models, is_estimated, layer_gaps, options_for  # noqa: E402

from gradlint.pipeline import check_target  # noqa: E402

pytestmark = pytest.mark.zoo

MAX_MEDIAN_DECADES = 0.25
LIBRARIES = ("torchvision", "timm", "transformers")

# Measured on the current code by bench/zoo.py: model id -> why it fails. Delete an entry when its test passes.
KNOWN_FAILURES: dict[str, str] = {}


def _params() -> list[object]:
    params: list[object] = []
    for library in LIBRARIES:
        if importlib.util.find_spec(library) is None:
            reason = f"{library} is not installed: pip install -e '.[zoo]' (beside torch==2.14.1 torchvision==0.29.1)"
            params.append(pytest.param(None, id=f"{library}:absent", marks=pytest.mark.skip(reason=reason)))
            continue
        for model in all_models((library,)):
            marks = [pytest.mark.xfail(strict=True, reason=KNOWN_FAILURES[model.id])] if model.id in KNOWN_FAILURES else []
            params.append(pytest.param(model, id=model.id, marks=marks))
    return params


@pytest.mark.parametrize("model", _params())
def test_model_is_read_estimated_and_agrees_with_the_probe(model: ZooModel, record_property) -> None:  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = check_target(model.target, options_for(model))
    assert report.ok, f"{report.error.kind.value} error: {report.error.message}"
    assert report.graph is not None and report.estimate is not None
    weighted = [layer.module for layer in report.graph.weighted_layers]
    assert weighted, "no weighted layer captured"
    assert [p.module for p in report.estimate.profile] == weighted
    unestimated = [p.module for p in report.estimate.profile if not is_estimated(p)]
    assert not unestimated, f"{len(unestimated)} of {len(weighted)} weighted layers have no estimate: {unestimated[:5]}"
    assert report.probe is not None and report.probe.skipped is None, report.probe and report.probe.skipped
    measured = {p.module for p in report.probe.profile if p.zero or p.log10_grad_rms is not None}
    assert measured == set(weighted), f"the probe has no number for {sorted(set(weighted) - measured)[:5]}"
    gaps = layer_gaps(report)  # layers both sides find exactly zero agree and are left out of the median
    median = statistics.median(gaps.values()) if gaps else 0.0
    record_property("median_error_decades", round(median, 4))
    worst = sorted(gaps.items(), key=lambda kv: -kv[1])[:5]
    assert median <= MAX_MEDIAN_DECADES, f"median |estimate - probe| {median:.2f} decades; worst layers {worst}"
