"""Transfer rules, one small function per op kind, kept in a table (`TRANSFERS`).

Each rule gets the node and a context and returns the output `Stat` and, for each tensor input, the
factor by which the mean-square gradient at the output becomes the mean-square gradient at that
input (`r_in = gain * r_out`). Pointwise ops are not in the table: `pointwise.py` handles them all."""

from __future__ import annotations

import math
from typing import Any

from gradlint.estimate.stat import Stat, ZERO
from gradlint.estimate.table import (Context, Family, Gains, Result, add_gain as _add_gain, as_tuple as _tuple,
                                     broadcast as _bcast, ref_name as _ref, declare, rule_of, transfer)
from gradlint.graph import NodeRecord, Ref


# -- weighted layers --------------------------------------------------------------------------------

@transfer("linear", family=Family.WEIGHTED)
def linear(node: NodeRecord, ctx: Context) -> Result:
    x, w, b = node.arg(0), node.arg(1), node.arg(2)
    shape = ctx.shape(w) or (1, 1)
    fan_out, fan_in = shape[0], shape[1]
    wm, w2 = ctx.weight(w)
    sx = ctx.stat(x)
    bias = ctx.stat(b) if b is not None else ZERO
    q = fan_in * w2 * sx.q + bias.q
    mean = fan_in * wm * sx.mean + bias.mean
    v = fan_in * w2 * sx.v
    gains: Gains = {}
    _add_gain(gains, x, fan_out * w2)
    return Stat(mean, max(q, mean * mean), v), gains


def _tap_fractions(length_in: int, length_out: int, kernel: int, stride: int, padding: int, dilation: int) -> list[float]:
    """For each kernel tap, the fraction of output positions where it lands inside the input (not padding)."""
    fractions = []
    for t in range(kernel):
        valid = sum(1 for o in range(length_out) if 0 <= o * stride - padding + t * dilation < length_in)
        fractions.append(valid / max(length_out, 1))
    return fractions


def _valid_taps(length_in: int, length_out: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Number of (output position, kernel tap) pairs that land inside the input (not on padding)."""
    return round(sum(_tap_fractions(length_in, length_out, kernel, stride, padding, dilation)) * length_out)


def _conv(node: NodeRecord, ctx: Context, transposed: bool, stride: Any, padding: Any, dilation: Any, groups: int) -> Result:
    x, w, b = node.arg(0), node.arg(1), node.arg(2)
    wshape = ctx.shape(w)
    xshape = ctx.shape(x)
    if not wshape or not xshape or node.shape is None:
        return ctx.stat(x), {_ref(x) or "": 1.0}
    dims = len(wshape) - 2
    kernel = wshape[2:]
    stride_t, dil_t = _tuple(stride, dims, 1), _tuple(dilation, dims, 1)
    in_sp, out_sp = xshape[-dims:], node.shape[-dims:]
    if isinstance(padding, str):
        pad_t = tuple((d * (k - 1)) // 2 if padding == "same" else 0 for k, d in zip(kernel, dil_t))
    else:
        pad_t = _tuple(padding, dims, 0)
    wm, w2 = ctx.weight(w)
    sx = ctx.stat(x)
    bias = ctx.stat(b) if b is not None else ZERO
    pairs_per_dim = []
    for i in range(dims):
        if transposed:  # a transposed conv is the backward of a conv from its output to its input
            pairs_per_dim.append(_valid_taps(out_sp[i], in_sp[i], kernel[i], stride_t[i], pad_t[i], dil_t[i]))
        else:
            pairs_per_dim.append(_valid_taps(in_sp[i], out_sp[i], kernel[i], stride_t[i], pad_t[i], dil_t[i]))
    pairs = math.prod(pairs_per_dim)
    n_in, n_out = math.prod(in_sp), math.prod(out_sp)
    if transposed:
        c_in_per_group, c_out_per_group = wshape[0] // groups, wshape[1]
        fan_in_eff = c_in_per_group * pairs / n_out  # average taps reaching one output element
        fan_out_eff = c_out_per_group * pairs / n_in
    else:
        c_in_per_group, c_out_per_group = wshape[1], wshape[0] // groups
        fan_in_eff = c_in_per_group * pairs / n_out
        fan_out_eff = c_out_per_group * pairs / n_in
    q = fan_in_eff * w2 * sx.q + bias.q
    mean = fan_in_eff * wm * sx.mean + bias.mean
    v = fan_in_eff * w2 * sx.v
    if not transposed:
        # Near the border fewer taps see the input, so a channel's mean shift (from its inputs' means) varies
        # with position: batch norm sees that as within-channel variance (why plain BN CNNs explode slowly).
        sums, squares = 1.0, 1.0
        for i in range(dims):
            f = _tap_fractions(in_sp[i], out_sp[i], kernel[i], stride_t[i], pad_t[i], dil_t[i])
            sums *= sum(f)
            squares *= sum(x * x for x in f)
        v += c_in_per_group * w2 * (sx.q - sx.v) * max(sums - squares, 0.0)
    gains: Gains = {}
    _add_gain(gains, x, fan_out_eff * w2)
    return Stat(mean, max(q, mean * mean), min(v, q)), gains


@transfer("conv1d", "conv2d", "conv3d", family=Family.WEIGHTED)
def conv(node: NodeRecord, ctx: Context) -> Result:
    return _conv(node, ctx, False, node.arg(3, "stride", 1), node.arg(4, "padding", 0), node.arg(5, "dilation", 1), int(node.arg(6, "groups", 1)))


@transfer("conv_transpose1d", "conv_transpose2d", "conv_transpose3d", family=Family.WEIGHTED)
def conv_transpose(node: NodeRecord, ctx: Context) -> Result:
    return _conv(node, ctx, True, node.arg(3, "stride", 1), node.arg(4, "padding", 0), node.arg(7, "dilation", 1), int(node.arg(6, "groups", 1)))


@transfer("convolution", "_convolution", family=Family.WEIGHTED)
def convolution(node: NodeRecord, ctx: Context) -> Result:
    return _conv(node, ctx, bool(node.arg(6, "transposed", False)), node.arg(3, "stride", 1), node.arg(4, "padding", 0), node.arg(5, "dilation", 1), int(node.arg(8, "groups", 1)))


@transfer("embedding", family=Family.WEIGHTED)
def embedding(node: NodeRecord, ctx: Context) -> Result:
    wm, w2 = ctx.weight(node.arg(0))
    indices = node.arg(1)
    if ctx.uniform(indices) is not None:  # one row for every token: constant across the batch
        return Stat(wm, w2, 0.0), {}
    return Stat(wm, w2, max(w2 - wm * wm, 0.0)), {}


# -- normalisation ----------------------------------------------------------------------------------

def _affine(ctx: Context, weight: Any, bias: Any) -> tuple[float, float, float]:
    g_mean, g2 = ctx.weight(weight) if weight is not None else (1.0, 1.0)
    b_mean, b2 = ctx.weight(bias) if bias is not None else (0.0, 0.0)
    return g2, b_mean, b2


def _normalised(node: NodeRecord, ctx: Context, x: Any, var: float, eps: float, group: int, weight: Any, bias: Any, v_scale: float) -> Result:
    g2, b_mean, b2 = _affine(ctx, weight, bias)
    var = max(var, 0.0)
    keep = var / (var + eps) if var + eps > 0 else 0.0
    # Normalising by the sample variance of `group` values: E[1/sigma_hat^2] = group/(group-3) / var, and the
    # backward projects out the mean and scale directions, a factor (group-2)/group.
    projection = (group - 2) / (group - 3) if group > 4 else 1.0
    gains: Gains = {}
    _add_gain(gains, x, g2 / (var + eps) * projection)
    if isinstance(x, Ref):  # what the gain would be at unit input scale (see Estimate.r_scale_free)
        ctx.note(node, "normalizes", {x.name: g2 * projection * (var / max(ctx.stat(x).q, 1e-30))})
    return Stat(b_mean, g2 * keep + b2, g2 * v_scale / (var + eps)), gains


# (training flag index or a fixed value, eps index) for each batch-norm op the captures produce
_BATCH_NORM_ARGS: dict[str, tuple[int | bool, int]] = {
    "batch_norm": (5, 7), "native_batch_norm": (5, 7), "cudnn_batch_norm": (5, 7),
    "_native_batch_norm_legit_functional": (True, 7), "_native_batch_norm_legit": (5, 7),
    "_native_batch_norm_legit_no_training": (False, 6),
}


@transfer(*_BATCH_NORM_ARGS, family=Family.NORMALISATION)
def batch_norm(node: NodeRecord, ctx: Context) -> Result:
    x, weight, bias = node.arg(0), node.arg(1), node.arg(2)
    running_mean, running_var = node.arg(3), node.arg(4)
    training_at, eps_at = _BATCH_NORM_ARGS[node.op]
    training = bool(node.arg(training_at, "training", True)) if isinstance(training_at, int) and not isinstance(training_at, bool) else training_at
    eps = float(node.arg(eps_at, "eps", 1e-5))
    sx = ctx.stat(x)
    shape = ctx.shape(x) or (1, 1)
    channels = shape[1] if len(shape) > 1 else 1
    group = max(ctx.numel(x) // max(channels, 1), 1)
    if training:
        ctx.note(node, "batch_statistics", group)  # values per channel: the probe needs enough of them
        return _normalised(node, ctx, x, sx.v, eps, group, weight, bias, sx.v)
    rv = ctx.weight(running_var)[0] if running_var is not None else 1.0  # mean of the running variances
    rm_mean, rm2 = ctx.weight(running_mean) if running_mean is not None else (0.0, 0.0)
    g2, b_mean, b2 = _affine(ctx, weight, bias)
    scale = g2 / (rv + eps)
    centred = max(sx.q - 2 * sx.mean * rm_mean + rm2, 0.0)  # E[(x - running_mean)^2]
    return Stat(b_mean, centred * scale + b2, sx.v * scale), {_ref(x) or "": scale}


@transfer("layer_norm", "native_layer_norm", family=Family.NORMALISATION)
def layer_norm(node: NodeRecord, ctx: Context) -> Result:
    x = node.arg(0)
    normalized = node.arg(1) or ()
    group = math.prod(int(d) for d in normalized) if normalized else 1
    sx = ctx.stat(x)
    return _normalised(node, ctx, x, sx.var, float(node.arg(4, "eps", 1e-5)), group, node.arg(2), node.arg(3), sx.v)


@transfer("rms_norm", family=Family.NORMALISATION)
def rms_norm(node: NodeRecord, ctx: Context) -> Result:
    x = node.arg(0)
    normalized = node.arg(1) or ()
    group = math.prod(int(d) for d in normalized) if normalized else 1
    sx = ctx.stat(x)
    eps = node.arg(3, "eps", None)
    return _normalised(node, ctx, x, sx.q, float(eps) if eps is not None else 1e-6, group, node.arg(2), None, sx.v)


@transfer("group_norm", family=Family.NORMALISATION)
def group_norm(node: NodeRecord, ctx: Context) -> Result:
    x = node.arg(0)
    groups = int(node.arg(1, "num_groups", 1))
    shape = ctx.shape(x) or (1, 1)
    group = max(math.prod(shape[1:]) // max(groups, 1), 1)
    sx = ctx.stat(x)
    return _normalised(node, ctx, x, sx.var, float(node.arg(4, "eps", 1e-5)), group, node.arg(2), node.arg(3), sx.v)


@transfer("instance_norm", family=Family.NORMALISATION)
def instance_norm(node: NodeRecord, ctx: Context) -> Result:
    x = node.arg(0)
    shape = ctx.shape(x) or (1, 1, 1)
    group = max(math.prod(shape[2:]), 1)
    sx = ctx.stat(x)
    return _normalised(node, ctx, x, sx.v, float(node.arg(7, "eps", 1e-5)), group, node.arg(1), node.arg(2), sx.v)


# -- structure: views, copies, selections, concatenation ----------------------------------------------

@transfer("view", "reshape", "_unsafe_view", "permute", "transpose", "t", "flatten", "unflatten", "squeeze",
          "unsqueeze", "contiguous", "clone", "_to_copy", "to", "alias", "lift_fresh_copy", "type_as",
          "view_as", "reshape_as", "flip", "roll", "movedim", "swapaxes", "pixel_shuffle", "pixel_unshuffle",
          "channel_shuffle", "masked_fill", "fill_diagonal", family=Family.STRUCTURAL)
def identity(node: NodeRecord, ctx: Context) -> Result:
    x = node.arg(0)
    return ctx.stat(x), {_ref(x) or "": 1.0}


transfer("_assert_tensor_metadata", family=Family.STRUCTURAL, reads_values=False)(identity)


@transfer("detach", family=Family.STRUCTURAL)
def detach(node: NodeRecord, ctx: Context) -> Result:
    return ctx.stat(node.arg(0)), {}


@transfer("expand", "expand_as", "repeat", "repeat_interleave", "broadcast_to", "tile", family=Family.STRUCTURAL)
def expand(node: NodeRecord, ctx: Context) -> Result:
    x = node.arg(0)
    return ctx.stat(x), {_ref(x) or "": _bcast(ctx, node, x)}


@transfer("slice", "select", "narrow", "index", "index_select", "gather", "take_along_dim", "diagonal", "as_strided",
          family=Family.STRUCTURAL)
def select(node: NodeRecord, ctx: Context) -> Result:
    x = node.arg(0)
    n = ctx.numel(x)
    return ctx.stat(x), {_ref(x) or "": node.numel / n if n else 1.0}


@transfer("split", "split_with_sizes", "chunk", "unbind", "tensor_split", family=Family.STRUCTURAL)
def split(node: NodeRecord, ctx: Context) -> Result:
    x = node.arg(0)
    return ctx.stat(x), {_ref(x) or "": 1.0}


@transfer("getitem", family=Family.STRUCTURAL)
def getitem(node: NodeRecord, ctx: Context) -> Result:
    source, index = node.arg(0), node.arg(1)
    name = _ref(source)
    stat = ctx.element(name, int(index)) if name is not None and isinstance(index, int) else None
    stat = stat if stat is not None else ctx.stat(source)
    total = ctx.numel(source)
    if not total and name is not None and rule_of(ctx.graph[name].op) is split:  # one piece of a split tensor
        total = ctx.numel(ctx.graph[name].arg(0))
    share = node.numel / total if total and node.numel and total >= node.numel else 1.0
    return stat, {name or "": share}


@transfer("cat", "stack", "concat", "concatenate", "hstack", "vstack", family=Family.CONCATENATION)
def cat(node: NodeRecord, ctx: Context) -> Result:
    parts = [p for p in node.arg(0) if isinstance(p, Ref)]
    sizes = [max(ctx.numel(p), 1) for p in parts]
    total = sum(sizes) or 1
    stats = [ctx.stat(p) for p in parts]
    mean = sum(s.mean * n for s, n in zip(stats, sizes)) / total
    q = sum(s.q * n for s, n in zip(stats, sizes)) / total
    v = sum(s.v * n for s, n in zip(stats, sizes)) / total
    gains: Gains = {}
    for p in parts:
        _add_gain(gains, p, 1.0)
    return Stat(mean, q, v), gains


@transfer("pad", "constant_pad_nd", family=Family.STRUCTURAL)
def zero_pad(node: NodeRecord, ctx: Context) -> Result:
    """Zeros around the input: its moments diluted by the padded share."""
    x = node.arg(0)
    frac = ctx.numel(x) / node.numel if node.numel else 1.0
    s = ctx.stat(x)
    return Stat(s.mean * frac, s.q * frac, s.v * frac), {_ref(x) or "": 1.0}


@transfer("reflection_pad1d", "reflection_pad2d", "replication_pad2d", family=Family.STRUCTURAL)
def copy_pad(node: NodeRecord, ctx: Context) -> Result:
    """Copies of the input's own border values: its moments unchanged."""
    x = node.arg(0)
    return ctx.stat(x), {_ref(x) or "": 1.0}


@transfer("dropout", "native_dropout", "feature_dropout", family=Family.DROPOUT)
def dropout(node: NodeRecord, ctx: Context) -> Result:
    x = node.arg(0)
    p = float(node.arg(1, "p", 0.5))
    train = node.arg(2, "train", True)
    s = ctx.stat(x)
    if not train or p <= 0 or p >= 1:
        out = s
        gain = 1.0
    else:
        out = Stat(s.mean, s.q / (1 - p), s.v + s.q * p / (1 - p))
        gain = 1.0 / (1 - p)
    if node.op == "native_dropout":
        ctx.tuple_result(node, [out, ZERO])
    return out, {_ref(x) or "": gain}


@transfer("alpha_dropout", "feature_alpha_dropout", family=Family.DROPOUT)
def alpha_dropout(node: NodeRecord, ctx: Context) -> Result:
    """SELU's dropout keeps mean and variance by design; the kept units' gradient is rescaled to match."""
    x = node.arg(0)
    return ctx.stat(x), {_ref(x) or "": 1.0}


# -- pooling, resampling, reductions ----------------------------------------------------------------

def _max_order_moments(k: int) -> tuple[float, float]:
    """E[M] and E[M²] for the maximum M of k independent standard normals."""
    from gradlint.quadrature import _nodes

    import torch

    z, w = _nodes(200)
    cdf = 0.5 * (1 + torch.erf(z / math.sqrt(2)))
    density = k * cdf ** (k - 1)  # density of the max relative to the normal density
    return float((w * density * z).sum()), float((w * density * z * z).sum())


def _pool_window(node: NodeRecord, ctx: Context) -> int:
    x = node.arg(0)
    n_in, n_out = ctx.numel(x), node.numel
    return max(int(round(n_in / n_out)), 1) if n_out else 1


@transfer("max_pool1d", "max_pool2d", "max_pool3d", "max_pool2d_with_indices", "max_pool1d_with_indices",
          "max_pool3d_with_indices", "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
          family=Family.MAX_POOLING)
def max_pool(node: NodeRecord, ctx: Context) -> Result:
    x = node.arg(0)
    kernel = node.arg(1)
    shape = ctx.shape(x) or ()
    if node.op.startswith("adaptive") or kernel is None:
        k = _pool_window(node, ctx)
    else:
        dims = max(len(shape) - 2, 1)
        k = math.prod(_tuple(kernel, dims, 1))
    s = ctx.stat(x)
    e1, e2 = _max_order_moments(max(k, 1))
    sd = math.sqrt(s.v)
    mean = s.mean + sd * e1
    q = (s.q - s.v) + 2 * s.mean * sd * e1 + s.v * e2
    out = Stat(mean, max(q, mean * mean), s.v * max(e2 - e1 * e1, 0.0))
    n_in = ctx.numel(x)
    if node.op.endswith("with_indices") or node.op.startswith("adaptive_max"):
        ctx.tuple_result(node, [out, ZERO])
    return out, {_ref(x) or "": node.numel / n_in if n_in else 1.0}


@transfer("avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d",
          "adaptive_avg_pool3d", "_adaptive_avg_pool2d", "_adaptive_avg_pool3d", family=Family.AVERAGE_POOLING)
def avg_pool(node: NodeRecord, ctx: Context) -> Result:
    x = node.arg(0)
    kernel = node.arg(1)
    shape = ctx.shape(x) or ()
    if node.op.startswith(("adaptive", "_adaptive")) or kernel is None:
        k = _pool_window(node, ctx)
    else:
        k = math.prod(_tuple(kernel, max(len(shape) - 2, 1), 1))
    s = ctx.stat(x)
    n_in = ctx.numel(x)
    uses = node.numel * k / n_in if n_in else 1.0  # windows each input element falls in
    return Stat(s.mean, (s.q - s.v) + s.v / k, s.v / k), {_ref(x) or "": uses / (k * k)}


@transfer("upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d", "upsample_bilinear2d",
          "upsample_linear1d", "upsample_bicubic2d", "upsample_trilinear3d", "_upsample_nearest_exact2d",
          "_upsample_bilinear2d_aa", "interpolate", family=Family.RESAMPLING)
def upsample(node: NodeRecord, ctx: Context) -> Result:
    x = node.arg(0)
    n_in = ctx.numel(x)
    return ctx.stat(x), {_ref(x) or "": node.numel / n_in if n_in else 1.0}


def _reduced(node: NodeRecord, ctx: Context) -> tuple[Any, int, bool]:
    """The input, how many elements each output averages, and whether feature dims are reduced."""
    x = node.arg(0)
    shape = ctx.shape(x) or ()
    n_in = ctx.numel(x)
    n = max(n_in // max(node.numel, 1), 1)
    dims = node.arg(1, "dim", None)
    if dims is None or dims == [] or len(shape) == 0:
        return x, n, True
    dims_t = {int(d) % len(shape) for d in (dims if isinstance(dims, (list, tuple)) else (dims,))}
    feature = {1} if len(shape) == 2 or len(shape) >= 4 else {len(shape) - 1}
    return x, n, bool(dims_t & feature)


@transfer("mean", family=Family.REDUCTION)
def mean(node: NodeRecord, ctx: Context) -> Result:
    x, n, feature = _reduced(node, ctx)
    s = ctx.stat(x)
    if feature:
        out = Stat(s.mean, s.mean * s.mean + s.var / n, s.v / n)
    else:
        out = Stat(s.mean, (s.q - s.v) + s.v / n, s.v / n)
    return out, {_ref(x) or "": 1.0 / (n * n)}


@transfer("sum", family=Family.REDUCTION)
def total(node: NodeRecord, ctx: Context) -> Result:
    x, n, feature = _reduced(node, ctx)
    s = ctx.stat(x)
    if feature:
        out = Stat(s.mean * n, n * n * s.mean * s.mean + n * s.var, n * s.v)
    else:
        out = Stat(s.mean * n, n * n * (s.q - s.v) + n * s.v, n * s.v)
    return out, {_ref(x) or "": 1.0}


@transfer("amax", "amin", "max", "min", family=Family.REDUCTION)
def extreme(node: NodeRecord, ctx: Context) -> Result:
    """max over n elements: one of them receives the gradient."""
    x, n, _ = _reduced(node, ctx)
    s = ctx.stat(x)
    if node.shape is None:
        ctx.tuple_result(node, [s, ZERO])
    return s, {_ref(x) or "": 1.0 / n}


@transfer("var", "std", "var_mean", "std_mean", family=Family.REDUCTION)
def spread(node: NodeRecord, ctx: Context) -> Result:
    """The (per-group) variance or standard deviation: a statistic, nearly constant across groups."""
    x, n, _ = _reduced(node, ctx)
    var = ctx.stat(x).var
    if node.op.startswith("std"):
        out, gain = Stat(math.sqrt(var), var, 0.0), 1.0 / (n * n)  # d std/dx_i = (x_i - mean) / (n std)
    else:
        out, gain = Stat(var, var * var, 0.0), 4.0 * var / (n * n)  # d var/dx_i = 2 (x_i - mean) / n
    if node.shape is None:
        ctx.tuple_result(node, [out, Stat(ctx.stat(x).mean, ctx.stat(x).mean ** 2, 0.0)])
    return out, {_ref(x) or "": gain}


@transfer("norm", "linalg_vector_norm", "frobenius_norm", family=Family.REDUCTION)
def l2_norm(node: NodeRecord, ctx: Context) -> Result:
    x, n, _ = _reduced(node, ctx)
    q = n * ctx.stat(x).q
    return Stat(math.sqrt(q), q, 0.0), {_ref(x) or "": 1.0 / n}  # d|x|/dx_i = x_i / |x|


@transfer("logsumexp", family=Family.REDUCTION)
def logsumexp(node: NodeRecord, ctx: Context) -> Result:
    x, n, _ = _reduced(node, ctx)
    s = ctx.stat(x)
    p2, _ = softmax_moments(s.var, n)
    mean = s.mean + math.log(max(n, 1)) + s.var / 2
    return Stat(mean, mean * mean, 0.0), {_ref(x) or "": p2}  # d lse/dx_i = softmax_i


@transfer("cumsum", family=Family.REDUCTION)
def cumsum(node: NodeRecord, ctx: Context) -> Result:
    x = node.arg(0)
    shape = ctx.shape(x) or (1,)
    n = shape[int(node.arg(1, "dim", -1))] if shape else 1
    s = ctx.stat(x)
    reach = (n + 1) / 2  # an element sums, and feeds, (n + 1) / 2 others on average
    return Stat(s.mean * reach, s.var * reach + (s.mean * reach) ** 2, s.v * reach), {_ref(x) or "": reach}


# -- products, attention ----------------------------------------------------------------------------

def _product(node: NodeRecord, ctx: Context, a: Any, b: Any, extra: Any = None) -> Result:
    if isinstance(a, Ref) and isinstance(b, Ref):
        ctx.note(node, "operands", (a.name, b.name))  # the two factors (rules find q and k of q @ k^T by them)
    sa, sb = ctx.stat(a), ctx.stat(b)
    ashape = ctx.shape(a) or (1,)
    k = ashape[-1]
    q = k * sa.q * sb.q
    if sa.mean > 0 and abs(sa.mean * k - 1.0) < 0.05:  # rows of `a` sum to one (attention probabilities)
        q = k * sa.q * sb.v + (sb.q - sb.v)
    mean = k * sa.mean * sb.mean
    v = k * (sa.v * sb.q + sb.v * sa.q) / 2
    gains: Gains = {}
    _add_gain(gains, a, sb.q * node.numel * k / max(ctx.numel(a), 1))
    _add_gain(gains, b, sa.q * node.numel * k / max(ctx.numel(b), 1))
    if extra is not None:
        se = ctx.stat(extra)
        q, mean, v = q + se.q, mean + se.mean, v + se.v
        _add_gain(gains, extra, _bcast(ctx, node, extra))
    return Stat(mean, max(q, mean * mean), min(v, q)), gains


@transfer("matmul", "mm", "bmm", family=Family.MATMUL)
def matmul(node: NodeRecord, ctx: Context) -> Result:
    return _product(node, ctx, node.arg(0), node.arg(1))


@transfer("addmm", "baddbmm", "addbmm", family=Family.MATMUL)
def addmm(node: NodeRecord, ctx: Context) -> Result:
    return _product(node, ctx, node.arg(1), node.arg(2), node.arg(0))


def softmax_moments(logit_var: float, n: int) -> tuple[float, float]:
    """E[p²] per entry of a softmax over n logits of variance `logit_var`, and the mean-square gain from
    its output to each logit, E[sum p² - 2 sum p³ + (sum p²)²] / n (the Jacobian diag(p) - p pᵀ's squared
    Frobenius norm per logit). Sampled once per (variance, n) with a fixed seed: closed forms (lognormal
    weights) miss by a factor 2-6 over the few keys an early causal row sees."""
    from gradlint.estimate.softmax import sampled_softmax

    n = max(int(round(n)), 1)
    if n == 1:
        return 1.0, 0.0
    return sampled_softmax(float(f"{max(logit_var, 0.0):.3g}"), n)


@transfer("log_softmax", "_log_softmax", family=Family.SOFTMAX)
def log_softmax(node: NodeRecord, ctx: Context) -> Result:
    x = node.arg(0)
    shape = ctx.shape(x) or (1,)
    n = shape[int(node.arg(1, "dim", -1))] if shape else 1
    s = ctx.stat(x)
    mean = -math.log(max(n, 1)) - s.var / 2
    return Stat(mean, mean * mean + s.var, s.v), {_ref(x) or "": 1.0}


# -- constants and factories ------------------------------------------------------------------------

@transfer("zeros", "scalar_tensor", "arange", "eye", "randint", "linspace", "_local_scalar_dense", "item", "lt", "le",
          "gt", "ge", "eq", "ne", "logical_not", "logical_and", "logical_or", "argmax", "argmin", "isnan", "isinf",
          "any", "all", "sort", "topk", family=Family.CONSTANT)
@transfer("zeros_like", "new_zeros", family=Family.CONSTANT, reads_values=False)
def constant(node: NodeRecord, ctx: Context) -> Result:
    """No gradient flows back through it (its value is zero, an index, a count or a comparison)."""
    return ZERO, {}


@transfer("sym_size", "size", family=Family.CONSTANT, reads_values=False)
def size(node: NodeRecord, ctx: Context) -> Result:
    """A dimension's length: a number, no gradient."""
    return ZERO, {}


@transfer("ones", family=Family.CONSTANT)
@transfer("ones_like", "new_ones", family=Family.CONSTANT, reads_values=False)
def ones(node: NodeRecord, ctx: Context) -> Result:
    return Stat(1.0, 1.0, 0.0), {}


def _filled(node: NodeRecord, ctx: Context) -> Result:
    value = node.arg(1, "fill_value", 0.0)
    value = float(value) if isinstance(value, (int, float)) else 0.0
    if not math.isfinite(value):  # an additive attention mask: -inf where masked, 0 elsewhere
        return ZERO, {}
    return Stat(value, value * value, 0.0), {}


transfer("full", family=Family.CONSTANT)(_filled)
transfer("full_like", "new_full", family=Family.CONSTANT, reads_values=False)(_filled)


@transfer("randn", "randn_like", family=Family.CONSTANT)
def normal_draw(node: NodeRecord, ctx: Context) -> Result:
    return Stat(0.0, 1.0, 1.0), {}


@transfer("rand", "rand_like", family=Family.CONSTANT)
def uniform_draw(node: NodeRecord, ctx: Context) -> Result:
    """U(0, 1): stochastic depth's keep mask is floor(keep + rand)."""
    return Stat(0.5, 1.0 / 3.0, 1.0 / 12.0), {}


@transfer("bernoulli", family=Family.CONSTANT)
def bernoulli(node: NodeRecord, ctx: Context) -> Result:
    """bernoulli(probs) or x.bernoulli_(p): a 0/1 draw with P(1) = p."""
    p = node.arg(1, "p", None)
    mean = float(p) if isinstance(p, (int, float)) else ctx.stat(node.arg(0)).mean
    mean = min(max(mean, 0.0), 1.0)
    return Stat(mean, mean, mean * (1.0 - mean)), {}


@transfer("tril", "triu", family=Family.STRUCTURAL)
def triangle(node: NodeRecord, ctx: Context) -> Result:
    """Half of a square's entries kept, half zeroed."""
    return ctx.stat(node.arg(0)).scaled(math.sqrt(0.5)), {_ref(node.arg(0)) or "": 0.5}


transfer("empty", "empty_like", "new_empty", family=Family.CONSTANT, defined=False)(constant)
declare("empty_strided", "empty_permuted", family=Family.CONSTANT, defined=False)  # no rule: passed through
declare("sym_numel", "numel", family=Family.CONSTANT, reads_values=False)


@transfer("outer", "ger", family=Family.MATMUL)
def outer(node: NodeRecord, ctx: Context) -> Result:
    a, b = node.arg(0), node.arg(1)
    sa, sb = ctx.stat(a), ctx.stat(b)
    gains: Gains = {}
    _add_gain(gains, a, sb.q * ctx.numel(b))
    _add_gain(gains, b, sa.q * ctx.numel(a))
    return Stat(sa.mean * sb.mean, sa.q * sb.q, sa.v * sb.q), gains


@transfer("einsum", family=Family.MATMUL)
def einsum(node: NodeRecord, ctx: Context) -> Result:
    """Two-operand einsum as a generalised matmul: the contracted letters set the fan."""
    equation, operands = str(node.arg(0)).replace(" ", ""), [o for o in node.arg(1) if isinstance(o, Ref)]
    if len(operands) != 2 or "->" not in equation or "." in equation:  # ellipses: pass through
        return ctx.stat(operands[0]) if operands else Stat(0.0, 1.0, 1.0), {o.name: 1.0 for o in operands}
    inputs, output = equation.split("->")
    left, right = inputs.split(",")
    a, b = operands
    ctx.note(node, "operands", (a.name, b.name))
    sizes = dict(zip(left, ctx.shape(a) or ())) | dict(zip(right, ctx.shape(b) or ()))
    contracted = math.prod(sizes.get(c, 1) for c in set(left + right) - set(output))
    sa, sb = ctx.stat(a), ctx.stat(b)
    gains: Gains = {}
    _add_gain(gains, a, sb.q * node.numel * contracted / max(ctx.numel(a), 1))
    _add_gain(gains, b, sa.q * node.numel * contracted / max(ctx.numel(b), 1))
    q = contracted * sa.q * sb.q
    mean = contracted * sa.mean * sb.mean
    return Stat(mean, max(q, mean * mean), min(contracted * sa.v * sb.q, q)), gains
