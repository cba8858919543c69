"""Result records: frozen, self-describing, JSON-serialisable.

Field names say what a number is: `certified_radius` (a proved lower bound on the minimal adversarial
distortion), `attack_radius` (an upper bound: a distortion at which an adversarial example was found and
checked), `clever_estimate` (a statistical estimate, neither bound). They never share a field.
"""
from __future__ import annotations

import json
import math
import platform
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

SCHEMA_VERSION = 1


def environment(dtype: torch.dtype = torch.float64, device: str = "cpu") -> dict[str, Any]:
    from .. import __version__
    import numpy as np

    return {"certnn": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": sys.version.split()[0], "platform": platform.platform(), "dtype": str(dtype).replace("torch.", ""),
            "device": device, "peak_rss_mb": round(_peak_rss() / 2 ** 20, 1)}


def _peak_rss() -> int:
    from ..engine.memory import peak_rss

    return peak_rss()


def _clean(v: Any) -> Any:
    if isinstance(v, float):
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        if math.isnan(v):
            return None
        return v
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, torch.Tensor):
        return _clean(v.tolist())
    return v


@dataclass(frozen=True)
class SampleRecord:
    index: int
    label: int
    predicted: int
    certified_radius: float
    time_s: float
    target: int | None = None
    attack_radius: float | None = None
    certified_radius_by_method: dict[str, float] | None = None
    certified: dict[str, bool] | None = None  # per eps (certify)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        extra = d.pop("extra")
        d = {k: v for k, v in d.items() if v is not None}
        d.update(extra)
        return _clean(d)


def write_document(path: str | Path, command: str, settings: dict[str, Any], env: dict[str, Any],
                   **sections: Any) -> None:
    """Write the JSON document of a command: schema_version, command, settings, environment and the given
    sections (e.g. summary=..., samples=...), with inf as "inf" and NaN as null."""
    doc = {"schema_version": SCHEMA_VERSION, "command": command, "settings": _clean(settings), "environment": env,
           **{k: _clean(v) for k, v in sections.items()}}
    from .atomic import write_or_keep

    write_or_keep(path, json.dumps(doc, indent=2) + "\n", "the JSON document")


def write_json(path: str | Path, command: str, settings: dict[str, Any], samples: list[SampleRecord],
               summary: dict[str, Any], env: dict[str, Any]) -> None:
    write_document(path, command, settings, env, summary=summary, samples=[s.to_dict() for s in samples])
