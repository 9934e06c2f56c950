"""Primary capture: `torch.export.export(strict=False)`, a torch.fx graph of ATen ops in which every node
carries its module stack and stack trace, and which follows Python control flow that symbolic tracing
cannot (shape checks, `len()`, in-place ops, `isinstance`)."""

from __future__ import annotations

import operator
import warnings
from typing import Any

import torch
from torch import fx, nn

from gradlint.call import Call, as_call, ReturnsY, user_path
from gradlint.capture.common import CaptureFailed, canonical_op, leaf_weights, module_types, shape_of
from gradlint.graph import ModelGraph, NodeKind, NodeRecord, Ref
from gradlint.sources import location_from_stack_trace

METHOD = "torch.export"


def capture_export(model: nn.Module, call: Call) -> ModelGraph:
    """Export `ReturnsY(model)`: only y is an output, so nothing else the forward returns has to be
    flattened; every path is then read back as the user's model names it."""
    call = as_call(call)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.export(ReturnsY(model), call.args, kwargs=call.kwargs, strict=False)
    except Exception as exc:  # export raises many types; each means "try the next method"
        raise CaptureFailed(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}") from exc
    program = _decomposed(_functionalised(program))
    sig = program.graph_signature
    params = {k: user_path(v) for k, v in sig.inputs_to_parameters.items()}
    buffers = {k: user_path(v) for k, v in sig.inputs_to_buffers.items()}
    lifted = dict(getattr(sig, "inputs_to_lifted_tensor_constants", {}) or {})
    constants = {k: user_path(v) for k, v in lifted.items()}
    records: list[NodeRecord] = []
    aliases: dict[str, str] = {}  # a region's outputs (getitem on its call) -> the inlined node that computes each
    regions: dict[str, list[str]] = {}
    output_name: str | None = None
    user_outputs = list(sig.user_outputs)
    for node in program.graph.nodes:
        if node.op == "placeholder":
            if node.name in params:
                kind, pname = NodeKind.PARAM, params[node.name]
            elif node.name in buffers:
                kind, pname = NodeKind.BUFFER, buffers[node.name]
            elif node.name in constants:
                kind, pname = NodeKind.CONSTANT, constants[node.name]
            else:
                kind, pname = NodeKind.INPUT, None
            val = node.meta.get("val")
            if kind is NodeKind.INPUT and not isinstance(val, torch.Tensor):  # an int or flag argument: baked in
                kind = NodeKind.CONSTANT
            value = program.constants.get(lifted[node.name]) if kind is NodeKind.CONSTANT and node.name in lifted else None
            records.append(NodeRecord(node.name, kind, shape=shape_of(val), dtype=getattr(val, "dtype", None), param=pname,
                                      value=value if isinstance(value, torch.Tensor) else None))
        elif node.op == "get_attr":  # a non-tensor operand of a higher-order op (a subgraph, a function spec)
            records.append(NodeRecord(node.name, NodeKind.CONSTANT))
        elif node.op == "call_function":
            if node.target is operator.getitem and isinstance(node.args[0], fx.Node) and node.args[0].name in regions:
                aliases[node.name] = regions[node.args[0].name][node.args[1]]
            elif _region(node, program.graph_module) is not None:
                regions[node.name] = _inline(node, program.graph_module, records, aliases)
            else:
                records.append(_op_record(node, aliases, wrapped=True))
        elif node.op == "output":
            for name in user_outputs:
                name = aliases.get(name, name) if name is not None else None
                if name is not None and any(r.name == name and r.shape is not None for r in records):
                    output_name = name
                    break
    if output_name is None:
        raise CaptureFailed("the model returns no tensor")
    return ModelGraph(records, output_name, METHOD, module_types(model), leaf_weights(model))


def _functionalised(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """The program with its mutations turned into data flow (`out[:, t] = y` -> select_scatter), when a
    write is read afterwards through the written tensor or a view of it; otherwise as it is, since
    functionalising costs seconds on a large model and a write nobody reads later changes nothing."""
    if not any(_read_after(node, written) for node, written in _writes(program.graph)):
        return program
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            functional: torch.export.ExportedProgram = program.run_decompositions({})
            return functional
    except Exception:  # keep the graph as exported: the estimate then misses the write, not the model
        return program


def _decomposed(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """The program with every op the estimator has no transfer rule for replaced by PyTorch's own
    decomposition of it (glu -> split, sigmoid, mul), repeatedly while a decomposition brings new ones, so
    "no gradient rule" is left for ops that have no decomposition. A failure keeps the program as it was."""
    from torch._decomp import decomposition_table

    from gradlint.estimate.table import known_op  # the estimator's vocabulary decides what needs decomposing

    for _ in range(4):
        todo = {node.target: decomposition_table[node.target] for node in program.graph.nodes
                if node.op == "call_function" and isinstance(node.target, torch._ops.OpOverload)
                and not known_op(node.target) and node.target in decomposition_table}
        if not todo:
            break
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                program = program.run_decompositions(todo)
        except Exception:  # keep what was decomposed so far: those ops stay approximate (GL001 says so)
            break
    return program


def _writes(graph: fx.Graph) -> list[tuple[fx.Node, fx.Node]]:
    """(op, tensor it writes into) for every mutating call."""
    found = []
    for node in graph.nodes:
        schema = getattr(node.target, "_schema", None)
        if node.op != "call_function" or schema is None:
            continue
        for i, arg in enumerate(schema.arguments):
            if arg.alias_info is not None and arg.alias_info.is_write:
                value = node.kwargs.get(arg.name) if arg.kwarg_only else node.args[i] if i < len(node.args) else None
                if isinstance(value, fx.Node):
                    found.append((node, value))
    return found


def _is_view(node: fx.Node) -> bool:
    schema = getattr(node.target, "_schema", None)
    alias = schema.returns[0].alias_info if schema is not None and schema.returns else None
    return node.op == "call_function" and alias is not None and not alias.is_write and bool(node.args)


def _read_after(write: fx.Node, written: fx.Node) -> bool:
    """Whether the storage `write` mutates (the written tensor, its base and every view of them) is read
    by a node after `write` other than through `write`'s own result."""
    root = written
    while _is_view(root) and isinstance(root.args[0], fx.Node):
        root = root.args[0]
    position = {n: i for i, n in enumerate(write.graph.nodes)}
    stack, seen = [root], {root}
    while stack:
        for user in stack.pop().users:
            if user is write or user in seen:
                continue
            if _is_view(user):
                seen.add(user)
                stack.append(user)
            elif position[user] > position[write]:
                return True
    return False


def _region(node: fx.Node, owner: nn.Module) -> tuple[int, fx.GraphModule] | None:
    """(argument index, subgraph) when `node` calls a higher-order op that wraps a subgraph in a grad-mode or
    autocast context (`wrap_with_set_grad_enabled` for a `@torch.no_grad()` helper such as a rotary embedding)."""
    if not isinstance(node.target, torch._ops.HigherOrderOperator):
        return None
    for index, arg in enumerate(node.args):
        if isinstance(arg, fx.Node) and arg.op == "get_attr":
            sub = getattr(owner, str(arg.target), None)
            if isinstance(sub, fx.GraphModule):
                return index, sub
    return None


def _inline(node: fx.Node, owner: nn.Module, records: list[NodeRecord], aliases: dict[str, str]) -> list[str]:
    """Record a wrapped subgraph's ops in place of the call, named `<call>__<op>`; returns the names of its
    outputs. Outputs of a grad-disabled region pass through a `detach` record: no gradient flows back into it."""
    index, sub = _region(node, owner)  # type: ignore[misc]
    operands = node.args[index + 1:]
    no_grad = str(getattr(node.target, "__name__", node.target)) == "wrap_with_set_grad_enabled" and node.args[0] is False
    inner: dict[str, str] = dict(aliases)
    placeholders = iter(operands)
    outputs: list[str] = []
    regions: dict[str, list[str]] = {}
    for sub_node in sub.graph.nodes:
        if sub_node.op == "placeholder":
            operand = next(placeholders)
            if isinstance(operand, fx.Node):
                inner[sub_node.name] = aliases.get(operand.name, operand.name)
        elif sub_node.op == "call_function":
            if sub_node.target is operator.getitem and isinstance(sub_node.args[0], fx.Node) and sub_node.args[0].name in regions:
                inner[sub_node.name] = regions[sub_node.args[0].name][sub_node.args[1]]
            elif _region(sub_node, sub) is not None:
                regions[sub_node.name] = _inline(sub_node, sub, records, inner)
            else:
                inner[sub_node.name] = f"{node.name}__{sub_node.name}"
                record = _op_record(sub_node, inner, wrapped=True)
                record.name = inner[sub_node.name]
                records.append(record)
        elif sub_node.op == "output":
            values = sub_node.args[0] if isinstance(sub_node.args[0], (tuple, list)) else (sub_node.args[0],)
            outputs = [inner.get(v.name, v.name) if isinstance(v, fx.Node) else "" for v in values]
    if not no_grad:
        return outputs
    detached = []
    for position, name in enumerate(outputs):
        source = next((r for r in records if r.name == name), None)
        if source is None:
            detached.append(name)
            continue
        detached.append(f"{node.name}__detach{position}")
        records.append(NodeRecord(detached[-1], NodeKind.OP, op="detach", target=torch.ops.aten.detach.default,
                                  args=(Ref(name),), shape=source.shape, dtype=source.dtype, module=source.module,
                                  module_type=source.module_type, module_stack=source.module_stack,
                                  location=source.location))
    return detached


def _op_record(node: fx.Node, aliases: dict[str, str] | None = None, wrapped: bool = False) -> NodeRecord:
    """`wrapped`: the node was traced through `ReturnsY`, whose paths carry its prefix."""
    aliases = aliases or {}
    target = node.target
    if target is operator.getitem:
        op, inplace = "getitem", False
    else:
        op, inplace = canonical_op(target)
    stack = node.meta.get("nn_module_stack") or {}
    keys = []
    module, module_type = "", ""
    for key, (path, type_name) in stack.items():
        if wrapped:
            if path == "":
                continue  # gradlint's own `ReturnsY`, not a module of the user's
            path = user_path(path)
        suffix = key.rpartition("@")[2] if "@" in key else ""
        keys.append(f"{path}@{suffix}" if suffix else path)
        module = path
        module_type = type_name.rsplit(".", 1)[-1] if isinstance(type_name, str) else getattr(type_name, "__name__", "")
    val = node.meta.get("val")
    return NodeRecord(
        name=node.name,
        kind=NodeKind.OP,
        op=op,
        inplace=inplace,
        target=target,
        args=_convert(node.args, aliases),
        kwargs={k: _convert(v, aliases) for k, v in node.kwargs.items()},
        shape=shape_of(val),
        dtype=getattr(val, "dtype", None),
        module=module,
        module_type=module_type,
        module_stack=tuple(keys),
        location=location_from_stack_trace(node.meta.get("stack_trace")),
    )


def _convert(value: Any, aliases: dict[str, str]) -> Any:
    if isinstance(value, fx.Node):
        return Ref(aliases.get(value.name, value.name))
    if isinstance(value, (list, tuple)):
        converted = (_convert(v, aliases) for v in value)
        return list(converted) if isinstance(value, list) else tuple(converted)
    return value
