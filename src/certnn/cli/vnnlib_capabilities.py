"""The capabilities of the VNN-LIB solver interface (VNN-LIB 2.0, section 5.4) and certnn's answers
(``certnn-vnnlib supports CAPABILITY``, cli/vnnlib_solver.py)."""
from __future__ import annotations

#: the mandatory capabilities of section 5.4, in its order, and certnn's answers
OPSET_RANGE = ("7", "21")
CAPABILITIES = ("--onnx-opset-versions", "--onnx-element-types", "--onnx-operators", "--vnnlib-versions",
                "--hidden-node-theories", "--multiple-input-output-theories", "--multiple-network-theories",
                "--multiple-node-comparison-theories", "--arithmetic-complexity-theories",
                "--optimised-disjunctive-reasoning", "--serialise-assignments")
#: spellings the standard also uses (the example of 5.4.2) and optional capabilities certnn answers
ALIASES = {"--multiple-inputs-output-theories": "--multiple-input-output-theories"}
OPTIONAL = ("--unsat-proofs",)


def capability_answer(cap: str) -> str:
    """The exact stdout text answering one capability (trailing newline included)."""
    from ..specs.vnnlib2 import VNNLIB_VERSIONS

    cap = ALIASES.get(cap, cap)
    if cap == "--onnx-opset-versions":
        lines = list(OPSET_RANGE)
    elif cap == "--onnx-element-types":
        lines = ["real"]
    elif cap == "--onnx-operators":
        from ..graph.from_onnx import supported_onnx_ops
        lines = supported_onnx_ops()  # bare lines: every element type reported (real)
    elif cap == "--vnnlib-versions":
        lines = [VNNLIB_VERSIONS[0], VNNLIB_VERSIONS[-1]]
    elif cap == "--hidden-node-theories":
        lines = ["NH"]
    elif cap == "--multiple-input-output-theories":
        lines = ["SIO"]
    elif cap == "--multiple-network-theories":
        lines = ["SNET"]
    elif cap == "--multiple-node-comparison-theories":
        lines = ["SNC"]
    elif cap == "--arithmetic-complexity-theories":
        lines = ["BND", "OUTC"]
    elif cap == "--optimised-disjunctive-reasoning":
        lines = ["false"]  # certnn expands the assertions into disjunctive normal form
    elif cap == "--serialise-assignments":
        lines = ["true"]
    elif cap == "--unsat-proofs":
        lines = ["false"]
    else:  # pragma: no cover - argparse only lets the flags above through
        raise ValueError(cap)
    return "".join(f"{v}\n" for v in lines)
