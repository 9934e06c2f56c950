"""gradlint: find vanishing and exploding gradients in PyTorch models before training."""

from __future__ import annotations

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gradlint.api import check
    from gradlint.monitoring import Monitor, monitor

__all__ = ["Monitor", "__version__", "check", "monitor"]


def __getattr__(name: str) -> Any:
    """`gradlint.check` imports torch on first use, so the command line can find its targets (and exit
    when a commit touches none) without paying for `import torch`."""
    if name == "check":
        from gradlint.api import check

        return check
    if name in ("monitor", "Monitor"):
        from gradlint import monitoring

        return getattr(monitoring, name)
    raise AttributeError(f"module 'gradlint' has no attribute {name!r}")
