"""Hand-built unrolled recurrent graphs (test fixtures, not the importer): nn.RNN / nn.LSTM / nn.GRU weights
unrolled over T frames of an input (T, d) into Slice, Linear, Add, Activation and the fused product ops, with
a linear head on the last hidden state. `check_parity` compares the graph with the torch module."""
from __future__ import annotations

import torch
from torch import nn

from certnn.graph.ir import GraphBuilder
from certnn.ops.activation import Activation
from certnn.ops.affine import ElementwiseAffine, Linear
from certnn.ops.product import SigmoidMul, SigmoidTanhMul
from certnn.ops.shape import Add, Slice
from certnn.testing.nets import LastFrameHead, recurrent_layer


def make_model(kind: str, d: int, hidden: int, layers: int, classes: int, seed: int,
               nonlinearity="tanh") -> LastFrameHead:
    """rnn (batch_first, weights x 2: more curvature, harder for the relaxations) + linear head on the last
    time step's top-layer hidden state, float64."""
    torch.manual_seed(seed)
    rnn = recurrent_layer(f"rnn_{nonlinearity}" if kind == "rnn" else kind, d, hidden, layers, scale=2.0)
    return LastFrameHead(rnn, nn.Linear(hidden, classes)).double()


def _w(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.float64)


def build_graph(model: LastFrameHead, T: int, d: int):
    rnn = model.rnn
    kind = type(rnn).__name__.lower()
    H = rnn.hidden_size
    b = GraphBuilder((T, d))
    seq = [b.add(Slice((T, d), (t,)), [b.input_name]) for t in range(T)]
    for layer in range(rnn.num_layers):
        Wih, Whh = _w(getattr(rnn, f"weight_ih_l{layer}")), _w(getattr(rnn, f"weight_hh_l{layer}"))
        bih, bhh = _w(getattr(rnn, f"bias_ih_l{layer}")), _w(getattr(rnn, f"bias_hh_l{layer}"))
        h = c = None
        outs = []
        for t in range(T):
            if kind == "rnn":
                pre = b.add(Linear(Wih, bih + bhh), [seq[t]])
                if h is not None:
                    pre = b.add(Add(), [pre, b.add(Linear(Whh, None), [h])])
                h = b.add(Activation(rnn.nonlinearity), [pre])
            elif kind == "lstm":
                g = b.add(Linear(Wih, bih + bhh), [seq[t]])
                if h is not None:
                    g = b.add(Add(), [g, b.add(Linear(Whh, None), [h])])
                sl = lambda k: b.add(Slice((4 * H,), (slice(k * H, (k + 1) * H),)), [g])  # noqa: E731
                i_, f_, g_, o_ = sl(0), sl(1), sl(2), sl(3)
                ig = b.add(SigmoidTanhMul(), [i_, g_])
                c = ig if c is None else b.add(Add(), [b.add(SigmoidMul(), [f_, c]), ig])
                h = b.add(SigmoidTanhMul(), [o_, c])
            else:  # gru: r, z, n
                gi = b.add(Linear(Wih, bih), [seq[t]])
                si = lambda k: b.add(Slice((3 * H,), (slice(k * H, (k + 1) * H),)), [gi])  # noqa: E731
                if h is None:
                    bh = bhh
                    r_pre = b.add(ElementwiseAffine(None, bh[:H]), [si(0)])
                    z_pre = b.add(ElementwiseAffine(None, bh[H:2 * H]), [si(1)])
                    n_pre = b.add(Add(), [si(2), b.add(SigmoidMul(), [r_pre, _const(b, seq[t], bh[2 * H:], d)])])
                else:
                    gh = b.add(Linear(Whh, bhh), [h])
                    sh = lambda k: b.add(Slice((3 * H,), (slice(k * H, (k + 1) * H),)), [gh])  # noqa: E731
                    r_pre = b.add(Add(), [si(0), sh(0)])
                    z_pre = b.add(Add(), [si(1), sh(1)])
                    n_pre = b.add(Add(), [si(2), b.add(SigmoidMul(), [r_pre, sh(2)])])
                negz = b.add(ElementwiseAffine(-1.0, None), [z_pre])
                new = b.add(SigmoidTanhMul(), [negz, n_pre])
                h = new if h is None else b.add(Add(), [new, b.add(SigmoidMul(), [z_pre, h])])
            outs.append(h)
        seq = outs
    out = b.add(Linear(_w(model.head.weight), _w(model.head.bias)), [seq[-1]])
    return b.build(out)


def _const(b: GraphBuilder, src: str, value: torch.Tensor, d: int) -> str:
    """A node with the constant value (H,) whatever the input: 0 * x[:1] broadcast, plus value."""
    H = value.shape[0]
    zero = b.add(Linear(torch.zeros(H, b.shape(src)[0], dtype=torch.float64), value), [src])
    return zero


def check_parity(model: LastFrameHead, graph, T: int, d: int, n: int = 5) -> float:
    x = torch.randn(n, T, d, dtype=torch.float64)
    with torch.no_grad():
        return (model(x) - graph(x)).abs().max().item()
