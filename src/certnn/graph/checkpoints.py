"""Checkpoint files: finding the model's state_dict inside the layouts the field saves.

Training code rarely saves a bare ``model.state_dict()``. Common layouts:

* ``{'state_dict': sd, 'epoch': ..., 'optimizer': ...}`` (PyTorch Lightning, CROWN-IBP, many repos),
  ``{'model': sd}``, ``{'model_state_dict': sd}``, ``{'net': sd}``, ``{'ema': sd}``, ...;
* lists or tuples of state dicts, e.g. CROWN-IBP's ``{'state_dict': [model.state_dict()]}``;
* keys prefixed by a wrapper: ``module.`` (``nn.DataParallel``), ``model.`` (Lightning modules),
  ``_orig_mod.`` (``torch.compile``), ``net.``.

:func:`find_state_dict` searches the loaded object (nested mappings and sequences, a few levels deep)
for every mapping of tensors and keeps those whose keys are exactly the model's own state_dict keys, as
they are or after dropping one wrapper prefix. Exactly one match is used and described (``"['state_dict']
[0], prefix 'module.' removed"``); several different matches are ambiguous and the user picks one with
``key``; no match is an error that lists what the file holds. Nothing is loaded partially: a match has
every key of the model and no other.

Loading stays weights-only (``torch.load(weights_only=True)``, which runs no code from the file) unless
the caller passes ``trust_pickle=True``.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelImportError

__all__ = ["load_checkpoint", "find_state_dict", "WRAPPER_PREFIXES"]

#: prefixes that wrappers put in front of every key (tried when the keys do not match as they are)
WRAPPER_PREFIXES = ("module.", "model.", "_orig_mod.", "net.", "network.", "module.model.", "model.module.")
#: how deep nested mappings / sequences are searched
MAX_DEPTH = 4


def _is_state_dict(obj) -> bool:
    return (isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(k, str) for k in obj)
            and all(isinstance(v, torch.Tensor) for v in obj.values()))


def _candidates(obj, path: str = "", depth: int = 0) -> list[tuple[str, Mapping]]:
    """Every mapping of tensors inside obj with its access path, e.g. "['state_dict'][0]"."""
    out: list[tuple[str, Mapping]] = []
    if _is_state_dict(obj):
        out.append((path, obj))
        return out
    if depth >= MAX_DEPTH:
        return out
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            out += _candidates(v, f"{path}[{k!r}]", depth + 1)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out += _candidates(v, f"{path}[{i}]", depth + 1)
    return out


def _match(sd: Mapping, wanted: set[str]) -> tuple[dict, str] | None:
    """sd with keys equal to `wanted` (as is, or after removing one common wrapper prefix)."""
    keys = set(sd)
    if keys == wanted:
        return dict(sd), ""
    for p in WRAPPER_PREFIXES:
        if all(k.startswith(p) for k in keys) and {k[len(p):] for k in keys} == wanted:
            return {k[len(p):]: v for k, v in sd.items()}, p
    return None


def _describe(path: str, prefix: str) -> str:
    where = f"checkpoint{path}" if path else "the file itself (a plain state_dict)"
    return where + (f", prefix {prefix!r} removed" if prefix else "")


def _select(cands: list[tuple[str, Mapping]], key: str) -> list[tuple[str, Mapping]]:
    """The candidates under a user-given key path: 'state_dict', 'state_dict.0', "['model']"."""
    norm = key.strip()
    if not norm.startswith("["):
        parts = [p for p in norm.split(".") if p != ""]
        norm = "".join(f"[{int(p)}]" if p.isdigit() else f"[{p!r}]" for p in parts)
    return [(p, sd) for p, sd in cands if p == norm or p.startswith(norm + "[")]


def find_state_dict(obj, model: nn.Module, key: str | None = None, source: str = "weights") -> tuple[dict, str]:
    """The state_dict for `model` inside a loaded checkpoint object, and a description of where it was
    found (see the module docstring). Raises ModelImportError when there is none or it is ambiguous."""
    wanted = set(model.state_dict().keys())
    cands = _candidates(obj)
    if key is not None:
        picked = _select(cands, key)
        if not picked:
            shown = ", ".join(p or "(top level)" for p, _ in cands[:8]) or "none"
            raise ModelImportError(f"{source}: no state_dict under key {key!r}; the state dicts in the file are at: "
                                   f"{shown}")
        cands = picked
    matches = []
    for path, sd in cands:
        m = _match(sd, wanted)
        if m is not None:
            matches.append((path, m[0], m[1]))
    distinct = []
    for path, sd, prefix in matches:
        if not any(set(sd) == set(o) and all(torch.equal(sd[k], o[k]) for k in sd) for _, o, _ in distinct):
            distinct.append((path, sd, prefix))
    if len(distinct) == 1:
        path, sd, prefix = distinct[0]
        return sd, _describe(path, prefix)
    if len(distinct) > 1:
        shown = "; ".join(_describe(p, pre) for p, _, pre in distinct)
        raise ModelImportError(f"{source} holds several different state dicts that match the model ({shown}); "
                               "choose one with --weights-key (e.g. --weights-key state_dict.0)")
    # no match: say what is there
    if not cands:
        top = (f"a mapping with keys {sorted(map(str, obj))[:10]}" if isinstance(obj, Mapping)
               else f"a {type(obj).__name__}")
        raise ModelImportError(f"{source} holds {top} and no mapping of tensors (a state_dict)")
    path, sd = max(cands, key=lambda c: len(set(c[1]) & wanted))
    missing = sorted(wanted - set(sd))
    unexpected = sorted(set(sd) - wanted)
    raise ModelImportError(
        f"{source}: no state_dict matches the model. Closest: {_describe(path, '')} with "
        f"{len(missing)} missing key(s) {missing[:4]} and {len(unexpected)} unexpected key(s) {unexpected[:4]} "
        f"(wrapper prefixes tried: {', '.join(WRAPPER_PREFIXES)}); the model expects keys such as "
        f"{sorted(wanted)[:4]}")


def load_checkpoint(model: nn.Module, path: str | Path, key: str | None = None,
                    trust_pickle: bool = False) -> str:
    """Load the weights of a checkpoint file into `model` (strictly: every key, matching shapes) and return
    where in the file they were found."""
    p = Path(path)
    if not p.is_file():
        raise ModelImportError(f"weights file {p} not found")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=not trust_pickle)
    except Exception as exc:  # noqa: BLE001 - unpickling raises many types
        if trust_pickle:
            raise ModelImportError(f"cannot read weights {p}: {exc}") from exc
        from .torch_files import describe_unreadable, is_torch_pickle, needs_unpickling

        if not (is_torch_pickle(p) and needs_unpickling(exc)):
            raise ModelImportError(f"cannot read weights: {describe_unreadable(p, exc)}") from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelImportError(
            f"cannot read weights {p} with weights-only loading ({first[:200]}); if the checkpoint also stores "
            "Python objects (an argparse Namespace, a config class) and you trust the file, pass "
            "--trust-pickle") from None
    sd, where = find_state_dict(obj, model, key, source=f"weights {p}")
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        msg = " ".join(str(exc).split())
        raise ModelImportError(f"weights {p} ({where}) do not match the model: {msg[:600]}") from None
    return where
