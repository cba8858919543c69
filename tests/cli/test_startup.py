"""`certnn --help`, `--version`, every `certnn CMD --help` and argument errors answer without importing torch,
numpy, scipy, onnx or rich (issue 13: start-up). Checked in a fresh interpreter, since this test process has
imported torch already."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

PROBE = r"""
import contextlib, io, json, sys
from certnn.cli.main import SUBCOMMANDS, main
HEAVY = ("torch", "numpy", "scipy", "onnx", "onnxruntime", "rich", "highspy")
calls = [["--help"], ["--version"], ["no-such-command"]] + [[c, "--help"] for c in SUBCOMMANDS if c != "vnnlib"]
calls += [["radius", "--norm", "7"], ["radius", "--model"], ["certify", "--model", "m.py:f", "--batch-size", "x"],
          ["attack", "--unknown-flag"], ["train"]]
out = []
for argv in calls:
    buf_out, buf_err = io.StringIO(), io.StringIO()
    code = None
    with contextlib.redirect_stdout(buf_out), contextlib.redirect_stderr(buf_err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    out.append({"argv": argv, "code": code, "chars": len(buf_out.getvalue()) + len(buf_err.getvalue()),
                "heavy": [m for m in HEAVY if m in sys.modules]})
print(json.dumps(out))
"""


def _probe() -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    res = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_help_and_argument_errors_import_no_heavy_module():
    rows = _probe()
    for row in rows:
        assert row["heavy"] == [], f"certnn {' '.join(row['argv'])} imported {row['heavy']}"
        assert row["chars"] > 0, f"certnn {' '.join(row['argv'])} said nothing"
    codes = {" ".join(r["argv"]): r["code"] for r in rows}
    assert codes["--help"] == 0 and codes["--version"] == 0 and codes["radius --help"] == 0
    assert codes["radius --norm 7"] == 2 and codes["attack --unknown-flag"] == 2 and codes["no-such-command"] == 2
    assert codes["certify --model m.py:f --batch-size x"] == 2


def test_import_certnn_is_lazy_and_complete():
    code = ("import sys, certnn; assert 'torch' not in sys.modules; "
            "missing = [n for n in certnn.__all__ if getattr(certnn, n, None) is None]; "
            "assert not missing, missing; assert callable(certnn.certify) and certnn.certify.__name__ == 'certify'; "
            "import certnn.certify.radius; assert certnn.certify.__name__ == 'certify'; print('ok')")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


def test_builtin_method_names_match_the_registry():
    """The parser's list (no torch) names exactly the methods engine/methods.py registers (fresh process: tests
    may register more)."""
    from certnn.engine.method_names import BUILTIN_METHODS

    env = {**os.environ, "PYTHONPATH": str(SRC)}
    res = subprocess.run([sys.executable, "-c", "from certnn.engine.methods import METHODS; print(','.join(sorted(METHODS)))"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert tuple(res.stdout.strip().split(",")) == BUILTIN_METHODS


def test_lazy_packages_export_what_they_list():
    import importlib

    for pkg in ("certify", "optimize", "data", "report", "specs", "estimate", "attacks", "models", "bab"):
        mod = importlib.import_module(f"certnn.{pkg}")
        for name in mod.__all__:
            assert getattr(mod, name) is not None, f"certnn.{pkg}.{name}"
