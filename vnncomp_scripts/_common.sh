# Shared by the VNN-COMP scripts: the tool folder and the Python that runs certnn.
# CERTNN_PYTHON overrides the interpreter (default: the venv install_tool.sh makes, else python3).
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOOL_DIR="$(dirname "$SCRIPT_DIR")"
if [ -n "${CERTNN_PYTHON:-}" ]; then
    PY="$CERTNN_PYTHON"
elif [ -x "$TOOL_DIR/.venv-vnncomp/bin/python" ]; then
    PY="$TOOL_DIR/.venv-vnncomp/bin/python"
else
    PY=python3
fi

check_version() {
    if [ "$1" != "v1" ]; then
        echo "expected VNN-COMP script version v1, got '$1'" >&2
        exit 1
    fi
}
