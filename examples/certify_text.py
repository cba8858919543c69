"""Train a tiny LSTM on a slice of the movie-review task and certify chosen words of a sentence.

    CERTNN_DATA_DIR=../shared/data python examples/certify_text.py [--data-dir D] [--model m.pt]

The certified radius is a proved lower bound: every sentence whose chosen words' embeddings move by at
most that much (L2, jointly) keeps the model's prediction.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch

import certnn
from certnn.cli.main import main as certnn_cli
from certnn.data import word_frames
from certnn.models import TextEncoder, load_text_model, text_graph

torch.set_num_threads(1)
ap = argparse.ArgumentParser()
ap.add_argument("--data-dir", default=os.environ.get("CERTNN_DATA_DIR",
                                                     str(Path(__file__).resolve().parents[2] / "shared" / "data")))
ap.add_argument("--model", help="a text bundle from `certnn train` (default: train a tiny one on a slice)")
args = ap.parse_args()
if args.model is None and not (Path(args.data_dir) / "text" / "mr").is_dir():
    print(f"no movie-review data under {args.data_dir}: set CERTNN_DATA_DIR or pass --data-dir / --model")
    sys.exit(0)
model_path = args.model or str(Path(tempfile.mkdtemp()) / "mr_tiny.pt")
if args.model is None:  # 2 epochs on 300 sentences, T = 10: a few seconds
    assert certnn_cli(["train", "--task", "mr", "--data-dir", args.data_dir, "--limit", "300", "--max-len", "10",
                       "--hidden", "8", "--epochs", "2", "--quiet", "--out", model_path]) == 0

model, vocab, meta = load_text_model(model_path)
T = meta["max_len"]
enc = TextEncoder.from_meta(vocab, meta).encode(["a gorgeous , witty , seductive movie ."])
graph = text_graph(model, T)
x0 = certnn.embed_tokens(model, enc.tokens)  # (1, T, 50): the ball's centre
y = graph.forward(x0).argmax(1)
for words in ([1], [3, 5], None):  # "gorgeous"; "witty" and "seductive"; every word
    frames, ok = word_frames(enc.lengths, T, words)
    fr = tuple(int(f) for f in frames[0].tolist() if f >= 0)
    res = certnn.certified_radius(graph, x0, y, norm="2", method="certrnn", frames=fr,
                                  search=certnn.RadiusConfig(bisection_steps=8))
    print(f"words {words or 'all'} (frames {fr}): certified L2 radius {float(res.certified_radius[0]):.4f}")
