"""Primary capture: `torch.export.export(strict=False)`, a torch.fx graph of ATen ops in which every node
carries its module stack and stack trace, and which follows Python control flow that symbolic tracing
cannot (shape checks, `len()`, in-place ops, `isinstance`)."""

from __future__ import annotations

import operator
import warnings
from typing import Any

import torch
from torch import fx, nn

from gradlint.capture.common import CaptureFailed, canonical_op, leaf_weights, module_types, shape_of
from gradlint.graph import ModelGraph, NodeKind, NodeRecord, Ref
from gradlint.sources import location_from_stack_trace

METHOD = "torch.export"


def capture_export(model: nn.Module, inputs: tuple[Any, ...]) -> ModelGraph:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.export(model, inputs, strict=False)
    except Exception as exc:  # export raises many types; each means "try the next method"
        raise CaptureFailed(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}") from exc
    sig = program.graph_signature
    params = dict(sig.inputs_to_parameters)
    buffers = dict(sig.inputs_to_buffers)
    constants = dict(getattr(sig, "inputs_to_lifted_tensor_constants", {}) or {})
    records: list[NodeRecord] = []
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
            records.append(NodeRecord(node.name, kind, shape=shape_of(val), dtype=getattr(val, "dtype", None), param=pname))
        elif node.op == "call_function":
            records.append(_op_record(node))
        elif node.op == "output":
            for name in user_outputs:
                if name is not None and any(r.name == name and r.shape is not None for r in records):
                    output_name = name
                    break
    if output_name is None:
        raise CaptureFailed("the model returns no tensor")
    return ModelGraph(records, output_name, METHOD, module_types(model), leaf_weights(model))


def _op_record(node: fx.Node) -> NodeRecord:
    target = node.target
    if target is operator.getitem:
        op, inplace = "getitem", False
    else:
        op, inplace = canonical_op(target)
    stack = node.meta.get("nn_module_stack") or {}
    keys = []
    module, module_type = "", ""
    for key, (path, type_name) in stack.items():
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
        args=_convert(node.args),
        kwargs={k: _convert(v) for k, v in node.kwargs.items()},
        shape=shape_of(val),
        dtype=getattr(val, "dtype", None),
        module=module,
        module_type=module_type,
        module_stack=tuple(keys),
        location=location_from_stack_trace(node.meta.get("stack_trace")),
    )


def _convert(value: Any) -> Any:
    if isinstance(value, fx.Node):
        return Ref(value.name)
    if isinstance(value, (list, tuple)):
        return type(value)(_convert(v) for v in value) if isinstance(value, list) else tuple(_convert(v) for v in value)
    return value
