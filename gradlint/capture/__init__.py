"""Capture stage: module + example inputs -> `ModelGraph`, trying each method until one follows the model."""

from __future__ import annotations

from typing import Any

from torch import nn

from gradlint.capture.common import CaptureFailed, training_mode
from gradlint.capture.eager import capture_eager
from gradlint.capture.export import capture_export
from gradlint.graph import ModelGraph
from gradlint.types import ErrorKind, GradlintError

METHODS = (("torch.export", capture_export), ("eager-recording", capture_eager))


def capture(model: nn.Module, inputs: tuple[Any, ...]) -> ModelGraph:
    """The model's graph in training mode, by the first method that works; earlier failures become notes."""
    failures: list[str] = []
    with training_mode(model):
        for name, method in METHODS:
            try:
                graph = method(model, inputs)
            except CaptureFailed as exc:
                failures.append(f"{name}: {exc}")
                continue
            graph.notes = [f"{f} (fell back to {graph.method})" for f in failures] + graph.notes
            graph.fallback = bool(failures)
            return graph
    raise GradlintError(
        ErrorKind.CAPTURE,
        "No capture method could follow the model's forward. " + "; ".join(failures)
        + ". Check that the forward runs on the example input (see --input), or pass --verbose for the traceback.",
    )


__all__ = ["capture", "CaptureFailed", "ModelGraph"]
