"""What a report looks like in a notebook or a REPL: a one-line `repr` (not a 28 KB dataclass dump), the
HTML report inline (`_repr_html_`), and the terminal text (`str(report)`, `report.to_text()`)."""

from __future__ import annotations

import io
from dataclasses import dataclass, fields
from typing import Any

from rich.console import Console

from gradlint.pipeline import TargetReport
from gradlint.types import Severity


@dataclass(repr=False, eq=False)
class NotebookReport(TargetReport):
    """A TargetReport with notebook views; `gradlint.check` returns one."""

    @classmethod
    def of(cls, report: TargetReport) -> NotebookReport:
        if isinstance(report, cls):
            return report
        return cls(**{f.name: getattr(report, f.name) for f in fields(TargetReport)})

    def __repr__(self) -> str:
        if self.error is not None:
            return f"<gradlint report {self.target!r}: error ({self.error.kind.value})>"
        counts = {s: sum(1 for f in self.findings if f.severity is s) for s in Severity}
        found = ", ".join(f"{n} {s.value}{'s' if n != 1 and s is not Severity.INFO else ''}" for s, n in counts.items() if n) or "no findings"
        layers = f", {len(self.graph.weighted_layers)} weighted layers" if self.graph is not None else ""
        ratio = self.estimate.log10_grad_ratio if self.estimate is not None else None
        shown = f", first-layer gradient 10^{ratio:.1f}" if ratio is not None else ""
        return f"<gradlint report {self.target!r}: {found}{layers}{shown}>"

    def _repr_html_(self) -> str:
        from gradlint.report import html

        return html.fragment([self])

    def to_text(self, width: int | None = None, profile: bool = True) -> str:
        """The `gradlint check` text view of this report, without colour; lines unwrapped unless `width`."""
        from gradlint.report import text

        buffer = io.StringIO()
        console = Console(file=buffer, width=width or 10_000, soft_wrap=width is None, no_color=True, highlight=False)
        text.render([self], console, show_profile=profile)
        return buffer.getvalue()

    def __str__(self) -> str:
        return self.to_text()

    def plot(self, ax: Any = None) -> Any:
        """The gradient profile as a matplotlib figure (needs the `plot` extra); returns the axes."""
        from gradlint.report.figure import profile_axes

        return profile_axes(self, ax)
