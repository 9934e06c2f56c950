"""The op table: for every op name the estimator knows, its family and its transfer rule.

This is the one op vocabulary of gradlint. A transfer rule registers itself with `@transfer(op, ...,
family=Family.X)`; an op the pointwise mechanism judges as a function φ of its input (so with no rule of
its own) is `declare`d with its family. Rules never keep op-name lists: they ask `ModelGraph.family(node)`,
which reads this table, so an op added here is seen by every rule that cares about its family.

Each transfer rule gets the node and a context and returns the output `Stat` and, for each tensor input,
the factor by which the mean-square gradient at the output becomes the mean-square gradient at that input
(`r_in = gain * r_out`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from gradlint.estimate.stat import Stat
from gradlint.graph import ModelGraph, NodeKind, NodeRecord, Ref
from gradlint.types import Family  # defined without torch, so rule metadata loads without it

__all__ = ["TABLE", "Entry", "Family", "transfer"]

Gains = dict[str, float]
Result = tuple[Stat, Gains]


class Context(Protocol):
    """What a transfer rule may ask about the node's inputs."""

    graph: ModelGraph

    def stat(self, value: Any) -> Stat: ...
    def shape(self, value: Any) -> tuple[int, ...] | None: ...
    def numel(self, value: Any) -> int: ...
    def weight(self, value: Any) -> tuple[float, float]: ...  # (E[w], E[w²]) of a parameter input
    def tuple_result(self, node: NodeRecord, stats: list[Stat]) -> None: ...
    def element(self, source: str, index: int) -> Stat | None: ...
    def value(self, ref: Any) -> Any: ...  # the real value of a data-independent input, or None
    def uniform(self, ref: Any) -> float | None: ...  # the one number a data-independent input holds everywhere
    def note(self, node: NodeRecord, key: str, value: Any) -> None: ...


Transfer = Callable[[NodeRecord, Context], Result]


@dataclass(frozen=True)
class Entry:
    """One op of the table. `rule` is None for ops the pointwise mechanism judges as φ(h) (or, for an
    elementwise op of several independent tensors, as their mix)."""

    family: Family
    rule: Transfer | None = None
    reads_values: bool = True  # False: the result depends on its inputs' shapes only (zeros_like, size)
    defined: bool = True  # False: uninitialised memory (empty), whatever is written into it later


TABLE: dict[str, Entry] = {}


def transfer(*ops: str, family: Family, reads_values: bool = True, defined: bool = True) -> Callable[[Transfer], Transfer]:
    """Register `fn` as the transfer rule of `ops`, members of `family`."""

    def register(fn: Transfer) -> Transfer:
        for op in ops:
            TABLE[op] = Entry(family, fn, reads_values, defined)
        return fn

    return register


def declare(*ops: str, family: Family, reads_values: bool = True, defined: bool = True) -> None:
    """Name the family of ops that have no transfer rule of their own."""
    for op in ops:
        TABLE[op] = Entry(family, None, reads_values, defined)


def family_of(op: str) -> Family | None:
    entry = TABLE.get(op)
    return entry.family if entry is not None else None


def rule_of(op: str) -> Transfer | None:
    entry = TABLE.get(op)
    return entry.rule if entry is not None else None


def known_op(target: Any) -> bool:
    """The estimator has a transfer rule for the ATen op `target` (an entry, or ATen's pointwise tag)."""
    from gradlint.capture.common import canonical_op

    return canonical_op(target)[0] in TABLE or torch.Tag.pointwise in getattr(target, "tags", ())


def node_family(node: NodeRecord) -> Family | None:
    """The family of an op node: its table entry's, else POINTWISE for an op ATen tags pointwise; None for
    inputs, parameters, constants and ops the table does not know."""
    if node.kind is not NodeKind.OP:
        return None
    entry = TABLE.get(node.op)
    if entry is not None:
        return entry.family
    if torch.Tag.pointwise in getattr(node.target, "tags", ()):
        return Family.POINTWISE
    return None


def ref_name(value: Any) -> str | None:
    return value.name if isinstance(value, Ref) else None


def add_gain(gains: Gains, value: Any, gain: float) -> None:
    name = ref_name(value)
    if name is not None:
        gains[name] = gains.get(name, 0.0) + gain


def broadcast(ctx: Context, node: NodeRecord, value: Any) -> float:
    """How many output elements each element of an input feeds (gradients of broadcast copies add)."""
    n = ctx.numel(value)
    return node.numel / n if n else 1.0


def as_tuple(value: Any, dims: int, default: int) -> tuple[int, ...]:
    """An int-or-sequence op argument (stride, kernel size) as one int per spatial dimension."""
    if value is None:
        return (default,) * dims
    if isinstance(value, int):
        return (value,) * dims
    items = tuple(int(v) for v in value)
    return items * dims if len(items) == 1 else items
