"""Verified robust training: the same MLP trained plainly and with IBP / CROWN-IBP bounds in the loss,
then judged by its certified accuracy (float64 certification, not the training-time bounds).

    python examples/robust_training.py          # scikit-learn's digits, about 6 s on one core

The command-line equivalent: `certnn train --task digits --robust ibp --eps 0.1` and `certnn compare`.
"""
import torch

import certnn
from certnn.data.digits import load_digits_split
from certnn.train.simple import accuracy, mlp, train_classifier

torch.set_num_threads(1)
xtr, ytr, xte, yte = load_digits_split(dtype=torch.float32)
x, y = xte[:200].double(), yte[:200]
eps_train, eps_test = 0.1, 0.05

models = {"plain": train_classifier(mlp([64, 50, 50, 10]), xtr, ytr, epochs=30, lr=2e-3, seed=0)}
for method in ("ibp", "crown-ibp"):
    torch.manual_seed(0)
    model = mlp([64, 50, 50, 10])
    cfg = certnn.RobustTrainConfig(method=method, eps=eps_train, epochs=30, lr=2e-3, ramp_epochs=15, clip=(0.0, 1.0))
    certnn.train_robust(model, xtr, ytr, (64,), cfg)
    models[method] = model

print(f"{'training':>10}  clean acc  certified acc at L-inf eps={eps_test} (crown)")
for name, model in models.items():
    res = certnn.certify(model, x, y, eps=eps_test, norm="inf", method="crown", clip=(0.0, 1.0))
    print(f"{name:>10}  {accuracy(model, xte, yte):9.3f}  {res.certified.double().mean().item():.3f}")
