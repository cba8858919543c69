#!/bin/bash
# VNN-COMP: run_instance.sh v1 CATEGORY ONNX VNNLIB RESULT_FILE TIMEOUT
# Writes RESULT_FILE: sat (with the counterexample), unsat, unknown or timeout. The timeout counts from the
# process start (imports and model loading included); certnn keeps a second to write the file.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
check_version "${1:-}"
CATEGORY="${2:?category}"
ONNX="${3:?onnx file}"
VNNLIB="${4:?vnnlib file}"
RESULT="${5:?result file}"
TIMEOUT="${6:?timeout (seconds)}"
echo "certnn: $CATEGORY: $ONNX $VNNLIB (timeout $TIMEOUT s)" >&2
"$PY" -m certnn verify --model "$ONNX" --spec "$VNNLIB" --timeout "$TIMEOUT" --out "$RESULT" --quiet
rc=$?
if [ ! -s "$RESULT" ]; then  # a crash before writing: say so in the harness' words
    echo "unknown" > "$RESULT"
fi
exit $rc
