"""The coefficients of one backward pass, per node, summed over the paths that reach the node.

A node with several consumers receives one coefficient tensor per consumer; the backward engine needs
their sum before it can push the node's coefficients further back. `CoeffSums` forms that sum with as
few full-size tensors as possible:

* a sum is written **in place** into a tensor this store allocated itself, never into a tensor an op
  returned (ops may hand one tensor to several inputs or to both sides, e.g. Add, or a shared spec);
* a **selection** (Slice: basic indexing of one sample) adds its coefficients straight into the rows it
  selects of its input's sum, instead of first building a zero-padded copy of the input's size and adding
  that. The gates of an LSTM / GRU step are four slices of one joint pre-activation (and every step's
  input projection is a slice of one projection of all frames), so the joint node's coefficients are
  formed once instead of four zero-padded copies and three full-size additions.

Exactness: every element receives the same additions in the same order as with zero-padded copies (adding
an exact zero changes no value), so the bounds are the same numbers. Lower and upper sides that are one
tensor (e.g. a fresh identity spec) stay one tensor while they receive the same terms, and are split when
they stop doing so. Patches (CNN-Cert windows) are summed by :func:`certnn.engine.patches.add`.
"""
from __future__ import annotations

from torch import Tensor

from . import patches


class CoeffSums:
    """name -> (lower, upper) coefficients (B, S, *shape of the node), either side None when unused."""

    def __init__(self) -> None:
        self._sums: dict[str, list] = {}
        self._owned: dict[str, bool] = {}  # both sides are tensors this store allocated (maybe one tensor)

    def __contains__(self, name: str) -> bool:
        return name in self._sums

    def get(self, name: str) -> tuple:
        s = self._sums.get(name)
        return (None, None) if s is None else (s[0], s[1])

    def pop(self, name: str) -> tuple:
        self._owned.pop(name, None)
        lo, up = self._sums.pop(name)
        return lo, up

    def put(self, name: str, lo, up) -> None:
        """The first coefficients of `name` (the start of a pass): stored as given, not owned."""
        self._sums[name] = [lo, up]
        self._owned[name] = False

    def add(self, name: str, lo, up) -> None:
        """Add coefficients (lo, up) reaching `name` from one more consumer."""
        if name not in self._sums:
            self.put(name, lo, up)
            return
        if not self._owned[name] or not all(_dense(t) for t in (*self._sums[name], lo, up)):
            ol, ou = self._sums[name]
            sl = patches.add(ol, lo)
            su = sl if (ol is ou and lo is up) else patches.add(ou, up)
            self._sums[name] = [sl, su]
            # a fresh sum is ours; a side that was None took the consumer's tensor as it is
            self._owned[name] = all(_fresh(s, o, t) for s, o, t in ((sl, ol, lo), (su, ou, up)))
            return
        if self._starts_side(name, lo, up):
            ol, ou = self._sums[name]
            self._sums[name] = [patches.add(ol, lo), patches.add(ou, up)]
            self._owned[name] = False
            return
        self._add_in_place(name, (slice(None), slice(None)), lo, up)

    def _starts_side(self, name: str, lo, up) -> bool:
        """True when a side with no sum yet receives its first term (not an in-place addition)."""
        sl, su = self._sums[name]
        return (sl is None and lo is not None) or (su is None and up is not None)

    def add_slice(self, name: str, shape: tuple[int, ...], index: tuple, lo, up) -> None:
        """Add coefficients (lo, up) of `x[:, *index]` (B, S, *selected shape) to the sum of x (shape
        (B, S, *shape)), writing only the selected entries."""
        where = (slice(None), slice(None)) + tuple(index)
        if name not in self._sums or not self._owned[name] or self._starts_side(name, lo, up):
            ol, ou = self.get(name)
            sl = _widened(ol, lo, shape, where)
            su = sl if (ol is ou and lo is up) else _widened(ou, up, shape, where)
            self._sums[name] = [sl, su]
            self._owned[name] = True
            return
        self._add_in_place(name, where, lo, up)

    def _add_in_place(self, name: str, where: tuple, lo, up) -> None:
        sl, su = self._sums[name]
        if sl is su and lo is not up and sl is not None:  # the sides part: give the upper side its own copy
            su = sl.clone()
            self._sums[name][1] = su
        if sl is not None and lo is not None:
            sl[where] += lo
        if su is not None and up is not None and su is not sl:
            su[where] += up


def _dense(t) -> bool:
    return t is None or isinstance(t, Tensor)


def _fresh(s, old, new) -> bool:
    """A side is ours to write into when it is a new tensor, or None with nothing to add to it yet."""
    if s is None:
        return old is None and new is None
    return s is not old and s is not new


def _widened(acc, A, shape: tuple[int, ...], where: tuple):
    """A new tensor: acc (or zeros, acc None) with A added at `where`; None when A and acc are None."""
    if A is None:
        return None if acc is None else patches.densify(acc).clone()
    if acc is None:
        out = A.new_zeros(A.shape[:2] + tuple(shape))
        out[where] = A
        return out
    out = patches.densify(acc).clone()
    out[where] += A
    return out
