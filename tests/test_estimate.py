"""Each family of transfer rules against a measured forward/backward on a small case: the estimate's
per-layer profile must match the probe's within a tolerance, layer by layer."""

from __future__ import annotations

import math

import pytest
import torch

import gradlint
from gradlint.pipeline import TargetReport

CASES = {
    # target: (median tolerance, max tolerance) in decades
    "fixtures/estimator/ops.py:ConvGeometry": (0.1, 0.25),
    # Known limit: behind a global mean the gradient is the same at every position, so the four copies a
    # nearest upsampling makes add coherently (x16 in mean square, the estimate assumes x4): ~0.25 decades.
    # And conv `b` sees the max pool's positive mean through its 16 channels' realized weight sums, 2.3x below
    # mean field's fan_in * E[w^2] at this seed, so group norm's variance is overestimated (~0.06 decades). The
    # max pool's own statistics now reach `b` (they match the measurement); before, a max pool estimated
    # too low reached it and cancelled that error (median 0.29 then, 0.32 now).
    "fixtures/estimator/ops.py:PoolsAndNorms": (0.35, 0.4),
    "fixtures/estimator/ops.py:DenseConcat": (0.1, 0.2),
    "fixtures/estimator/ops.py:HandWrittenNorms": (0.15, 0.35),
    "fixtures/estimator/ops.py:SDPAEncoder": (0.15, 0.35),
    "fixtures/estimator/ops.py:Recurrent": (0.3, 0.5),
    "fixtures/cases/mlp.py:MLP(act='tanh', init='xavier')": (0.1, 0.2),
    "fixtures/cases/mlp.py:MLP(act='gelu', init='kaiming')": (0.1, 0.2),
    "fixtures/cases/mlp.py:MLP(act='selu', init='lecun')": (0.1, 0.2),
    "fixtures/cases/mlp.py:MLP(act='hardswish', init='kaiming')": (0.15, 0.3),  # drifts ~0.03 decades a layer
    "fixtures/cases/failures.py:DeepBNReLUMLP": (0.15, 0.3),
    # A skewed residual trunk (normalised branch + rectified skip) and consecutive ReLUs of one unit: with a
    # Gaussian trunk the estimate drifted above the probe with depth (median 0.15, max 0.23 decades).
    "fixtures/estimator/ops.py:BNResidualStack()": (0.05, 0.1),
}


def _errors(report: TargetReport) -> list[float]:
    assert report.ok, report.error and report.error.message
    assert report.estimate is not None and report.probe is not None
    measured = {p.module: p.log10_grad_rms for p in report.probe.profile}
    errors = []
    for entry in report.estimate.profile:
        probe = measured.get(entry.module)
        assert entry.log10_grad_rms is not None and math.isfinite(entry.log10_grad_rms), entry
        if probe is not None:
            errors.append(abs(entry.log10_grad_rms - probe))
    assert len(errors) == len(report.estimate.profile)
    return errors


@pytest.mark.parametrize("target", list(CASES), ids=[t.split(":")[-1] for t in CASES])
def test_estimate_matches_measurement(target: str) -> None:
    torch.manual_seed(0)  # the models draw their weights from the global RNG: make the case reproducible
    median_tol, max_tol = CASES[target]
    errors = sorted(_errors(gradlint.check(target, select=["GL101"])))
    median = errors[len(errors) // 2]
    assert median <= median_tol, f"median error {median:.3f} decades, errors {errors}"
    assert errors[-1] <= max_tol, f"max error {errors[-1]:.3f} decades"
    report = gradlint.check(target, select=["GL101"], probe=False)
    assert report.estimate is not None and not report.estimate.unknown_ops


@pytest.mark.parametrize("layer", ["conv", "linear"])
def test_a_filter_that_sums_to_zero_drops_the_input_mean(layer: str) -> None:
    """After a ReLU every input has mean 0.40; a standardised filter (rows summing to zero) lets none of it
    through, so the output's second moment is fan_in * E[w²] * Var(x), not fan_in * E[w²] * E[x²] (0.08
    decades lower in rms). Checked against the measured output, for a conv (3x3, with borders) and a linear."""
    from gradlint.estimate import estimate
    from gradlint.estimate.weights import WeightTable

    torch.manual_seed(0)
    base = torch.nn.Conv2d(32, 64, 3, padding=1, bias=False) if layer == "conv" else torch.nn.Linear(256, 64, bias=False)
    with torch.no_grad():
        flat = base.weight.reshape(base.weight.shape[0], -1)
        flat.sub_(flat.mean(dim=1, keepdim=True)).div_(flat.std(dim=1, keepdim=True))  # standardised in place

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = base

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layer(torch.relu(x))

    model = Net()
    x = torch.randn(16, 32, 8, 8) if layer == "conv" else torch.randn(512, 256)
    from gradlint.capture import capture

    graph = capture(model, (x,))
    est = estimate(graph, WeightTable(model), (x,))
    with torch.no_grad():
        measured = float(model(x).double().pow(2).mean())
    predicted = est.stats[graph.output].q
    assert abs(0.5 * math.log10(predicted / measured)) < 0.02, (predicted, measured)


def test_max_pool_after_relu_reaches_its_users() -> None:
    """relu -> max pool(3, stride 2, padding 1): the window maximum of a rectified Gaussian (9 values inside,
    fewer at the border), seen by the layer after it, whose batch norm divides the gradient by it."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
                                torch.nn.MaxPool2d(3, stride=2, padding=1), torch.nn.Conv2d(16, 16, 1),
                                torch.nn.BatchNorm2d(16))
    x = torch.randn(16, 3, 32, 32)
    report = gradlint.check(model, inputs=x, select=["GL101"], probe=False)
    assert report.estimate is not None and report.graph is not None
    pool = next(n.name for n in report.graph.ops() if n.op.startswith("max_pool"))
    conv = [layer.output for layer in report.graph.weighted_layers][-1]
    with torch.no_grad():
        pooled = model[:4](x)
        out = model[4](pooled)
    measured_q = float((pooled.double() ** 2).mean())
    measured_v = float(out.double().var(dim=(0, 2, 3), unbiased=False).mean())
    assert report.estimate.stats[pool].q == pytest.approx(measured_q, rel=0.05)
    assert report.estimate.stats[conv].v == pytest.approx(measured_v, rel=0.1)
