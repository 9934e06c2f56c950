"""Last-resort capture: run the forward once for real on a copy of the model and record every ATen op
it executes (`make_fx` in real mode). It follows even value-dependent branches, taking the branch
the example input takes, and says so."""

from __future__ import annotations

import copy
import warnings
from typing import Any

import torch
from torch import fx, nn
from torch.fx.experimental.proxy_tensor import get_proxy_mode, make_fx
from torch.func import functional_call

from gradlint.call import Call, as_call, first_tensor
from gradlint.capture.common import CaptureFailed, leaf_weights, module_types, shape_of
from gradlint.capture.export import _op_record
from gradlint.graph import ModelGraph, NodeKind, NodeRecord

METHOD = "eager-recording"
_VALUE_OPS = {"item", "_local_scalar_dense", "is_nonzero", "equal", "nonzero", "tolist"}


class _ModuleStackTagger:
    """Tags each traced node with the module stack it was created under, via global module hooks."""

    def __init__(self, model: nn.Module) -> None:
        self.paths = {id(m): name for name, m in model.named_modules()}
        self.types = {id(m): type(m).__module__ + "." + type(m).__qualname__ for m in model.modules()}
        self.stack: list[tuple[str, tuple[str, str]]] = []
        self.calls: dict[str, int] = {}
        self.seen = 0

    def _tag(self) -> None:
        mode = get_proxy_mode()
        if mode is None:
            return
        nodes = list(mode.tracer.graph.nodes)
        for node in nodes[self.seen:]:
            node.meta.setdefault("nn_module_stack", dict(self.stack))
        self.seen = len(nodes)

    def pre(self, module: nn.Module, args: Any) -> None:
        path = self.paths.get(id(module))
        if path is None:
            return
        self._tag()
        count = self.calls.get(path, 0)
        self.calls[path] = count + 1
        key = path if count == 0 else f"{path}@{count}"
        self.stack.append((key, (path, self.types[id(module)])))

    def post(self, module: nn.Module, args: Any, output: Any) -> None:
        if self.paths.get(id(module)) is None or not self.stack:
            return
        self._tag()
        self.stack.pop()


def capture_eager(model: nn.Module, call: Call) -> ModelGraph:
    call = as_call(call)
    twin = copy.deepcopy(model)  # the forward runs for real: running stats must change on a copy
    named_params = dict(twin.named_parameters(remove_duplicate=False))
    named_buffers = dict(twin.named_buffers(remove_duplicate=False))
    tagger = _ModuleStackTagger(twin)
    keys = list(call.kwargs)
    positional = len(call.args)

    def forward(params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], *flat: Any) -> Any:
        kwargs = dict(zip(keys, flat[positional:]))
        y = first_tensor(functional_call(twin, (params, buffers), tuple(flat[:positional]), kwargs))
        if y is None:
            raise CaptureFailed("the model returns no tensor")
        return y

    pre = torch.nn.modules.module.register_module_forward_pre_hook(tagger.pre)
    post = torch.nn.modules.module.register_module_forward_hook(tagger.post)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = make_fx(forward, tracing_mode="real", pre_dispatch=True, record_stack_traces=True,
                             _error_on_data_dependent_ops=False)(named_params, named_buffers, *call.args, *call.kwargs.values())
    except CaptureFailed:
        raise
    except Exception as exc:
        raise CaptureFailed(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}") from exc
    finally:
        pre.remove()
        post.remove()
    return _to_graph(traced, model, list(named_params), list(named_buffers))


def _to_graph(traced: fx.GraphModule, model: nn.Module, param_names: list[str], buffer_names: list[str]) -> ModelGraph:
    records: list[NodeRecord] = []
    placeholders = [n for n in traced.graph.nodes if n.op == "placeholder"]
    names = param_names + buffer_names
    output: str | None = None
    notes: list[str] = []
    for index, node in enumerate(placeholders):
        val = node.meta.get("val")
        if index < len(param_names):
            kind, pname = NodeKind.PARAM, names[index]
        elif index < len(names):
            kind, pname = NodeKind.BUFFER, names[index]
        else:
            kind, pname = (NodeKind.INPUT if isinstance(val, torch.Tensor) else NodeKind.CONSTANT), None
        records.append(NodeRecord(node.name, kind, shape=shape_of(val), dtype=getattr(val, "dtype", None), param=pname))
    for node in traced.graph.nodes:
        if node.op == "call_function":
            record = _op_record(node)
            records.append(record)
            if record.op in _VALUE_OPS and record.location is not None:
                notes.append(
                    f"the forward branches on tensor values at {record.location}; gradlint followed the "
                    "branch the example input took"
                )
        elif node.op == "output":
            flat = torch.utils._pytree.tree_leaves(node.args[0])
            for leaf in flat:
                if isinstance(leaf, fx.Node) and shape_of(leaf.meta.get("val")) is not None:
                    output = leaf.name
                    break
    if output is None:
        raise CaptureFailed("the model returns no tensor")
    return ModelGraph(records, output, METHOD, module_types(model), leaf_weights(model), notes=sorted(set(notes)))
