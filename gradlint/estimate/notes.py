"""What the estimator records beside its numbers: typed notes per node, and every transfer rule that
failed and what the estimate used instead (GL001 reports those; nothing is swallowed silently)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TransferFailure:
    """One op whose transfer rule raised: the estimate fell back to `fallback` there."""

    node: str
    op: str
    stage: str  # what failed: "transfer rule", "pointwise composite", "derivative shape", "max-pool window"
    error: str  # "TypeError: ..."
    fallback: str  # what the estimate used instead

    @classmethod
    def of(cls, node: str, op: str, stage: str, exc: BaseException, fallback: str) -> TransferFailure:
        return cls(node, op, stage, f"{type(exc).__name__}: {exc}"[:300], fallback)

    def describe(self) -> str:
        return f"`{self.op}` ({self.stage}) raised {self.error}; the estimate used {self.fallback} there"
