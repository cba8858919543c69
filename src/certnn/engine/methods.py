"""The method table: the one place a method name maps to an engine and a relaxation table.

A method is an engine plus a relaxation table (DESIGN.md, principle 1):

| name      | engine    | ReLU lower line        | sigmoid/tanh/arctan | intermediate bounds |
|-----------|-----------|------------------------|---------------------|---------------------|
| ibp       | interval  | -                      | -                   | interval            |
| fastlin   | backward  | parallel (Fast-Lin)    | blend tangent/chord | fastlin             |
| crown     | backward  | adaptive (CROWN)       | blend tangent/chord | crown               |
| crown-ibp | backward  | adaptive               | blend tangent/chord | interval (IBP)      |
| cnncert   | backward  | adaptive               | blend tangent/chord | cnncert             |
| popqorn   | backward  | adaptive               | blend tangent/chord | popqorn             |
| alpha-crown | optimized (backward) | optimised in [0, 1] | optimised slopes (from blend) | alpha-crown (optimised) |
| lipschitz | lipschitz | -                      | -                   | -                   |
| certrnn   | zonotope  | parallel (DeepZ)       | narrowest parallel  | - (forward pass)    |
| deepz     | zonotope  | parallel (DeepZ)       | DeepZ min-area      | - (forward pass)    |
| lp        | lp        | triangle relaxation (LP, HiGHS) | unsupported | crown (for the big-M bounds) |
| milp      | milp      | exact (MILP, HiGHS)    | unsupported         | crown (for the big-M bounds) |

`lp` and `milp` (engine/milp.py) are the exact baselines for small ReLU networks: `lp` is the "LP" column
of the Fast-Lin / CROWN tables (each unstable ReLU replaced by its triangle), `milp` the exact range.

The zonotope methods' tables (lines and the parallel product planes of recurrent cells) are in
engine/zonotope_table.py.

"blend tangent/chord" (relax/sshape.py): the supporting lines of f's convex / concave envelope on [l, u]
that optimise (1 - kappa) * mean + kappa * worst value of the line over [l, u] (kappa = 0.2); CROWN's
tangent/chord lines except for where the tangent touches (rule="crown" and rule="min-area" keep CROWN's
and the minimal-area choices).

Two-input products of recurrent cells (ops/product.py) take planes from `Method.planes`: every backward
method uses the "blend" lower/upper planes for sigma(x)*tanh(y) and sigma(x)*y (POPQORN's plane search
with the same mean/worst criterion as the lines; relax/products.py mode "popqorn" keeps POPQORN's
least-volume planes) and McCormick for x*y, so `popqorn` is the backward engine on the unrolled graph as
POPQORN defines it, with these planes, and crown/fastlin/crown-ibp run on LSTMs/GRUs too (on these graphs
popqorn and crown share their relaxations).

Fast-Lin (Weng et al. 2018) is defined for ReLU networks; for the S-shaped activations it falls back to
CROWN's lines, which is what "Fast-Lin" means in the CROWN paper's comparisons.

CNN-Cert (Boopathy et al. AAAI 2019) is the backward engine with CROWN's general-activation bounds, run
in convolutional form: conv/pool ops push coefficients back by transposed convolutions (ops/conv.py) and
max pooling uses the window lines of relax/maxpool.py. Every backward method runs in that form on CNNs;
the name `cnncert` is the paper's method (its adaptive ReLU lines are CROWN's), so on any graph its bounds
are CROWN's. Intermediate bounds of (C, H, W) nodes use patches mode (engine/patches.py) for every
backward method unless RunContext(patches=False) asks for full-size coefficient tensors.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from torch import Tensor

from ..errors import UnsupportedOpError
from ..relax import SSHAPES, LinearRelaxation, hardtanh_relaxation, leaky_relu_relaxation, relu_relaxation
from ..relax.products import mccormick_planes, sigmoid_mul_planes, sigmoid_tanh_planes
from ..relax.sshape import sshape_relaxation
from ..relax.types import PlaneRelaxation
from .zonotope_table import zonotope_planes, zonotope_table

RelaxFn = Callable[..., LinearRelaxation]  # (op, l, u, alpha=None) -> LinearRelaxation
PlaneFn = Callable[..., PlaneRelaxation]  # (op, lx, ux, ly, uy) -> PlaneRelaxation


def _relu(mode: str) -> RelaxFn:
    def fn(op, l: Tensor, u: Tensor, alpha: Tensor | None = None) -> LinearRelaxation:
        if alpha is not None:
            return relu_relaxation(l, u, "alpha", alpha)
        return relu_relaxation(l, u, mode)
    return fn


def _leaky(mode: str) -> RelaxFn:
    def fn(op, l, u, alpha=None):
        a = op.params.get("negative_slope", 0.01)
        if alpha is not None:
            return leaky_relu_relaxation(l, u, a, "alpha", alpha)
        return leaky_relu_relaxation(l, u, a, mode)
    return fn


def _sshape(name: str) -> RelaxFn:
    fn_s = SSHAPES[name]

    def fn(op, l, u, alpha=None):
        return sshape_relaxation(fn_s, l, u)
    return fn


def _hardtanh(op, l, u, alpha=None):
    return hardtanh_relaxation(l, u, op.params.get("min_val", -1.0), op.params.get("max_val", 1.0))


@dataclass(frozen=True)
class Method:
    name: str
    engine: str  # 'interval' | 'backward' | 'optimized' | 'lipschitz' | 'zonotope' | 'lp' | 'milp'
    table: Mapping[str, RelaxFn] = field(default_factory=dict)
    intermediate: str = "self"  # 'self' (same method) or 'interval'
    description: str = ""
    #: planes for two-input ops (ops/product.py): kind -> fn(op, lx, ux, ly, uy) -> PlaneRelaxation
    planes: Mapping[str, PlaneFn] = field(default_factory=dict)

    def relax(self, op, l: Tensor, u: Tensor, alpha: Tensor | None = None) -> LinearRelaxation:
        fn = self.table.get(op.kind)
        if fn is None:
            raise UnsupportedOpError(f"activation {op.kind!r} for method {self.name!r}", self.table.keys())
        return fn(op, l, u, alpha=alpha)

    def relax_planes(self, op, lx: Tensor, ux: Tensor, ly: Tensor, uy: Tensor) -> PlaneRelaxation:
        fn = self.planes.get(op.kind)
        if fn is None:
            raise UnsupportedOpError(f"two-input op {op.kind!r} for method {self.name!r}", self.planes.keys())
        return fn(op, lx, ux, ly, uy)


def _table(relu_mode: str) -> Mapping[str, RelaxFn]:
    t: dict[str, RelaxFn] = {"relu": _relu(relu_mode), "leaky_relu": _leaky(relu_mode), "hardtanh": _hardtanh}
    for name in SSHAPES:
        t[name] = _sshape(name)
    return MappingProxyType(t)


def _plane_table(mode: str) -> Mapping[str, PlaneFn]:
    """Planes of the recurrent products: `mode` ('blend' or 'popqorn' lower/upper planes, or 'certrnn'
    parallel planes) for sigma(x) tanh(y) and sigma(x) y, McCormick for x y (relax/products.py)."""
    return MappingProxyType({
        "sigmoid_tanh_mul": lambda op, lx, ux, ly, uy: sigmoid_tanh_planes(lx, ux, ly, uy, mode),
        "sigmoid_mul": lambda op, lx, ux, ly, uy: sigmoid_mul_planes(lx, ux, ly, uy, mode),
        "mul": lambda op, lx, ux, ly, uy: mccormick_planes(lx, ux, ly, uy),
    })


METHODS: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    if method.name in METHODS:
        raise ValueError(f"method {method.name!r} already registered")
    METHODS[method.name] = method
    return method


register_method(Method("ibp", "interval", description="interval bound propagation"))
register_method(Method("fastlin", "backward", _table("parallel"), planes=_plane_table("blend"),
                       description="Fast-Lin: backward linear bounds, ReLU lower slope = upper slope"))
register_method(Method("crown", "backward", _table("adaptive"), planes=_plane_table("blend"),
                       description="CROWN: backward linear bounds, adaptive ReLU lower slope, tangent/chord "
                                   "bounds for sigmoid/tanh/arctan (blend rule); intermediate bounds by CROWN"))
register_method(Method("crown-ibp", "backward", _table("adaptive"), intermediate="interval",
                       planes=_plane_table("blend"),
                       description="CROWN on the last layer with IBP intermediate bounds (Zhang et al. 2020)"))
register_method(Method("cnncert", "backward", _table("adaptive"), planes=_plane_table("blend"),
                       description="CNN-Cert: backward linear bounds in convolutional form (transposed convs), "
                                   "CROWN's activation bounds, max-pool window lines; intermediate bounds by CNN-Cert"))
register_method(Method("popqorn", "backward", _table("adaptive"), planes=_plane_table("blend"),
                       description="POPQORN (Ko et al. 2019): backward linear bounds through the unrolled "
                                   "recurrent graph, tangent/chord lines for tanh/sigmoid, POPQORN's "
                                   "lower/upper plane search for sigma*tanh and sigma*y (blend criterion, "
                                   "exact offsets), intermediate bounds by itself"))
register_method(Method("alpha-crown", "optimized", _table("adaptive"), planes=_plane_table("blend"),
                       description="alpha-CROWN (Xu et al. 2021): CROWN with the relaxations of every ReLU / "
                                   "leaky ReLU / tanh / sigmoid / arctan and the planes of LSTM/GRU products "
                                   "optimised per neuron and per spec row by projected gradient ascent on the "
                                   "bound, intermediate layers included; warm start from CROWN"))
register_method(Method("lipschitz", "lipschitz",
                       description="global Lipschitz baseline: product of operator norms"))
register_method(Method("certrnn", "zonotope", zonotope_table("narrowest"), planes=zonotope_planes(),
                       description="Cert-RNN: forward zonotope pass with symbol identities, parallel lines for "
                                   "activations (narrower of secant and DeepZ slopes) and Cert-RNN's parallel "
                                   "planes for sigma(x)*tanh(y), sigma(x)*y"))
register_method(Method("deepz", "zonotope", zonotope_table("deepz"), planes=zonotope_planes(),
                       description="DeepZ: forward zonotope pass with minimal-area parallel lines"))


register_method(Method("lp", "lp", description="LP relaxation (triangle per unstable ReLU) solved by HiGHS; "
                                               "small ReLU networks, L-inf / L1 inputs"))
register_method(Method("milp", "milp", description="exact MILP (Tjeng et al. 2019) solved by HiGHS; small ReLU "
                                                   "networks, L-inf / L1 inputs"))


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise UnsupportedOpError(f"method {name!r}", METHODS.keys()) from None
