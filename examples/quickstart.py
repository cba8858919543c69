"""The README's Python example: bounds, certification, certified radius and an attack radius side by side.

    python examples/quickstart.py
"""
import torch

import certnn
from certnn.attacks import attack_radius

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
x, y = torch.rand(8, 64), torch.randint(0, 10, (8,))
y = model(x).argmax(1)  # label the points by the model's own prediction, so every sample counts

iv = certnn.compute_bounds(model, x, eps=0.01, norm="inf", method="crown")  # bounds on every logit
res = certnn.certify(model, x, y, eps=0.01, norm="2", method="crown")  # per-sample proofs
rad = certnn.certified_radius(model, x, y, norm="inf", method="crown", clip=(0.0, 1.0))
att = attack_radius(model, x.double(), y, "inf", clip=(0.0, 1.0))

print("logit bounds of sample 0:", iv.lower[0, :3].tolist(), iv.upper[0, :3].tolist())
print("certified at L2 eps=0.01:", res.certified.tolist())
print("certified radius (lower bound):", [round(v, 5) for v in rad.certified_radius.tolist()])
print("attack radius (upper bound):   ", [round(v, 5) for v in att.radius.tolist()])
assert (rad.certified_radius <= att.radius).all(), "a certified radius above an attack radius is a bug"
