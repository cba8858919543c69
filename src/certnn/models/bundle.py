"""Model bundles: one ``.pt`` file of plain types that ``torch.load(weights_only=True)`` reads.

A bundle is a dict::

    {"format": "certnn-model", "version": 1,
     "kind": "text" | "image",            # which builder rebuilds the module (models/text.py, models/image.py)
     "config": {...},                      # the model config (TextModelConfig / ImageModelConfig fields)
     "state_dict": {...},                  # tensors
     "meta": {...},                        # task, training settings, test accuracy, ... (plain types)
     "vocab": [...]}                       # text bundles: the vocabulary, index order

Nothing in it is code, so loading it never runs anything from the file (unlike a pickled module).
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelImportError

BUNDLE_FORMAT = "certnn-model"
BUNDLE_VERSION = 1
BUNDLE_KINDS = ("text", "image")
_PLAIN = (str, int, float, bool, type(None))


def _check_plain(value: Any, where: str) -> None:
    if isinstance(value, _PLAIN):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ModelImportError(f"bundle {where}: keys must be strings, got {k!r}")
            _check_plain(v, f"{where}.{k}")
        return
    raise ModelImportError(f"bundle {where} holds a {type(value).__name__}; only str, int, float, bool, None, "
                           "lists and dicts of them are allowed")


def save_bundle(path: str | Path, kind: str, config: dict[str, Any], model: nn.Module, meta: dict[str, Any],
                **extra: Any) -> Path:
    """Write a bundle (see the module docstring); ``extra`` holds kind-specific plain entries (vocab)."""
    if kind not in BUNDLE_KINDS:
        raise ModelImportError(f"unknown bundle kind {kind!r}; choose one of {', '.join(BUNDLE_KINDS)}")
    _check_plain(config, "config")
    _check_plain(meta, "meta")
    _check_plain(extra, "extra")
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    doc = {"format": BUNDLE_FORMAT, "version": BUNDLE_VERSION, "kind": kind, "config": dict(config),
           "state_dict": state, "meta": dict(meta), **extra}
    p = Path(path)
    import io

    from ..report.atomic import atomic_write_bytes

    buf = io.BytesIO()
    torch.save(doc, buf)
    atomic_write_bytes(p, buf.getvalue())
    return p


def read_bundle(path: str | Path) -> dict[str, Any] | None:
    """The bundle dict of ``path``, or None when the file is not a certnn bundle (so that other loaders
    can try it). Raises ModelImportError for a bundle that is malformed."""
    p = Path(path)
    if not p.is_file() or not zipfile.is_zipfile(p):
        return None
    try:
        doc = torch.load(p, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 (not loadable as plain data: a pickled module, or not ours)
        return None
    if not isinstance(doc, dict) or doc.get("format") != BUNDLE_FORMAT:
        return None
    if doc.get("version") != BUNDLE_VERSION:
        raise ModelImportError(f"{p}: bundle version {doc.get('version')!r}; this certnn reads version "
                               f"{BUNDLE_VERSION}")
    need = {"kind": str, "config": dict, "state_dict": dict, "meta": dict}
    for key, typ in need.items():
        if not isinstance(doc.get(key), typ):
            raise ModelImportError(f"{p}: bundle entry {key!r} missing or not a {typ.__name__}")
    if doc["kind"] not in BUNDLE_KINDS:
        raise ModelImportError(f"{p}: unknown bundle kind {doc['kind']!r}; known: {', '.join(BUNDLE_KINDS)}")
    return doc


def load_state(model: nn.Module, state: dict[str, Any], where: str) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError) as exc:
        raise ModelImportError(f"{where}: the state_dict does not match the model config: {exc}") from None


def bundle_module(doc: dict[str, Any], where: str = "bundle") -> nn.Module:
    """Rebuild the module of a bundle dict (eval mode)."""
    if doc["kind"] == "text":
        from .text import text_model_from_bundle

        return text_model_from_bundle(doc, where)[0]
    from .image import image_model_from_bundle

    return image_model_from_bundle(doc, where)
