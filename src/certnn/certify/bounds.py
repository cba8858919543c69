"""User-facing bound computation: sound bounds on outputs (or on C · outputs) over an input set."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..domains.interval import Interval
from ..engine.backward import bound_output
from ..engine.context import RunContext
from ..engine.lipschitz import lipschitz_constants
from ..engine.methods import get_method
from ..config import parse_norm
from ..engine.rounding import Rounding
from ..errors import ConfigError, DataError, UnsupportedOpError
from ..graph.from_torch import from_torch
from ..graph.ir import Graph
from ..optimize.config import AlphaConfig
from ..specs.lp import LpBall

Model = nn.Module | Graph


def to_graph(model: Model, input_shape: tuple[int, ...] | None = None, dtype: torch.dtype = torch.float64) -> Graph:
    """The IR of a model (a Graph is returned converted to dtype; a module is imported)."""
    if isinstance(model, Graph):
        return model.to(dtype)
    if input_shape is None:
        raise DataError("importing a torch module needs the input shape of one sample")
    return from_torch(model, tuple(input_shape), dtype)


def make_spec(graph: Graph, x: Tensor, eps, norm, clip=None, scale=None, frame_norm=None,
              sound: bool = False) -> LpBall:
    """The input set; sound (float32-sound): a float32 superset of the float64 set (certify/precision.py)."""
    x = torch.as_tensor(x)
    if tuple(x.shape[1:]) != graph.input_shape:
        raise DataError(f"inputs have shape {tuple(x.shape[1:])} per sample; the model expects {graph.input_shape}")
    dtype = _graph_dtype(graph)
    if sound:
        from .precision import sound_inputs

        x32, eps32, clip32 = sound_inputs(x, eps, parse_norm(norm), clip, frame_norm, scale)
        dev = graph_device(graph)
        clip32 = None if clip32 is None else tuple(c.to(dev) for c in clip32)
        return LpBall.make(x32.to(dev), eps32.to(dev), norm, clip32, scale, frame_norm)
    return LpBall.make(x.to(dtype=dtype, device=graph_device(graph)), eps, norm, clip, scale, frame_norm)


def graph_device(graph: Graph) -> torch.device:
    """The device of a graph's tensors (cpu for a graph without any)."""
    for name in graph.order:
        for t in vars(graph.nodes[name].op).values():
            if isinstance(t, Tensor):
                return t.device
    return torch.device("cpu")


def sound_graph(model: Model, input_shape, dtype: torch.dtype) -> Graph:
    """float32-sound: the float32 graph of a model whose weights are float32 numbers (else ConfigError)."""
    from .precision import check_float32_weights

    g64 = to_graph(model, input_shape, torch.float64)
    g32 = g64.to(dtype)
    check_float32_weights(g64, g32)
    return g32


def apply_precision(ctx: RunContext, sound: bool) -> RunContext:
    """Turn on float32-sound's rounding bounds in a context (dense coefficients: the widening has no patch
    form yet); refuses engines it does not cover."""
    if not sound:
        return ctx
    from .precision import SOUND_ENGINES

    if ctx.method.engine not in SOUND_ENGINES:
        raise ConfigError(f"dtype float32-sound covers the backward and interval methods (crown, fastlin, "
                          f"crown-ibp, cnncert, popqorn, ibp, alpha-crown), not {ctx.method.name!r}")
    ctx.rounding = Rounding.for_dtype(ctx.spec.center.dtype, ctx.spec.center.device)
    ctx.patches = False
    return ctx


def _graph_dtype(graph: Graph) -> torch.dtype:
    return graph.dtype


def bounds_for_spec(graph: Graph, spec: LpBall, method: str, C: Tensor | None = None, lower: bool = True,
                    upper: bool = True, max_rows: int = 4096,
                    alpha: AlphaConfig | None = None, sound: bool = False) -> tuple[Tensor | None, Tensor | None, dict]:
    """Lower/upper bounds (B, S) of C · f(x) over `spec` with the named method, plus timers.
    `alpha` sets the optimiser of `alpha-crown` (default AlphaConfig()). sound: float32-sound (widen every
    step by its rounding error, engine/rounding.py)."""
    m = get_method(method)
    if sound:
        apply_precision(RunContext(graph, spec, m), True)  # refuses engines it does not cover
    if spec.frame_norm is not None:
        _check_frames_supported(m.name, m.engine, spec)
    if C is not None:
        C = C.to(dtype=spec.center.dtype, device=spec.center.device)
        if C.shape[0] == 1 and spec.batch > 1:
            C = C.expand(spec.batch, *C.shape[1:])
    if m.engine == "lipschitz":
        if C is None:
            K = 1
            for s in graph.output_shape:
                K *= s
            C = torch.eye(K, dtype=spec.center.dtype, device=spec.center.device).unsqueeze(0).expand(spec.batch, K, K)
        with torch.no_grad():
            f0 = graph.forward(spec.center).reshape(spec.batch, -1)
            center = torch.einsum("bsk,bk->bs", C.reshape(spec.batch, C.shape[1], -1), f0)
            L = lipschitz_constants(graph, C, spec.norm, spec.scale)
        rad = spec.eps.reshape(-1, 1) * L
        return (center - rad if lower else None), (center + rad if upper else None), {"lipschitz": L}
    if m.engine in ("lp", "milp"):
        from ..engine.milp import exact_bounds
        with torch.no_grad():
            lo, hi = exact_bounds(graph, spec, C, relax=m.engine == "lp")
        lo, hi = lo.to(spec.center.dtype), hi.to(spec.center.dtype)
        return (lo if lower else None), (hi if upper else None), {}
    ctx = apply_precision(RunContext(graph, spec, m, max_rows=max_rows), sound)
    if m.engine == "optimized":
        from ..optimize import optimized_bounds

        res = optimized_bounds(ctx, C, lower, upper, alpha or AlphaConfig())
        return res.lower, res.upper, ctx.timers
    if m.engine == "zonotope":
        from ..engine.zonotope import zonotope_bounds

        with torch.no_grad():
            lo, hi = zonotope_bounds(ctx, C, lower, upper)
        return lo, hi, ctx.timers
    with torch.no_grad():
        lo, hi = bound_output(ctx, C, lower, upper)
    return lo, hi, ctx.timers


def _check_frames_supported(name: str, engine: str, spec: LpBall) -> None:
    """Per-frame balls: the backward engines and IBP concretise with the mixed dual norm, the zonotope engine
    makes one symbol group per frame, the Lipschitz baseline uses its L-inf constant (the set lies in the
    box); the LP / MILP encodings and CNN-Cert's patches (3-D inputs) have no per-frame constraint and are
    refused rather than run over a superset they would call exact."""
    if engine in ("lp", "milp"):
        raise UnsupportedOpError(f"method {name!r} under per-frame balls (its encoding has no per-frame norm "
                                 "constraint)", ["ibp", "fastlin", "crown", "crown-ibp", "popqorn", "certrnn", "deepz",
                                                 "lipschitz"])
    if name == "cnncert" and spec.center.ndim == 4:
        raise UnsupportedOpError("method 'cnncert' under per-frame balls on a 3-D input (its patch windows are "
                                 "concretised over boxes)", ["crown (the same bounds in full form)"])


def compute_bounds(model: Model, x: Tensor, eps, norm="inf", method: str = "crown", C: Tensor | None = None,
                   clip=None, scale=None, input_shape=None, dtype: torch.dtype | str = torch.float64,
                   frame_norm: str | None = None, device=None) -> Interval:
    """Sound bounds on C · f(x') for all x' in the Lp ball of radius eps around each x (optionally
    intersected with the box `clip` = (lo, hi)); C=None bounds every output. Returns an Interval (B, S).

    Example::

        iv = certnn.compute_bounds(model, x, eps=0.01, norm="inf", method="crown")
        assert (iv.lower <= model(x)).all()

    dtype: torch.float64 (default), torch.float32 / "float32" (fast, rounding not accounted for) or
    "float32-sound" (float32 with every step widened by a bound on its rounding error: sound, nearly as
    fast as float32; certify/precision.py). device: "cpu" (default), "cuda", "auto" or a torch.device;
    the bounds come back on it.
    """
    from .device import resolve_device
    from .precision import parse_precision

    dev = resolve_device(device)
    tdtype, sound = parse_precision(dtype)
    shape = input_shape or tuple(torch.as_tensor(x).shape[1:])
    graph = sound_graph(model, shape, tdtype) if sound else to_graph(model, shape, tdtype)
    graph = graph.to(device=dev)
    x = torch.as_tensor(x)
    spec = make_spec(graph, x if sound else x.to(dev), eps, norm, clip, scale, frame_norm, sound=sound)
    lo, hi, _ = bounds_for_spec(graph, spec, method, C, sound=sound)
    return Interval(lo, hi)


@dataclass(frozen=True)
class CertifyResult:
    """Per-sample verdicts at one eps. `certified` is a proof; it is False where the proof failed
    (which does not mean an adversarial example exists)."""

    predicted: Tensor  # (B,)
    correct: Tensor  # (B,) bool
    certified: Tensor  # (B,) bool: correct and every margin lower bound > 0
    margin_lower: Tensor  # (B, S) lower bounds of f_y - f_j
    target: Tensor | None  # (B,) or None (untargeted)
    #: complete certification (CertifyConfig.complete): 'holds' / 'violated' (a checked adversarial example) /
    #: 'unknown' per sample ('misclassified' where the model is wrong at the centre); None otherwise
    status: list | None = None
