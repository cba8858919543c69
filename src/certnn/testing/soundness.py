"""Public soundness helpers: our tests use them, and so can anyone adding an op or a relaxation.

`sample_ball` draws points of an input set (uniform, corner-heavy Beta(0.5, 0.5), and vertices of the
L∞ box / signed axis points for L1 / sphere points for L2), and `check_bounds_contain` evaluates a
function on them and reports the worst violation of given bounds. `pgd_against_bounds` pushes each output
coordinate against its lower and upper bound with projected gradient steps, which finds violations that
random sampling misses.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..specs.lp import LpBall


def _project(spec: LpBall, x: Tensor) -> Tensor:
    """Project points (B, N, *in) into spec (approximately for L2/L1 with clip; always inside)."""
    c = spec.center.unsqueeze(1)
    d = x - c
    s = None
    if spec.scale is not None:
        s = torch.broadcast_to(spec.scale, spec.center.shape[1:])
        safe = torch.where(s > 0, s, torch.ones_like(s))
        z = torch.where(s > 0, d / safe, torch.zeros_like(d))
    else:
        z = d
    B, N = z.shape[:2]
    # per-frame balls: every frame is its own ball (rows of (B, N * T, d / T))
    zf = z.reshape(B, N * spec.frames, -1) if spec.frame_norm else z.reshape(B, N, -1)
    eps = spec.eps.reshape(B, 1, 1)
    norm = spec.frame_norm or spec.norm
    if norm == "inf":
        zf = torch.maximum(torch.minimum(zf, eps), -eps)
    elif norm == "2":
        n = zf.norm(dim=-1, keepdim=True)
        zf = zf * torch.clamp(eps / n.clamp(min=1e-300), max=1.0)
    else:
        zf = _project_l1(zf, eps)
    z = zf.reshape(z.shape)
    out = c + (z * s if s is not None else z)
    if spec.clip is not None:
        out = torch.maximum(torch.minimum(out, spec.clip[1]), spec.clip[0])
    return out


def _project_l1(v: Tensor, r: Tensor) -> Tensor:
    """Euclidean projection of rows of v onto L1 balls of radius r (Duchi et al. 2008), batched."""
    a = v.abs()
    inside = a.sum(-1, keepdim=True) <= r
    mu, _ = torch.sort(a, dim=-1, descending=True)
    cs = mu.cumsum(-1)
    k = torch.arange(1, v.shape[-1] + 1, dtype=v.dtype, device=v.device)
    cond = mu - (cs - r) / k > 0
    rho = (cond * k).amax(-1, keepdim=True).clamp(min=1)
    theta = (cs.gather(-1, rho.long() - 1) - r) / rho
    proj = torch.sign(v) * (a - theta).clamp(min=0)
    return torch.where(inside, v, proj)


def sample_ball(spec: LpBall, n: int, generator: torch.Generator | None = None) -> Tensor:
    """n points per sample (B, n, *in_shape) from the input set: a third uniform-ish, a third
    corner-heavy (Beta(0.5, 0.5) per coordinate), a third extreme points; all projected into the set.
    Per-frame balls draw every frame independently in its own ball; the extreme points put every frame on
    its sphere (L2), its vertices (L-inf) or its signed axis points (L1) at once."""
    B = spec.batch
    shape = spec.center.shape[1:]
    g = generator or torch.Generator().manual_seed(0)
    if spec.frame_norm is not None:
        T = spec.frames
        sub = LpBall(spec.center[:, 0].reshape(B, -1), spec.eps, spec.frame_norm)
        z = torch.stack([_draw(sub, n, g) for _ in range(T)], 2)  # (B, n, T, d / T)
        z = z.reshape((B, n) + tuple(shape))
        if spec.scale is not None:
            z = z * spec.scale
        return _project(spec, spec.center.unsqueeze(1) + z)
    z = _draw(spec, n, g).reshape((B, n) + tuple(shape))
    if spec.scale is not None:
        z = z * spec.scale
    return _project(spec, spec.center.unsqueeze(1) + z)


def _draw(spec: LpBall, n: int, g: torch.Generator) -> Tensor:
    """Perturbations z (B, n, d) with ||z||_p <= eps of spec's norm (before scale, clip and projection)."""
    B = spec.batch
    shape = spec.center.shape[1:]
    dtype = spec.center.dtype
    d = int(torch.tensor(shape).prod().item()) if len(shape) else 1
    k = max(1, n // 3)
    u = torch.rand((B, k, d), generator=g, dtype=dtype) * 2 - 1
    beta = torch.distributions.Beta(torch.tensor(0.5, dtype=dtype), torch.tensor(0.5, dtype=dtype))
    torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=g)))
    cb = beta.sample((B, k, d)) * 2 - 1
    m = n - 2 * k
    signs = torch.where(torch.rand((B, m, d), generator=g, dtype=dtype) < 0.5, -1.0, 1.0).to(dtype)
    eps = spec.eps.reshape(B, 1, 1)
    if spec.norm == "inf":
        z = torch.cat([u * eps, cb * eps, signs * eps], 1)
    elif spec.norm == "2":
        gauss = torch.randn((B, 2 * k, d), generator=g, dtype=dtype)
        dirs = gauss / gauss.norm(dim=-1, keepdim=True)
        radii = torch.rand((B, 2 * k, 1), generator=g, dtype=dtype) ** (1.0 / d)
        radii[:, k:] = 1.0  # sphere points
        ext = signs / (d ** 0.5)
        z = torch.cat([dirs * radii * eps, ext * eps], 1)
    else:
        e = -torch.log(torch.rand((B, 2 * k, d), generator=g, dtype=dtype))
        pts = e / e.sum(-1, keepdim=True) * torch.where(torch.rand((B, 2 * k, d), generator=g) < 0.5, -1.0, 1.0).to(dtype)
        axis = torch.zeros((B, m, d), dtype=dtype)
        hot = torch.randint(0, d, (B, m), generator=g)
        axis.scatter_(2, hot.unsqueeze(-1), signs[..., :1])
        z = torch.cat([pts * eps, axis * eps], 1)
    return z


def check_bounds_contain(fn: Callable[[Tensor], Tensor], points: Tensor, lower: Tensor, upper: Tensor,
                         C: Tensor | None = None) -> float:
    """Worst violation (>= 0; 0 means sound on these points) of lower <= C f(p) <= upper.

    points (B, N, *in); lower/upper (B, S); C (B, S, K) or None (identity on the flattened output).
    """
    B, N = points.shape[:2]
    with torch.no_grad():
        out = fn(points.reshape((B * N,) + points.shape[2:])).reshape(B, N, -1)
    if C is not None:
        out = torch.einsum("bsk,bnk->bns", C.reshape(B, C.shape[1], -1).to(out.dtype), out)
    lo = (lower.unsqueeze(1) - out).clamp(min=0).amax().item()
    hi = (out - upper.unsqueeze(1)).clamp(min=0).amax().item()
    return max(lo, hi)


def pgd_against_bounds(fn: Callable[[Tensor], Tensor], spec: LpBall, lower: Tensor, upper: Tensor,
                       C: Tensor | None = None, steps: int = 30, restarts: int = 2, seed: int = 0) -> float:
    """Push every output row s (of C f) down towards lower[:, s] and up towards upper[:, s] with projected
    sign-gradient steps; return the worst violation found (0 = none)."""
    B = spec.batch
    S = lower.shape[1]
    g = torch.Generator().manual_seed(seed)
    worst = 0.0
    for _ in range(restarts):
        # points: (B, 2S, *in): for each row, one point minimising and one maximising it
        x = sample_ball(spec, 2 * S, g).detach()
        sign = torch.cat([torch.ones(S), -torch.ones(S)]).to(x.dtype)  # +: minimise (test lower)
        step = (spec.eps.reshape(B, 1, *([1] * (x.ndim - 2))) * 2.5 / steps)
        if spec.scale is not None:
            step = step * spec.scale
        rows = torch.cat([torch.arange(S), torch.arange(S)])
        for _ in range(steps):
            x.requires_grad_(True)
            out = fn(x.reshape((B * 2 * S,) + x.shape[2:])).reshape(B, 2 * S, -1)
            if C is not None:
                Cr = C.reshape(B, S, -1).to(out.dtype)[:, rows]  # (B, 2S, K)
                val = (out * Cr).sum(-1)
            else:
                val = out[:, torch.arange(2 * S), rows]
            obj = (val * sign).sum()
            (grad,) = torch.autograd.grad(obj, x)
            if spec.is_box:
                d = -grad.sign()
            else:  # the normalised gradient, per frame for per-frame balls
                gf = grad.reshape(B, 2 * S, spec.frames, -1) if spec.frame_norm else grad.reshape(B, 2 * S, -1)
                d = -(gf / gf.norm(dim=-1, keepdim=True).clamp(min=1e-300)).reshape(grad.shape)
                d = d * (gf.shape[-1] ** 0.5)
            x = _project(spec, (x + step * d).detach())
        worst = max(worst, check_bounds_contain(fn, x, lower, upper, C))
    return worst


def bound_violations(fn: Callable[[Tensor], Tensor], graph, spec: LpBall, method: str, C: Tensor | None = None,
                     n: int = 64, generator: torch.Generator | None = None, pgd_steps: int = 0,
                     restarts: int = 1, seed: int = 0) -> tuple[Tensor, Tensor, Tensor, float, float]:
    """One network-level soundness check: the bounds (lo, hi) of `method` on C·f over `spec`, the n sampled
    points per sample (B, n, *in) and the worst violation of the bounds by those points and, when
    pgd_steps > 0, by PGD pushing against each bound (0.0 when not run). Violations are >= 0; 0 is sound."""
    from ..certify.bounds import bounds_for_spec

    lo, hi, _ = bounds_for_spec(graph, spec, method, C)
    pts = sample_ball(spec, n, generator)
    v_sample = check_bounds_contain(fn, pts, lo, hi, C)
    v_pgd = (pgd_against_bounds(fn, spec, lo, hi, C, steps=pgd_steps, restarts=restarts, seed=seed)
             if pgd_steps else 0.0)
    return lo, hi, pts, v_sample, v_pgd
