"""ModelGraph queries on small captured models."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from torch import nn

from gradlint.capture import capture
from gradlint.graph import ModelGraph, NodeKind


class _Reuse(nn.Module):
    """`a` runs twice; its weighted-layer output is its first call's."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)  # 1-D parameters only: not a weighted layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.a(x))
        h = self.norm(self.b(h))
        return self.a(h)


class _Skip(nn.Module):
    def __init__(self, skip: bool) -> None:
        super().__init__()
        self.skip = skip
        self.f = nn.Linear(4, 4)
        self.g = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.g(torch.relu(self.f(x)))
        return x + h if self.skip else h


def _graph(model: nn.Module) -> ModelGraph:
    return capture(model, (torch.randn(5, 4),))


def test_weighted_layers_order_and_first_call_output() -> None:
    graph = _graph(_Reuse())
    layers = graph.weighted_layers
    assert [(l.module, l.kind, l.weight) for l in layers] == [("a", "Linear", "a.weight"), ("b", "Linear", "b.weight")]
    a_out = graph[layers[0].output]
    assert a_out.op == "linear" and a_out.module == "a" and a_out.shape == (5, 4)
    assert [u.op for u in graph.users(a_out.name)] == ["tanh"]
    b_out = graph[layers[1].output]
    assert [u.op for u in graph.users(b_out.name)] == ["layer_norm"]
    assert graph.output not in layers[0].nodes  # the second call of `a` belongs to no weighted-layer entry
    assert graph[graph.output].module == "a"


class _Reordered(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.late = nn.Linear(4, 2)
        self.early = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.late(self.early(x))


def test_weighted_layers_follow_execution_not_definition() -> None:
    assert [l.module for l in _graph(_Reordered()).weighted_layers] == ["early", "late"]


def test_producers_and_live() -> None:
    graph = _graph(_Reuse())
    out = graph[graph.output]
    assert {p.kind for p in graph.producers(out.name)} >= {NodeKind.PARAM}
    assert graph.output in graph.live
    assert all(graph[n].kind is not NodeKind.OP or n in graph.live for n in graph.order)


def test_between() -> None:
    graph = _graph(_Reuse())
    a, b = graph.weighted_layers
    inside = {graph[n].op for n in graph.between(a.output, b.output)}
    assert inside == {"tanh"}
    assert graph.between(b.output, a.output) == set()
    assert b.output in graph.between(a.output, graph.output)


def _input(graph: ModelGraph) -> str:
    return next(r.name for r in graph if r.kind is NodeKind.INPUT)


@pytest.mark.parametrize("skip", [True, False])
def test_reachable_avoiding_detects_skip(skip: bool) -> None:
    graph = _graph(_Skip(skip))
    avoid = {n for layer in graph.weighted_layers for n in layer.nodes}
    assert graph.reachable_avoiding(_input(graph), graph.output, avoid) is skip
    assert graph.reachable_avoiding(_input(graph), graph.output, set()) is True


def test_longest_path() -> None:
    graph = _graph(_Skip(True))
    weight = {r.name: 1.0 for r in graph.ops() if r.op == "linear"}
    total, path = graph.longest_path(weight)
    assert total == 2.0
    assert path[-1] == graph.output
    assert [graph[n].op for n in path if graph[n].kind is NodeKind.OP][-1] == "add"
    assert sum(1 for n in path if graph[n].op == "linear") == 2
    for src, dst in itertools.pairwise(path):
        assert graph.nx.has_edge(src, dst)


def test_location_of_module() -> None:
    graph = _graph(_Reuse())
    loc = graph.location_of_module("b")
    assert loc is not None and loc.path.endswith("tests/test_graph.py")
    assert "self.b(h)" in Path(loc.path).read_text().splitlines()[loc.line - 1]


def test_position_is_execution_order() -> None:
    graph = _graph(_Reuse())
    assert [graph.position[n] for n in graph.order] == list(range(len(graph.order)))


def test_layer_lookups() -> None:
    graph = _graph(_Skip(skip=True))
    f, g = graph.weighted_layers
    assert graph.layer_at(f.output) is f and graph.layer_at(g.output) is g
    assert graph.layer_at(graph.output) is None  # the residual add is no layer's output
    assert graph.layer_named("g") is g and graph.layer_named("missing") is None
    assert graph.next_layer(f) is g and graph.next_layer(g) is None


def test_layer_before_and_feeding() -> None:
    graph = _graph(_Skip(skip=True))
    f, g = graph.weighted_layers
    relu = next(r.name for r in graph.ops() if r.op == "relu")
    assert graph.layer_before(f.output) is None  # strictly before: a layer is not before its own output
    assert graph.layer_before(relu) is f
    assert graph.layer_before(g.output) is f
    assert graph.layer_before(graph.output) is g
    assert graph.layer_feeding(relu) is f
    assert graph.layer_feeding(g.output) is g  # the node itself counts
    assert graph.layer_feeding(graph.output) is g  # through the add, not the model input
    assert graph.layer_feeding(_input(graph)) is None


def test_layer_before_skips_a_reused_layers_later_calls() -> None:
    graph = _graph(_Reuse())
    _a, b = graph.weighted_layers
    assert graph.layer_before(graph.output) is b  # `a`'s second call is not a weighted-layer output


def test_layers_in_keeps_layer_order() -> None:
    graph = _graph(_Skip(skip=True))
    f, g = graph.weighted_layers
    assert graph.layers_in([g.output, f.output]) == [f, g]
    assert graph.layers_in(graph.between(_input(graph), graph.output)) == [f, g]
    assert graph.layers_in([graph.output]) == []
