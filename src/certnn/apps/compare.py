"""Defence comparison: one model's clean accuracy, certified accuracy and certified radius on given samples.

:func:`summarize_model` certifies one model on samples (x, y); calling it for several models on the SAME
samples (the CLI's ``certnn compare``) compares defences. Conventions:

* a sample counts for a model only if that model classifies it correctly; ``clean_accuracy`` is the
  fraction of the N samples it classifies correctly;
* ``certified_accuracy[eps]``: fraction of the N samples that are correctly classified and proved robust
  at eps (proved directly at eps, or certified radius >= eps: both are proofs);
* ``mean_certified_radius``: mean over all N samples with 0 for misclassified ones (so that models are
  compared on the same denominator); ``mean_certified_radius_correct`` the mean over the correctly
  classified ones only (None when there are none);
* ``mean_attack_radius`` (optional, an UPPER bound, never certified): mean attack radius over the correctly
  classified samples where the attack found an adversarial example.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..certify.per_sample_frames import certify_by_frames, frame_scales, radius_by_frames
from ..certify.radius import CertifyConfig, Certifier, RadiusConfig
from ..errors import SoundnessError
from ..graph.ir import Graph

Progress = Callable[[int, int], None]

__all__ = ["ModelSummary", "summarize_model"]


@dataclass(frozen=True)
class ModelSummary:
    """Results of one model on N samples (see the module docstring for the conventions)."""

    samples: int
    correct: int
    clean_accuracy: float
    certified_accuracy: dict[float, float]
    mean_certified_radius: float
    mean_certified_radius_correct: float | None
    seconds_per_sample: float
    certified_radius: Tensor  # (N,) proved lower bounds, 0 where misclassified
    is_correct: Tensor  # (N,) bool
    mean_attack_radius: float | None = None
    attack_found: int | None = None
    attack_radius: Tensor | None = None  # (N,) upper bounds (inf: none found up to eps_max)

    def to_dict(self) -> dict[str, object]:
        return {"samples": self.samples, "correct": self.correct, "clean_accuracy": self.clean_accuracy,
                "certified_accuracy": {str(e): a for e, a in self.certified_accuracy.items()},
                "mean_certified_radius": self.mean_certified_radius,
                "mean_certified_radius_correct": self.mean_certified_radius_correct,
                "seconds_per_sample": self.seconds_per_sample, "mean_attack_radius": self.mean_attack_radius,
                "attack_found": self.attack_found}


def summarize_model(graph: Graph, x: Tensor, y: Tensor, frames: Sequence[Sequence[int]] | None = None,
                    config: CertifyConfig = CertifyConfig(), search: RadiusConfig = RadiusConfig(),
                    eps: Sequence[float] = (), attack=None, attack_eps_max: float = 1e3,
                    progress: Progress | None = None, dtype: torch.dtype | str = torch.float64,
                    device=None) -> ModelSummary:
    """Certify ``graph`` on (x, y): certified radius per sample, certified accuracy at each ``eps``.

    Args:
        graph: the model (a certnn Graph).
        x, y: (N, *input_shape) inputs and (N,) labels.
        frames: per-sample frame sets to perturb (text: the chosen words' frames, which differ between
            sentences); None perturbs what ``config`` says (its ``frames``, default the whole input).
        config, search: method / norm / target / clip and the radius search.
        eps: radii at which certified accuracy is reported.
        attack: a :class:`certnn.attacks.FMNConfig` or :class:`~certnn.attacks.PGDConfig` to also find attack radii (upper bounds) on the same
            sets; a certified radius above an attack radius raises :class:`SoundnessError`.
        dtype, device: of the bound computations (see :class:`Certifier`); the attack runs on `device`.
    """
    x = torch.as_tensor(x).to(torch.float64)
    y = torch.as_tensor(y).long().reshape(-1)
    N = x.shape[0]
    t0 = time.perf_counter()
    if frames is None:
        cert = Certifier(graph, config, tuple(x.shape[1:]), dtype=dtype, device=device)
        res = cert.radius(x, y, search, progress=progress)
        scale = cert.scale
    else:
        res = radius_by_frames(graph, x, y, frames, config, search, progress=progress, dtype=dtype, device=device)
        scale = frame_scales(tuple(x.shape[1:]), frames, config.frame_eps)
    certified: dict[float, float] = {}
    for e in eps:
        direct = (cert.certify(x, y, float(e)).certified if frames is None
                  else certify_by_frames(graph, x, y, frames, float(e), config, dtype=dtype, device=device))
        ok = direct | (res.correct & (res.certified_radius >= e))
        certified[float(e)] = float(ok.double().mean()) if N else float("nan")
    seconds = (time.perf_counter() - t0) / max(1, N)
    correct = res.correct
    radius = torch.where(correct, res.certified_radius, torch.zeros_like(res.certified_radius))
    summary = dict(samples=N, correct=int(correct.sum()), clean_accuracy=float(correct.double().mean()) if N else 0.0,
                   certified_accuracy=certified, mean_certified_radius=float(radius.mean()) if N else 0.0,
                   mean_certified_radius_correct=float(radius[correct].mean()) if correct.any() else None,
                   seconds_per_sample=seconds, certified_radius=radius, is_correct=correct)
    if attack is not None:
        from ..attacks import attack_radius

        ar = attack_radius(graph, x, y, config.norm, attack, target=res.target, clip=config.clip, scale=scale,
                           eps_max=attack_eps_max, device=device)
        a = ar.radius.to(torch.float64)
        bad = torch.nonzero(correct & (radius > a * (1 + 1e-9) + 1e-12)).flatten()
        if bad.numel():
            raise SoundnessError(f"certified radius above the attack radius for samples {bad.tolist()[:10]}: "
                                 "this is a bug in certnn, please report it with the model and data")
        found = correct & torch.isfinite(a)
        summary.update(mean_attack_radius=float(a[found].mean()) if found.any() else None,
                       attack_found=int(found.sum()), attack_radius=a)
    return ModelSummary(**summary)
