"""The model as a typed dataflow graph on networkx, and the structural queries rules ask of it."""

from __future__ import annotations

import bisect
import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from gradlint.types import SourceLocation

if TYPE_CHECKING:
    import torch

    from gradlint.types import Family


class NodeKind(str, enum.Enum):
    INPUT = "input"
    PARAM = "param"
    BUFFER = "buffer"
    CONSTANT = "constant"
    OP = "op"
    OUTPUT = "output"


@dataclass(frozen=True)
class Ref:
    """A reference to another node inside an op's arguments."""

    name: str


@dataclass
class NodeRecord:
    """One value in the graph: an input, a parameter, or the result of one op call."""

    name: str
    kind: NodeKind
    op: str = ""  # canonical op name: aten overload packet without the in-place suffix ("relu", "linear")
    inplace: bool = False
    target: Any = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    shape: tuple[int, ...] | None = None
    dtype: torch.dtype | None = None
    module: str = ""  # innermost module path ("" is the root)
    module_type: str = ""
    module_stack: tuple[str, ...] = ()  # call keys, outermost first; a repeated call has an "@n" suffix
    location: SourceLocation | None = None
    param: str | None = None  # qualified parameter or buffer name, for PARAM/BUFFER nodes
    value: torch.Tensor | None = None  # a lifted constant's tensor (e.g. weights kept outside parameters())

    @property
    def inputs(self) -> list[str]:
        return [r.name for r in _refs(self.args)] + [r.name for r in _refs(tuple(self.kwargs.values()))]

    def arg(self, index: int, name: str | None = None, default: Any = None) -> Any:
        if name is not None and name in self.kwargs:
            return self.kwargs[name]
        return self.args[index] if index < len(self.args) else default

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape or ():
            n *= d
        return n


def _refs(values: Iterable[Any]) -> Iterator[Ref]:
    for v in values:
        if isinstance(v, Ref):
            yield v
        elif isinstance(v, (list, tuple)):
            yield from _refs(v)


@dataclass(frozen=True)
class WeightedLayer:
    """A leaf module that owns a weight of two or more dimensions, at its first call."""

    module: str
    kind: str  # class name: Linear, Conv2d, LSTM...
    output: str  # node holding the first tensor output of the first call
    weight: str  # qualified name of the weight parameter
    nodes: tuple[str, ...]  # every node of the first call


class ModelGraph:
    """A DAG of `NodeRecord`s in execution order, plus the module tree it came from."""

    def __init__(self, records: list[NodeRecord], output: str, method: str, module_types: dict[str, str],
                 leaf_weights: dict[str, str], notes: list[str] | None = None) -> None:
        self.method = method
        self.records = {r.name: r for r in records}
        self.order = [r.name for r in records]
        self.output = output
        self.module_types = module_types
        self.notes = notes or []
        self.fallback = False
        self._leaf_weights = leaf_weights
        import networkx as nx  # here, not at import: `gradlint rules` and `explain` load this module's enums

        self.nx = nx.DiGraph()
        for r in records:
            self.nx.add_node(r.name)
            for src in r.inputs:
                self.nx.add_edge(src, r.name)

    def __getitem__(self, name: str) -> NodeRecord:
        return self.records[name]

    def __iter__(self) -> Iterator[NodeRecord]:
        return (self.records[n] for n in self.order)

    def ops(self) -> Iterator[NodeRecord]:
        return (r for r in self if r.kind is NodeKind.OP)

    def family(self, node: NodeRecord | str) -> Family | None:
        """The op family of `node` (weighted, normalisation, pointwise, pooling...), as the estimator's op
        table declares it: rules ask this, never keep op-name lists. None for non-op nodes and unknown ops."""
        from gradlint.estimate.table import (
            node_family,  # the estimator registers its table on import
        )

        return node_family(self.records[node] if isinstance(node, str) else node)

    def users(self, name: str) -> list[NodeRecord]:
        return [self.records[n] for n in self.nx.successors(name)]

    def producers(self, name: str) -> list[NodeRecord]:
        return [self.records[n] for n in self.records[name].inputs]

    @cached_property
    def live(self) -> frozenset[str]:
        """Nodes the output depends on: what the backward pass reaches."""
        import networkx as nx

        return frozenset(nx.ancestors(self.nx, self.output)) | {self.output}

    @cached_property
    def weighted_layers(self) -> list[WeightedLayer]:
        """Weighted leaf layers in first-execution order, each with the node of its first output."""
        calls: dict[str, list[str]] = {}
        for r in self.ops():
            for key in r.module_stack:
                path = key.split("@")[0]
                if path in self._leaf_weights and "@" not in key:
                    calls.setdefault(path, []).append(r.name)
        layers = []
        for path, nodes in calls.items():
            inside = set(nodes)
            boundary = [n for n in nodes if n == self.output or any(u not in inside for u in self.nx.successors(n))]
            tensors = [n for n in boundary if self.records[n].shape is not None]
            output = (tensors or boundary or nodes)[0]
            layers.append(WeightedLayer(path, self.module_types.get(path, ""), output, self._leaf_weights[path], tuple(nodes)))
        return layers

    @cached_property
    def position(self) -> dict[str, int]:
        """Each node's index in execution order: "comes before" without an O(n) `order.index`."""
        return {name: i for i, name in enumerate(self.order)}

    @cached_property
    def _layer_by_output(self) -> dict[str, WeightedLayer]:
        return {layer.output: layer for layer in self.weighted_layers}

    @cached_property
    def _layer_by_module(self) -> dict[str, WeightedLayer]:
        return {layer.module: layer for layer in self.weighted_layers}

    @cached_property
    def _layer_rank(self) -> dict[str, int]:
        return {layer.module: i for i, layer in enumerate(self.weighted_layers)}

    @cached_property
    def _layers_by_position(self) -> tuple[list[int], list[WeightedLayer]]:
        """Layers sorted by where their output is computed, with those positions, for bisection."""
        ranked = sorted((self.position[output], layer) for output, layer in self._layer_by_output.items()
                        if output in self.position)
        return [pos for pos, _ in ranked], [layer for _, layer in ranked]

    def layer_at(self, node: str) -> WeightedLayer | None:
        """The weighted layer whose output is `node`."""
        return self._layer_by_output.get(node)

    def layer_named(self, module: str) -> WeightedLayer | None:
        """The weighted layer at module path `module`."""
        return self._layer_by_module.get(module)

    def layer_before(self, node: str) -> WeightedLayer | None:
        """The last weighted layer whose output precedes `node` in execution order."""
        positions, layers = self._layers_by_position
        index = bisect.bisect_left(positions, self.position[node])
        return layers[index - 1] if index else None

    def layer_feeding(self, node: str) -> WeightedLayer | None:
        """The nearest weighted-layer output upstream of `node` (itself included), breadth first through ops."""
        frontier, seen = [node], {node}
        while frontier:
            name = frontier.pop(0)
            layer = self._layer_by_output.get(name)
            if layer is not None:
                return layer
            for src in self.records[name].inputs:
                if src not in seen and self.records[src].kind is NodeKind.OP:
                    seen.add(src)
                    frontier.append(src)
        return None

    def layers_in(self, nodes: Iterable[str]) -> list[WeightedLayer]:
        """The weighted layers whose output is one of `nodes`, in first-execution order."""
        inside = set(nodes)
        return [layer for layer in self.weighted_layers if layer.output in inside]

    def next_layer(self, layer: WeightedLayer) -> WeightedLayer | None:
        """The weighted layer executed first after `layer`."""
        index = self._layer_rank[layer.module] + 1
        return self.weighted_layers[index] if index < len(self.weighted_layers) else None

    # -- structural queries rules use -------------------------------------------------------------

    def between(self, start: str, end: str) -> set[str]:
        """Nodes on some path from `start` to `end` (both excluded)."""
        import networkx as nx

        found: set[str] = (nx.descendants(self.nx, start) & nx.ancestors(self.nx, end)) - {start, end}
        return found

    def reachable_avoiding(self, start: str, end: str, avoid: set[str]) -> bool:
        """Whether `end` can be reached from `start` without passing through `avoid`: a bypass (skip)."""
        seen = {start}
        stack = [start]
        while stack:
            for nxt in self.nx.successors(stack.pop()):
                if nxt == end:
                    return True
                if nxt not in seen and nxt not in avoid:
                    seen.add(nxt)
                    stack.append(nxt)
        return False

    def longest_path(self, weight: dict[str, float]) -> tuple[float, list[str]]:
        """The heaviest source-to-output path, where each node counts `weight.get(node, 0)`."""
        best: dict[str, tuple[float, str | None]] = {}
        for name in self.order:
            preds = [p for p in self.records[name].inputs if p in best]
            prev = max(preds, key=lambda p: best[p][0], default=None)
            base = best[prev][0] if prev is not None else 0.0
            best[name] = (base + weight.get(name, 0.0), prev)
        end = self.output
        path = []
        node: str | None = end
        while node is not None:
            path.append(node)
            node = best[node][1]
        return best[end][0], path[::-1]

    def location_of_module(self, module: str) -> SourceLocation | None:
        for r in self.ops():
            if r.module == module and r.location is not None:
                return r.location
        return None
