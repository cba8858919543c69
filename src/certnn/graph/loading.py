"""Loading models from files, safely.

* ``net.py:factory`` (+ ``weights=checkpoint.pt``): imports the Python file, calls ``factory()`` and loads
  the weights with ``torch.load(weights_only=True)``, which runs no code from the weights file. The file
  may be a plain state_dict or any common checkpoint layout (``{'state_dict': ...}``, ``{'model': ...}``,
  lists of state dicts, ``module.`` prefixes): graph/checkpoints.py finds the one that matches.
* ``model.pt`` saved by ``torch.jit.save`` (TorchScript): loaded with ``torch.jit.load``.
* a fully pickled module (``torch.save(model)``): only with ``trust_pickle=True``, since unpickling runs
  arbitrary code from the file.
* ``model.onnx`` or ``model.onnx.gz``: through the ONNX importer (graph/from_onnx.py), when installed.
* a certnn model bundle (``certnn train``, certnn.models.bundle): plain data read with ``weights_only=True``;
  the module is rebuilt from the bundle's config.
"""
from __future__ import annotations

import importlib.util
import sys
import zipfile
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelImportError
from .checkpoints import load_checkpoint


def _load_factory(spec: str) -> nn.Module:
    path_s, _, name = spec.rpartition(":")
    path = Path(path_s)
    if not path.is_file():
        raise ModelImportError(f"model file {path} not found (expected FILE.py:FACTORY)")
    mod_name = f"certnn_user_model_{abs(hash(str(path.resolve())))}"
    sp = importlib.util.spec_from_file_location(mod_name, path)
    if sp is None or sp.loader is None:
        raise ModelImportError(f"cannot import {path} as a Python module")
    module = importlib.util.module_from_spec(sp)
    sys.modules[mod_name] = module
    try:
        sp.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001
        raise ModelImportError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    factory = getattr(module, name, None)
    if factory is None or not callable(factory):
        raise ModelImportError(f"{path} has no callable factory {name!r}")
    try:
        model = factory()
    except Exception as exc:  # noqa: BLE001
        raise ModelImportError(f"calling factory {name}() from {path} failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise ModelImportError(f"factory {name}() returned {type(model).__name__}, not a torch.nn.Module")
    return model


def load_model(spec: str, weights: str | None = None, trust_pickle: bool = False, weights_key: str | None = None,
               info: dict | None = None, input_shape: tuple[int, ...] | None = None):
    """An nn.Module (or, for .onnx, a certnn Graph) from a model spec; see the module docstring.

    ``weights`` may be any common checkpoint layout (graph/checkpoints.py); ``weights_key`` picks one
    state_dict when the file holds several. When ``info`` is a dict, ``info['weights_key']`` is set to
    where in the file the weights were found. ``input_shape`` (per sample) fixes symbolic dimensions of an
    ONNX model's input (a sequence length)."""
    if weights_key is not None and not weights:
        raise ModelImportError("--weights-key chooses a state_dict inside --weights; give --weights too")
    if ":" in spec and spec.rpartition(":")[0].endswith(".py"):
        model = _load_factory(spec)
        if weights:
            where = load_checkpoint(model, weights, weights_key, trust_pickle)
            if info is not None:
                info["weights_key"] = where
        model.eval()
        return model
    path = Path(spec)
    if not path.is_file():
        raise ModelImportError(f"model file {path} not found")
    if path.suffix == ".onnx" or path.name.endswith(".onnx.gz"):
        try:
            from .from_onnx import load_onnx
        except ImportError as exc:
            raise ModelImportError(f"ONNX import is not available: {exc}") from exc
        return load_onnx(str(path), input_shape=input_shape)
    if zipfile.is_zipfile(path):
        model = _load_zip(path, weights)
        if model is not None:
            return model
    return _load_pickled(path, trust_pickle)


def _load_zip(path: Path, weights: str | None):
    """A TorchScript file or a certnn bundle (None: neither, e.g. a torch.save zip)."""
    with zipfile.ZipFile(path) as zf:
        is_script = any(n.endswith("constants.pkl") or "/code/" in n for n in zf.namelist())
    if is_script:
        try:
            m = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:  # noqa: BLE001
            raise ModelImportError(f"cannot load TorchScript model {path}: {exc}") from exc
        if weights:
            raise ModelImportError("--weights is for FILE.py:FACTORY models; a TorchScript file has its own")
        return m.eval()
    from ..models.bundle import bundle_module, read_bundle

    doc = read_bundle(path)
    if doc is not None:
        if weights:
            raise ModelImportError("--weights is for FILE.py:FACTORY models; a certnn bundle has its own")
        return bundle_module(doc, str(path))
    return None


def _load_pickled(path: Path, trust_pickle: bool):
    """A fully pickled module, only with trust_pickle; otherwise an error saying what the file holds."""
    if not trust_pickle:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001
            from .torch_files import describe_unreadable, is_torch_pickle, needs_unpickling

            if not (is_torch_pickle(path) and needs_unpickling(exc)):
                raise ModelImportError(f"cannot read the model: {describe_unreadable(path, exc)}") from None
            raise ModelImportError(
                f"{path} is a pickled model; loading it runs code from the file. Pass --trust-pickle if you "
                "trust it, or save a state_dict and use --model FILE.py:FACTORY --weights STATE.pt") from None
        raise ModelImportError(f"{path} holds a {type(obj).__name__} (a state_dict?): use --model FILE.py:FACTORY "
                               f"--weights {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise ModelImportError(f"cannot unpickle {path}: {exc}") from exc
    if not isinstance(obj, nn.Module):
        raise ModelImportError(f"{path} holds a {type(obj).__name__}, not an nn.Module")
    return obj.eval()
