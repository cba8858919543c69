"""The certnn intermediate representation: a DAG of ops with one input node and one output node.

Nodes are kept in topological order. Every node records its per-sample output shape (no batch dim).
The IR is built by importers (`from_torch`, `from_onnx`) and is the only thing the engines see.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import ModelImportError
from ..ops.base import Op


class Input(Op):
    kind = "input"

    def forward(self, *xs):  # pragma: no cover - never called
        raise RuntimeError("the input node has no forward")


@dataclass(frozen=True)
class Node:
    name: str
    op: Op
    inputs: tuple[str, ...]
    shape: tuple[int, ...]


class Graph:
    """A topologically ordered DAG of :class:`Node` with a single input and a single output."""

    def __init__(self, nodes: list[Node], output: str):
        if not nodes or not isinstance(nodes[0].op, Input):
            raise ModelImportError("a graph must start with its input node")
        seen: set[str] = set()
        for n in nodes:
            if n.name in seen:
                raise ModelImportError(f"duplicate node name {n.name!r}")
            for i in n.inputs:
                if i not in seen:
                    raise ModelImportError(f"node {n.name!r} uses {i!r} before it is defined")
            seen.add(n.name)
        if output not in seen:
            raise ModelImportError(f"output node {output!r} is not in the graph")
        self.nodes: dict[str, Node] = {n.name: n for n in nodes}
        self.order: list[str] = [n.name for n in nodes]
        self.input_name = nodes[0].name
        self.output_name = output
        self._consumers: dict[str, list[str]] = {n: [] for n in self.order}
        for n in nodes:
            for i in n.inputs:
                self._consumers[i].append(n.name)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.nodes[self.input_name].shape

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.nodes[self.output_name].shape

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the first floating-point tensor held by an op (float64 if none)."""
        for name in self.order:
            for v in vars(self.nodes[name].op).values():
                if isinstance(v, Tensor) and torch.is_floating_point(v):
                    return v.dtype
        return torch.float64

    def consumers(self, name: str) -> list[str]:
        return self._consumers[name]

    def ancestors(self, target: str) -> list[str]:
        """Nodes `target` depends on (itself included), in topological order."""
        need = {target}
        for name in reversed(self.order):
            if name in need:
                need.update(self.nodes[name].inputs)
        return [n for n in self.order if n in need]

    def forward_all(self, x: Tensor, upto: str | None = None) -> dict[str, Tensor]:
        vals: dict[str, Tensor] = {self.input_name: x}
        for name in self.order[1:]:
            node = self.nodes[name]
            vals[name] = node.op.forward(*[vals[i] for i in node.inputs])
            if name == upto:
                break
        return vals

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.input_shape:
            raise ModelImportError(f"input of shape {tuple(x.shape[1:])} per sample, the model expects "
                                   f"{self.input_shape}")
        return self.forward_all(x, upto=self.output_name)[self.output_name]

    __call__ = forward

    def to(self, dtype: torch.dtype | None = None, device=None) -> "Graph":
        nodes = [Node(n.name, n.op.to(dtype, device), n.inputs, n.shape) for n in self.nodes.values()]
        return Graph(nodes, self.output_name)

    def summary(self) -> str:
        lines = []
        for name in self.order:
            n = self.nodes[name]
            lines.append(f"{name:>16} = {n.op.describe()}({', '.join(n.inputs)})  -> {n.shape}")
        return "\n".join(lines)


class GraphBuilder:
    """Incremental construction with shape inference by running each op on a probe input."""

    def __init__(self, input_shape: tuple[int, ...], dtype: torch.dtype = torch.float64, name: str = "input"):
        self.dtype = dtype
        self.nodes: list[Node] = [Node(name, Input(), (), tuple(input_shape))]
        self._probe: dict[str, Tensor] = {name: torch.zeros((2,) + tuple(input_shape), dtype=dtype)}
        self._count = 0

    @property
    def input_name(self) -> str:
        return self.nodes[0].name

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._probe[name].shape[1:])

    def add(self, op: Op, inputs: tuple[str, ...] | list[str], name: str | None = None) -> str:
        self._count += 1
        name = name or f"{op.kind}_{self._count}"
        while name in self._probe:
            name = f"{name}_"
        op = op.to(self.dtype)
        try:
            with torch.no_grad():  # shapes only (weights may require grad: from_torch(keep_grad=True))
                out = op.forward(*[self._probe[i] for i in inputs])
        except Exception as exc:  # noqa: BLE001 - report which node failed and why
            shapes = [self.shape(i) for i in inputs]
            raise ModelImportError(f"cannot apply {op.describe()} to inputs of shape {shapes}: {exc}") from exc
        self._probe[name] = out
        self.nodes.append(Node(name, op, tuple(inputs), tuple(out.shape[1:])))
        return name

    def build(self, output: str) -> Graph:
        return Graph(self.nodes, output)
