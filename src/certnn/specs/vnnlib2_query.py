"""VNN-LIB 2.0 queries as certnn holds them: declarations, networks and the parsed query, whose formula is
kept to check counterexamples exactly (:meth:`Query.satisfied_by`). Parsing: :mod:`certnn.specs.vnnlib2`."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

import numpy as np

from ..errors import SpecError
from .vnnlib_property import VnnlibProperty

__all__ = ["Declaration", "NetworkDecl", "Query", "REAL", "DTYPE_NAMES"]

REAL = "real"
#: DType member names of the vnnlib package -> the standard's element type names (ONNX Set 1, plus real)
DTYPE_NAMES = {"Real": "real", "F16": "float16", "F32": "float32", "F64": "float64", "BF16": "bfloat16",
               "F8E4M3FN": "float8e4m3fn", "F8E5M2": "float8e5m2", "F8E4M3FNUZ": "float8e4m3fnuz",
               "F8E5M2FNUZ": "float8e5m2fnuz", "F4E2M1": "float4e2m1", "I8": "int8", "I16": "int16",
               "I32": "int32", "I64": "int64", "U8": "uint8", "U16": "uint16", "U32": "uint32", "U64": "uint64",
               "C64": "complex64", "C128": "complex128", "Bool": "bool"}


def _vnnlib():
    try:
        import vnnlib
    except ImportError as exc:
        raise SpecError("reading VNN-LIB 2.0 queries needs the vnnlib package (pip install vnnlib)") from exc
    return vnnlib


@dataclass(frozen=True)
class Declaration:
    """A declared input, hidden or output tensor: its name, kind, element type (the standard's name, e.g.
    ``float32`` or ``real``), shape, network and (hidden nodes) ONNX node name."""

    name: str
    kind: str  # "input" | "hidden" | "output"
    element_type: str
    shape: tuple[int, ...]
    network: str
    onnx_name: str | None = None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1


@dataclass(frozen=True)
class NetworkDecl:
    name: str
    equal_to: str | None
    isomorphic_to: str | None
    declarations: tuple[Declaration, ...]

    def of_kind(self, kind: str) -> list[Declaration]:
        return [d for d in self.declarations if d.kind == kind]


@dataclass(frozen=True, eq=False)
class Query:
    """A parsed VNN-LIB query: its networks and declarations (in declaration order), the property certnn
    verifies (None with ``unsupported`` saying why when the query is outside certnn's theories), and the
    parsed formula, kept to check counterexamples exactly (:meth:`satisfied_by`)."""

    version: str
    networks: tuple[NetworkDecl, ...]
    prop: VnnlibProperty | None
    unsupported: str | None
    parser: str
    source: str = "<string>"
    _ast: object = field(default=None, repr=False)

    @property
    def declarations(self) -> list[Declaration]:
        return [d for n in self.networks for d in n.declarations]

    @property
    def real_valued(self) -> bool:
        """Every declaration uses the element type real (section 3.5: consent to real-valued analysis)."""
        return all(d.element_type == REAL for d in self.declarations)

    def property(self) -> VnnlibProperty:
        if self.prop is None:
            raise SpecError(f"{self.source}: {self.unsupported}")
        return self.prop

    def satisfied_by(self, values: dict[str, np.ndarray]) -> bool:
        """Whether concrete values (variable name -> array in the declared shape, row-major) satisfy every
        assertion as written, in exact arithmetic: literals as exact decimals, strict comparisons strictly,
        ``!=`` and ``==`` exactly. NaN and infinities satisfy nothing."""
        vn = _vnnlib()
        flat = {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in values.items()}
        shapes = {d.name: d.shape for d in self.declarations}

        def val(e) -> Fraction:
            if isinstance(e, vn.Var):
                shape = shapes[e.name]
                i = int(np.ravel_multi_index(tuple(int(j) for j in e.indices), shape)) if shape else 0
                v = float(flat[e.name][i])
                if not math.isfinite(v):
                    raise ValueError("not finite")
                return Fraction(v)
            if isinstance(e, vn.Literal):
                return Fraction(Decimal(e.lexeme))
            if isinstance(e, vn.Negate):
                return -val(e.expr)
            if isinstance(e, vn.Plus):
                return sum((val(a) for a in e.args), Fraction(0))
            if isinstance(e, vn.Minus):
                out = val(e.head)
                for a in e.rest:
                    out -= val(a)
                return out
            if isinstance(e, vn.Multiply):
                out = Fraction(1)
                for a in e.args:
                    out *= val(a)
                return out
            raise SpecError(f"unsupported term {e}")

        def holds(b) -> bool:
            if isinstance(b, vn.And):
                return all(holds(a) for a in b.args)
            if isinstance(b, vn.Or):
                return any(holds(a) for a in b.args)
            a, c = val(b.lhs), val(b.rhs)
            if isinstance(b, vn.LessEqual):
                return a <= c
            if isinstance(b, vn.LessThan):
                return a < c
            if isinstance(b, vn.GreaterEqual):
                return a >= c
            if isinstance(b, vn.GreaterThan):
                return a > c
            if isinstance(b, vn.Equal):
                return a == c
            return a != c

        try:
            return all(holds(a.expr) for a in self._ast.assertions)
        except ValueError:
            return False
