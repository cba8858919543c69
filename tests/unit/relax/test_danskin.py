"""relax.danskin: offsets as extremes over candidate points with the envelope theorem's gradient, formed
without an autograd graph. Against autograd through the same candidates (min over stacked values, clips by
torch.maximum / minimum, ties averaged by relax.ties): bit-identical values and the same gradients, where
the extremiser is unique and where candidates tie (zero-width boxes)."""
from __future__ import annotations

import torch

from certnn.relax.danskin import AT_LOWER, AT_UPPER, CandidateExtreme, Coord, clip_tagged
from certnn.relax.ties import tie_averaged

torch.set_num_threads(1)


def _case(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    r = lambda: torch.rand(n, generator=g, dtype=torch.float64)  # noqa: E731
    l = r() * 6 - 4
    u = l + r() * 4
    k = r() * 1.2  # slopes of tanh lines: stationary points +-x*(k) inside or clipped
    return k, l, u


def _tanh_candidates(k, l, u):
    xs = torch.nan_to_num(torch.atanh(torch.sqrt((1 - k.detach().clamp(1e-300, 1.0)).clamp(min=0))), posinf=1e300)
    return xs


def _autograd_min(k, l, u):
    """min over {l, u, clip(+x*), clip(-x*)} of tanh(x) - k x, through autograd (the reference)."""
    xs = _tanh_candidates(k, l, u)
    cands = [l, u, torch.minimum(torch.maximum(xs, l), u), torch.minimum(torch.maximum(-xs, l), u)]
    vals = torch.stack([torch.tanh(c) - k * c for c in cands])
    return tie_averaged(vals.amin(0), vals, "min")


def _danskin_min(k, l, u):
    with torch.no_grad():
        xs = _tanh_candidates(k, l, u)
        p1, t1 = clip_tagged(xs, l.detach(), u.detach())
        p2, t2 = clip_tagged(-xs, l.detach(), u.detach())
        pts = [l.detach(), u.detach(), p1, p2]
        F = [torch.tanh(p) for p in pts]
    coord = Coord(pts, k, l, u, [AT_LOWER, AT_UPPER, t1, t2])
    ce = CandidateExtreme(F, [coord], -1.0, partials=lambda x: (1 - torch.tanh(x) ** 2,))
    return ce.attach(-ce.m)


def _grads(fn, k, l, u):
    leaves = [t.clone().requires_grad_(True) for t in (k, l, u)]
    v = fn(*leaves)
    (v * torch.linspace(0.5, 1.5, v.numel(), dtype=v.dtype)).sum().backward()
    return v.detach(), torch.stack([t.grad for t in leaves])


def test_values_bit_identical_and_gradients_equal_autograd_where_unique():
    k, l, u = _case(5000, seed=1)
    v0, g0 = _grads(_autograd_min, k, l, u)
    v1, g1 = _grads(_danskin_min, k, l, u)
    assert torch.equal(v0, v1)
    assert float(((g0 - g1).abs() / (1 + g0.abs())).max()) <= 1e-14
    # the clips really happen on both ends in this sample (else the box gradients would be untested)
    assert float(g1[1].abs().max()) > 0.1 and float(g1[2].abs().max()) > 0.1


def test_tied_candidates_share_the_gradient_as_autograd_does():
    """Zero-width boxes: every candidate is the same point (all tied); the gradient is split between the
    ends as autograd through the clips splits it (a clip from below onto l == u: half to each end)."""
    k, l, _ = _case(400, seed=3)
    v0, g0 = _grads(_autograd_min, k, l, l.clone())
    v1, g1 = _grads(_danskin_min, k, l, l.clone())
    assert torch.equal(v0, v1)
    assert float((g0 - g1).abs().max()) <= 1e-14
    assert float((g1[1] - g1[2]).abs().max()) > 1e-3  # the ends really get different shares


def test_no_gradient_needed_returns_the_value_itself():
    k, l, u = _case(10, seed=2)
    with torch.no_grad():
        v = _danskin_min(k.requires_grad_(True), l, u)
    assert not v.requires_grad
