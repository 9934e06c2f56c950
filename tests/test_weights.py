"""A model on the meta device is judged by the weight statistics its recorded init implies: they must
match the measured statistics of the same model built for real."""

from __future__ import annotations

import pytest

from gradlint.load import load_target, restored_interpreter_state
from gradlint.estimate.weights import WeightTable


def _table(target: str) -> tuple[WeightTable, list[str]]:
    with restored_interpreter_state():
        loaded = load_target(target)
    return WeightTable(loaded.model, loaded.record), [n for n, _ in loaded.model.named_parameters()]


def test_meta_init_statistics_match_a_real_build() -> None:
    meta, names = _table("fixtures/estimator/inits.py:on_meta")
    real, _ = _table("fixtures/estimator/inits.py:on_cpu")
    for name in names:
        expected, got = real.stats(name), meta.stats(name)
        assert got.source != "measured", name
        numel = real.tensor(name).numel()
        tolerance = max(0.08, 4.0 / numel ** 0.5)  # sampling noise of a measured second moment
        assert got.second == pytest.approx(expected.second, rel=tolerance, abs=1e-6), (name, got, expected)
        assert got.mean == pytest.approx(expected.mean, abs=4.0 * (got.second / numel) ** 0.5 + 1e-6), name


def test_recorded_init_is_named_in_the_source() -> None:
    meta, _ = _table("fixtures/estimator/inits.py:on_meta")
    assert meta.stats("kaiming.weight").source == "init:kaiming_normal_"
    assert meta.stats("raw.weight").source == "init:normal_"  # `.data.normal_` seen through the alias
    assert meta.stats("default.weight").source == "init:kaiming_uniform_"  # nn.Linear's own reset_parameters
