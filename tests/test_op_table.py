"""The op table is the one op vocabulary: an op added to it as a member of a family (one table entry) is
seen by the estimator and by every rule that cares about that family, and nothing else keeps op lists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from gradlint.rules.GL101_saturating_chain import SaturatingChain
from gradlint.rules.GL102_init_activation_mismatch import InitActivationMismatch
from torch import nn

from gradlint.capture import capture
from gradlint.estimate import estimate
from gradlint.estimate.table import TABLE, Entry, Family, node_family
from gradlint.estimate.weighted import linear
from gradlint.estimate.weights import WeightTable
from gradlint.graph import ModelGraph
from gradlint.rule import RuleContext

ROOT = Path(__file__).resolve().parent.parent
THROWAWAY = "gradlint_test_dense"  # an op no library has: only its table entry can make it known


def _sigmoid_stack() -> tuple[nn.Module, ModelGraph, tuple[torch.Tensor]]:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(8):
        linear_layer = nn.Linear(32, 32)
        nn.init.normal_(linear_layer.weight, 0.0, 0.3 / 32 ** 0.5)  # too small: the gradient vanishes
        layers += [linear_layer, nn.Sigmoid()]
    model = nn.Sequential(*layers)
    args = (torch.randn(16, 32),)
    return model, capture(model, args), args


def _rename(graph: ModelGraph, old: str, new: str) -> int:
    renamed = 0
    for node in graph.ops():
        if node.op == old:
            node.op = new
            renamed += 1
    return renamed


def _findings(model: nn.Module, graph: ModelGraph, args: tuple[torch.Tensor]) -> dict[str, list[object]]:
    est = estimate(graph, WeightTable(model), args)
    ctx = RuleContext(graph, est, model, None)
    return {"GL101": list(SaturatingChain().check(ctx)), "GL102": list(InitActivationMismatch().check(ctx)),
            "unknown": est.unknown_ops, "profile": [e.log10_grad_rms for e in est.profile]}


def test_a_new_weighted_op_is_seen_by_the_estimator_and_the_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    model, graph, args = _sigmoid_stack()
    reference = _findings(model, graph, args)
    assert reference["GL101"] and reference["GL102"] and not reference["unknown"]

    model, graph, args = _sigmoid_stack()
    assert _rename(graph, "linear", THROWAWAY) == 8
    unknown = _findings(model, graph, args)
    assert THROWAWAY in unknown["unknown"]  # no entry: the estimator passes it through and says so
    assert not unknown["GL101"] and not unknown["GL102"]  # and the rules cannot see the layers

    monkeypatch.setitem(TABLE, THROWAWAY, Entry(Family.WEIGHTED, linear))  # the one table entry
    node = next(n for n in graph.ops() if n.op == THROWAWAY)
    assert graph.family(node) is Family.WEIGHTED
    known = _findings(model, graph, args)
    assert not known["unknown"]
    assert known["profile"] == reference["profile"]
    assert [f.message for f in known["GL101"]] == [f.message for f in reference["GL101"]]
    assert [f.message for f in known["GL102"]] == [f.message for f in reference["GL102"]]


def test_the_graph_answers_families_from_the_table() -> None:
    _model, graph, _ = _sigmoid_stack()
    families = {node.op: graph.family(node) for node in graph.ops()}
    assert families["linear"] is Family.WEIGHTED
    assert families["sigmoid"] is Family.POINTWISE  # tagged pointwise by ATen: saturation is measured, not declared
    assert all(graph.family(n) is None for n in graph if n.kind.value != "op")
    assert node_family(next(graph.ops())) is graph.family(next(graph.ops()))


def test_every_table_entry_has_a_family() -> None:
    assert TABLE and all(isinstance(entry.family, Family) for entry in TABLE.values())


OP_LIST = re.compile(r'[{(\[]\s*"[a-z_0-9]+",\s*"[a-z_0-9]+"')  # two or more quoted names in a literal


@pytest.mark.parametrize("path", sorted([*ROOT.glob("rules/*.py"), *ROOT.glob("gradlint/estimate/*.py"),
                                         ROOT / "gradlint" / "updates.py"]),
                         ids=lambda p: p.name)
def test_no_private_op_lists(path: Path) -> None:
    """Rules and the estimator ask the table; op names appear only in `@transfer`/`declare` entries."""
    text = path.read_text()
    text = re.sub(r"(@transfer|transfer|declare)\((?:[^()]|\([^()]*\))*\)", "", text)  # the table's own entries
    ops = set(TABLE)
    for match in OP_LIST.finditer(text):
        names = re.findall(r'"([a-z_0-9]+)"', text[match.start():match.start() + 400].split(")")[0].split("}")[0])
        assert len(set(names) & ops) < 2, f"{path.name}: an op-name list {names[:6]}...; ask graph.family() instead"
