"""Lazy re-exports for package ``__init__`` modules (PEP 562).

``import certnn`` and ``certnn --help`` must not pay for importing torch, scipy or onnx: a package lists
which submodule defines each public name and the submodule is imported on first attribute access.
"""
from __future__ import annotations

import importlib
import sys
from collections.abc import Callable


def lazy_exports(package: str, table: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """(__getattr__, __dir__) for `package`, whose name `n` lives in submodule `table[n]` (relative, e.g.
    ".bounds"). A resolved name is cached in the package's namespace, so later look-ups cost nothing."""

    def __getattr__(name: str) -> object:
        where = table.get(name)
        if where is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where, package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(table) | set(vars(sys.modules[package])))

    return __getattr__, __dir__
