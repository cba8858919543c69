"""certify/staged_search.py: alpha-crown's radius search from CROWN's radius: never below CROWN's radius,
every radius certified by alpha-crown itself at that eps, the plain search's precision, fewer alpha
evaluations; PGD never finds an adversarial example inside."""
from __future__ import annotations

import math

import torch

from certnn.attacks import attack_radius
from certnn.certify.radius import Certifier, CertifyConfig, RadiusConfig
from certnn.optimize import AlphaConfig
from certnn.testing import random_relu_mlp


def _setup():
    model = random_relu_mlp(3, d=8, h=40, depth=4, out=5)
    x = torch.rand(8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    return model, x, model(x).argmax(1)


def _alpha(model):
    return Certifier(model, CertifyConfig(method="alpha-crown", alpha=AlphaConfig(iterations=8)), (8,))


def test_staged_radius_is_certified_and_at_least_crowns():
    model, x, y = _setup()
    search = RadiusConfig(bisection_steps=8)
    r_c = Certifier(model, CertifyConfig(method="crown"), (8,)).radius(x, y, search).certified_radius
    cert = _alpha(model)
    r_a = cert.radius(x, y, search).certified_radius
    assert (r_c > 0).all() and (r_a >= r_c).all() and (r_a > r_c).any()
    # what the stage relies on: alpha-crown certifies every ball CROWN certifies (its bound is floored at CROWN's)
    assert cert.certify(x, y, r_c).certified.all()
    assert (attack_radius(model, x, y, "inf").radius >= r_a).all()
    assert cert.profile.counts.get("crown_stage/bound_calls", 0) > 0


def test_staged_search_keeps_the_precision_with_fewer_alpha_evaluations():
    model, x, y = _setup()
    steps = 8
    runs = {}
    for staged in (False, True):
        cert = _alpha(model)
        res = cert.radius(x, y, RadiusConfig(bisection_steps=steps, crown_stage=staged))
        runs[staged] = (res.certified_radius, cert.profile.counts["bound_calls"])
    (r_plain, n_plain), (r_staged, n_staged) = runs[False], runs[True]
    assert n_staged < n_plain
    # both end with a bracket of log-width <= log(2) / 2^steps: the staged radius is nowhere below the plain
    # one by more than that (twice, for alpha's path-dependent optimum; measured: -0.18% .. +1.5%, the
    # largest gain where a start near the radius warm-starts alpha better)
    gap = torch.log(r_staged) - torch.log(r_plain)
    assert float(gap.min()) >= -2 * math.log(2) / 2 ** steps
    assert float(gap.mean()) >= 0
