"""`certnn report --workers`: the ReportData of the whole run from the shards' report.json samples,
computed as report.build.build_report computes it, then written by the same renderer."""
from __future__ import annotations

from typing import Any

import torch

from ..report.build import ReportData
from ..report.records import SampleRecord
from .shard_merge import mean_seconds, num

_FIELDS = ("index", "label", "predicted", "certified_radius", "time_s", "target", "attack_radius",
           "certified_radius_by_method")


def _record(d: dict) -> SampleRecord:
    kw = {k: d.get(k) for k in _FIELDS}
    for k in ("certified_radius", "time_s", "attack_radius"):
        if kw[k] is not None:
            kw[k] = num(kw[k])
    if kw["certified_radius_by_method"] is not None:
        kw["certified_radius_by_method"] = {m: num(v) for m, v in kw["certified_radius_by_method"].items()}
    extra = {k: v for k, v in d.items() if k not in _FIELDS}
    return SampleRecord(**kw, extra=extra)


def report_data(samples: list[dict], settings: dict, seconds: list[dict]) -> ReportData:
    methods = list(settings["methods"])
    t = lambda vals: torch.tensor(vals, dtype=torch.float64)  # noqa: E731
    ok = torch.tensor([s["predicted"] == s["label"] for s in samples], dtype=torch.bool)
    radii = {m: t([num(s["certified_radius_by_method"][m]) for s in samples]) for m in methods}
    att = t([num(s["attack_radius"]) for s in samples]) if settings.get("attack") else None
    cl = t([num(s["clever_estimate"]) for s in samples]) if settings.get("clever") else None
    secs_all = mean_seconds(seconds, "seconds_per_sample") or {}
    secs = {m: secs_all[m] for m in methods if m in secs_all}
    violations: list[dict[str, Any]] = []
    if att is not None:
        for m in methods:
            bad = torch.nonzero(ok & (radii[m] > att * (1 + 1e-9) + 1e-12)).flatten()
            violations += [{"index": samples[i]["index"], "method": m, "certified_radius": float(radii[m][i]),
                            "attack_radius": float(att[i])} for i in bad.tolist()]
    clever_above = int((ok & torch.isfinite(att) & (cl > att)).sum()) if att is not None and cl is not None else 0
    n = len(samples)
    summary: dict[str, Any] = {
        "samples": n, "correct": int(ok.sum()), "clean_accuracy": float(ok.double().mean()) if n else None,
        "mean_certified_radius": {m: float(radii[m][ok].mean()) if ok.any() else 0.0 for m in methods},
        "seconds_per_sample": secs_all, "violations": len(violations)}
    if att is not None:
        fin = ok & torch.isfinite(att)
        summary["mean_attack_radius"] = float(att[fin].mean()) if fin.any() else None
        summary["attack_found"] = int(fin.sum())
    if cl is not None:
        summary["mean_clever_estimate"] = float(cl[ok].mean()) if ok.any() else None
        summary["clever_above_attack"] = clever_above
    return ReportData(settings, [_record(s) for s in samples], radii, secs, ok, att, cl, violations, clever_above,
                      summary)
