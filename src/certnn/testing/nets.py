"""Small random networks for soundness tests (public, so users adding ops can test the same way)."""
from __future__ import annotations

import torch
from torch import nn


def random_relu_mlp(seed: int, d: int = 2, h: int = 6, depth: int = 2, out: int = 2) -> nn.Sequential:
    """A float64 ReLU MLP d -> [h] * depth -> out with N(0, 1) weights and N(0, 0.09) hidden biases, seeded:
    tiny enough for exact MILP / LP ranges, with many unstable neurons on unit-sized boxes."""
    g = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    w = d
    for _ in range(depth):
        lin = nn.Linear(w, h).double()
        with torch.no_grad():
            lin.weight.copy_(torch.randn(h, w, generator=g, dtype=torch.float64))
            lin.bias.copy_(torch.randn(h, generator=g, dtype=torch.float64) * 0.3)
        layers += [lin, nn.ReLU()]
        w = h
    last = nn.Linear(w, out).double()
    with torch.no_grad():
        last.weight.copy_(torch.randn(out, w, generator=g, dtype=torch.float64))
    return nn.Sequential(*layers, last)


class Atan(nn.Module):
    def forward(self, x):
        return torch.atan(x)


ACTS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "arctan": Atan,
        "leaky": lambda: nn.LeakyReLU(0.1), "hardtanh": nn.Hardtanh}


class ResBlock(nn.Module):
    """x + conv(act(bn(conv(x)))) (shape-preserving), imported through torch.fx."""

    def __init__(self, c: int, act, g: torch.Generator, bn: bool):
        super().__init__()
        self.c1 = nn.Conv2d(c, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c) if bn else nn.Identity()
        self.act = act()
        self.c2 = nn.Conv2d(c, c, 3, padding=2, dilation=2)
        init_weights(self.c1, g)
        init_weights(self.c2, g)
        if bn:
            init_batchnorm(self.bn, g)

    def forward(self, x):
        return x + self.c2(self.act(self.bn(self.c1(x))))


def init_weights(m: nn.Module, g: torch.Generator, gain: float = 1.5) -> None:
    with torch.no_grad():
        fan_in = m.weight[0].numel()
        m.weight.copy_(torch.randn(m.weight.shape, generator=g) * gain / fan_in ** 0.5)
        if m.bias is not None:
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.3)


def init_batchnorm(bn: nn.BatchNorm2d, g: torch.Generator) -> None:
    with torch.no_grad():
        c = bn.num_features
        bn.running_mean.copy_(torch.randn(c, generator=g) * 0.3)
        bn.running_var.copy_(torch.rand(c, generator=g) + 0.5)
        bn.weight.copy_(torch.randn(c, generator=g))
        bn.bias.copy_(torch.randn(c, generator=g) * 0.3)


def random_cnn(seed: int, act: str | None = None) -> tuple[nn.Module, tuple[int, int, int]]:
    """A random small CNN: 1-3 stages of [conv, (bn), act, (pool)] with optional residual blocks, then a
    head (flatten or global average pool, then linear -> 3)."""
    g = torch.Generator().manual_seed(seed)

    def ri(a, b):
        return int(torch.randint(a, b, (1,), generator=g))

    names = list(ACTS)

    def pick():
        return ACTS[act or names[ri(0, len(names))]]

    cin, H = ri(1, 3), ri(6, 9)
    shape = (cin, H, H)
    layers: list[nn.Module] = []
    c, h = cin, H
    for _ in range(ri(1, 4)):
        c, h = _cnn_stage(layers, shape, c, h, ri, pick, g)
    _cnn_head(layers, shape, c, ri, pick, g)
    return nn.Sequential(*layers).double().eval(), shape


def _cnn_stage(layers: list, shape, c: int, h: int, ri, pick, g: torch.Generator) -> tuple[int, int]:
    """Append one stage of random_cnn to `layers` (conv, maybe bn, act, maybe a residual block, maybe a
    pool), drawing from `ri` / `pick` in a fixed order; returns the new (channels, height)."""
    groups = 2 if (c % 2 == 0 and ri(0, 3) == 0) else 1
    cout = groups * ri(1, 3) if groups > 1 else ri(2, 4)
    k, s, p, d = ri(1, 4), ri(1, 3), ri(0, 2), ri(1, 3)
    if (h + 2 * p - d * (k - 1) - 1) // s + 1 < 2:
        k, s, p, d = 3, 1, 1, 1
    conv = nn.Conv2d(c, cout, k, stride=s, padding=p, dilation=d, groups=groups)
    init_weights(conv, g)
    layers.append(conv)
    h = (h + 2 * p - d * (k - 1) - 1) // s + 1
    c = cout
    if ri(0, 2):
        bn = nn.BatchNorm2d(c)
        init_batchnorm(bn, g)
        layers.append(bn)
    layers.append(pick()())
    if ri(0, 2):
        layers.append(ResBlock(c, pick(), g, bn=bool(ri(0, 2))))
    r = ri(0, 4)
    if r == 1 and h >= 2:
        layers.append(nn.MaxPool2d(2, stride=ri(1, 3), padding=ri(0, 2) if h >= 3 else 0))
    elif r == 2 and h >= 2:
        layers.append(nn.AvgPool2d(2, stride=ri(1, 3), padding=ri(0, 2), ceil_mode=bool(ri(0, 2)),
                                   count_include_pad=bool(ri(0, 2))))
    elif r == 3 and h >= 3:
        layers.append(nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=bool(ri(0, 2))))
    with torch.no_grad():
        h = nn.Sequential(*layers).eval()(torch.zeros((1,) + shape)).shape[-1]
    return c, h


def _cnn_head(layers: list, shape, c: int, ri, pick, g: torch.Generator) -> None:
    """Append random_cnn's head to `layers`: global average pool or flatten, maybe a hidden linear layer
    with an activation, then linear -> 3."""
    if ri(0, 2):
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        width = c
    else:
        layers.append(nn.Flatten())
        with torch.no_grad():
            width = nn.Sequential(*layers).eval()(torch.zeros((1,) + shape)).shape[1]
    if ri(0, 2):
        hid = nn.Linear(width, 6)
        init_weights(hid, g)
        layers += [hid, pick()()]
        width = 6
    out = nn.Linear(width, 3)
    init_weights(out, g)
    layers.append(out)


def random_mlp(seed: int, act: str | None = None, d_in: int | None = None, out: int = 3) -> tuple[nn.Module, int]:
    """A random float64 MLP of 1-4 hidden layers (widths 2-16) with activation `act` (one of ACTS) or a
    random one per layer; returns (model, input size)."""
    g = torch.Generator().manual_seed(seed)
    depth = int(torch.randint(1, 5, (1,), generator=g))
    d = d_in or int(torch.randint(2, 9, (1,), generator=g))
    layers: list[nn.Module] = []
    width = d
    names = list(ACTS)
    for _ in range(depth):
        w = int(torch.randint(2, 17, (1,), generator=g))
        lin = nn.Linear(width, w)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(w, width, generator=g) * (1.5 / width ** 0.5))
            lin.bias.copy_(torch.randn(w, generator=g) * 0.5)
        a = act or names[int(torch.randint(0, len(names), (1,), generator=g))]
        layers += [lin, ACTS[a]()]
        width = w
    layers.append(nn.Linear(width, out))
    return nn.Sequential(*layers).double(), d


class LastFrameHead(nn.Module):
    """A recurrent module (batch_first nn.RNN / LSTM / GRU) followed by a head on its last frame's output:
    head(rnn(x)[0][:, -1]), the usual sequence classifier of the recurrent soundness tests; with an
    `embedding` (nn.Embedding) in front, x holds integer tokens (B, T)."""

    def __init__(self, rnn: nn.Module, head: nn.Module, embedding: nn.Module | None = None):
        super().__init__()
        self.embedding = embedding  # first: the model's first parameter sets its dtype for the importer
        self.rnn, self.head = rnn, head

    def forward(self, x):
        if self.embedding is not None:
            x = self.embedding(x)
        return self.head(self.rnn(x)[0][:, -1])


class MeanFrameHead(LastFrameHead):
    """The same with the head on the mean of all frames' outputs: head(rnn(x)[0].mean(1))."""

    def forward(self, x):
        if self.embedding is not None:
            x = self.embedding(x)
        return self.head(self.rnn(x)[0].mean(1))


def recurrent_layer(kind: str, d: int, hidden: int, layers: int = 1, bidirectional: bool = False,
                    scale: float = 1.0) -> nn.Module:
    """A batch_first nn.RNN / nn.LSTM / nn.GRU by name: "rnn" or "rnn_tanh", "rnn_relu", "lstm", "gru"
    (any case), with its parameters multiplied by `scale` (larger weights: more curvature, harder for the
    relaxations). Draws from torch's global generator like the constructor itself."""
    name = kind.lower()
    if name in ("rnn", "rnn_tanh", "rnn_relu"):
        rnn = nn.RNN(d, hidden, layers, nonlinearity=name[4:] or "tanh", batch_first=True,
                     bidirectional=bidirectional)
    elif name in ("lstm", "gru"):
        rnn = (nn.LSTM if name == "lstm" else nn.GRU)(d, hidden, layers, batch_first=True,
                                                       bidirectional=bidirectional)
    else:
        raise ValueError(f"unknown recurrent kind {kind!r}: rnn, rnn_tanh, rnn_relu, lstm or gru")
    if scale != 1.0:
        with torch.no_grad():
            for p in rnn.parameters():
                p.mul_(scale)
    return rnn


def recurrent_classifier(kind: str, d: int, hidden: int, classes: int, layers: int = 1,
                         bidirectional: bool = False, scale: float = 1.0, vocab: int | None = None,
                         head: str = "last") -> LastFrameHead:
    """[nn.Embedding(vocab, d) ->] recurrent_layer(...) -> nn.Linear on the last frame's output (head="last")
    or on the mean of all frames' outputs (head="mean"); created in that order (same draws as building the
    modules by hand). float32, training mode, as torch makes them."""
    if head not in ("last", "mean"):
        raise ValueError(f"head must be 'last' or 'mean', got {head!r}")
    emb = nn.Embedding(vocab, d) if vocab else None
    rnn = recurrent_layer(kind, d, hidden, layers, bidirectional, scale)
    lin = nn.Linear(hidden * (2 if bidirectional else 1), classes)
    return (LastFrameHead if head == "last" else MeanFrameHead)(rnn, lin, embedding=emb)
