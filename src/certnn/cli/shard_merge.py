"""Merging the samples of a sharded run into the command's JSON summary, computed exactly as the
single-process commands compute it (same reductions on the same float64 values, sample order kept), so
the merged document equals the single-process one except for timings and failed samples."""
from __future__ import annotations

from typing import Any

import torch


def num(v: Any) -> float:
    """A JSON number back to float ("inf" / "-inf" strings, null as NaN)."""
    if v is None:
        return float("nan")
    return float(v)


def _t(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def mean_seconds(seconds: list[dict[str, Any]], key: str) -> Any:
    """Mean over samples of a per-sample share of a shard's seconds (a float or a {name: float} dict)."""
    vals = [s[key] for s in seconds if key in s]
    if not vals:
        return None
    if isinstance(vals[0], dict):
        return {k: float(_t([v[k] for v in vals]).mean()) for k in vals[0]}
    return float(_t(vals).mean())


def _correct(samples: list[dict]) -> torch.Tensor:
    return torch.tensor([s["predicted"] == s["label"] for s in samples], dtype=torch.bool)


def radius_summary(samples: list[dict], settings: dict, seconds: list[dict]) -> dict:
    methods = settings["methods"]
    correct = _correct(samples)
    multi = len(methods) > 1
    radii = {m: _t([num(s["certified_radius_by_method"][m] if multi else s["certified_radius"]) for s in samples])
             for m in methods}
    times = {m: _t([num(s["time_s_by_method"][m] if multi else s["time_s"]) for s in samples]) for m in methods}
    undecided = torch.tensor([bool(s.get("undecided")) for s in samples], dtype=torch.bool)
    correct = correct & ~undecided
    out: dict[str, Any] = {"samples": len(samples), "correct": int(correct.sum()),
                           "undecided": int(undecided.sum()),
                           "mean_certified_radius": {m: float(radii[m][correct].mean()) if correct.any() else 0.0
                                                     for m in methods},
                           "seconds_per_sample": {m: float(times[m].mean()) for m in methods}}
    eps = settings.get("eps")
    if eps:
        keys = [str(e) for e in eps]
        def acc(m: str, e: str) -> float:
            flags = [s["certified"][e] if m == methods[0] else s["certified_by_method"][m][e] for s in samples]
            return float(torch.tensor(flags, dtype=torch.bool).double().mean())
        out["clean_accuracy"] = float(_correct(samples).double().mean())
        out["certified_accuracy"] = {e: acc(methods[0], e) for e in keys}
        out["certified_accuracy_by_method"] = {m: {e: acc(m, e) for e in keys} for m in methods}
    if settings.get("attack"):
        att = _t([num(s["attack_radius"]) for s in samples])
        finite = correct & torch.isfinite(att)
        out["mean_attack_radius"] = float(att[finite].mean()) if finite.any() else None
        out["attack_seconds_per_sample"] = mean_seconds(seconds, "attack_seconds_per_sample")
    return out


def certify_summary(samples: list[dict], settings: dict, seconds: list[dict]) -> dict:
    keys = [str(e) for e in settings["eps"]]
    out: dict[str, Any] = {
        "samples": len(samples), "clean_accuracy": float(_correct(samples).double().mean()),
        "certified_accuracy": {e: float(torch.tensor([s["certified"][e] for s in samples]).double().mean())
                               for e in keys},
        "seconds_per_sample": mean_seconds(seconds, "seconds_per_sample"),
        "undecided": {e: sum(e in s.get("undecided_eps", ()) for s in samples) for e in keys}}
    if settings.get("complete"):
        out["violated"] = {e: sum(s["verdict"][e] == "violated" for s in samples) for e in keys}
        out["unknown"] = {e: sum(s["verdict"][e] == "unknown" for s in samples) for e in keys}
    return out


def plain_summary(samples: list[dict], settings: dict, seconds: list[dict]) -> dict:
    """attack / clever: the number of samples and the seconds per sample."""
    return {"samples": len(samples), "seconds_per_sample": mean_seconds(seconds, "seconds_per_sample")}


SUMMARIES = {"radius": radius_summary, "certify": certify_summary, "attack": plain_summary, "clever": plain_summary}


def merge_clip_clamped(parts: list[dict]) -> dict | None:
    """settings.clip_clamped of the whole run from the shards' (sums of counts, largest shift)."""
    if not parts:
        return None
    out = dict(parts[0])
    out["samples"] = sum(p["samples"] for p in parts)
    out["values"] = sum(p["values"] for p in parts)
    out["max_shift"] = max(num(p["max_shift"]) for p in parts)
    return out


def good_count(command: str, settings: dict | None, sample: dict) -> bool:
    """What the progress display counts: proved (radius > 0, certified at the first eps) or, for attack,
    an adversarial example found."""
    if "failed" in sample:
        return False
    if command in ("radius", "report"):
        return num(sample.get("certified_radius", 0)) > 0
    if command == "certify":
        c = sample.get("certified") or {}
        return bool(next(iter(c.values()), False))
    if command == "attack":
        return num(sample.get("attack_radius", "inf")) < float("inf")
    return False


GOOD_LABEL = {"radius": "certified", "report": "certified", "certify": "certified", "attack": "attacked"}
