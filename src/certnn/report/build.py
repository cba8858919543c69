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
from .timed import radius_stage, values_stage

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
                 alpha: AlphaConfig = AlphaConfig(), max_rows: int = 4096, dtype: torch.dtype | str = torch.float64,
                 device=None, deadline: float | None = None) -> ReportData:
    """The report of `methods` (and the attack / CLEVER) on x, y. dtype / device: of the bound computations
    (Certifier); the attack and CLEVER run on `device` in float64. `deadline` (a time.perf_counter() value,
    `report --timeout`): stages run batch by batch of `batch_size` until then; samples some stage did not
    reach are reported undecided (report/timed.py)."""
    from ..certify.device import resolve_device

    dev = resolve_device(device)
    x = x.to(torch.float64)
    radii: dict[str, Tensor] = {}
    secs: dict[str, float] = {}
    per_sample_t: dict[str, Tensor] = {}
    decided = torch.ones(len(y), dtype=torch.bool)
    res = None
    for m in methods:
        cert = Certifier(graph, CertifyConfig(method=m, norm=norm, target=target, clip=clip, seed=seed,
                                              batch_size=batch_size, max_rows=max_rows, alpha=alpha), dtype=dtype, device=dev)
        t0 = time.perf_counter()
        r, done = radius_stage(cert, x, y, search, deadline,
                               (lambda d, t, m=m: progress(f"{m} radius", d, t)) if progress else None, index_offset)
        secs[m] = (time.perf_counter() - t0) / max(1, len(y))
        radii[m], per_sample_t[m] = r.certified_radius, r.time_s
        decided &= done
        res = res or r
    assert res is not None
    att, att_s, cl, cl_s = None, None, None, None
    if attack:  # NaN where the deadline came first
        att, att_s = _attack_stage(graph, x, y, norm, clip, seed, attack_config, res.target, batch_size,
                                   deadline, progress, dev)
    if clever:
        cl, cl_s = _clever_stage(graph, x, y, norm, clip, seed, clever_config, res.target, batch_size,
                                 deadline, progress, dev, index_offset)
    correct = res.correct & decided
    violations = _violations(methods, radii, att, correct, index_offset)
    clever_above = 0
    if att is not None and cl is not None:
        clever_above = int((correct & torch.isfinite(att) & (cl > att)).sum())
    samples = _samples(y, res, methods, radii, per_sample_t, att, cl, decided, index_offset)
    summary = _summary(len(y), res.correct, decided, methods, radii, secs, att, att_s, cl, cl_s,
                       len(violations), clever_above)
    settings = {"norm": norm, "methods": list(methods), "target": target, "clip": clip, "seed": seed,
                "attack": attack, "clever": clever, "search": search.to_dict(),
                "dtype": dtype if isinstance(dtype, str) else str(dtype).replace("torch.", ""), "device": str(dev)}
    return ReportData(settings, samples, radii, secs, correct, att, cl, violations, clever_above, summary)


def _attack_stage(graph, x, y, norm, clip, seed, config, target, batch_size, deadline, progress, device=None):
    from ..attacks import FMNConfig, attack_radius

    if progress:
        progress("attack", 0, 1)
    t0 = time.perf_counter()
    eps_max = {"inf": 1.0, "2": 10.0, "1": 100.0}[norm] if clip is None else {"inf": clip[1] - clip[0], "2": 50.0, "1": 1000.0}[norm]
    cfg = config or FMNConfig()
    att, done = values_stage(lambda i, j: attack_radius(graph, x[i:j], y[i:j], norm, cfg,
                                                        target=None if target is None else target[i:j],
                                                        clip=clip, eps_max=eps_max, device=device).radius,
                             len(y), batch_size, deadline)
    if progress:
        progress("attack", 1, 1)
    return att, (time.perf_counter() - t0) / max(1, int(done.sum()))


def _clever_stage(graph, x, y, norm, clip, seed, config, target, batch_size, deadline, progress, device=None,
                  index_offset: int = 0):
    from ..estimate import CleverConfig, clever_scores

    if progress:
        progress("clever", 0, 1)
    t0 = time.perf_counter()
    cfg = config or CleverConfig(seed=seed)
    cl, done = values_stage(lambda i, j: clever_scores(graph, x[i:j], y[i:j], norm, cfg,
                                                       target=None if target is None else target[i:j],
                                                       clip=clip, device=device,
                                                       index_offset=index_offset + i).clever_estimate,
                            len(y), batch_size, deadline)
    if progress:
        progress("clever", 1, 1)
    return cl, (time.perf_counter() - t0) / max(1, int(done.sum()))


def _violations(methods, radii, att, correct, index_offset) -> list[dict[str, Any]]:
    """Certified radius above the attack radius on a decided, correctly classified sample: a bug."""
    out: list[dict[str, Any]] = []
    if att is None:
        return out
    for m in methods:
        bad = torch.nonzero(correct & (radii[m] > att * (1 + 1e-9) + 1e-12)).flatten()
        for i in bad.tolist():
            out.append({"index": index_offset + i, "method": m, "certified_radius": float(radii[m][i]),
                        "attack_radius": float(att[i])})
    return out


def _samples(y, res, methods, radii, per_sample_t, att, cl, decided, index_offset) -> list[SampleRecord]:
    samples = []
    for i in range(len(y)):
        extra: dict[str, Any] = {"time_s_by_method": {m: float(per_sample_t[m][i]) for m in methods}}
        if cl is not None:  # --timeout: a stage the deadline kept from a sample leaves its value out
            extra.update({"clever_estimate": float(cl[i])} if cl[i] == cl[i] else {"clever_undecided": True})
        if att is not None and att[i] != att[i]:
            extra["attack_undecided"] = True
        if not decided[i]:  # some method's radius search never ran on it: its zeros are no results
            extra["undecided"] = True
        samples.append(SampleRecord(index=index_offset + i, label=int(y[i]), predicted=int(res.predicted[i]),
                                    certified_radius=float(radii[methods[0]][i]), time_s=float(per_sample_t[methods[0]][i]),
                                    target=None if res.target is None else int(res.target[i]),
                                    attack_radius=None if att is None or att[i] != att[i] else float(att[i]),
                                    certified_radius_by_method={m: float(radii[m][i]) for m in methods}, extra=extra))
    return samples


def _summary(n, correct, decided, methods, radii, secs, att, att_s, cl, cl_s, violations, clever_above):
    """Means over the correctly classified samples each stage decided (`undecided*`: counts of the others)."""
    ok = correct & decided
    summary: dict[str, Any] = {
        "samples": n, "correct": int(ok.sum()), "undecided": int((~decided).sum()),
        "clean_accuracy": float(ok.double().sum() / decided.sum()) if bool(decided.any()) else None,
        "mean_certified_radius": {m: float(radii[m][ok].mean()) if ok.any() else 0.0 for m in methods},
        "seconds_per_sample": {**secs, **({"attack": att_s} if att_s is not None else {}),
                               **({"clever": cl_s} if cl_s is not None else {})},
        "violations": violations,
    }
    if att is not None:
        fin = correct & torch.isfinite(att)  # NaN (undecided) is not finite
        summary["undecided_attack"] = int(att.isnan().sum())
        summary["mean_attack_radius"] = float(att[fin].mean()) if fin.any() else None
        summary["attack_found"] = int(fin.sum())
    if cl is not None:
        done = correct & ~cl.isnan()
        summary["undecided_clever"] = int(cl.isnan().sum())
        summary["mean_clever_estimate"] = float(cl[done].mean()) if done.any() else None
        summary["clever_above_attack"] = clever_above
    return summary
