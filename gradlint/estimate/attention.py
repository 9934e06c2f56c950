"""Attention: the softmax over scores and every fused scaled-dot-product op, through one model of a
softmax row, so that `F.scaled_dot_product_attention` and the same maths written out (matmul, mask,
softmax, dropout, matmul) get the same estimate.

A mask is not logit spread: a mask or bias computed from constants (a causal tril, Swin's -100 window
mask, ALiBi) is evaluated for real, and each query row is judged by its effective number of keys,
n_eff = (sum_j w_j)^2 / sum_j w_j^2 with w_j = exp(bias_j - max bias): the number of allowed keys for a
0/-inf or boolean mask, fewer for a soft bias."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from gradlint.estimate.softmax import softmax_moments
from gradlint.estimate.stat import ZERO, Stat
from gradlint.estimate.table import Context, Family, Gains, Result, family_of, transfer
from gradlint.estimate.table import add_gain as _add_gain
from gradlint.estimate.table import ref_name as _ref
from gradlint.graph import NodeRecord, Ref

Rows = list[tuple[float, float]]  # (share of query rows, effective keys of such a row)
MASKED = -1e4  # an additive entry this far below the row's largest is a masked key for any softmax


def _histogram(counts: torch.Tensor) -> Rows:
    """Rows grouped by their effective key count (3 significant digits), fully masked rows left out."""
    counts = counts.reshape(-1).double()
    counts = counts[counts > 0.5]
    if counts.numel() == 0:
        return []
    step = 10.0 ** (torch.floor(torch.log10(counts)) - 2)
    keys, share = torch.unique(torch.round(counts / step) * step, return_counts=True)
    total = float(share.sum())
    return [(float(s) / total, float(k)) for k, s in zip(keys, share)]


def mask_rows(mask: torch.Tensor, shape: tuple[int, ...]) -> Rows | None:
    """Effective keys per query row of a boolean (True = attend) or additive mask broadcast to `shape`."""
    try:
        full = mask.broadcast_to(shape[-2:] if mask.dim() <= 2 else shape)
    except RuntimeError:
        return None
    full = full.reshape(-1, shape[-1])
    if full.shape[0] > 1 << 16:
        full = full[:: full.shape[0] // (1 << 16) + 1]
    if full.dtype == torch.bool:
        return _histogram(full.double().sum(-1))
    bias = full.double()
    top = bias.max(dim=-1, keepdim=True).values
    weight = torch.where(torch.isfinite(top) & (bias - top > MASKED), torch.exp((bias - top).clamp(min=-60)), torch.zeros_like(bias))
    total = weight.sum(-1)
    n_eff = torch.where(total > 0, total * total / (weight * weight).sum(-1).clamp(min=1e-300), torch.zeros_like(total))
    return _histogram(n_eff)


def causal_rows(n_queries: int, n_keys: int) -> Rows:
    """`is_causal`: row i (top-left aligned, as torch's tril) sees min(i + 1, n_keys) keys."""
    return [(1.0 / n_queries, float(min(i + 1, n_keys))) for i in range(n_queries)]


@dataclass(frozen=True)
class SoftmaxRows:
    concentration: float  # mean over rows of sum_j p_j^2: how much of v's variance survives the average
    gain: float  # mean over rows of sum_j E[(dp/dlogit)^2 terms]: the scores' mean-square backward gain, summed


def softmax_rows(logit_var: float, rows: Iterable[tuple[float, float]]) -> SoftmaxRows:
    concentration = gain = 0.0
    for share, n in rows:
        p2, p_gain = softmax_moments(logit_var, max(n, 1.0))
        concentration += share * n * p2
        gain += share * n * p_gain
    return SoftmaxRows(concentration, gain)


def _scalar(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value)
    return None


def _masked_input(ctx: Context, x: Any, shape: tuple[int, ...]) -> tuple[Any, Rows | None]:
    """The scores behind a softmax input and the rows its mask leaves: `scores + mask`, `masked_fill(scores,
    m, -inf)` or `where(m, scores, -inf)` with a mask that has a real value, through views and casts."""
    node = ctx.graph[x.name] if isinstance(x, Ref) else None
    for _ in range(4):
        if node is None:
            break
        if family_of(node.op) is Family.SUM and len(node.args) >= 2:
            a, b = node.arg(0), node.arg(1)
            for scores, bias in ((a, b), (b, a)):
                value = ctx.value(bias)
                if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.is_floating_point():
                    rows = mask_rows(-value if node.op == "sub" and bias is b else value, shape)
                    if rows is not None:
                        return scores, rows
        if node.op == "masked_fill":
            fill, value = _scalar(node.arg(2, "value")), ctx.value(node.arg(1))
            if fill is not None and fill <= MASKED and isinstance(value, torch.Tensor):
                rows = mask_rows(~value.bool(), shape)
                if rows is not None:
                    return node.arg(0), rows
        if node.op == "where":
            cond, fill = ctx.value(node.arg(0)), _scalar(ctx.value(node.arg(2)) if isinstance(node.arg(2), Ref) else node.arg(2))
            if isinstance(cond, torch.Tensor) and fill is not None and fill <= MASKED:
                rows = mask_rows(cond.bool(), shape)
                if rows is not None:
                    return node.arg(1), rows
        if family_of(node.op) is not Family.STRUCTURAL:  # look through views and casts only
            break
        src = node.arg(0)
        node = ctx.graph[src.name] if isinstance(src, Ref) else None
    return x, None


@transfer("softmax", "_softmax", "_safe_softmax", family=Family.SOFTMAX)
def softmax(node: NodeRecord, ctx: Context) -> Result:
    x = node.arg(0)
    shape = ctx.shape(x) or (1,)
    dim = int(node.arg(1, "dim", -1)) % max(len(shape), 1)
    n = shape[dim] if shape else 1
    scores, rows = _masked_input(ctx, x, shape) if dim == len(shape) - 1 else (x, None)
    var = ctx.stat(scores).var
    if rows is None:
        rows = [(1.0, float(n))]
    moments = softmax_rows(var, rows)
    ctx.note(node, "logit_std", math.sqrt(var))
    ctx.note(node, "keys", n)
    q = moments.concentration / n  # per entry, masked entries (zeros) included: rows still sum to one
    return Stat(1.0 / n, q, max(q - 1.0 / (n * n), 0.0)), {_ref(x) or "": moments.gain / n}


@dataclass(frozen=True)
class _Layout:
    mask: tuple[int, str] | None  # (position, keyword) of the mask or additive bias
    dropout: tuple[int, str] | None
    causal: tuple[int, str] | None
    outputs: int  # how many results the op returns (1: a tensor)
    scale: tuple[int, str] = (99, "scale")  # keyword-only unless the op takes it by position


_LAYOUTS = {
    "scaled_dot_product_attention": _Layout((3, "attn_mask"), (4, "dropout_p"), (5, "is_causal"), 1, (6, "scale")),
    "_scaled_dot_product_attention_math": _Layout((3, "attn_mask"), (4, "dropout_p"), (5, "is_causal"), 2, (6, "scale")),
    "_scaled_dot_product_flash_attention_for_cpu": _Layout((99, "attn_mask"), (3, "dropout_p"), (4, "is_causal"), 2),
    "_scaled_dot_product_flash_attention": _Layout(None, (3, "dropout_p"), (4, "is_causal"), 9),
    "_scaled_dot_product_efficient_attention": _Layout((3, "attn_bias"), (5, "dropout_p"), (6, "is_causal"), 4),
    "_scaled_dot_product_cudnn_attention": _Layout((3, "attn_bias"), (5, "dropout_p"), (6, "is_causal"), 9),
    "_scaled_dot_product_fused_attention_overrideable": _Layout((3, "attn_bias"), (4, "dropout_p"), (5, "is_causal"), 9),
}


def mask_float(ctx: Context, mask: Ref) -> bool:
    dtype = ctx.graph[mask.name].dtype
    return dtype is None or dtype.is_floating_point


def _arg(node: NodeRecord, where: tuple[int, str] | None, default: Any) -> Any:
    return default if where is None else node.arg(where[0], where[1], default)


@transfer(*_LAYOUTS, family=Family.ATTENTION)
def sdpa(node: NodeRecord, ctx: Context) -> Result:
    """softmax(q k^T * scale + mask) v with dropout on the probabilities; grouped-query heads share k, v."""
    layout = _LAYOUTS[node.op]
    qn, kn, vn = node.arg(0), node.arg(1), node.arg(2)
    qs, ks, vs = ctx.stat(qn), ctx.stat(kn), ctx.stat(vn)
    qshape, kshape, vshape = ctx.shape(qn) or (1, 1), ctx.shape(kn) or (1, 1), ctx.shape(vn) or (1, 1)
    d, n_keys, n_queries, dv = qshape[-1], kshape[-2], qshape[-2], vshape[-1]
    explicit = _scalar(_arg(node, layout.scale, None))
    if explicit is not None:
        ctx.note(node, "scale", explicit)  # a `scale` given instead of the default 1/sqrt(d)
    scale = explicit if explicit is not None else 1.0 / math.sqrt(d)
    p = _scalar(_arg(node, layout.dropout, 0.0)) or 0.0
    keep = 1.0 - p if 0.0 < p < 1.0 else 1.0
    rows: Rows | None = None
    mask = _arg(node, layout.mask, None)
    if bool(_arg(node, layout.causal, False)):
        rows = causal_rows(n_queries, n_keys)
    elif isinstance(mask, Ref):
        value = ctx.value(mask)
        if isinstance(value, torch.Tensor):
            rows = mask_rows(value, (*qshape[:-1], n_keys))
    rows = rows if rows is not None else [(1.0, float(n_keys))]
    logit_var = scale * scale * d * qs.q * ks.q
    moments = softmax_rows(logit_var, rows)
    concentration = moments.concentration / keep  # dropout's kept probabilities, rescaled by 1/(1-p)
    gain_sum = moments.gain / keep
    ctx.note(node, "logit_std", math.sqrt(logit_var))
    ctx.note(node, "keys", n_keys)
    # query heads per key/value head (grouped-query attention): each k, v element serves that many rows
    shared = max(ctx.numel(qn) * n_keys // max(ctx.numel(kn) * n_queries, 1), 1) if len(qshape) >= 3 else 1
    out_q = concentration * vs.v + (vs.q - vs.v)  # a per-unit mean of v survives any averaging over keys
    gains: Gains = {}
    _add_gain(gains, vn, shared * n_queries * concentration / n_keys)
    _add_gain(gains, qn, scale * scale * ks.q * dv * vs.q * gain_sum)
    _add_gain(gains, kn, shared * n_queries / n_keys * scale * scale * qs.q * dv * vs.q * gain_sum)
    if isinstance(mask, Ref) and mask_float(ctx, mask):  # an additive bias (a learnt position bias) is a logit
        logits = ctx.numel(qn) // max(qshape[-1], 1) * n_keys
        _add_gain(gains, mask, dv * vs.q * gain_sum / n_keys * logits / max(ctx.numel(mask), 1))
    out = Stat(vs.mean, out_q, out_q)
    if layout.outputs > 1:
        ctx.tuple_result(node, [out] + [ZERO] * (layout.outputs - 1))
    return out, gains
