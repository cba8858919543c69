"""A corpus of malformed inputs: each must end with its documented exit code and a message naming what is
wrong, never a traceback or an internal error (exit 4). Run by `make test` (not slow): tiny models only."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from certnn.cli.main import main

MLP = ("import torch\n\ndef make():\n    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 8), "
       "torch.nn.ReLU(), torch.nn.Linear(8, 3))\n\ndef broken():\n    raise RuntimeError('factory broke')\n"
       "\ndef tanh():\n    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 8), torch.nn.Tanh(), "
       "torch.nn.Linear(8, 3))\n")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    (d / "net.py").write_text(MLP)
    torch.manual_seed(0)
    ns: dict = {}
    exec(MLP, ns)
    m, t = ns["make"](), ns["tanh"]()
    torch.save(m.state_dict(), d / "w.pt")
    torch.save(t.state_dict(), d / "wt.pt")
    x = torch.rand(4, 2, 3, dtype=torch.float64)
    np.savez(d / "d.npz", x=x.numpy(), y=m.double()(x).argmax(1).numpy())
    yt = t.double()(x).argmax(1).numpy()
    xo = x.clone()
    xo[0, 0, 0] = 1.0 + 1e-9  # a hair outside the [0, 1] box: float rounding
    np.savez(d / "edge.npz", x=xo.numpy(), y=yt)
    xf = x.clone()
    xf[1, 0, 0] = 1.5  # far outside the box
    np.savez(d / "far.npz", x=xf.numpy(), y=yt)
    np.savez(d / "uint8.npz", x=(x.numpy() * 255).astype(np.uint8), y=yt)
    xn = x.numpy().copy()
    xn[2, 0, 0] = np.nan
    np.savez(d / "nan.npz", x=xn, y=yt)
    np.savez(d / "noy.npz", x=x.numpy())
    np.savez(d / "short_y.npz", x=x.numpy(), y=yt[:2])
    np.savez(d / "frac_y.npz", x=x.numpy(), y=yt + 0.5)
    np.savez(d / "shape.npz", x=np.zeros((3, 5)), y=np.zeros(3, dtype=int))
    np.savez(d / "flat.npz", x=np.zeros(3), y=np.zeros(3, dtype=int))
    np.savez(d / "label9.npz", x=x.numpy(), y=np.full(4, 9))
    np.savez(d / "objects.npz", x=np.array([{"a": 1}] * 4, dtype=object), y=yt)
    (d / "garbage.npz").write_bytes(b"\x80\x04garbage that is not an npz" * 10)
    (d / "empty.npz").write_bytes(b"")
    (d / "garbage.pt").write_bytes(b"not a torch file at all\n" * 10)
    (d / "text.pt").write_text("hello")
    (d / "dir").mkdir()
    (d / "afile").write_text("x")
    (d / "bad.vnnlib").write_text("(declare-const X_0 Real)\n(assert (>= X_0 \n")
    return d


def _argv(d, spec: str) -> list[str]:
    return [a.replace("{d}", str(d)) for a in spec.split()]


RAD = "radius --model {d}/net.py:make --weights {d}/w.pt --quiet --bisection-steps 2"
CERT = "certify --model {d}/net.py:make --weights {d}/w.pt --quiet"
TANH = "radius --model {d}/net.py:tanh --weights {d}/wt.pt --quiet --bisection-steps 2 --method crown --clip 0 1"

# (id, arguments, exit code, message pattern on stderr)
CASES = [
    # output paths: refused before the work starts
    ("json-is-dir", RAD + " --data {d}/d.npz --json {d}/dir", 2, r"--json .*is a directory"),
    ("json-parent-is-file", RAD + " --data {d}/d.npz --json {d}/afile/r.json", 2, r"afile is a file, not a folder"),
    ("json-deep-parent-file", CERT + " --data {d}/d.npz --eps 0.1 --json {d}/afile/a/b.json", 2, r"is a file"),
    ("json-empty-name", RAD + " --data {d}/d.npz --json .", 2, r"--json"),
    ("report-out-is-file", "report --model {d}/net.py:make --weights {d}/w.pt --data {d}/d.npz --quiet "
                           "--out {d}/afile", 2, r"--out .*is a file; give a folder"),
    ("report-out-parent-file", "report --model {d}/net.py:make --weights {d}/w.pt --data {d}/d.npz --quiet "
                               "--out {d}/afile/rep", 2, r"is a file, not a folder"),
    ("train-out-is-dir", "train --task digits --out {d}/dir --quiet --epochs 1", 2, r"--out .*is a directory"),
    ("verify-out-is-dir", "verify --model {d}/x.onnx --spec {d}/bad.vnnlib --out {d}/dir", 2, r"is a directory"),
    ("verify-json-parent-file", "verify --model {d}/x.onnx --spec {d}/bad.vnnlib --json {d}/afile/j.json", 2,
     r"is a file"),
    # selections and numbers
    ("samples-negative", RAD + " --data {d}/d.npz --samples -1", 2, r"--samples -1: must be at least 1"),
    ("samples-zero", RAD + " --data {d}/d.npz --samples 0", 2, r"--samples 0: must be at least 1"),
    ("start-negative", RAD + " --data {d}/d.npz --start -2", 2, r"--start -2: must be 0 or more"),
    ("start-beyond", RAD + " --data {d}/d.npz --start 10", 2, r"start index 10 beyond the 4 samples"),
    ("batch-size-zero", RAD + " --data {d}/d.npz --batch-size 0", 2, r"--batch-size 0"),
    ("bisection-negative", RAD + " --data {d}/d.npz --bisection-steps -1", 2, r"--bisection-steps -1"),
    ("eps-max-inf", RAD + " --data {d}/d.npz --eps-max inf", 2, r"--eps-max inf is not a finite number"),
    ("eps-init-zero", RAD + " --data {d}/d.npz --eps-init 0", 2, r"--eps-init 0.0: must be positive"),
    ("eps-init-above-max", RAD + " --data {d}/d.npz --eps-init 5 --eps-max 1", 2, r"above --eps-max"),
    ("certify-eps-negative", CERT + " --data {d}/d.npz --eps -0.1", 2, r"--eps -0.1: must be 0 or more"),
    ("certify-eps-nan", CERT + " --data {d}/d.npz --eps nan", 2, r"--eps nan is not a finite number"),
    ("clip-reversed", RAD + " --data {d}/d.npz --clip 1 0", 2, r"LO must not exceed HI"),
    ("clip-nan", RAD + " --data {d}/d.npz --clip nan 1", 2, r"--clip nan is not a finite number"),
    ("attack-steps-zero", RAD + " --data {d}/d.npz --attack --attack-steps 0", 2, r"--attack-steps 0"),
    ("seed-negative", RAD + " --data {d}/d.npz --seed -3", 2, r"--seed -3"),
    ("alpha-lr-zero", RAD + " --data {d}/d.npz --alpha-lr 0", 2, r"--alpha-lr"),
    ("complete-timeout-nan", RAD + " --data {d}/d.npz --complete-timeout nan", 2, r"--complete-timeout"),
    ("verify-timeout-nan", "verify --model {d}/x.onnx --spec {d}/bad.vnnlib --timeout nan", 2,
     r"--timeout nan is not a finite number"),
    ("verify-timeout-negative", "verify --model {d}/x.onnx --spec {d}/bad.vnnlib --timeout -5", 2,
     r"--timeout -5.0: must be positive"),
    ("method-trailing-comma", RAD + " --data {d}/d.npz --method crown,", 2, r"empty entry"),
    ("method-leading-comma", RAD + " --data {d}/d.npz --method ,crown", 2, r"empty entry"),
    ("methods-double-comma", "report --model {d}/net.py:make --weights {d}/w.pt --data {d}/d.npz --quiet "
                             "--out {d}/rep --methods crown,,ibp", 2, r"empty entry"),
    ("method-unknown", RAD + " --data {d}/d.npz --method crow", 2, r"unknown method"),
    ("frames-on-mlp", RAD + " --data {d}/d.npz --frames 0", 2, r"--frames .*sequence model"),
    ("frame-eps-on-mlp", RAD + " --data {d}/d.npz --frame-eps 1,1", 2, r"--frame-eps .*sequence model"),
    ("frames-empty-entry", RAD + " --data {d}/d.npz --frames 0,,1", 2, r"empty entry"),
    ("input-shape-mismatch", RAD + " --data {d}/d.npz --input-shape 7", 2, r"--input-shape"),
    ("max-memory-zero", RAD + " --data {d}/d.npz --max-memory 0", 2, r"--max-memory"),
    ("max-memory-garbage", RAD + " --data {d}/d.npz --max-memory lots", 2, r"--max-memory"),
    # data files
    ("uint8-images", RAD + " --data {d}/uint8.npz", 2, r"uint8 \(raw pixels 0..255\?"),
    ("nan-data", RAD + " --data {d}/nan.npz", 2, r"NaN or infinite"),
    ("missing-y", RAD + " --data {d}/noy.npz", 2, r"must hold arrays 'x' and 'y'"),
    ("short-y", RAD + " --data {d}/short_y.npz", 2, r"'y' must have shape \(4,\)"),
    ("fractional-labels", RAD + " --data {d}/frac_y.npz", 2, r"integer class labels"),
    ("wrong-shape", RAD + " --data {d}/shape.npz", 2, r"shape"),
    ("flat-x", RAD + " --data {d}/flat.npz", 2, r"one row per sample"),
    ("label-out-of-range", RAD + " --data {d}/label9.npz", 2, r"label"),
    ("object-arrays", RAD + " --data {d}/objects.npz", 2, r"object arrays .*numeric arrays only"),
    ("garbage-npz", RAD + " --data {d}/garbage.npz", 2, r"is not an .npz file"),
    ("empty-npz", RAD + " --data {d}/empty.npz", 2, r"is not an .npz file"),
    ("missing-data", RAD + " --data {d}/nope.npz", 2, r"not found"),
    ("clip-far-outside", TANH + " --data {d}/far.npz", 2, r"outside"),
    # models
    ("missing-model", "radius --model {d}/nope.py:make --data {d}/d.npz --quiet", 2, r"not found"),
    ("factory-raises", "radius --model {d}/net.py:broken --random-init --data {d}/d.npz --quiet", 2, r"factory broke"),
    ("no-such-factory", "radius --model {d}/net.py:nothing --random-init --data {d}/d.npz --quiet", 2, r"no callable factory"),
    ("garbage-weights", "radius --model {d}/net.py:make --weights {d}/garbage.pt --data {d}/d.npz --quiet", 2,
     r"not a PyTorch file"),
    ("garbage-model-pt", "radius --model {d}/garbage.pt --data {d}/d.npz --quiet", 2, r"not a PyTorch file"),
    ("text-model-pt", "radius --model {d}/text.pt --data {d}/d.npz --quiet", 2, r"not a PyTorch file"),
    ("wrong-weights", "radius --model {d}/net.py:tanh --weights {d}/d.npz --data {d}/d.npz --quiet", 2,
     r"PyTorch file"),
    ("missing-spec", "verify --model {d}/net.py:make --spec {d}/nope.vnnlib --quiet", 2, r"No such file|not found"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_malformed_input_is_refused_clearly(files, case, capsys):
    _, spec, code, pattern = case
    try:
        rc = main(_argv(files, spec))
    except SystemExit as exc:  # argparse's own errors (unknown flag, wrong type) exit 2 with usage
        rc = exc.code
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, err
    assert rc == code, err
    assert re.search(pattern, err), err
    assert "trust-pickle" not in err and "allow_pickle" not in err, err


def test_corpus_is_large_enough():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)


def test_clip_within_rounding_is_clamped_and_said(files, capsys, tmp_path):
    """Finding 5: a centre 1e-9 outside the clip box on a tanh net gave lower > upper or a ValueError
    from the S-shape relaxation (exit 4); it is clamped into the box, said on stderr and in the JSON."""
    import json

    out = tmp_path / "r.json"
    rc = main(_argv(files, TANH + " --data {d}/edge.npz --json ") + [str(out)])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "Traceback" not in err
    doc = json.loads(out.read_text())
    assert doc["settings"]["clip_clamped"]["values"] == 1
    assert all(s["certified_radius"] >= 0 for s in doc["samples"])
