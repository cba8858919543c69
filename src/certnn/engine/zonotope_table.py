"""Relaxation tables of the zonotope engine: `certrnn` (Cert-RNN, Du et al. CCS 2021) and `deepz`
(DeepZ, Singh et al. NeurIPS 2018). Every entry returns *parallel* lines / planes (a zonotope transformer).

| op kind            | certrnn                                        | deepz                          |
|--------------------|------------------------------------------------|--------------------------------|
| relu, leaky_relu   | slope u/(u-l) (chord), lower line through 0    | same (DeepZ's ReLU transformer) |
| hardtanh           | chord slope, exact offsets                     | same                           |
| tanh/sigmoid/arctan| narrower of secant and min(f'(l), f'(u)) pairs | min(f'(l), f'(u)) (minimal area)|
| sigmoid_tanh_mul   | Cert-RNN parallel planes (case table)          | same                           |
| sigmoid_mul        | Cert-RNN parallel planes (case table)          | same                           |
| mul                | parallel planes through the box centre         | same                           |

Entries: activations (``Method.table``) ``fn(op, l, u, alpha=None) -> LinearRelaxation``; products
(``Method.planes``) ``fn(op, lx, ux, ly, uy) -> PlaneRelaxation``.

Soundness: every entry's offsets are exact extremes of f - (slope) x (or F - A x - B y) over the box,
widened by a few ulps (see relax/sshape.py, relax/products.py, relax/relu.py).
"""
from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Callable

from ..relax import (SSHAPES, hardtanh_relaxation, leaky_relu_relaxation, mul_parallel_planes, parallel_relaxation,
                     relu_relaxation, sigmoid_mul_planes, sigmoid_tanh_planes)
from ..relax.parallel import narrowest_parallel

SSHAPE_SLOPES = ("narrowest", "secant", "deepz")


def _sshape(name: str, slope: str):
    fn_s = SSHAPES[name]
    if slope == "narrowest":
        return lambda op, l, u, alpha=None: narrowest_parallel(fn_s, l, u)
    return lambda op, l, u, alpha=None: parallel_relaxation(fn_s, l, u, slope)


def zonotope_planes() -> Mapping[str, Callable]:
    """Parallel planes of the recurrent products (Cert-RNN), for ``Method.planes``."""
    return MappingProxyType({
        "sigmoid_tanh_mul": lambda op, lx, ux, ly, uy: sigmoid_tanh_planes(lx, ux, ly, uy, mode="certrnn"),
        "sigmoid_mul": lambda op, lx, ux, ly, uy: sigmoid_mul_planes(lx, ux, ly, uy, mode="certrnn"),
        "mul": lambda op, lx, ux, ly, uy: mul_parallel_planes(lx, ux, ly, uy),
    })


def zonotope_table(sshape_slope: str = "narrowest") -> Mapping[str, Callable]:
    """The line table (activations) of a zonotope method; sshape_slope in SSHAPE_SLOPES."""
    if sshape_slope not in SSHAPE_SLOPES:
        raise ValueError(f"unknown slope rule {sshape_slope!r}; use one of {', '.join(SSHAPE_SLOPES)}")
    t: dict[str, Callable] = {
        "relu": lambda op, l, u, alpha=None: relu_relaxation(l, u, "parallel"),
        "leaky_relu": lambda op, l, u, alpha=None: leaky_relu_relaxation(
            l, u, op.params.get("negative_slope", 0.01), "parallel"),
        "hardtanh": lambda op, l, u, alpha=None: hardtanh_relaxation(
            l, u, op.params.get("min_val", -1.0), op.params.get("max_val", 1.0)),
    }
    for name in SSHAPES:
        t[name] = _sshape(name, sshape_slope)
    return MappingProxyType(t)


__all__ = ["zonotope_table", "zonotope_planes", "SSHAPE_SLOPES"]
