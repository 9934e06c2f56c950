"""`report.plot()` in a notebook: the gradient profile as a matplotlib figure (the `plot` extra), the same
picture as the HTML chart: estimate as a line, probe as points, the rules' thresholds as dashed lines."""

from __future__ import annotations

from typing import Any

from gradlint.report.bands import bands
from gradlint.report.entry import as_entry
from gradlint.types import ErrorKind, GradlintError

INSTALL_HINT = 'report.plot() needs matplotlib, an optional extra: pip install "gradlint[plot]".'


def profile_axes(report: Any, ax: Any = None, thresholds: dict[str, dict[str, Any]] | None = None) -> Any:
    """Draw `report`'s profile on `ax` (a new figure's axes when None) and return the axes."""
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise GradlintError(ErrorKind.INPUT, INSTALL_HINT) from None
    entry = as_entry(report)
    if entry.estimate is None:
        why = entry.error.message if entry.error is not None else "the report has no estimate"
        raise GradlintError(ErrorKind.INPUT, f"Nothing to plot for {entry.target}: {why}")
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.5))
    rows = entry.estimate.profile
    x = list(range(len(rows)))
    ax.plot(x, [r.log10_grad_rms for r in rows], color="#1f5fbf", label="estimate")
    probe = {r.module: r.log10_grad_rms for r in entry.probe.profile} if entry.probe is not None else {}
    measured = [(i, probe[r.module]) for i, r in enumerate(rows) if probe.get(r.module) is not None]
    if measured:
        ax.plot([i for i, _ in measured], [v for _, v in measured], "o", color="#c0392b", fillstyle="none", label="probe")
    lines = bands(None, thresholds)
    for line, colour in ((lines.vanish, "#c0392b"), (lines.explode, "#a15c00")):
        ax.axhline(line.value, linestyle="--", color=colour, linewidth=1, label=f"{line.rule} {line.option} {line.value:+g}")
    ax.set_xticks(x)
    ax.set_xticklabels([r.module for r in rows], rotation=90, fontsize=7)
    ax.set_ylabel("log10 gradient RMS\n(relative to the output)")
    ax.set_title(entry.target)
    ax.legend(fontsize=7, loc="best")
    return ax
