"""Plain data types shared by every stage; no behaviour beyond (de)serialisation."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any


class Severity(str, enum.Enum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        return {"info": 0, "warning": 1, "error": 2}[self.value]


class Risk(str, enum.Enum):
    VANISHING = "vanishing"
    EXPLODING = "exploding"
    DEAD_UNITS = "dead-units"
    OTHER = "other"


class Family(str, enum.Enum):
    """What an op does to the signal, as rules need to know it. Whether a pointwise function saturates or
    rectifies is not declared: the estimator measures it from φ itself (`PointwiseInfo.shape`)."""

    WEIGHTED = "weighted"  # a layer's own weight times the signal: linear, convolutions, embedding
    MATMUL = "matmul"  # two tensors multiplied and summed over a shared dimension: matmul, bmm, einsum, addmm
    NORMALISATION = "normalisation"  # divides by the input's own scale: batch/layer/group/instance/RMS norm
    POINTWISE = "pointwise"  # an elementwise function of one tensor (activations, exp, pow): judged as φ(h)
    SUM = "sum"  # elementwise sum of tensors: add, sub (a skip connection, a bias)
    PRODUCT = "product"  # elementwise product or quotient: mul, div (a gate, a scale)
    SELECT = "select"  # picks one of its inputs per element: where, maximum, minimum
    MAX_POOLING = "max pooling"  # each window's largest value
    AVERAGE_POOLING = "average pooling"  # each window's mean
    RESAMPLING = "resampling"  # upsampling and interpolation
    REDUCTION = "reduction"  # a statistic over dimensions: mean, sum, var, norm, max over a dim, cumsum
    SOFTMAX = "softmax"  # normalised exponentials over a dimension
    ATTENTION = "attention"  # fused scaled-dot-product attention
    RECURRENT = "recurrent"  # a whole recurrent layer as one op: RNN, LSTM, GRU
    DROPOUT = "dropout"  # random masking, rescaled
    STRUCTURAL = "structural"  # moves values without arithmetic: views, copies, casts, selections, splits, padding
    CONCATENATION = "concatenation"  # several tensors joined into one: cat, stack
    WRITE = "write"  # values written into a tensor: scatters, index_put, copy
    CONSTANT = "constant"  # no gradient flows: factories, random draws, comparisons, sizes, indices


class ErrorKind(str, enum.Enum):
    LOAD = "load"
    CONSTRUCT = "construct"
    INPUT = "input"
    CAPTURE = "capture"
    PROBE = "probe"
    INTERNAL = "internal"


class GradlintError(Exception):
    """An error a user can act on: reported as one paragraph, exit status 2."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class SourceLocation:
    path: str  # as shown: relative to the working directory, or a notebook cell's name ("Cell In[3]")
    line: int
    source: str | None = field(default=None, compare=False)  # the linecache name, when `path` is not it

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass
class Finding:
    """One problem in one target, as the report contract describes it."""

    rule: str
    name: str
    severity: Severity
    risk: Risk
    message: str
    module: str
    path: str | None = None
    line: int | None = None
    confirmed: bool | None = None
    fix: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    # a fix applied to the model's weights and re-estimated: {"fix", "layers", "log10_ratio_before", "log10_ratio_after"}
    fix_check: dict[str, Any] | None = None
    related: list[Finding] = field(default_factory=list)  # other findings with the same cause (see grouping)
    step: int | None = None  # gradlint.monitor: the training step at which the measurement first showed it

    def members(self) -> list[Finding]:
        return [self, *self.related]

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "rule": self.rule,
            "name": self.name,
            "severity": self.severity.value,
            "risk": self.risk.value,
            "message": self.message,
            "module": self.module,
            "path": self.path,
            "line": self.line,
            "confirmed": self.confirmed,
        }
        if self.step is not None:
            data["step"] = self.step
        if self.fix:
            data["fix"] = self.fix
        if self.evidence:
            data["evidence"] = self.evidence
        if self.fix_check:
            data["fix_check"] = self.fix_check
        if self.related:
            data["related"] = [f.to_dict() for f in self.related]
        return data


@dataclass
class ProfileEntry:
    """One weighted layer's log10 gradient RMS relative to the output gradient."""

    module: str
    kind: str
    log10_grad_rms: float | None
    zero: bool = False
    nonfinite: bool = False
    log10_update_ratio: float | None = None  # log10(RMS(dL/dW) / RMS(W)), the layer's relative SGD step

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "module": self.module,
            "kind": self.kind,
            "log10_grad_rms": None if self.log10_grad_rms is None else round(self.log10_grad_rms, 4),
        }
        if self.log10_update_ratio is not None and math.isfinite(self.log10_update_ratio):
            data["log10_update_ratio"] = round(self.log10_update_ratio, 4)
        if self.zero:
            data["zero"] = True
        if self.nonfinite:
            data["nonfinite"] = True
        return data


def profile_ratio(profile: list[ProfileEntry]) -> float | None:
    """The contract's `log10_grad_ratio`: the profile's value at the first weighted layer."""
    return profile[0].log10_grad_rms if profile else None


def profile_dict(profile: list[ProfileEntry]) -> dict[str, Any]:
    """The contract fields an estimate and a probe share: `log10_grad_ratio` and `profile`."""
    ratio = profile_ratio(profile)
    return {"log10_grad_ratio": None if ratio is None else round(ratio, 4), "profile": [p.to_dict() for p in profile]}
