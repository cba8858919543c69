"""The state of one ONNX import (graph/from_onnx.py) that every op converter uses: ``Val`` (an ONNX value:
a constant or a certnn node with the ONNX axis of its batch), ``Importer`` (the builder, the values so far,
axis mapping and error messages naming the node) and the checks on converter inputs."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ModelImportError, UnsupportedOpError
from .ir import GraphBuilder
from .onnx_registry import supported_onnx_ops


@dataclass(frozen=True)
class Val:
    """An ONNX value during import: a constant (numpy array) or a certnn node (name, and the ONNX axis of
    its batch dimension, None when it has none)."""

    const: np.ndarray | None = None
    name: str | None = None
    batch: int | None = 0

    @property
    def is_const(self) -> bool:
        return self.const is not None

    @property
    def batched(self) -> bool:
        return self.batch is not None


class Importer:
    """One ONNX import in progress: the certnn builder, the ONNX values so far (env) and the node being
    converted (for error messages)."""

    def __init__(self, builder: GraphBuilder, in_batch: int | None, consumers: dict[str, int]):
        self.b = builder
        self.in_batch = in_batch
        self.consumers = consumers
        self.where = ""
        self.node = None
        self.env: dict[str, Val] = {}

    # -- helpers -------------------------------------------------------------------------------------
    def unsupported(self, what: str, hint: str | None = None) -> UnsupportedOpError:
        return UnsupportedOpError(what, supported_onnx_ops(), where=self.where, hint=hint)

    def error(self, msg: str) -> ModelImportError:
        return ModelImportError(f"{self.where}: {msg}")

    def shape(self, v: Val) -> tuple[int, ...]:
        """The ONNX shape of a value (batch reported as 1 for batched values)."""
        if v.is_const:
            return tuple(v.const.shape)
        s = self.b.shape(v.name)
        return (s[:v.batch] + (1,) + s[v.batch:]) if v.batched else s

    def rank(self, v: Val) -> int:
        return len(self.shape(v))

    def axis(self, v: Val, a: int, what: str = "axis") -> int:
        """ONNX axis -> certnn per-sample axis (0-based over the per-sample dims)."""
        r = self.rank(v)
        if not -r <= a < r:
            raise self.error(f"{what} {a} out of range for a rank-{r} tensor")
        a %= r
        if v.batched:
            if a == v.batch:
                raise self.unsupported(f"{self.node.op_type} over the batch dimension ({what} {a})")
            return a - 1 if a > v.batch else a
        return a

    def add(self, op, inputs: list[Val], batch: int | None) -> Val:
        """Add a certnn node; `batch` is the ONNX axis of its batch dimension (None: no batch)."""
        if batch is True or batch is False:  # pragma: no cover - defensive: a flag passed by mistake
            raise TypeError("Importer.add takes the batch axis, not a flag")
        name = self.b.add(op, [v.name for v in inputs])
        return Val(name=name, batch=batch)

    def torch_const(self, a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.array(a, dtype=np.float64), dtype=self.b.dtype)

    def last_node(self, v: Val):
        """The certnn node of v when it is the last node added and used by nothing else (for fusions)."""
        n = self.b.nodes[-1]
        if v.is_const or n.name != v.name:
            return None
        return n

    def uses(self, certnn_name: str) -> int:
        """How many ONNX node inputs (and graph outputs) read the certnn node (through any alias)."""
        return sum(self.consumers.get(k, 0) for k, v in self.env.items() if v.name == certnn_name)

    def replace_last(self, op) -> str:
        n = self.b.nodes.pop()
        del self.b._probe[n.name]
        return self.b.add(op, list(n.inputs), name=n.name)


def onnx_attrs(node) -> dict:
    """An ONNX node's attributes as Python values."""
    import onnx
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def variable(imp: Importer, v: Val, what: str = "input") -> Val:
    """v, which must be a layer output (not a constant)."""
    if v is None or v.is_const:
        raise imp.unsupported(f"{imp.node.op_type} with a constant {what} (only layer outputs supported here)")
    return v


def const_ints(v: Val | None, imp: Importer, what: str) -> list[int] | None:
    """A constant input as a list of ints (None when absent); a computed one is refused."""
    if v is None:
        return None
    if not v.is_const:
        raise imp.unsupported(f"{imp.node.op_type} with a computed {what} (it must be constant)")
    return [int(t) for t in np.asarray(v.const).reshape(-1)]


def const_value(imp, v: Val, what: str):
    """The constant value of an input that must be constant."""
    if not v.is_const:
        raise imp.unsupported(f"{imp.node.op_type} with a computed {what}")
    return v.const
