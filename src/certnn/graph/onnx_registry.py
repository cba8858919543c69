"""The table of ONNX op converters: ``@register_onnx("Gemm")`` on ``fn(imp, node, ins, attrs) -> list of
output values``. The converter families register themselves when this table is first asked for a
converter or the supported op list."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .registrar import registrar

Converter = Callable[["Importer", Any, list, dict], list]
ONNX_CONVERTERS: dict[str, Converter] = {}
#: op types that are the identity at inference time (their first output is their first input)
PASSTHROUGH = ("Identity", "Dropout")


register_onnx = registrar(ONNX_CONVERTERS, "register_onnx",
                          "Decorator registering a converter for the given ONNX op types.")


def supported_onnx_ops() -> list[str]:
    """The ONNX op types certnn imports, sorted."""
    _load_families()
    return sorted(set(ONNX_CONVERTERS) | set(PASSTHROUGH) | {"Constant"})


def converter_for(op_type: str) -> Converter | None:
    """The converter registered for an ONNX op type (None when there is none)."""
    _load_families()
    return ONNX_CONVERTERS.get(op_type)


def _load_families() -> None:
    """Import the converter modules (each registers its op types on import; later calls are no-ops)."""
    from . import onnx_activations, onnx_arith, onnx_conv, onnx_recurrent, onnx_select, onnx_shape  # noqa: F401
