"""gradlint: find vanishing and exploding gradients in PyTorch models before training."""

from __future__ import annotations

__version__ = "0.1.0"

from gradlint.api import check  # noqa: E402

__all__ = ["check", "__version__"]
