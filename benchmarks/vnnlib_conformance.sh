#!/bin/sh
# Conformance run of certnn's VNN-LIB solver interface with vnnlib-satisfactory (docs/vnnlib.md,
# docs/benchmarks.md). The suite needs its own environment (typer, onnxscript):
#   python3 -m venv /tmp/satvenv && /tmp/satvenv/bin/pip install vnnlib-satisfactory==1.0.1
# Usage: sh benchmarks/vnnlib_conformance.sh [/tmp/satvenv/bin/vnnlib-satisfactory] [--assume-real]
set -e
SAT=${1:-vnnlib-satisfactory}
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$REPO/.venv/bin/python}
WORK=${WORK:-$(mktemp -d)}
SOLVER=$WORK/certnn-vnnlib
if [ "$2" = "--assume-real" ]; then
  printf '#!/bin/sh\nif [ "$1" = verify ]; then shift; set -- verify --assume-real "$@"; fi\nPYTHONPATH=%s/src exec %s -m certnn.cli.vnnlib_solver "$@"\n' "$REPO" "$PY" > "$SOLVER"
else
  printf '#!/bin/sh\nPYTHONPATH=%s/src exec %s -m certnn.cli.vnnlib_solver "$@"\n' "$REPO" "$PY" > "$SOLVER"
fi
chmod +x "$SOLVER"
cd "$WORK"
for c in opset vnnlib serialise-assignments; do "$SAT" compliance $c --solver "$SOLVER"; done
"$SAT" run --solver "$SOLVER" --timeout 60 --no-verbose | tail -3
echo "report: $WORK/.vnnlib-satisfactory/report.json"
