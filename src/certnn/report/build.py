"""The robustness report: certified radius per method, attack radius and CLEVER estimate on the same
samples, with the consistency checks a user should see.

Three kinds of number, never mixed: `certified_radius_by_method` (proved lower bounds), `attack_radius`
(upper bound: an adversarial example was found and checked at that eps) and `clever_estimate`
(a statistical estimate that can err either way).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..certify.radius import CertifyConfig, Certifier, RadiusConfig
from ..optimize.config import AlphaConfig
from ..graph.ir import Graph
from .records import SampleRecord

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ReportData:
    settings: dict[str, Any]
    samples: list[SampleRecord]
    radii: dict[str, Tensor]  # method -> (N,) certified radius
    method_seconds: dict[str, float]  # method -> seconds per sample
    correct: Tensor  # (N,) bool
    attack_radius: Tensor | None  # (N,) (inf where none found)
    clever_estimate: Tensor | None  # (N,)
    violations: list[dict[str, Any]] = field(default_factory=list)  # certified > attack: bugs
    clever_above_attack: int = 0
    summary: dict[str, Any] = field(default_factory=dict)


def build_report(graph: Graph, x: Tensor, y: Tensor, norm: str, methods: Sequence[str], target: str = "untargeted",
                 clip: tuple[float, float] | None = None, attack: bool = True, clever: bool = True,
                 seed: int = 0, search: RadiusConfig = RadiusConfig(), attack_config=None, clever_config=None,
                 index_offset: int = 0, batch_size: int = 32, progress: Progress | None = None,
                 alpha: AlphaConfig = AlphaConfig()) -> ReportData:
    x = x.to(torch.float64)
    radii: dict[str, Tensor] = {}
    secs: dict[str, float] = {}
    per_sample_t: dict[str, Tensor] = {}
    res = None
    for m in methods:
        cert = Certifier(graph, CertifyConfig(method=m, norm=norm, target=target, clip=clip, seed=seed,
                                              batch_size=batch_size, alpha=alpha))
        t0 = time.perf_counter()
        r = cert.radius(x, y, search, progress=(lambda d, t, m=m: progress(f"{m} radius", d, t)) if progress else None)
        secs[m] = (time.perf_counter() - t0) / max(1, len(y))
        radii[m] = r.certified_radius
        per_sample_t[m] = r.time_s
        res = res or r
    assert res is not None
    correct = res.correct
    att = None
    att_s = None
    if attack:
        from ..attacks import FMNConfig, attack_radius

        if progress:
            progress("attack", 0, 1)
        t0 = time.perf_counter()
        eps_max = {"inf": 1.0, "2": 10.0, "1": 100.0}[norm] if clip is None else {"inf": clip[1] - clip[0], "2": 50.0, "1": 1000.0}[norm]
        ar = attack_radius(graph, x, y, norm, attack_config or FMNConfig(),
                           target=res.target, clip=clip, eps_max=eps_max)
        att = ar.radius.to(torch.float64)
        att_s = (time.perf_counter() - t0) / max(1, len(y))
        if progress:
            progress("attack", 1, 1)
    cl = None
    cl_s = None
    if clever:
        from ..estimate import CleverConfig, clever_scores

        if progress:
            progress("clever", 0, 1)
        t0 = time.perf_counter()
        cr = clever_scores(graph, x, y, norm, clever_config or CleverConfig(seed=seed), target=res.target, clip=clip)
        cl = cr.clever_estimate.to(torch.float64)
        cl_s = (time.perf_counter() - t0) / max(1, len(y))
        if progress:
            progress("clever", 1, 1)
    violations = []
    if att is not None:
        for m in methods:
            bad = torch.nonzero(correct & (radii[m] > att * (1 + 1e-9) + 1e-12)).flatten()
            for i in bad.tolist():
                violations.append({"index": index_offset + i, "method": m, "certified_radius": float(radii[m][i]),
                                   "attack_radius": float(att[i])})
    clever_above = 0
    if att is not None and cl is not None:
        clever_above = int((correct & torch.isfinite(att) & (cl > att)).sum())
    samples = []
    for i in range(len(y)):
        extra: dict[str, Any] = {"time_s_by_method": {m: float(per_sample_t[m][i]) for m in methods}}
        if cl is not None:
            extra["clever_estimate"] = float(cl[i])
        samples.append(SampleRecord(index=index_offset + i, label=int(y[i]), predicted=int(res.predicted[i]),
                                    certified_radius=float(radii[methods[0]][i]), time_s=float(per_sample_t[methods[0]][i]),
                                    target=None if res.target is None else int(res.target[i]),
                                    attack_radius=None if att is None else float(att[i]),
                                    certified_radius_by_method={m: float(radii[m][i]) for m in methods}, extra=extra))
    ok = correct
    summary: dict[str, Any] = {
        "samples": len(y), "correct": int(ok.sum()), "clean_accuracy": float(ok.double().mean()) if len(y) else None,
        "mean_certified_radius": {m: float(radii[m][ok].mean()) if ok.any() else 0.0 for m in methods},
        "seconds_per_sample": {**secs, **({"attack": att_s} if att_s is not None else {}),
                               **({"clever": cl_s} if cl_s is not None else {})},
        "violations": len(violations),
    }
    if att is not None:
        fin = ok & torch.isfinite(att)
        summary["mean_attack_radius"] = float(att[fin].mean()) if fin.any() else None
        summary["attack_found"] = int(fin.sum())
    if cl is not None:
        summary["mean_clever_estimate"] = float(cl[ok].mean()) if ok.any() else None
        summary["clever_above_attack"] = clever_above
    settings = {"norm": norm, "methods": list(methods), "target": target, "clip": clip, "seed": seed,
                "attack": attack, "clever": clever, "search": search.to_dict()}
    return ReportData(settings, samples, radii, secs, correct, att, cl, violations, clever_above, summary)
