"""CLEVER: a robustness *estimate* from sampled gradient norms and extreme value theory.

Reference: T.-W. Weng, H. Zhang, P.-Y. Chen, J. Yi, D. Su, Y. Gao, C.-J. Hsieh, L. Daniel, "Evaluating the
Robustness of Neural Networks: An Extreme Value Theory Approach", ICLR 2018 (Algorithm 1 and 2).

Let f: R^d -> R^K be a classifier with logits f_1..f_K, x0 an input of class c and, for j != c,
g_j(x) = f_c(x) - f_j(x). If L_q^j >= ||grad g_j(x)||_q for all x in the ball B_p(x0, R), with
1/p + 1/q = 1, then no perturbation of Lp norm below min(g_j(x0) / L_q^j, R) turns class c into class j
(Weng et al., Theorem 3.2). CLEVER *estimates* the local cross Lipschitz constant L_q^j instead of bounding
it:

1. draw N_b batches of N_s points x^(i,k) uniformly in B_p(x0, R) (optionally clipped to a box);
2. for each batch keep the largest dual norm b_i = max_k ||grad g_j(x^(i,k))||_q;
3. fit a reverse Weibull law to {b_1..b_{N_b}} and take its location a_W as the estimate of L_q^j
   (see :mod:`certnn.estimate.weibull` for the fitting practice and its fallback);
4. the score for class j is min(g_j(x0) / a_W, R); the untargeted CLEVER score is the minimum over j != c,
   the targeted one the score of the single target class.

The result is a statistical estimate, never a certificate: the sampled maximum can miss the true maximum
of the gradient norm (e.g. for gradient-masked networks), and nothing in this module calls it certified.

Batching: for one input x0, each call of the model evaluates the replicated points of several classes at
once, (m * P, *in_shape) rows for m classes and P points, and one backward pass of sum_r g_{j(r)}(x_r)
returns all m * P gradients, because the rows are independent (the model must treat batch rows
independently, e.g. be in eval mode). ``max_points_per_call`` bounds m * P.
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..config import dual_exponent, parse_norm
from ..errors import ConfigError, DataError
from ..attacks.placement import model_on, target_device
from .clever_config import DEFAULT_RADIUS, CleverConfig, CleverResult
from .sampling import _clip_tensors, sample_lp_ball
from .weibull import WeibullFit, fit_reverse_weibull

__all__ = ["CleverConfig", "CleverResult", "clever_scores", "gradient_norm_maxima", "select_targets",
           "DEFAULT_RADIUS", "TARGET_MODES"]

#: Target selections of the paper's experiments: the least likely class, a random class != c, and the
#: runner-up class (the largest logit other than c).
TARGET_MODES: tuple[str, ...] = ("least_likely", "random", "top2")

Model = Callable[[Tensor], Tensor]


# ----------------------------------------------------------------------------------------------------------
# target selection


def select_targets(logits: Tensor, label: Tensor, how: str, seed: int = 0, index_offset: int = 0) -> Tensor:
    """The paper's target classes for targeted CLEVER, (B,) long, never equal to the label.

    Args:
        logits: f(x0) of shape (B, K), K >= 2.
        label: c of shape (B,).
        how: 'least_likely' (argmin_j f_j(x0) over j != c), 'top2' (argmax_j f_j(x0) over j != c, the
            runner-up) or 'random' (uniform over j != c, drawn per input from (seed, index_offset + i)).
        seed: seed of the 'random' selection.
        index_offset: global index of the first input (the draw of a sample does not depend on its batch).
    """
    if how not in TARGET_MODES:
        raise ConfigError(f"unknown target selection {how!r}; choose one of {', '.join(TARGET_MODES)}")
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise DataError(f"logits must have shape (B, K) with K >= 2, got {tuple(logits.shape)}")
    label = label.to(device=logits.device, dtype=torch.long)
    if label.shape != logits.shape[:1]:
        raise DataError(f"label must have shape ({logits.shape[0]},), got {tuple(label.shape)}")
    k = logits.shape[1]
    own = torch.nn.functional.one_hot(label, k).bool()
    if how == "top2":
        return logits.masked_fill(own, float("-inf")).argmax(dim=1)
    if how == "least_likely":
        return logits.masked_fill(own, float("inf")).argmin(dim=1)
    from ..keyed_random import keyed_other_class

    return keyed_other_class(label, k, int(seed), index_offset)


# ----------------------------------------------------------------------------------------------------------
# gradient norms at sampled points


def _dual_norms(model: Model, points: Tensor, label: int, classes: Tensor, q: float) -> Tensor:
    """||grad_x (f_c - f_j)(x)||_q for every class j in ``classes`` (m,) and point x in ``points`` (P, *s).

    One forward and one backward call on the (m * P, *s) replicated points; returns (m, P).
    """
    m, n = classes.numel(), points.shape[0]
    rows = points.unsqueeze(0).expand(m, *points.shape).reshape(m * n, *points.shape[1:])
    rows = rows.detach().requires_grad_(True)
    with torch.enable_grad():
        out = model(rows)
        if out.ndim != 2 or out.shape[0] != m * n:
            raise DataError(f"the model must map (N, *in_shape) to logits (N, K); for N = {m * n} it returned "
                            f"shape {tuple(out.shape)}")
        j = classes.to(out.device).repeat_interleave(n)
        g = out[:, label] - out.gather(1, j.unsqueeze(1)).squeeze(1)
        (grad,) = torch.autograd.grad(g.sum(), rows)
    return torch.linalg.vector_norm(grad.reshape(m, n, -1), ord=q, dim=2)


def gradient_norm_maxima(model: Model, x0: Tensor, label: int, classes: Sequence[int] | Tensor, norm: str,
                         radius: float, n_batches: int, n_samples: int, *,
                         generator: torch.Generator | None = None,
                         clip: tuple[float | Tensor, float | Tensor] | None = None,
                         max_points_per_call: int = 8192) -> Tensor:
    """Batch maxima S_j = {max_k ||grad g_j(x^(i,k))||_q}_{i=1..N_b} for one input x0 (Algorithm 1, steps 1-2).

    The points of batch i are drawn in order i = 0..N_b-1 from ``generator``, N_s at a time, so the result
    does not depend on ``max_points_per_call``, which only groups the work into model calls.

    Args:
        model: logits of shape (N, K) from inputs (N, *in_shape), used as is (dtype and device of x0).
        x0: the input, shape in_shape (no batch dimension).
        label: c.
        classes: the m classes j to evaluate, each != c.
        norm: the perturbation norm p; gradients are measured in the dual norm q.
        radius: R.
        n_batches, n_samples: N_b and N_s.
        generator: a torch.Generator on x0's device.
        clip: optional box (lo, hi) the points are clamped to (non-uniform sampling).
        max_points_per_call: the most rows (points x classes) per model call.

    Returns:
        (m, N_b) tensor of batch maxima in x0's dtype.
    """
    q = dual_exponent(norm)
    classes_t = torch.as_tensor(classes, dtype=torch.long).reshape(-1)
    m = classes_t.numel()
    if m == 0:
        raise DataError("no classes to evaluate")
    cls_chunk = min(m, max_points_per_call)
    pts_per_call = max(1, max_points_per_call // cls_chunk)
    batches_per_group = max(1, pts_per_call // n_samples)
    maxima = torch.full((m, n_batches), float("-inf"), dtype=x0.dtype, device=x0.device)
    b0 = 0
    while b0 < n_batches:
        b1 = min(n_batches, b0 + batches_per_group)
        pts = torch.cat([sample_lp_ball(x0, radius, norm, n_samples, generator=generator, clip=clip)
                         for _ in range(b0, b1)])
        batch_of = torch.arange(b0, b1, device=x0.device).repeat_interleave(n_samples)
        for p0 in range(0, pts.shape[0], pts_per_call):
            chunk = pts[p0:p0 + pts_per_call]
            idx = batch_of[p0:p0 + pts_per_call]
            for c0 in range(0, m, cls_chunk):
                cls = classes_t[c0:c0 + cls_chunk]
                norms = _dual_norms(model, chunk, label, cls, q).to(maxima.dtype)
                maxima[c0:c0 + cls.numel()].scatter_reduce_(
                    1, idx.unsqueeze(0).expand(cls.numel(), -1), norms, reduce="amax", include_self=True)
        b0 = b1
    return maxima


# ----------------------------------------------------------------------------------------------------------
# the estimate


def _model_for(model: Model, dtype: torch.dtype, device: torch.device) -> Model:
    """The model in x's dtype and device: a deep copy converted when a floating parameter or buffer differs;
    the user's module is never modified."""
    if not isinstance(model, nn.Module):
        return model
    tensors = list(model.parameters()) + list(model.buffers())
    if any((t.is_floating_point() and t.dtype != dtype) or t.device != device for t in tensors):
        model = copy.deepcopy(model).to(device=device, dtype=dtype)
    return model


def _sample_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def _score(g: float, lip: float, radius: float) -> float:
    """min(g / L, R), with g / 0 read as +inf for g > 0 (a constant margin) and 0 for g <= 0."""
    if not (math.isfinite(lip) and math.isfinite(g)):
        return float("nan")
    if g <= 0:
        return 0.0
    if lip <= 0:
        return radius
    return min(g / lip, radius)


def clever_scores(model: Model, x: Tensor, y: Tensor | Sequence[int] | None, norm: str,
                  config: CleverConfig | None = None, target: Tensor | Sequence[int] | int | str | None = None,
                  clip: tuple[float | Tensor, float | Tensor] | None = None, device=None,
                  index_offset: int = 0) -> CleverResult:
    """CLEVER estimates (untargeted or targeted) of the minimal adversarial Lp distortion of each input.

    For each input x0 = x[i] of class c = y[i] and each class j != c (or only j = target[i]):
    L_j = reverse-Weibull location of the N_b batch maxima of ||grad g_j||_q over N_b * N_s points uniform in
    B_p(x0, R) (see the module docstring), and the score is min(g_j(x0) / L_j, R). This is an estimate, not a
    certified bound.

    Args:
        model: a callable from float inputs (N, *in_shape) to logits (N, K) that treats rows independently.
            It is run in x's dtype and device; an nn.Module whose parameters differ is deep-copied and
            converted, never modified.
        x: inputs (B, *in_shape), batch first; non-floating inputs are converted to float64.
        y: labels c (B,), or None to score each input for its predicted class.
        norm: the perturbation norm p: 'inf', '2' or '1' (also 'linf', 2, ...).
        config: a :class:`CleverConfig` (default: CleverConfig()).
        target: None for untargeted CLEVER; a class index or (B,) class indices for targeted CLEVER; or one
            of 'least_likely', 'random', 'top2' to pick the targets with :func:`select_targets`.
        clip: optional box (lo, hi) (scalars or tensors broadcastable to in_shape) the sampled points are
            clamped to, e.g. (0, 1) for images; this makes the sampling non-uniform, as in the paper's
            code. x must lie in the box.
        device: where the model runs ("cpu", "cuda", "auto", a torch.device; None: x's device); x and the
            model (a copy) are moved there (attacks/placement.py). The results are on the cpu either way.
        index_offset: global index of x[0] (e.g. --start, or the first sample of a batch or shard): the
            random streams of input i are keyed by (config.seed, index_offset + i).

    Returns:
        A :class:`CleverResult`. Misclassified inputs get score 0 and ``misclassified`` True.

    Raises:
        ConfigError: unknown norm, bad config values, unknown target selection.
        DataError: shape mismatches, labels or targets out of range, a target equal to the label, x outside
            the clip box.
    """
    start = time.perf_counter()
    cfg = CleverConfig() if config is None else config
    if not isinstance(cfg, CleverConfig):
        raise ConfigError(f"config must be a CleverConfig, got {type(cfg).__name__}")
    p = parse_norm(norm)
    radius = cfg.radius_for(p)

    net, x, logits, label, pred, tgt = _placed_inputs(model, x, y, target, clip, device, cfg, index_offset)
    s = _scores(net, x, logits, label, pred, tgt, p, radius, cfg, index_offset, clip)
    return CleverResult(
        clever_estimate=s["estimate"], per_class=s["per_class"], lipschitz_estimate=s["lip"], margin=s["margin"],
        fit_ok=s["fit_ok"], ks_pvalue=s["pval"], label=s["label"], target=None if tgt is None else tgt.cpu(),
        misclassified=s["misclassified"], norm=p, radius=float(radius), config=cfg, seed=cfg.seed,
        dtype=str(x.dtype).replace("torch.", ""), device=str(x.device), wall_time_s=time.perf_counter() - start)


def _placed_inputs(model: Model, x, y, target, clip, device, cfg: CleverConfig, index_offset: int):
    """(net, x, logits, label, pred, target): x as a batch on the run's device, the model there in x's dtype,
    its logits and predictions, the labels c (given, or predicted when y is None), the targets (None:
    untargeted) and x checked against the clip box, in that order (the first bad input raises)."""
    x = _as_batch(x)
    dev = target_device(x, device)
    if dev is not None:
        x, model = x.to(dev), model_on(model, dev)
    net = _model_for(model, x.dtype, x.device)
    logits = _checked_logits(net, x)
    k = logits.shape[1]
    pred = logits.argmax(dim=1)
    label = _labels(y, pred, k, x.device)
    tgt = _targets(target, logits, label, cfg, index_offset, x.device)
    if clip is not None:
        x = _inside_clip(x, clip)
    return net, x, logits, label, pred, tgt


def _checked_logits(net, x: Tensor) -> Tensor:
    """The model's logits (B, K >= 2) at x (DataError for any other output)."""
    bsz = x.shape[0]
    with torch.no_grad():
        logits = net(x)
    if not isinstance(logits, Tensor) or logits.ndim != 2 or logits.shape[0] != bsz or logits.shape[1] < 2:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise DataError(f"the model must return logits of shape (B, K) = ({bsz}, K >= 2), got {shape}")
    return logits


def _scores(net, x: Tensor, logits: Tensor, label: Tensor, pred: Tensor, tgt: Tensor | None, p: str, radius: float,
            cfg: CleverConfig, index_offset: int, clip) -> dict[str, Tensor]:
    """Per input i and class j (float64, cpu): the margin g_j(x_i), the Lipschitz estimate L_j, fit flag and
    KS p-value, the score min(g_j / L_j, R); per input the estimate (the target's score, or the smallest
    over j != c; NaN if any is NaN). Misclassified inputs are not sampled and score 0."""
    bsz, k = logits.shape
    logits64 = logits.detach().to(device="cpu", dtype=torch.float64)
    label_cpu = label.cpu()
    margin = logits64.gather(1, label_cpu.unsqueeze(1)) - logits64
    nan = float("nan")
    margin[torch.arange(bsz), label_cpu] = nan
    per_class = torch.full((bsz, k), nan, dtype=torch.float64)
    lip = torch.full((bsz, k), nan, dtype=torch.float64)
    pval = torch.full((bsz, k), nan, dtype=torch.float64)
    fit_ok = torch.zeros((bsz, k), dtype=torch.bool)
    misclassified = (pred != label).cpu()
    estimate = torch.zeros(bsz, dtype=torch.float64)
    for i in range(bsz):
        if bool(misclassified[i]):
            continue
        c = int(label_cpu[i])
        classes = [int(tgt[i])] if tgt is not None else [j for j in range(k) if j != c]
        gen = torch.Generator(device=x.device)
        gen.manual_seed(_sample_seed(cfg.seed, index_offset + i))
        maxima = gradient_norm_maxima(net, x[i], c, classes, p, radius, cfg.n_batches, cfg.n_samples,
                                      generator=gen, clip=clip, max_points_per_call=cfg.max_points_per_call)
        maxima_np = maxima.detach().to(device="cpu", dtype=torch.float64).numpy()
        for row, j in enumerate(classes):
            lip_j, ok, pv = _location(cfg, maxima_np[row])
            lip[i, j] = lip_j
            fit_ok[i, j] = ok
            pval[i, j] = pv
            per_class[i, j] = _score(float(margin[i, j]), lip_j, radius)
        if tgt is not None:
            estimate[i] = per_class[i, int(tgt[i])]
        else:
            vals = per_class[i, classes]
            estimate[i] = vals.min() if not bool(torch.isnan(vals).any()) else nan
    return {"estimate": estimate, "per_class": per_class, "lip": lip, "margin": margin, "fit_ok": fit_ok,
            "pval": pval, "label": label_cpu, "misclassified": misclassified}


def _as_batch(x) -> Tensor:
    """x as a detached floating tensor (B, *in_shape), B >= 1 (integers become float64)."""
    if not isinstance(x, Tensor):
        x = torch.as_tensor(x)
    if not torch.is_floating_point(x):
        x = x.to(torch.float64)
    if x.ndim < 2 or x.shape[0] < 1:
        raise DataError(f"x must be batch first, shape (B, *in_shape) with B >= 1, got {tuple(x.shape)}")
    return x.detach()


def _labels(y, pred: Tensor, k: int, device) -> Tensor:
    """The classes c (B,) int64: y checked, or the predicted ones when y is None."""
    bsz = pred.shape[0]
    if y is None:
        label = pred.clone()
    else:
        label = torch.as_tensor(y, device=device)
        if label.is_floating_point() or label.is_complex():
            raise DataError(f"labels y must be integers, got {label.dtype}")
        label = label.to(torch.long)
        if label.shape != (bsz,):
            raise DataError(f"labels y must have shape ({bsz},), got {tuple(label.shape)}")
    if bool(((label < 0) | (label >= k)).any()):
        raise DataError(f"labels must lie in [0, {k}), got {label.tolist()}")
    return label


def _targets(target, logits: Tensor, label: Tensor, cfg: CleverConfig, index_offset: int, device) -> Tensor | None:
    """The target classes (B,) of targeted CLEVER (given, or selected by name), checked; None: untargeted."""
    if target is None:
        return None
    if isinstance(target, str):
        return select_targets(logits, label, target, seed=cfg.seed, index_offset=index_offset)
    bsz, k = logits.shape
    tgt = torch.as_tensor(target, device=device)
    if tgt.is_floating_point() or tgt.is_complex():
        raise DataError(f"target classes must be integers, got {tgt.dtype}")
    tgt = tgt.to(torch.long)
    if tgt.ndim == 0:
        tgt = tgt.expand(bsz).clone()
    if tgt.shape != (bsz,):
        raise DataError(f"target must have shape ({bsz},), got {tuple(tgt.shape)}")
    if bool(((tgt < 0) | (tgt >= k)).any()):
        raise DataError(f"target classes must lie in [0, {k}), got {tgt.tolist()}")
    if bool((tgt == label).any()):
        bad = torch.nonzero(tgt == label).flatten().tolist()
        raise DataError(f"target class equals the label c for inputs {bad}; a target must differ from c")
    return tgt


def _inside_clip(x: Tensor, clip) -> Tensor:
    """x within float rounding of the clip box is clamped into it; farther outside is a DataError."""
    lo, hi = _clip_tensors(clip, x[0])
    if bool(((x < lo) | (x > hi)).any()):
        from ..errors import SpecError
        from ..specs.lp import clamp_to_box

        try:
            x, _ = clamp_to_box(x, lo, hi)
        except SpecError as exc:
            raise DataError(f"x lies outside the clip box (lo, hi): {exc}") from None
    return x


def _location(cfg: CleverConfig, maxima) -> tuple[float, bool, float]:
    """(Lipschitz estimate, fit accepted, KS p-value) from one class's batch maxima (numpy, float64): the
    reverse-Weibull location, or the largest finite maximum for the 'max' estimator."""
    if cfg.estimator == "weibull":
        fit: WeibullFit = fit_reverse_weibull(maxima, shape_inits=cfg.fit_shape_inits, shape_reg=cfg.fit_shape_reg,
                                              min_pvalue=cfg.fit_min_pvalue,
                                              max_extrapolation=cfg.fit_max_extrapolation)
        return fit.location, fit.ok, fit.pvalue
    finite = maxima[np.isfinite(maxima)]
    return (float(finite.max()) if finite.size else float("nan")), False, float("nan")
