"""VNN-LIB properties as certnn holds them: input boxes, unsafe output polytopes and the property type.

See :mod:`certnn.specs.vnnlib` for the exact meaning (the assertions describe the UNSAFE set).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

__all__ = ["DEFAULT_MAX_DISJUNCTS", "InputBox", "OutputConjunction", "Region", "VnnlibProperty"]

DEFAULT_MAX_DISJUNCTS = 10_000


class InputBox(NamedTuple):
    """Per-input bounds ``lower <= x <= upper``, float64 arrays of shape ``(n_inputs,)``."""

    lower: np.ndarray
    upper: np.ndarray


class OutputConjunction(NamedTuple):
    """The output set ``{y : C @ y <= d}`` (every row), ``C`` of shape ``(k, m)``, ``d`` of shape ``(k,)``."""

    C: np.ndarray
    d: np.ndarray


class Region(NamedTuple):
    """One input box with the disjunction of output sets that is unsafe for inputs in that box."""

    input_box: InputBox
    output_constraint: list[OutputConjunction]


@dataclass(frozen=True, eq=False)
class VnnlibProperty:
    """A parsed VNN-LIB property; see the module docstring for the exact meaning.

    The property is violated (``sat``) iff some region's box contains an input ``x`` whose output
    ``y = f(x)`` satisfies ``C @ y <= d`` (all rows) for some ``(C, d)`` of that region's
    ``output_constraint``. Arrays are read-only.
    """

    n_inputs: int
    n_outputs: int
    regions: list[Region]
    source: str = "<string>"
    #: which parser read the file: "certnn" or "vnnlib <version>" (specs/vnnlib2.py)
    parser: str = "certnn"

    def __repr__(self) -> str:
        sizes = [len(r.output_constraint) for r in self.regions]
        shown = str(sizes) if len(sizes) <= 8 else f"[{', '.join(map(str, sizes[:8]))}, ...]"
        return (f"VnnlibProperty(source={self.source!r}, n_inputs={self.n_inputs}, "
                f"n_outputs={self.n_outputs}, regions={len(self.regions)}, disjuncts_per_region={shown})")
