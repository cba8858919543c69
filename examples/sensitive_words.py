"""Which words is a text classifier most sensitive to? Certified radius of each word alone vs gradient saliency.

    CERTNN_DATA_DIR=../shared/data python examples/sensitive_words.py [--data-dir D] [--model m.pt]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch

import certnn
from certnn.apps import ranking_agreement, word_sensitivity
from certnn.cli.main import main as certnn_cli
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
if args.model is None:
    assert certnn_cli(["train", "--task", "mr", "--data-dir", args.data_dir, "--limit", "300", "--max-len", "8",
                       "--hidden", "8", "--epochs", "2", "--quiet", "--out", model_path]) == 0

model, vocab, meta = load_text_model(model_path)
encoder = TextEncoder.from_meta(vocab, meta)
texts = ["a gorgeous , witty movie .", "the plot is dull and boring ."]
enc = encoder.encode(texts)
graph = text_graph(model, meta["max_len"])
ws = word_sensitivity(graph, certnn.embed_tokens(model, enc.tokens), enc.lengths, None,
                      certnn.CertifyConfig(method="certrnn", norm="2"), certnn.RadiusConfig(bisection_steps=6))
for i, text in enumerate(texts):
    toks = encoder.kept_tokens(text)
    idx = ws.pairs_of(i)
    order = idx[torch.argsort(ws.rank[idx])]
    print(f"{text!r} (predicted {int(ws.predicted[i])}): most sensitive first")
    for p in order.tolist():
        print(f"  {toks[int(ws.position[p])]:>10}  certified radius {float(ws.certified_radius[p]):.4f}  "
              f"saliency {float(ws.saliency[p]):.4f} (rank {int(ws.saliency_rank[p])})")
agree = ranking_agreement(ws)
print(f"Spearman rho (certified vs saliency ranking): {agree['mean_spearman']:.3f}; "
      f"top-1 agreement {agree['top1_agreement']:.2f}")
