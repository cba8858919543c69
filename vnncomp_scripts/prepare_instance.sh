#!/bin/bash
# VNN-COMP: prepare_instance.sh v1 CATEGORY ONNX VNNLIB
# Checks that the network and the property load (exit 0), before the timed run_instance.sh.
# Exit 1 when either cannot be read (the harness then skips the instance).
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
check_version "${1:-}"
CATEGORY="${2:?category}"
ONNX="${3:?onnx file}"
VNNLIB="${4:?vnnlib file}"
echo "certnn: preparing $CATEGORY: $ONNX $VNNLIB" >&2
exec "$PY" - "$ONNX" "$VNNLIB" <<'PYEOF'
import sys

from certnn.errors import CertnnError
from certnn.graph.from_onnx import onnx_to_model
from certnn.specs.vnnlib import load_vnnlib

onnx_path, spec_path = sys.argv[1], sys.argv[2]
try:
    prop = load_vnnlib(spec_path)
    try:
        onnx_to_model(onnx_path)
    except CertnnError as exc:  # a symbolic dimension: solved from the property, as `certnn verify` does
        from certnn.graph.from_onnx import SymbolicShapeError
        shape = exc.complete(prop.n_inputs) if isinstance(exc, SymbolicShapeError) else None
        if shape is None:
            raise
        onnx_to_model(onnx_path, input_shape=shape)
except CertnnError as exc:
    print(f"certnn: cannot prepare the instance: {exc}", file=sys.stderr)
    sys.exit(1)
PYEOF
