"""Noise-symbol identities for zonotopes.

A zonotope is c + sum_k g_k eps_k; each eps_k is a *named* noise symbol with a global integer id handed
out by a :class:`SymbolTable`. Combining two zonotopes aligns symbols by id, never by position: time steps
and layers add fresh symbols, and aliasing two unrelated symbols by their column position is unsound
(x - y with x = eps_a, y = eps_b becomes 0 instead of [-2, 2]).

The table lives in the run context object (one per certification call) and is passed in explicitly;
there is no global counter. Ids are allocated in increasing order, so every zonotope keeps its ids sorted.

Symbol groups: by default each symbol ranges independently over [-1, 1] (an L-inf box). An *input* group
created with ``norm='2'`` or ``'1'`` is jointly constrained, ||eps_group||_p <= 1; concretisation then uses
the dual norm over the whole group. The table records every allocation with its norm and a label, so
callers can tell input symbols from relaxation-error symbols.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..config import dual_exponent, parse_norm


@dataclass(frozen=True)
class SymbolGroup:
    """Ids [start, stop) allocated together; ``norm`` 'inf' means independent symbols in [-1, 1]."""

    start: int
    stop: int
    norm: str
    label: str

    @property
    def dual(self) -> float:
        return dual_exponent(self.norm)

    def __len__(self) -> int:
        return self.stop - self.start


@dataclass
class SymbolTable:
    """Allocates noise-symbol ids for one run and remembers how each block was constrained."""

    groups: list[SymbolGroup] = field(default_factory=list)
    _next: int = 0

    @property
    def count(self) -> int:
        """Number of ids allocated so far."""
        return self._next

    def fresh(self, n: int, *, norm: str = "inf", label: str = "", device: torch.device | str | None = None) -> Tensor:
        """Allocate n new ids (int64, increasing). norm != 'inf' makes them one jointly constrained group."""
        if n < 0:
            raise ValueError(f"cannot allocate {n} symbols")
        norm = parse_norm(norm)
        start = self._next
        self._next += n
        if n:
            self.groups.append(SymbolGroup(start, start + n, norm, label))
        return torch.arange(start, start + n, dtype=torch.int64, device=device)

    def norm_groups(self) -> list[SymbolGroup]:
        """The jointly constrained (finite-p) groups."""
        return [g for g in self.groups if g.norm != "inf"]

    def input_groups(self) -> list[SymbolGroup]:
        return [g for g in self.groups if g.label == "input"]

    def is_input(self, ids: Tensor) -> Tensor:
        """Boolean mask: which of ``ids`` were allocated as input symbols."""
        mask = torch.zeros_like(ids, dtype=torch.bool)
        for g in self.input_groups():
            mask |= (ids >= g.start) & (ids < g.stop)
        return mask


def union_ids(*ids: Tensor) -> Tensor:
    """Sorted union of several sorted id vectors."""
    if all(i.shape == ids[0].shape and torch.equal(i, ids[0]) for i in ids[1:]):
        return ids[0]
    return torch.unique(torch.cat(ids))


def scatter_generators(generators: Tensor, ids: Tensor, target: Tensor) -> Tensor:
    """Re-express generators (B, K, *shape) over symbols ``ids`` in the id set ``target`` (a sorted superset):
    coefficient of symbol ``target[j]`` is the old coefficient of that id, or 0 where the id is missing."""
    if ids.shape == target.shape and torch.equal(ids, target):
        return generators
    pos = torch.searchsorted(target, ids)
    if pos.numel() and (pos.max() >= target.numel() or not torch.equal(target[pos], ids)):
        raise ValueError("target ids must contain every id of the generators")
    out = generators.new_zeros((generators.shape[0], target.numel(), *generators.shape[2:]))
    out[:, pos] = generators
    return out


__all__ = ["SymbolGroup", "SymbolTable", "union_ids", "scatter_generators"]
