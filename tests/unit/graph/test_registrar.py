"""The one decorator factory behind certnn's converter tables."""
from __future__ import annotations

import torch
from torch import nn

from certnn.graph import from_script, onnx_registry, torch_registry
from certnn.graph.registrar import registrar


def test_registers_under_every_key_and_returns_the_function_unchanged():
    table: dict = {}
    register = registrar(table, "register_thing", "Registers a thing.")

    def conv(*args):
        return "out"

    assert register("A", "B")(conv) is conv
    assert table == {"A": conv, "B": conv}
    assert register.__name__ == "register_thing" and register.__doc__ == "Registers a thing."


def test_a_key_registered_again_is_overwritten_last_wins():
    table: dict = {}
    register = registrar(table, "r", "")
    first, second = (lambda: 1), (lambda: 2)
    register("K", "L")(first)
    register("K")(second)
    assert table == {"K": second, "L": first}


def test_no_keys_registers_nothing():
    table: dict = {}
    registrar(table, "r", "")()(print)
    assert table == {}


def test_the_public_registrars_fill_their_own_tables():
    cases = [(torch_registry.register_module, torch_registry.MODULE_CONVERTERS, type("_Probe", (nn.Module,), {})),
             (torch_registry.register_function, torch_registry.FUNCTION_CONVERTERS, object()),
             (torch_registry.register_method_call, torch_registry.METHOD_CONVERTERS, "_certnn_probe_method"),
             (onnx_registry.register_onnx, onnx_registry.ONNX_CONVERTERS, "_CertnnProbeOp"),
             (from_script.register_script, from_script._REBUILD, "_CertnnProbeModule")]
    for register, table, key in cases:
        def conv(*args):
            return None
        try:
            assert register(key)(conv) is conv and table[key] is conv
        finally:
            table.pop(key, None)
    assert torch_registry.MODULE_CONVERTERS[nn.Linear] is not None
    assert onnx_registry.converter_for("Gemm") is onnx_registry.ONNX_CONVERTERS["Gemm"]
    assert torch.relu in torch_registry.FUNCTION_CONVERTERS
