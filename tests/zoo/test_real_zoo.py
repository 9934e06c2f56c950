"""The real-world zoo (fixtures/real/): every torchvision classification model, a broad timm sample and
transformers architectures of every kind, built at their libraries' defaults with no downloads.

Each model must be read (status ok), estimated at every weighted layer, and estimated within 0.25 decades
of the probe at the median layer (over the layers not exactly zero on both sides). Models above gradlint's
probe budget (--probe-max-params, 200M parameters) are checked up to the estimate and then skipped.

Models that fail today are `xfail(strict=True)` with the cause bench/zoo.py measured (KNOWN_FAILURES): when a
fix lands the test passes, strict xfail turns that into a failure, and the entry must be deleted, so nothing
stays hidden.

Run with `python -m pytest -m zoo` in an environment with the `zoo` extra (torchvision, timm, transformers);
without a library its models are skipped with the reason.
"""

from __future__ import annotations

import gc
import importlib.util
import statistics
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "fixtures" / "real"))

from catalog import ZooModel, all_models, is_estimated, layer_gaps, options_for, seeded  # noqa: E402

from gradlint.pipeline import check_target  # noqa: E402

pytestmark = pytest.mark.zoo

MAX_MEDIAN_DECADES = 0.25
LIBRARIES = ("torchvision", "timm", "transformers")

# Measured by bench/zoo.py (seeded) on main at 034471e, then re-measured through this test after the estimator work (2026-12-02): model id -> why it fails. Delete an entry when its
# test passes (strict xfail makes the passing test fail until then).
KNOWN_FAILURES: dict[str, str] = {
    'timm:mvitv2_tiny': 'estimate vs probe: median |error| 0.27 decades (limit 0.25; 0.55 before the class-token readout); the pooled-attention pool_v convolutions are 0.9-1.2 decades low',
    'transformers:rwkv': '10 of 16 weighted layers have no estimate: the log-sum-exp state (x - running max, exp) needs value ranges beside the moments',
    'timm:efficientvit_b0': 'estimate above the probe: median |error| 0.77 decades (limit 0.25; re-measured 2026-12-02, mechanism not located)',
    'timm:inception_next_tiny': 'estimate below the probe: median |error| 1.15 decades (limit 0.25)',
    'timm:levit_128s': 'estimate above the probe: median |error| 0.29 decades (limit 0.25; re-measured 2026-12-02, mechanism not located)',
    'timm:resnet50d': 'estimate above the probe: median |error| 0.54 decades (limit 0.25); zero-initialised last BN gains leave 8 layers, the stem and the avg-pool downsample convs, whose batch norms see the pool of spatially correlated values as if independent (variance / k)',
    'torchvision:resnet152': 'estimate vs probe: median |error| 0.25 decades, at the limit (0.54 before the skewed-trunk and max-pool fixes; 0.2499 before the class-token readout merge); the rest is a negative drift of about -0.01 decades a block in layer3: runs of ReLUs that keep one unit on across more than two blocks are not modelled, only pairs',
    'torchvision:swin_v2_s': 'estimate below the probe: median |error| 0.31 decades (no layer is zero since drop path got its statistics); forward moments match, the backward gap grows about 0.05 decades a block (0.7 at the stem) through the cosine attention (F.normalize of q and k, logits times an exp logit scale of 10, softmax backward)',
    'transformers:falcon_mamba': 'estimate below the probe: median |error| 2.16 decades (limit 0.25)',
    'transformers:olmo2': 'estimate above the probe: median |error| 0.43 decades (limit 0.25)',
    'transformers:qwen3_moe': 'median |error| 0.39 decades: q_proj/k_proj 0.45-0.6 above, from the QK-norm (RMSNorm over head_dim 16): rsqrt of a mean of 16 squares is judged as if that mean were Gaussian, so E[rsqrt\'^2] is dominated by a tail near zero the mean never reaches (grad at the mean 10^2.1 vs 10^1.2 measured); the mlp.gate entries stay exactly zero because the graph takes the router\'s first tensor leaving the module (the int64 top-k indices) as its output, while the probe measures router_logits, which the module returns first but uses only inside',
}


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


@pytest.fixture(autouse=True)
def _release_models() -> Iterator[None]:
    """Each model (hundreds of MB for the large ones) is freed before the next: two workers run ~100 each."""
    yield
    gc.collect()


@pytest.mark.parametrize("model", _params())
def test_model_is_read_estimated_and_agrees_with_the_probe(model: ZooModel, record_property) -> None:  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        options = options_for(model)
        seeded()
        report = check_target(model.target, options)
    assert report.ok, f"{report.error.kind.value} error: {report.error.message}"
    assert report.graph is not None and report.estimate is not None
    weighted = [layer.module for layer in report.graph.weighted_layers]
    assert weighted, "no weighted layer captured"
    assert [p.module for p in report.estimate.profile] == weighted
    unestimated = [p.module for p in report.estimate.profile if not is_estimated(p)]
    assert not unestimated, f"{len(unestimated)} of {len(weighted)} weighted layers have no estimate: {unestimated[:5]}"
    assert report.probe is not None
    if options.probe_max_params is not None and report.parameters > options.probe_max_params:
        pytest.skip(f"read and estimated; no probe to compare with: {report.probe.skipped}")
    assert report.probe.skipped is None, report.probe.skipped
    measured = {p.module for p in report.probe.profile if p.zero or p.log10_grad_rms is not None}
    assert measured == set(weighted), f"the probe has no number for {sorted(set(weighted) - measured)[:5]}"
    gaps = layer_gaps(report)  # layers both sides find exactly zero agree and are left out of the median
    median = statistics.median(gaps.values()) if gaps else 0.0
    record_property("median_error_decades", round(median, 4))
    worst = sorted(gaps.items(), key=lambda kv: -kv[1])[:5]
    assert median <= MAX_MEDIAN_DECADES, f"median |estimate - probe| {median:.2f} decades; worst layers {worst}"
