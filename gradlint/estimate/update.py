"""The predicted relative update of each weighted layer: log10(RMS(dL/dW) / RMS(W)).

A weight used at P positions (batch rows, sequence positions, a convolution's spatial positions) collects
P independent products of its output gradient and its input: E[(dL/dW)²] = P · r_out · q_in per element,
where r_out is the mean-square gradient at the op's output (the estimate's `r`) and q_in the second moment
of the inputs that weight element meets. That is why a first convolution that receives 10^-3 of the output
gradient per element can still move as fast, relative to its own scale, as the classifier: it sums over
every pixel. With P = numel(out) / out_channels and k = numel(W) / out_channels inputs per output element,
E[(dL/dW)²] = numel(out) · k · r_out · q_in / numel(W); an embedding is the same with k = 1, q_in = 1
(one-hot rows)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from gradlint.estimate.table import Family, family_of
from gradlint.graph import NodeKind, Ref, WeightedLayer

if TYPE_CHECKING:
    from gradlint.estimate import Estimate



def log10_update_ratio(est: Estimate, layer: WeightedLayer) -> float | None:
    """The contract's `log10_update_ratio` for `layer`, predicted; None where its weight does not feed a
    linear, convolution or embedding op directly (recurrent cells, hand-written products)."""
    graph = est.graph
    weight = next((r for r in graph if r.kind is NodeKind.PARAM and r.param == layer.weight), None)
    if weight is None or weight.shape is None or len(weight.shape) < 2:
        return None
    w2 = est.stats.get(weight.name)
    if w2 is None or w2.q <= 0:
        return None
    total = 0.0
    found = False
    for user in graph.users(weight.name):
        # a weighted op multiplies its weight into the data as out[p, o] = sum_k W[o, k] x[p, k] (up to layout)
        if family_of(user.op) is not Family.WEIGHTED or user.name not in layer.nodes or user.shape is None:
            continue
        refs = [a for a in user.args if isinstance(a, Ref)]
        if user.op == "embedding":
            k, q_in = 1.0, 1.0
        else:
            data = next((a for a in refs if a.name != weight.name), None)
            if data is None or data.name not in est.stats:
                continue
            k, q_in = math.prod(weight.shape) / weight.shape[0], est.stats[data.name].q
            if user.op.startswith("conv_transpose"):
                k = math.prod(weight.shape) / weight.shape[1]
        r_out = est.r.get(user.name, 0.0)
        out_numel = math.prod(user.shape)
        total += out_numel * k * r_out * q_in / math.prod(weight.shape)
        found = True
    if not found or not math.isfinite(total) or total <= 0:
        return None
    return 0.5 * math.log10(total / w2.q)


def scale_log10_update(est: Estimate, node_name: str) -> float | None:
    """Predicted log10(RMS(dL/dγ) / RMS(γ)) of a parameter γ that multiplies a tensor elementwise at op
    `node_name` (LayerScale, a learned gain): each γ element collects numel(out)/numel(γ) products of the
    output gradient with the other factor. None when the op is not such a product."""
    graph = est.graph
    node = graph[node_name]
    if node.op != "mul" or node.shape is None:
        return None
    refs = [a for a in node.args if isinstance(a, Ref)]
    params = [a for a in refs if graph[a.name].kind is NodeKind.PARAM]
    others = [a for a in refs if graph[a.name].kind is not NodeKind.PARAM]
    if len(params) != 1 or len(others) != 1:
        return None
    gamma, other = graph[params[0].name], others[0].name
    g2, q_other = est.stats.get(gamma.name), est.stats.get(other)
    if g2 is None or q_other is None or g2.q <= 0 or gamma.shape is None:
        return None
    share = math.prod(node.shape) / max(math.prod(gamma.shape), 1)
    total = share * est.r.get(node_name, 0.0) * q_other.q
    return 0.5 * math.log10(total / g2.q) if total > 0 and math.isfinite(total) else None
