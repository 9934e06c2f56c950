"""`report.plot()`: the profile as a matplotlib figure with the same numbers as the report."""

from __future__ import annotations

import pytest

import gradlint
from gradlint.types import GradlintError

matplotlib = pytest.importorskip("matplotlib", reason="report.plot() needs the plot extra (matplotlib)")
matplotlib.use("Agg")


def test_plot_draws_the_estimate_probe_and_thresholds() -> None:
    report = gradlint.check("fixtures/zoo/deep_sigmoid.py:DeepSigmoidMLP")
    ax = report.plot()
    estimate, probe = ax.lines[0], ax.lines[1]
    assert list(estimate.get_ydata()) == pytest.approx([r.log10_grad_rms for r in report.estimate.profile], abs=1e-4)
    assert list(probe.get_ydata()) == pytest.approx([r.log10_grad_rms for r in report.probe.profile], abs=1e-4)
    from gradlint.registry import find_rule, all_rules

    dashed = [line.get_ydata()[0] for line in ax.lines[2:]]
    rules = all_rules()
    assert dashed == [find_rule(rules, "GL103").options["min_log10"], find_rule(rules, "GL201").options["max_log10"]]
    assert next(t.get_text() for t in ax.get_xticklabels()) == "net.0"


def test_plot_of_a_failed_report_says_why() -> None:
    report = gradlint.check("fixtures/bad/import_error.py:Net")
    with pytest.raises(GradlintError, match="Nothing to plot"):
        report.plot()
