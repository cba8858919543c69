"""Uniform sampling in an Lp ball B_p(x0, R) = {x : ||x - x0||_p <= R}, for p in {inf, 2, 1}.

Used by CLEVER (Weng et al., ICLR 2018, Algorithm 1, "randomly select a point x^(i,k) in B_p(x0, R)").
All samplers draw the displacement delta = x - x0 in the flattened input space of dimension d and return
points of shape (n, *x0.shape) (batch first), in x0's dtype and on x0's device.

* p = inf: every coordinate uniform on [-R, R] (the box).
* p = 2:   delta = R * U^(1/d) * z / ||z||_2 with z ~ N(0, I_d), U ~ U(0, 1): a direction uniform on the
           sphere times a radius whose law P(r <= t) = (t/R)^d is uniform in volume.
* p = 1:   delta = R * s * e[:d] / sum(e) with e ~ Exp(1)^(d+1) and s uniform random signs: e / sum(e) is
           Dirichlet(1, ..., 1) on d+1 coordinates, so its first d coordinates are uniform on the solid
           simplex {v >= 0, sum(v) <= 1}; the random signs reflect it onto the 2^d orthants of the ball.

Clipping the points to a box [lo, hi] afterwards (``clip``) keeps them in the ball when x0 lies in the box
(clamping moves every coordinate towards x0) but makes the distribution non-uniform: mass outside the box
piles up on its faces. The CLEVER reference code clips to the image range in the same way.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..config import parse_norm
from ..errors import ConfigError, DataError

__all__ = ["sample_lp_ball", "lp_ball_displacements"]


def lp_ball_displacements(n: int, dim: int, radius: float, norm: str, *, dtype: torch.dtype = torch.float64,
                          device: torch.device | str | None = None,
                          generator: torch.Generator | None = None) -> Tensor:
    """Displacements delta of shape (n, dim) drawn uniformly from the Lp ball of radius R around 0.

    Args:
        n: number of points.
        dim: d, the flattened input dimension.
        radius: R > 0.
        norm: the perturbation norm p: 'inf', '2' or '1' (anything :func:`certnn.config.parse_norm` takes).
        dtype, device: of the result.
        generator: a :class:`torch.Generator` on ``device`` for reproducible draws.
    """
    p = parse_norm(norm)
    if n < 0 or dim < 1:
        raise DataError(f"cannot sample {n} points of dimension {dim}")
    radius = float(radius)
    if not radius > 0 or radius == float("inf"):
        raise ConfigError(f"sampling radius R must be a positive finite number, got {radius!r}")
    kw = dict(dtype=dtype, device=device)
    if p == "inf":
        u = torch.rand(n, dim, generator=generator, **kw)
        return radius * (2.0 * u - 1.0)
    if p == "2":
        z = torch.randn(n, dim, generator=generator, **kw)
        nrm = torch.linalg.vector_norm(z, ord=2, dim=1, keepdim=True)
        # a zero Gaussian vector has probability 0; guard the division anyway
        z = z / torch.clamp(nrm, min=torch.finfo(dtype).tiny)
        u = torch.rand(n, 1, generator=generator, **kw)
        return radius * u.pow(1.0 / dim) * z
    # p == "1"
    e = torch.empty(n, dim + 1, **kw).exponential_(1.0, generator=generator)
    v = e[:, :dim] / e.sum(dim=1, keepdim=True)
    signs = torch.randint(0, 2, (n, dim), generator=generator, device=device).to(dtype) * 2.0 - 1.0
    return radius * signs * v


def sample_lp_ball(center: Tensor, radius: float, norm: str, n: int, *,
                   generator: torch.Generator | None = None,
                   clip: tuple[float | Tensor, float | Tensor] | None = None) -> Tensor:
    """n points x = x0 + delta, delta uniform in the Lp ball of radius R, optionally clipped to a box.

    Args:
        center: x0 of shape in_shape (no batch dimension), floating point.
        radius: R > 0.
        norm: the perturbation norm p ('inf', '2', '1').
        n: number of points.
        generator: a :class:`torch.Generator` on x0's device for reproducible draws.
        clip: (lo, hi), scalars or tensors broadcastable to in_shape; the points are clamped to [lo, hi].
            This makes the sampling non-uniform (see the module docstring).

    Returns:
        Tensor of shape (n, *in_shape) in x0's dtype and device.
    """
    if not torch.is_floating_point(center):
        raise DataError(f"the center x0 must be a floating-point tensor, got {center.dtype}")
    shape = tuple(center.shape)
    dim = max(1, center.numel())
    delta = lp_ball_displacements(n, dim, radius, norm, dtype=center.dtype, device=center.device,
                                  generator=generator)
    pts = center.reshape(1, -1) + delta
    pts = pts.reshape((n,) + shape)
    if clip is not None:
        lo, hi = _clip_tensors(clip, center)
        pts = torch.maximum(torch.minimum(pts, hi), lo)
    return pts


def _clip_tensors(clip: tuple[float | Tensor, float | Tensor], like: Tensor) -> tuple[Tensor, Tensor]:
    """(lo, hi) as tensors in like's dtype/device, broadcastable to like.shape; checks lo <= hi."""
    try:
        lo, hi = clip
    except (TypeError, ValueError):
        raise DataError(f"clip must be a pair (lo, hi), got {clip!r}") from None
    lo_t = torch.as_tensor(lo, dtype=like.dtype, device=like.device)
    hi_t = torch.as_tensor(hi, dtype=like.dtype, device=like.device)
    try:
        torch.broadcast_shapes(lo_t.shape, like.shape)
        torch.broadcast_shapes(hi_t.shape, like.shape)
    except RuntimeError:
        raise DataError(f"clip bounds of shapes {tuple(lo_t.shape)}, {tuple(hi_t.shape)} do not broadcast "
                        f"to the input shape {tuple(like.shape)}") from None
    if bool((lo_t > hi_t).any()):
        raise DataError("clip = (lo, hi) needs lo <= hi everywhere")
    return lo_t, hi_t
