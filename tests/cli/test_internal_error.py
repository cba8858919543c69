"""An unexpected exception inside a command: exit 4, one line on stderr naming it, no traceback on the
terminal; the traceback is kept in a temporary file whose path the line gives (for the bug report)."""
from __future__ import annotations

import re
import tempfile

import certnn.cli.validate as validate
from certnn.cli.main import main


def test_internal_error_is_one_line_with_traceback_file(monkeypatch, capsys, tmp_path):
    def boom(args):
        raise RuntimeError("boom in validation")

    monkeypatch.setattr(validate, "validate_args", boom)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    code = main(["verify", "--model", "x.onnx", "--spec", "y.vnnlib"])
    err = capsys.readouterr().err
    assert code == 4
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "internal error (RuntimeError: boom in validation)" in err
    path = re.search(r"with (\S+\.txt)", err).group(1)
    text = open(path).read()
    assert "Traceback" in text and "boom in validation" in text


def test_vnnlib_solver_internal_error_is_one_line_with_traceback_file(monkeypatch, capsys, tmp_path):
    """certnn-vnnlib: the same contract (exit 4, one line on stderr, nothing on stdout, the traceback in the
    file the line names), whatever the verification raised."""
    import certnn.cli.vnnlib_inputs as inputs
    from certnn.cli.vnnlib_solver import main as solver_main

    def boom(args, qpath):
        raise RuntimeError("boom in the solver")

    monkeypatch.setattr(inputs, "checked_query", boom)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    code = solver_main(["verify", str(tmp_path / "q.vnnlib"), "--network", "f=x.onnx"])
    out, err = capsys.readouterr()
    assert code == 4
    assert out == ""
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("certnn-vnnlib: error: internal error (RuntimeError: boom in the solver); please report it")
    path = re.search(r"with (\S+\.txt)", err).group(1)
    assert path.startswith(str(tmp_path))
    text = open(path).read()
    assert "Traceback" in text and "boom in the solver" in text
