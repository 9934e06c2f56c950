"""A readout of one position (a class token, `x[:, 0]`): the gradient reaches that position alone, so
every op between it and where that position was made is judged at that position's own statistics.

The mean field describes the average position. A class token is made apart from the others (a learnt
vector concatenated in front of the patch tokens) and at init keeps its own scale through every block
(attention adds an average of values, the residual keeps the rest). A layer norm's backward gain is
1/variance of the position it normalises: read out at the class token, that is the class token's variance,
not the average position's, and the gap reaches decades in ViTs whose class token is ten times smaller
than a patch token.

So for each selection of one index along a dimension, the ops that act on each position alone along that
dimension (elementwise, a layer norm or linear over the trailing dimensions, same-shape copies) are
followed back to where the position came from: a concatenation along that dimension (its part), a
data-independent value (that index of its real value), or an op that mixes positions (attention, a
reduction), whose output is the same at every position and so keeps its ordinary statistics. Those ops'
rules are run again at the selected position's statistics (`Readout.stats`, `Readout.gains`), and the
backward pass carries the gradient of the selected position through them (`backward`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from gradlint.estimate.stat import Stat
from gradlint.estimate.table import Family, node_family, rule_of
from gradlint.graph import ModelGraph, NodeKind, NodeRecord, Ref

_ELEMENTWISE = frozenset({Family.POINTWISE, Family.SUM, Family.PRODUCT, Family.SELECT, Family.DROPOUT})
_TRAILING = {"layer_norm": 1, "native_layer_norm": 1, "rms_norm": 1}  # op -> index of normalized_shape
Position = tuple[int, int]  # (dimension, index) of the selected position in a node's own shape


@dataclass
class Readout:
    """The ops that carry one selected position, in graph order, with that position's statistics."""

    select: str  # the selecting node
    source: str  # the tensor it selects from
    position: dict[str, Position] = field(default_factory=dict)  # chain node -> where the position is in it
    leaves: dict[str, Stat] = field(default_factory=dict)  # data-independent inputs: the position's real values
    edges: dict[str, set[str]] = field(default_factory=dict)  # chain node -> inputs that carry the position
    stats: dict[str, Stat] = field(default_factory=dict)
    gains: dict[str, dict[str, float]] = field(default_factory=dict)


def _rank(graph: ModelGraph, node: NodeRecord) -> int | None:
    if node.shape is not None:
        return len(node.shape)
    first = node.args[0] if node.args else None  # a tuple result (native_layer_norm): its input's rank
    return len(graph[first.name].shape or ()) if isinstance(first, Ref) and graph[first.name].shape is not None else None


def _shape(graph: ModelGraph, node: NodeRecord) -> tuple[int, ...] | None:
    if node.shape is not None:
        return node.shape
    first = node.args[0] if node.args else None
    return graph[first.name].shape if isinstance(first, Ref) else None


def _per_position(graph: ModelGraph, node: NodeRecord, dim: int) -> bool:
    """Does the op compute each position along `dim` from that position of its inputs alone?"""
    rank = _rank(graph, node)
    if rank is None or not 0 <= dim < rank:
        return False
    if node.op in _TRAILING:
        normalized = node.arg(_TRAILING[node.op]) or ()
        return dim < rank - len(normalized)
    if node.op == "linear":
        return dim < rank - 1
    if node.op == "getitem":  # one result of a tuple op already on the chain
        return True
    family = node_family(node)
    if family in _ELEMENTWISE:
        return True
    if family in (Family.STRUCTURAL, Family.DROPOUT) and node.args and isinstance(node.args[0], Ref):
        src = graph[node.args[0].name]  # a copy, cast or full slice that keeps the shape
        return node.shape is not None and src.shape == node.shape and rule_of(node.op) is not None
    return False


def _cat_part(graph: ModelGraph, node: NodeRecord, dim: int, index: int) -> tuple[str, int] | None:
    if node.op != "cat":
        return None
    parts, rank, cat_dim = node.arg(0), _rank(graph, node), node.arg(1, "dim", 0)
    if rank is None or not isinstance(parts, (list, tuple)) or not isinstance(cat_dim, int) or cat_dim % rank != dim:
        return None
    offset = 0
    for part in parts:
        if not isinstance(part, Ref) or graph[part.name].shape is None:
            return None
        size = graph[part.name].shape[dim]  # type: ignore[index]
        if offset <= index < offset + size:
            return part.name, index - offset
        offset += size
    return None


def _slice_index(graph: ModelGraph, node: NodeRecord, dim: int, index: int) -> tuple[str, int] | None:
    """`x[:, a:b:c]` along the position's dimension: where position `index` of the slice is in `x`."""
    if node.op != "slice" or not node.args or not isinstance(node.args[0], Ref):
        return None
    src = graph[node.args[0].name]
    if src.shape is None or node.shape is None or len(src.shape) != len(node.shape):
        return None
    along = node.arg(1, "dim", 0)
    if not isinstance(along, int) or along % len(src.shape) != dim:
        return None
    start, step = node.arg(2, "start", 0), node.arg(4, "step", 1)
    start = 0 if start is None else start
    if not isinstance(start, int) or not isinstance(step, int) or step < 1:
        return None
    start = start + src.shape[dim] if start < 0 else start
    inner = max(start, 0) + index * step
    return (src.name, inner) if inner < src.shape[dim] else None


def _position_stat(value: torch.Tensor, dim: int, index: int) -> Stat | None:
    """A data-independent value at one position: constant across the batch, so no within-unit variance."""
    if not isinstance(value, torch.Tensor) or not value.is_floating_point() or value.dim() <= dim:
        return None
    size = value.shape[dim]
    t = value.select(dim, index if size > 1 else 0).detach().double()
    if t.numel() == 0:
        return None
    return Stat(float(t.mean()), float((t * t).mean()), 0.0)


def find(graph: ModelGraph, node: NodeRecord, value: Callable[[str], object], free: set[str]) -> Readout | None:
    """The chain behind a selection of one index, if that position was made apart (a concatenated part,
    a constant) from the others; None for any other node."""
    if node.op != "select" or not node.args or not isinstance(node.args[0], Ref):
        return None
    src = graph[node.args[0].name]
    if src.shape is None or not src.shape or node.name in free:
        return None
    dim = int(node.arg(1, "dim", 0)) % len(src.shape)
    index = int(node.arg(2, "index", 0)) % max(src.shape[dim], 1)
    if dim == 0 or src.shape[dim] < 2:
        return None  # the batch dimension is not a position
    readout = Readout(node.name, src.name)
    if _follow(graph, readout, src.name, (dim, index), value, free) and _made_apart(graph, readout):
        return readout
    return None


def _follow(graph: ModelGraph, readout: Readout, start: str, where: Position, value: Callable[[str], object],
            free: set[str]) -> bool:
    """Walk back from `start` through per-position ops; True if `start` joined the chain."""
    stack = [(start, where)]
    while stack:
        name, (dim, index) = stack.pop()
        if name in readout.position or name in readout.leaves:
            continue
        node = graph[name]
        if name in free:
            stat = _position_stat(value(name), dim, index)  # type: ignore[arg-type]
            if stat is not None:
                readout.leaves[name] = stat
            continue
        if node.kind is not NodeKind.OP:
            continue
        inner = _slice_index(graph, node, dim, index)
        if inner is not None:  # a slice along the position's dimension: the same position, renumbered
            readout.position[name] = (dim, index)
            readout.edges[name] = {inner[0]}
            stack.append((inner[0], (dim, inner[1])))
            continue
        part = _cat_part(graph, node, dim, index)
        if part is not None:
            readout.position[name] = (dim, index)
            readout.edges[name] = {part[0]}
            stack.append((part[0], (dim, part[1])))
            continue
        if not _per_position(graph, node, dim):
            continue
        shape = _shape(graph, node) or ()
        readout.position[name] = (dim, index)
        edges = set()
        for ref in node.args if node.op != "getitem" else node.args[:1]:
            for r in ref if isinstance(ref, (list, tuple)) else (ref,):
                if not isinstance(r, Ref):
                    continue
                src_shape = _shape(graph, graph[r.name])
                if src_shape is None:
                    continue
                k = dim - (len(shape) - len(src_shape))
                if node.op == "getitem":
                    k = dim
                if k < 0 or k >= len(src_shape) or src_shape[k] != shape[dim]:
                    continue  # broadcast along the position: the same at every position
                edges.add(r.name)
                stack.append((r.name, (k, index)))
        readout.edges[name] = edges
    return start in readout.position


def _made_apart(graph: ModelGraph, readout: Readout) -> bool:
    """Only a position made apart from the others can differ from the average one: the chain must reach
    a concatenated part or a data-independent value."""
    return bool(readout.leaves) or any(graph[n].op == "cat" for n in readout.position)


def backward(graph: ModelGraph, gains: dict[str, dict[str, float]], readouts: list[Readout]) -> dict[str, float]:
    """Mean-square gradients: the ordinary pass, with the selected positions' share carried along each
    readout's chain at that position's gains (and handed to the ordinary pass where the chain ends)."""
    r: dict[str, float] = {name: 0.0 for name in graph.order}
    r[graph.output] = 1.0
    on: dict[str, float] = {}  # the selected position's share, as a mean square over the whole tensor
    redirected = {(ro.select, ro.source): ro for ro in readouts}
    chain: dict[str, Readout] = {}
    for ro in readouts:
        for name in ro.position:
            chain.setdefault(name, ro)
    for name in reversed(graph.order):
        value = r[name]
        if value != 0.0:
            for src, gain in gains.get(name, {}).items():
                if src not in r:
                    continue
                if (name, src) in redirected and src in chain:
                    on[src] = on.get(src, 0.0) + gain * value
                else:
                    r[src] += gain * value
        share = on.pop(name, 0.0)
        if share == 0.0:
            continue
        ro = chain[name]
        r[name] += share
        edges = ro.edges.get(name, set())
        numel = graph[name].numel
        for src, gain in ro.gains.get(name, {}).items():
            if src not in r:
                continue
            if graph[name].op == "cat":  # the position's gradient lands on one part: fewer elements
                gain = gain * numel / max(graph[src].numel, 1)
            if src in edges and src in ro.position:
                on[src] = on.get(src, 0.0) + gain * share
            else:
                r[src] += gain * share
    return r
