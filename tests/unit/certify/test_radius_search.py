"""The certified radius search's narrowing rules (certify/radius_search.py): ITP reaches bisection's precision
in at most 2 more steps (in practice fewer), every returned radius is an eps that was certified, and a
search without margins bisects."""
import math

import pytest
import torch

from certnn import from_torch
from certnn.certify.radius import Certifier, CertifyConfig, RadiusConfig
from certnn.certify.radius_search import Bracket, bracket, itp_point, max_steps, shrink
from certnn.errors import ConfigError
from certnn.testing.nets import random_mlp


def _curves(n: int, seed: int = 0):
    """Margins of n samples as concave / convex / kinked decreasing functions of eps with known roots."""
    g = torch.Generator().manual_seed(seed)
    root = 10 ** (torch.rand(n, generator=g, dtype=torch.float64) * 3 - 3)  # 1e-3 .. 1
    shape = torch.randint(0, 3, (n,), generator=g)

    def margin(idx, eps):
        r, s = root[idx], shape[idx]
        t = eps / r
        concave = 1 - t ** 3
        convex = torch.exp(-4 * (t - 1)) - 1
        kinked = torch.where(t < 0.9, 0.1 + 0.2 * (0.9 - t), 1 - t)  # slope jumps 5x just below the root
        return torch.where(s == 0, concave, torch.where(s == 1, convex, kinked))

    return root, margin


def _search(strategy: str, n: int = 64, steps: int = 12, use_margin: bool = True):
    root, margin = _curves(n)
    calls = torch.zeros(n, dtype=torch.long)

    def evaluate(a, eps):
        calls[a] += 1
        m = margin(a, eps)
        return m > 0, (m if use_margin else None)

    state = Bracket.empty(n)
    evals = bracket(state, torch.full((n,), 0.01, dtype=torch.float64), evaluate, 30, 1e-6, 1e3)
    evals += shrink(state, evaluate, steps, True, strategy)
    return root, state, calls, evals


@pytest.mark.parametrize("strategy", ["itp", "bisection"])
def test_every_bracket_reaches_bisections_precision_with_certified_lo(strategy):
    root, state, calls, evals = _search(strategy)
    assert bool((state.lo < root).all()) and bool((state.hi >= root).all())  # lo certified, hi failed
    gap0_max = math.log(2.0)  # a doubling / halving bracket
    assert float((state.hi / state.lo).log().max()) <= gap0_max / 2 ** 12 * (1 + 1e-9)


def test_itp_takes_at_most_two_more_steps_and_far_fewer_in_total():
    _, _, calls_itp, _ = _search("itp")
    _, _, calls_bis, _ = _search("bisection")
    bracket_steps = calls_bis - 12
    assert bool((calls_itp - bracket_steps <= max_steps(12, "itp")).all())
    assert max_steps(12, "itp") == 14
    assert (calls_itp - bracket_steps).sum() < 0.6 * (calls_bis - bracket_steps).sum()


def test_without_margins_itp_is_bisection():
    _, s_itp, c_itp, _ = _search("itp", use_margin=False)
    _, s_bis, c_bis, _ = _search("bisection", use_margin=False)
    assert torch.equal(s_itp.lo, s_bis.lo) and torch.equal(s_itp.hi, s_bis.hi) and torch.equal(c_itp, c_bis)


def test_itp_point_stays_inside_and_falls_back_to_the_midpoint():
    lo, hi = torch.tensor([0.0, 0.0, 0.0]), torch.tensor([1.0, 1.0, 1.0])
    est = torch.tensor([math.nan, -5.0, 0.3])
    u = itp_point(lo, hi, est, torch.full((3,), 1e-3), torch.full((3,), 0.05), 12)
    assert u[0] == 0.5 and bool(((u > lo) & (u < hi)).all())
    # with no steps to spare, the point is the midpoint whatever the estimate
    tol = torch.full((3,), 1.0 / 2 ** 13)
    assert torch.equal(itp_point(lo, hi, est, tol, torch.full((3,), 0.05), 12), torch.full((3,), 0.5))


def test_certifier_radius_itp_is_certified_and_matches_bisection():
    torch.manual_seed(0)
    net, d = random_mlp(3, "relu", out=3)
    x = torch.rand(12, d, dtype=torch.float64)
    g = from_torch(net.double(), (d,))
    y = g.forward(x).argmax(1)
    cert = Certifier(g, CertifyConfig(method="crown"))
    r_bis = cert.radius(x, y, RadiusConfig(bisection_steps=10, strategy="bisection"))
    r_itp = cert.radius(x, y, RadiusConfig(bisection_steps=10, strategy="itp"))
    a, b = r_itp.certified_radius, r_bis.certified_radius
    assert bool((a > 0).all())
    assert float(((a - b).abs() / b).max()) <= math.log(2) / 2 ** 10 * 1.01
    # every radius is an eps the method certifies
    assert bool(cert.certify(x, y, a).certified.all())
    assert r_itp.evaluations <= r_bis.evaluations + 2


def test_unknown_strategy_is_a_config_error():
    with pytest.raises(ConfigError, match="search strategy"):
        RadiusConfig(strategy="golden")
