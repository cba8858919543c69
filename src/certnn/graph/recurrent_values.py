"""What torch's recurrent layers return, kept as *virtual values* while an fx graph is converted
(graph/recurrent.py): ``Seq`` (an output sequence of per-step nodes), ``Stacked`` (h_n / c_n),
``TimeMajor`` (a node whose torch tensor is (T, B, ...)), ``Zeros`` (an initial state), ``BatchSize`` /
``ShapeOf`` (``x.size(0)``, ``x.shape``), and ``materialize`` for the generic converters."""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from ..errors import UnsupportedOpError
from ..ops.shape import Concat, Reshape
from .ir import GraphBuilder

RECURRENT_LAYERS: tuple[type, ...] = (nn.RNN, nn.LSTM, nn.GRU)
RECURRENT_CELLS: tuple[type, ...] = (nn.RNNCell, nn.LSTMCell, nn.GRUCell)
RECURRENT_SUPPORTED = ["nn.RNN(tanh|relu)", "nn.LSTM", "nn.GRU", "nn.RNNCell", "nn.LSTMCell", "nn.GRUCell",
                       "nn.Embedding (with embedded=True)", "out[:, t]", "out.mean(1)", "h_n[-1]", "(h, c)"]

NOT_HANDLED = object()


@dataclass
class Seq:
    """A sequence of per-step nodes, each of shape (F,); torch layout (B, T, F) or (T, B, F)."""

    steps: list[str]
    time_major: bool
    _node: str | None = field(default=None, repr=False)

    def node(self, b: GraphBuilder) -> str:
        """The sequence as one IR node of shape (T, F) (built once)."""
        if self._node is None:
            rows = [b.add(Reshape(b.shape(s), (1,) + b.shape(s)), [s]) for s in self.steps]
            self._node = rows[0] if len(rows) == 1 else b.add(Concat(0, (1,) * len(rows)), rows)
        return self._node


@dataclass
class Stacked:
    """h_n / c_n of a recurrent layer: torch shape (L*D, B, H); items are (H,) nodes."""

    items: list[str]


@dataclass
class TimeMajor:
    """A node whose IR value is (B, T, ...) while torch's tensor is (T, B, ...)."""

    name: str


@dataclass
class Zeros:
    """A zero tensor; `shape` is torch's shape with None at the batch position."""

    shape: tuple


class BatchSize:
    """x.size(0) / x.shape[0] of a traced input."""


@dataclass
class ShapeOf:
    name: str


BATCH = BatchSize()


def is_virtual(v) -> bool:
    return isinstance(v, (Seq, Stacked, TimeMajor, Zeros, BatchSize, ShapeOf))


def materialize(b: GraphBuilder, v, where: str, what: str):
    """A value for the generic converters: a Seq in batch-first layout becomes its (T, F) node; other
    virtual values cannot be used there and raise a clear error."""
    if isinstance(v, Seq) and not v.time_major:
        return v.node(b)
    if isinstance(v, (list, tuple)):
        return type(v)(materialize(b, a, where, what) for a in v)
    if isinstance(v, (Seq, TimeMajor)):
        raise UnsupportedOpError(f"{what} on a time-major tensor (T, B, ...)", RECURRENT_SUPPORTED, where=where,
                                 hint="index a time step (out[-1]), pool over dim 0, or transpose(0, 1) first")
    if isinstance(v, Stacked):
        raise UnsupportedOpError(f"{what} on a stacked recurrent state (h_n of shape (L*D, B, H))",
                                 RECURRENT_SUPPORTED, where=where, hint="index a layer first: h_n[-1]")
    if isinstance(v, Zeros):
        raise UnsupportedOpError(f"{what} on a zero tensor", RECURRENT_SUPPORTED, where=where,
                                 hint="zeros are supported as initial states of recurrent layers and cells")
    if isinstance(v, (BatchSize, ShapeOf)):
        raise UnsupportedOpError(f"{what} using the batch size", RECURRENT_SUPPORTED, where=where,
                                 hint="use x.flatten(1) or x.view(x.size(0), -1)")
    return v
