"""Recurrent leaves (RNN, LSTM, GRU as single ATen ops): a scalar mean-field recursion over the
sequence gives the output statistics, the gain back to the input through depth, and the gain per
time step, which rules read as evidence (Pascanu et al. 2013; Jozefowicz et al. 2015)."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import torch

from gradlint.estimate.quadrature import Moments, expectations
from gradlint.estimate.stat import Stat
from gradlint.estimate.table import Context, Family, Result, transfer
from gradlint.graph import NodeRecord, Ref


@lru_cache(maxsize=4096)
def _act(name: str, mean: float, var: float) -> Moments:
    fn = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}[name]
    return expectations(fn, mean, var, order=48)


def _r(x: float) -> float:
    return float(f"{x:.3g}")


def _param(ctx: Any, ref: Any) -> torch.Tensor | None:
    if not isinstance(ref, Ref):
        return None
    node = ctx.graph[ref.name]
    return ctx.weights.tensor(node.param) if node.param else None


def _bias_gate(ctx: Any, b_ih: Any, b_hh: Any, gate: int, hidden: int) -> tuple[float, float]:
    """Mean and variance over units of the summed input and hidden bias of one gate."""
    tensors = [t for t in (_param(ctx, b) for b in (b_ih, b_hh)) if t is not None and t.device.type != "meta"]
    if len(tensors) == 2:
        rows = slice(gate * hidden, (gate + 1) * hidden)
        total = tensors[0].detach().double()[rows] + tensors[1].detach().double()[rows]
        return float(total.mean()), float(total.var(unbiased=False)) if total.numel() > 1 else 0.0
    var = sum(ctx.weight(b)[1] for b in (b_ih, b_hh) if b is not None)
    return 0.0, var


def _time_sum(chi: float, steps: int) -> float:
    """Average over positions t of sum_{k < steps - t} chi^k: how gradients from later outputs pile up."""
    if steps <= 1:
        return 1.0
    if abs(chi - 1.0) < 1e-9:
        return (steps + 1) / 2
    chi = min(chi, 10.0)
    return sum((1 - chi ** (steps - t)) / (1 - chi) for t in range(steps)) / steps


@transfer("lstm", "gru", "rnn_tanh", "rnn_relu", family=Family.RECURRENT)
def recurrent(node: NodeRecord, ctx: Context) -> Result:
    x = node.arg(0)
    params = list(node.arg(2) or [])
    has_biases = bool(node.arg(3, "has_biases", True))
    layers = int(node.arg(4, "num_layers", 1))
    bidirectional = bool(node.arg(7, "bidirectional", False))
    batch_first = bool(node.arg(8, "batch_first", False))
    shape = ctx.shape(x) or (1, 1, 1)
    steps = shape[1] if batch_first and len(shape) == 3 else shape[0]
    per_layer = (4 if has_biases else 2) * (2 if bidirectional else 1)
    gates = {"lstm": 4, "gru": 3}.get(node.op, 1)
    q_x = ctx.stat(x).q
    gain_total = 1.0
    chi = 0.0
    forget = None
    for layer in range(layers):
        w_ih, w_hh, *biases = params[layer * per_layer: layer * per_layer + (4 if has_biases else 2)]
        b_ih, b_hh = ([*biases, None, None])[:2]
        hidden = (ctx.shape(w_hh) or (gates, 1))[1]
        fan_in = (ctx.shape(w_ih) or (1, 1))[1]
        _, wih2 = ctx.weight(w_ih)
        _, whh2 = ctx.weight(w_hh)
        bias = [(_bias_gate(ctx, b_ih, b_hh, g, hidden) if has_biases else (0.0, 0.0)) for g in range(gates)]
        q_h, q_c = 0.0, 0.0
        outputs = []
        direct = per_step = 0.0
        for _ in range(max(steps, 1)):
            pre_var = [fan_in * wih2 * q_x + hidden * whh2 * q_h + b[1] for b in bias]
            if node.op == "lstm":
                i, f, g, o = (_act("tanh" if k == 2 else "sigmoid", _r(bias[k][0]), _r(pre_var[k])) for k in range(4))
                q_c_prev = q_c
                q_c = f.second * q_c + i.second * g.second
                c_act = _act("tanh", 0.0, _r(q_c))
                q_h = o.second * c_act.second
                a = o.second * c_act.grad_second
                into_gates = a * (g.second * i.grad_second + i.second * g.grad_second + q_c_prev * f.grad_second) + c_act.second * o.grad_second
                per_step = f.second + hidden * whh2 * into_gates
                forget = f.mean
            elif node.op == "gru":
                r_g, z_g = (_act("sigmoid", _r(bias[k][0]), _r(pre_var[k])) for k in range(2))
                n_g = _act("tanh", _r(bias[2][0]), _r(fan_in * wih2 * q_x + r_g.second * hidden * whh2 * q_h + bias[2][1]))
                keep = 1 - 2 * z_g.mean + z_g.second
                into_gates = keep * n_g.grad_second + z_g.grad_second * (n_g.second + q_h)  # at the previous h
                q_h = keep * n_g.second + z_g.second * q_h
                per_step = z_g.second + hidden * whh2 * into_gates
            else:
                act = _act("tanh" if node.op == "rnn_tanh" else "relu", _r(bias[0][0]), _r(pre_var[0]))
                q_h = act.second
                into_gates = act.grad_second
                per_step = hidden * whh2 * into_gates
            outputs.append(q_h)
            direct = hidden * wih2 * into_gates
        chi = per_step
        gain_total *= direct * _time_sum(chi, steps) * (2 if bidirectional else 1)
        q_x = sum(outputs) / len(outputs)
    ctx.note(node, "gain_per_step", chi)
    ctx.note(node, "steps", steps)
    ctx.note(node, "log10_through_time", steps * math.log10(chi) / 2 if chi > 0 else -math.inf)
    if forget is not None:
        ctx.note(node, "forget_gate_mean", forget)
    if gates == 1:  # an ungated RNN: what each step applies
        ctx.note(node, "nonlinearity", "tanh" if node.op == "rnn_tanh" else "relu")
    out = Stat(0.0, q_x, q_x)
    ctx.tuple_result(node, [out, out, Stat(0.0, q_x, q_x)])
    gains = {x.name: gain_total} if isinstance(x, Ref) else {}
    return out, gains
