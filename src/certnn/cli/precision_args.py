"""`--dtype` and `--device` of the certification commands (certify/precision.py, certify/device.py)."""
from __future__ import annotations

import argparse

PRECISIONS = ("float64", "float32", "float32-sound")
DEVICES = ("cpu", "cuda", "auto")


def add_precision_args(p: argparse.ArgumentParser, dtype: bool = True,
                       what: str = "where bounds are computed") -> None:
    """--dtype (unless dtype=False: commands that compute no bounds) and --device."""
    g = p.add_argument_group("precision and device")
    if dtype:
        g.add_argument("--dtype", default="float64", choices=PRECISIONS,
                       help="float64 (proofs, default); float32-sound (float32 with every step widened by a bound "
                            "on its rounding error: sound, faster); float32 (fastest, rounding NOT accounted for)")
    g.add_argument("--device", default="cpu", choices=DEVICES, help=f"{what}: cpu, cuda, or auto (cuda when present)")


def check_device(args) -> None:
    """--device cuda without a GPU: a ConfigError (exit 2) right after parsing, before any model is loaded.
    Imports torch only when cuda is asked for."""
    if getattr(args, "device", None) == "cuda":
        from ..certify.device import resolve_device

        resolve_device("cuda")


def device_of(args):
    """The resolved torch.device of --device (cpu where the command has no such flag)."""
    from ..certify.device import resolve_device

    return resolve_device(getattr(args, "device", "cpu"))


def precision_kwargs(args) -> dict:
    """Certifier keyword arguments dtype / device from the flags (defaults where a command lacks them)."""
    return {"dtype": getattr(args, "dtype", "float64"), "device": getattr(args, "device", "cpu")}


def environment_for(args) -> dict:
    """The JSON's environment with the dtype (float64 / float32 / float32-sound) and device actually used."""
    import torch

    from ..certify.device import resolve_device
    from ..report.records import environment

    env = environment(torch.float64, str(resolve_device(getattr(args, "device", "cpu"))))
    env["dtype"] = getattr(args, "dtype", "float64")
    return env
