"""Certification where every sample perturbs its own frames (e.g. chosen words of sentences of different
lengths, which sit at different frames of a left-padded sequence).

A bound computation takes one input-set ``scale`` for the whole batch (specs/lp.py), so samples are
grouped by their frame tuple and each group is one batched run of :class:`Certifier` with
``CertifyConfig(frames=group_frames, frame_eps=...)``; the results are put back in the samples' order.
The set of sample b is ``{x0[b] + scale_b * z : ||z||_p <= eps}`` with ``scale_b = frame_scale(frames[b])``
(specs/frames.py); :func:`frame_scales` stacks these (B, *input_shape) for an attack on the same sets.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ..errors import DataError
from ..graph.ir import Graph
from ..specs.frames import frame_scale
from .radius import CertifyConfig, Certifier, RadiusConfig, RadiusResult

Progress = Callable[[int, int], None]
FrameSets = Sequence[Sequence[int]]


def _groups(frames: FrameSets, n: int) -> dict[tuple[int, ...], Tensor]:
    if len(frames) != n:
        raise DataError(f"{len(frames)} frame sets for {n} samples; give one per sample")
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, f in enumerate(frames):
        groups.setdefault(tuple(int(v) for v in f), []).append(i)
    return {k: torch.tensor(v, dtype=torch.long) for k, v in groups.items()}


def _weights(frame_eps: float | Sequence[float] | None, fr: tuple[int, ...]) -> tuple[float, ...] | None:
    """One weight per frame of ``fr``: a single value applies to every frame."""
    if frame_eps is None:
        return None
    fe = (float(frame_eps),) if isinstance(frame_eps, (int, float)) else tuple(float(v) for v in frame_eps)
    return fe * len(fr) if len(fe) == 1 else fe


def _group_config(config: CertifyConfig, fr: tuple[int, ...]) -> CertifyConfig:
    return config.replace(frames=fr, frame_eps=_weights(config.frame_eps, fr))


def frame_scales(input_shape: Sequence[int], frames: FrameSets, frame_eps: float | Sequence[float] | None = None,
                 dtype: torch.dtype = torch.float64) -> Tensor:
    """Per-sample scales (B, *input_shape): sample b perturbs frames[b] (frame_eps: one weight per frame
    of each set, or one value for every frame; None: 1)."""
    groups = _groups(frames, len(frames))
    out = torch.zeros((len(frames), *input_shape), dtype=dtype)
    for fr, idx in groups.items():
        out[idx] = frame_scale(input_shape, fr, _weights(frame_eps, fr), dtype)
    return out


def radius_by_frames(graph: Graph, x: Tensor, y: Tensor, frames: FrameSets, config: CertifyConfig = CertifyConfig(),
                     search: RadiusConfig = RadiusConfig(), progress: Progress | None = None,
                     dtype: torch.dtype | str = torch.float64, device=None) -> RadiusResult:
    """Certified radius of each sample over its own frames ``frames[b]`` (``config.frame_eps``: one weight
    per chosen frame, or one value for all; ``config.frames`` is ignored). Same result fields as
    :meth:`Certifier.radius`; dtype / device as there."""
    x = torch.as_tensor(x)
    y = torch.as_tensor(y).long().reshape(-1)
    B = x.shape[0]
    groups = _groups(frames, B)
    radius = torch.zeros(B, dtype=torch.float64)
    pred = torch.zeros(B, dtype=torch.long)
    correct = torch.zeros(B, dtype=torch.bool)
    times = torch.zeros(B, dtype=torch.float64)
    target = None if config.target == "untargeted" else torch.zeros(B, dtype=torch.long)
    evals, done = 0, 0
    for fr, idx in groups.items():
        t0 = time.perf_counter()
        cert = Certifier(graph, _group_config(config, fr), tuple(x.shape[1:]), dtype=dtype, device=device)
        res = cert.radius(x[idx], y[idx], search)
        radius[idx], pred[idx], correct[idx] = res.certified_radius, res.predicted, res.correct
        times[idx] = (time.perf_counter() - t0) / idx.numel()
        if target is not None and res.target is not None:
            target[idx] = res.target
        evals += res.evaluations
        done += idx.numel()
        if progress:
            progress(done, B)
    return RadiusResult(radius, pred, correct, target, times, evals)


def certify_by_frames(graph: Graph, x: Tensor, y: Tensor, frames: FrameSets, eps: float,
                      config: CertifyConfig = CertifyConfig(), dtype: torch.dtype | str = torch.float64,
                      device=None) -> Tensor:
    """Verdicts (B,) bool at radius ``eps``, sample b perturbing its own frames ``frames[b]``."""
    x = torch.as_tensor(x)
    y = torch.as_tensor(y).long().reshape(-1)
    out = torch.zeros(x.shape[0], dtype=torch.bool)
    for fr, idx in _groups(frames, x.shape[0]).items():
        cert = Certifier(graph, _group_config(config, fr), tuple(x.shape[1:]), dtype=dtype, device=device)
        out[idx] = cert.certify(x[idx], y[idx], eps).certified
    return out
