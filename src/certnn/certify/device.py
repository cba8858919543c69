"""Where bound computations run: `device=` of the API and `--device cpu|cuda|auto` of the CLI."""
from __future__ import annotations

import torch

from ..errors import ConfigError

DEVICES = ("cpu", "cuda", "auto")


def resolve_device(device) -> torch.device:
    """torch.device for "cpu", "cuda" / "cuda:N", "auto" (cuda when present, else cpu), a torch.device or
    None (cpu). Asking for cuda without a usable GPU is a ConfigError, before any work starts."""
    if device is None:
        return torch.device("cpu")
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but torch sees no CUDA GPU; use --device cpu or auto")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {device!r} is not supported; choose one of {', '.join(DEVICES)}")
    return dev
