"""alpha-crown's optimised parameters carried across the steps of a radius search (certify/radius.py)."""
from __future__ import annotations

import torch
from torch import Tensor


class _Warm:
    """alpha-crown's parameters per sample across the steps of a radius search: the samples of a step
    start from what they ended the last step with (parameters whose shape changed, e.g. intermediate
    starts with other unstable neurons at the new eps, start again from CROWN)."""

    def __init__(self, n: int):
        self.n = n
        self.params: dict = {}
        self.written: dict = {}

    def get(self, index: Tensor) -> dict | None:
        out = {k: p.select(index) for k, p in self.params.items() if bool(self.written[k][index].all())}
        return out or None

    def put(self, index: Tensor, params: dict) -> None:
        for k, p in params.items():
            full = self.params.get(k)
            if full is None or any(a.shape[1:] != b.shape[1:] for a, b in zip(full.tensors(), p.tensors())):
                full = p._copy(**{f: t.new_zeros((self.n,) + tuple(t.shape[1:]))
                                  for f, t in zip(p.opt_fields, p.tensors())})
                full = full._copy(**{f: _expand_const(getattr(p, f), self.n) for f in p.const_fields})
                self.params[k] = full
                self.written[k] = torch.zeros(self.n, dtype=torch.bool)
            self.written[k][index] = True
            for f, t in zip(p.opt_fields, p.tensors()):
                getattr(full, f)[index] = t.detach()
            for f in p.const_fields:
                _put_const(getattr(full, f), getattr(p, f), index)


def _expand_const(v, n: int):
    if isinstance(v, tuple):
        return tuple(_expand_const(t, n) for t in v)
    return v.new_zeros((n,) + tuple(v.shape[1:]))


def _put_const(full, part, index: Tensor) -> None:
    if isinstance(full, tuple):
        for a, b in zip(full, part):
            _put_const(a, b, index)
    else:
        full[index] = part
