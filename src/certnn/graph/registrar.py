"""One way to fill a converter table: ``registrar(table, name, doc)`` makes a decorator factory
``name(*keys)`` that puts the decorated function into ``table`` under every key and returns it unchanged.
A key registered again is overwritten (the last registration wins). Used by the PyTorch tables
(``torch_registry``), the ONNX table (``onnx_registry``) and the TorchScript rebuilders (``from_script``)."""
from __future__ import annotations

from collections.abc import Callable, Hashable, MutableMapping
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def registrar(table: MutableMapping[Any, Any], name: str, doc: str) -> Callable[..., Callable[[F], F]]:
    """The decorator factory ``name(*keys)`` registering into ``table`` (see the module docstring)."""
    def register(*keys: Hashable) -> Callable[[F], F]:
        def deco(fn: F) -> F:
            for key in keys:
                table[key] = fn
            return fn
        return deco
    register.__name__ = register.__qualname__ = name
    register.__doc__ = doc
    return register
