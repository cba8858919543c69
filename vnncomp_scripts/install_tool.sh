#!/bin/bash
# VNN-COMP: install_tool.sh v1
# Installs certnn with its ONNX / VNN-LIB / LP extras into <tool>/.venv-vnncomp.
# CERTNN_TORCH_INDEX picks the torch build: https://download.pytorch.org/whl/cpu (default, CPU only) or
# e.g. https://download.pytorch.org/whl/cu124 for a GPU machine.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
check_version "${1:-}"
INDEX="${CERTNN_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
python3 -m venv "$TOOL_DIR/.venv-vnncomp"
"$TOOL_DIR/.venv-vnncomp/bin/pip" install --upgrade pip
"$TOOL_DIR/.venv-vnncomp/bin/pip" install --index-url "$INDEX" "torch>=2.2"
"$TOOL_DIR/.venv-vnncomp/bin/pip" install "$TOOL_DIR[onnx,exact]"
"$TOOL_DIR/.venv-vnncomp/bin/python" -m certnn --version
