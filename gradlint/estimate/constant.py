"""Data-independent subgraphs are evaluated, not modelled: a value computed only from parameters,
buffers and constants (a standardised weight, an attention mask, `sqrt(torch.tensor(256))`, a position
table) is run once on the real tensors, so the estimate uses what it is rather than a Gaussian guess.
On the meta device (no values) such a node is still recognised: its statistics are taken over the
tensor's own elements (a weight has no batch), which keeps a normalisation over a weight from reading
as a normalisation by zero batch variance."""

from __future__ import annotations

from typing import Any

import torch

from gradlint.estimate.factories import size
from gradlint.estimate.table import TABLE, rule_of
from gradlint.estimate.weights import WeightTable
from gradlint.graph import ModelGraph, NodeKind, NodeRecord, Ref

MAX_NUMEL = 1 << 24  # larger results are left to the moment model (memory, time)
_PLACEMENT = ("device", "pin_memory")


def data_independent(graph: ModelGraph) -> set[str]:
    """Op nodes computed from parameters, buffers, constants and shapes alone (no input value, no RNG)."""
    free: set[str] = set()
    for node in graph:
        if node.kind in (NodeKind.PARAM, NodeKind.BUFFER, NodeKind.CONSTANT):
            free.add(node.name)
        elif node.kind is NodeKind.OP and not _seeded(node):
            if _shape_only(node.op) or all(src in free for src in node.inputs):
                free.add(node.name)
    return free


def _shape_only(op: str) -> bool:
    """The table says the op's result depends on its inputs' shapes only, never on their values."""
    entry = TABLE.get(op)
    return entry is not None and not entry.reads_values


def _defined(op: str) -> bool:
    """False for uninitialised memory: the value is whatever is written into it later."""
    entry = TABLE.get(op)
    return entry is None or entry.defined


def _seeded(node: NodeRecord) -> bool:
    return torch.Tag.nondeterministic_seeded in getattr(node.target, "tags", ())


def _written(schema: Any) -> list[Any]:
    return [a for a in schema.arguments if a.alias_info is not None and a.alias_info.is_write]


def _functional(node: NodeRecord) -> tuple[Any, set[str]]:
    """The op to call without writing into any argument (an in-place or `out=` op's out-of-place form,
    by its overload packet) and the keyword arguments to drop; (None, ...) if there is none."""
    target = node.target
    schema = getattr(target, "_schema", None)
    if schema is None:
        return (target if callable(target) else None), set()
    written = _written(schema)
    if not written:
        return target, set()
    if any(not a.kwarg_only for a in written) and not node.inplace:
        return None, set()  # writes into a positional argument without an out-of-place twin
    packet = getattr(torch.ops.aten, node.op, None)
    return packet, {a.name for a in written if a.kwarg_only}


class Evaluator:
    """Real values of the data-independent nodes of one graph, computed on demand and kept."""

    def __init__(self, graph: ModelGraph, weights: WeightTable) -> None:
        self.graph = graph
        self.weights = weights
        self.free = data_independent(graph)
        self.values: dict[str, Any] = {}
        self._uniform: dict[str, float | None] = {}

    def value(self, name: str) -> Any:
        """The node's real value (tensor, number), or None where it cannot be computed for real."""
        if name in self.values:
            return self.values[name]
        self.values[name] = None  # also what a failure leaves
        if name not in self.free:
            return None
        node = self.graph[name]
        result: Any = None
        if node.kind is not NodeKind.OP:
            tensor = node.value if node.value is not None else self.weights.tensor(node.param) if node.param else None
            result = tensor.detach() if isinstance(tensor, torch.Tensor) and tensor.device.type != "meta" else None
        elif _defined(node.op):
            result = self._run(node)
        self.values[name] = result
        return result

    def uniform(self, name: str) -> float | None:
        """The one number a data-independent tensor holds everywhere (a filled or shifted constant), or None."""
        if name not in self.free or self.graph[name].kind is NodeKind.PARAM:
            return None  # a parameter is trained away from any single value: an input of its own
        if name not in self._uniform:
            value = self.value(name)
            result = None
            if isinstance(value, torch.Tensor) and 0 < value.numel() <= MAX_NUMEL and not value.is_complex():
                flat = value.reshape(-1)
                if bool((flat == flat[0]).all()):
                    result = float(flat[0])
            self._uniform[name] = result
        return self._uniform[name]

    def tensor(self, name: str) -> torch.Tensor | None:
        value = self.value(name)
        return value if isinstance(value, torch.Tensor) else None

    def _run(self, node: NodeRecord) -> Any:
        if node.shape is not None and node.numel > MAX_NUMEL:
            return None
        target, dropped = _functional(node)
        if target is None:
            return None
        missing = object()

        def resolve(v: Any) -> Any:
            if isinstance(v, Ref):
                if _shape_only(node.op) and v.name not in self.free:
                    src = self.graph[v.name]
                    return torch.empty(src.shape, dtype=src.dtype or torch.float32) if src.shape is not None else missing
                got = self.value(v.name)
                return missing if got is None else got
            if isinstance(v, (list, tuple)):
                items = [resolve(i) for i in v]
                return missing if any(i is missing for i in items) else type(v)(items)
            return v

        args = [resolve(a) for a in node.args]
        kwargs = {k: resolve(v) for k, v in node.kwargs.items()
                  if k not in dropped and not (k in _PLACEMENT and str(v) == "meta")}  # a meta model's masks still get values
        if any(a is missing for a in args) or any(v is missing for v in kwargs.values()):
            return None
        if rule_of(node.op) is size and len(args) == 2 and isinstance(args[0], torch.Tensor):
            return int(args[0].shape[int(args[1])])
        try:
            with torch.no_grad():
                out = target(*args, **kwargs)
        except Exception:  # an op that cannot run outside its trace: the moment model takes over
            return None
        tensors = out if isinstance(out, (tuple, list)) else (out,)
        if any(isinstance(t, torch.Tensor) and t.device.type == "meta" for t in tensors):
            return None
        return out


def element_stat(value: Any) -> tuple[float, float, float] | None:
    """(mean, E[x²], variance) over a real value's elements; None for what has no such statistics."""
    if isinstance(value, bool) or not isinstance(value, (int, float, torch.Tensor)):
        return None
    if not isinstance(value, torch.Tensor):
        return float(value), float(value) ** 2, 0.0
    if value.is_complex() or value.numel() == 0:
        return None
    flat = value.detach().reshape(-1)
    if flat.numel() > MAX_NUMEL // 16:
        flat = flat[:: flat.numel() // (MAX_NUMEL // 16) + 1]
    flat = flat.to(torch.float64)
    finite = torch.isfinite(flat)
    if not bool(finite.all()):  # an additive mask's -inf: the finite part is the value's scale
        flat = flat[finite]
        if flat.numel() == 0:
            return None
    mean, second = float(flat.mean()), float((flat * flat).mean())
    return mean, second, max(second - mean * mean, 0.0)


def within_unit_variance(value: Any) -> float:
    """The variance of a constant tensor within a unit across positions (the estimator's `v`): over every
    dimension but the feature one (dim 1 of a 2-d or 4-d+ tensor, the last of a 3-d one, as `_reduced`
    reads them). A position table varies along the sequence; a per-channel vector does not."""
    if not isinstance(value, torch.Tensor) or value.dim() < 2 or value.is_complex() or value.numel() > MAX_NUMEL:
        return 0.0
    t = value.detach().double()
    t = torch.where(torch.isfinite(t), t, torch.zeros_like(t))
    feature = value.dim() - 1 if value.dim() == 3 else 1
    dims = [d for d in range(value.dim()) if d != feature]
    return float(t.var(dim=dims, unbiased=False).mean()) if t.numel() > t.shape[feature] else 0.0
