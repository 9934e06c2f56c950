"""Fixes shown to work: apply a standard `torch.nn.init` scheme to the layers a finding concerns, in a copy
of the model, re-run the estimator on the same graph, and keep the scheme that repairs the profile.

An init changes no op, so the captured graph still holds and only the weight statistics move: one
estimator pass per candidate (tens of milliseconds). A scheme that does not bring every affected layer
back inside the rules' thresholds is not offered; structural fixes (another activation, a norm, a skip)
change the graph and stay as the rule's advice.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from gradlint.estimate import Estimate, estimate
from gradlint.graph import ModelGraph
from gradlint.grouping import names_of
from gradlint.recorder import ConstructionRecord
from gradlint.types import Finding, Risk
from gradlint.estimate.weights import WeightTable

# the healthy band a repaired profile must reach: the vanishing and exploding rules' default thresholds
HEALTHY_LOW = -3.0
HEALTHY_HIGH = 1.85
MIN_GAIN_DECADES = 1.0  # a fix must move the worst affected layer by at least this much


@dataclass(frozen=True)
class Scheme:
    code: str  # what the user pastes, with `w` the layer's weight
    apply: Callable[[torch.Tensor], object]  # an nn.init call: it fills the tensor in place


# the standard calls for each kind of activation the estimator finds: rectifiers (φ' = 0 left of 0) get
# He init in either mode (fan_out keeps the backward pass when widths narrow); activations with
# φ(0) = 0 and φ'(0) = 1 (tanh-like) get Glorot with tanh's gain; other smooth ones Glorot or LeCun
RECTIFIER = (
    Scheme("nn.init.kaiming_normal_(w, nonlinearity='relu')", lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu")),
    Scheme("nn.init.kaiming_normal_(w, mode='fan_out', nonlinearity='relu')",
           lambda w: nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")),
)
TANH_LIKE = (
    Scheme("nn.init.xavier_normal_(w, gain=nn.init.calculate_gain('tanh'))",
           lambda w: nn.init.xavier_normal_(w, gain=nn.init.calculate_gain("tanh"))),
)
SMOOTH = (
    Scheme("nn.init.xavier_normal_(w)", nn.init.xavier_normal_),
    Scheme("nn.init.kaiming_normal_(w, nonlinearity='linear')", lambda w: nn.init.kaiming_normal_(w, nonlinearity="linear")),
)
SCHEMES = RECTIFIER + TANH_LIKE + SMOOTH


def candidate_schemes(est: Estimate) -> tuple[Scheme, ...]:
    """The schemes that suit the model's activations, judged from the estimator's description of them."""
    shapes = [info.shape for info in est.pointwise.values()]
    chosen: tuple[Scheme, ...] = ()
    if any(s.rectifies for s in shapes):
        chosen += RECTIFIER
    if any(not s.rectifies and abs(s.at_zero) < 1e-6 and abs(s.slope_at_zero - 1.0) < 1e-3 for s in shapes):
        chosen += TANH_LIKE
    if any(not s.rectifies for s in shapes) or not shapes:
        chosen += SMOOTH
    return chosen
_INITIALISABLE = (nn.Linear, nn.modules.conv._ConvNd)


def verify_fixes(findings: list[Finding], model: nn.Module, graph: ModelGraph, record: ConstructionRecord | None,
                 tensors: list[torch.Tensor], est: Estimate) -> None:
    """Attach a `fix_check` (and a sentence) to each vanishing/exploding finding that a standard init repairs."""
    if any(p.device.type == "meta" for p in model.parameters()):
        return  # no weights to redraw; the meta estimate already comes from the init scheme
    before = {entry.module: entry.log10_grad_rms for entry in est.profile}
    order = [layer.module for layer in graph.weighted_layers]
    rank = {module: i for i, module in enumerate(order)}
    tried: dict[tuple[str, ...], tuple[Scheme, dict[str, float | None]] | None] = {}
    for finding in findings:
        if finding.risk not in (Risk.VANISHING, Risk.EXPLODING):
            continue
        named = [rank[n] for n in names_of(finding) if n in rank]
        if not named:
            continue
        # every layer from the first one named to the output: a layer's gradient passes back through all above it
        span = tuple(m for m in order[min(named):] if isinstance(model.get_submodule(m), _INITIALISABLE))
        if not span:
            continue
        if span not in tried:
            tried[span] = _best_scheme(span, model, graph, record, tensors, before, candidate_schemes(est))
        best = tried[span]
        if best is None:
            continue
        scheme, after = best
        first = span[0]
        finding.fix_check = {
            "fix": scheme.code, "layers": list(span), "module": first,
            "log10_ratio_before": _round(before.get(first)), "log10_ratio_after": _round(after.get(first)),
        }
        where = f"{span[0]} to {span[-1]}" if len(span) > 1 else span[0]
        finding.fix = (f"for each weight w of the {_kinds(model, span)} layers {where}: {scheme.code}; "
                       "nn.init.zeros_(bias)")
        finding.message += (f" With {scheme.code} on {where}, {first} would receive 10^{after[first]:+.1f} of the "
                            "output gradient (re-estimated).")


def _best_scheme(span: tuple[str, ...], model: nn.Module, graph: ModelGraph, record: ConstructionRecord | None,
                 tensors: list[torch.Tensor], before: dict[str, float | None],
                 schemes: tuple[Scheme, ...]) -> tuple[Scheme, dict[str, float | None]] | None:
    results: list[tuple[float, Scheme, dict[str, float | None]]] = []
    for scheme in schemes:
        after = _profile(_reinitialised(model, span, scheme), graph, record, tensors)
        finite = [v for v in (after.get(m) for m in span) if v is not None and math.isfinite(v)]
        if len(finite) == len(span):
            spread = max(finite) - min(finite)
            results.append((spread, scheme, after))
    worst_before = _worst(before, span)
    if not results or worst_before is None:
        return None
    _, scheme, after = min(results, key=lambda r: r[0])  # the flattest profile: every layer gets the same share
    worst = _worst(after, span)
    if worst is None:
        return None
    values = [after.get(m) for m in span]
    healthy = all(v is not None and HEALTHY_LOW <= v <= HEALTHY_HIGH for v in values)
    if not healthy or worst_before - worst < MIN_GAIN_DECADES:
        return None
    return scheme, after


def _worst(profile: dict[str, float | None], span: tuple[str, ...]) -> float | None:
    """The largest distance from 0 decades over the span (a layer with no gradient counts as infinitely far)."""
    values = [profile.get(m) for m in span]
    return max((math.inf if v is None else abs(v)) for v in values) if values else None


def _profile(model: nn.Module, graph: ModelGraph, record: ConstructionRecord | None,
             tensors: list[torch.Tensor]) -> dict[str, float | None]:
    est = estimate(graph, WeightTable(model, record), tensors)
    return {entry.module: entry.log10_grad_rms for entry in est.profile}


def _reinitialised(model: nn.Module, span: tuple[str, ...], scheme: Scheme) -> nn.Module:
    """A copy with the span's weights redrawn (private RNG state) and biases zeroed."""
    twin = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(0)
        for path in span:
            module = twin.get_submodule(path)
            weight, bias = module.weight, getattr(module, "bias", None)
            if not isinstance(weight, torch.Tensor):
                raise TypeError(f"{path}.weight is a {type(weight).__name__}, not a tensor")
            scheme.apply(weight)
            if bias is not None:
                nn.init.zeros_(bias)
    return twin


def apply_fix(model: nn.Module, fix_check: dict[str, object]) -> nn.Module:
    """A copy of `model` with a verified fix applied, as the user would paste it (for tests and `explain`)."""
    scheme = next(s for s in SCHEMES if s.code == fix_check["fix"])
    layers = fix_check["layers"]
    assert isinstance(layers, list)
    return _reinitialised(model, tuple(str(m) for m in layers), scheme)


def _kinds(model: nn.Module, span: tuple[str, ...]) -> str:
    return "/".join(sorted({type(model.get_submodule(m)).__name__ for m in span}))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
