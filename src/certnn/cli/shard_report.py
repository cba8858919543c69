"""`certnn report --workers`: the ReportData of the whole run from the shards' report.json samples,
computed as report.build.build_report computes it, then written by the same renderer."""
from __future__ import annotations

import torch

from ..report.build import ReportData, _summary, _violations
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
    decided = torch.tensor([not s.get("undecided", False) for s in samples], dtype=torch.bool)
    radii = {m: t([num(s["certified_radius_by_method"][m]) for s in samples]) for m in methods}
    # null (a stage the deadline kept from a sample) comes back as NaN, as build_report keeps it
    att = t([num(s.get("attack_radius")) for s in samples]) if settings.get("attack") else None
    cl = t([num(s.get("clever_estimate")) for s in samples]) if settings.get("clever") else None
    secs_all = mean_seconds(seconds, "seconds_per_sample") or {}
    secs = {m: secs_all[m] for m in methods if m in secs_all}
    violations = _violations(methods, radii, att, ok & decided, 0)
    for v in violations:  # positions -> the samples' indices
        v["index"] = samples[v["index"]]["index"]
    clever_above = 0
    if att is not None and cl is not None:
        clever_above = int((ok & decided & torch.isfinite(att) & (cl > att)).sum())
    summary = _summary(len(samples), ok, decided, methods, radii, secs, att, secs_all.get("attack"), cl,
                       secs_all.get("clever"), len(violations), clever_above)
    return ReportData(settings, [_record(s) for s in samples], radii, secs, ok & decided, att, cl, violations,
                      clever_above, summary)
