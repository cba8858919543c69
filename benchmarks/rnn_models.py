"""The recurrent MNIST classifiers of the Cert-RNN / POPQORN comparisons (layers-hidden), reading an image
as a sequence of T frames (T = 28 frames of 28 pixels, or 4 / 7 / 14 frames of 196 / 112 / 56 pixels:
rows reshaped), with a linear head on the last hidden state.

Factories for the CLI, one per model and frame count (``FILE.py:rnn_2_32_t7`` etc.):

    certnn radius --model benchmarks/rnn_models.py:lstm_1_32_t7 --weights benchmarks/out/models/...pt \\
        --data mnist.npz --input-shape 7,112 --method popqorn,crown --frames -1
"""
from __future__ import annotations

import torch
from torch import nn

MODELS = {  # name: (cell, layers, hidden)
    "RNN-1-32": ("RNN", 1, 32),
    "RNN-2-32": ("RNN", 2, 32),
    "RNN-2-64": ("RNN", 2, 64),
    "LSTM-1-32": ("LSTM", 1, 32),
    "LSTM-2-32": ("LSTM", 2, 32),
    "LSTM-1-64": ("LSTM", 1, 64),
    "GRU-1-32": ("GRU", 1, 32),
}
FRAMES = (4, 7, 14, 28)


class SeqClassifier(nn.Module):
    """x (B, T, 784 / T) -> logits (B, 10) from the last hidden state of the top layer."""

    def __init__(self, cell: str, layers: int, hidden: int, frames: int, classes: int = 10):
        super().__init__()
        if 784 % frames:
            raise ValueError(f"{frames} frames do not divide 784 pixels")
        self.frames = frames
        self.rnn = getattr(nn, cell)(784 // frames, hidden, num_layers=layers, batch_first=True)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.fc(out[:, -1])


def build(name: str, frames: int) -> SeqClassifier:
    cell, layers, hidden = MODELS[name]
    torch.manual_seed(0)
    return SeqClassifier(cell, layers, hidden, frames)


def _factory(name: str, frames: int):
    def make() -> SeqClassifier:
        return build(name, frames)
    make.__name__ = f"{name.lower().replace('-', '_')}_t{frames}"
    make.__doc__ = f"{name} on MNIST read as {frames} frames of {784 // frames} pixels"
    return make


for _name in MODELS:
    for _t in FRAMES:
        _f = _factory(_name, _t)
        globals()[_f.__name__] = _f
