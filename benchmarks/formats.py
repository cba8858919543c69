"""Issue 15 measurements: the VNN-COMP 2022 models and properties of the shared data through certnn's importers.

    python benchmarks/formats.py            # all 60 models, all 443 properties

1. every ONNX model: import (with onnxruntime parity), seconds, node count, and the largest |IR - onnxruntime|
   relative to the outputs' scale on 20 points of a property box of its family;
2. every VNN-LIB file: parsed by certnn's own VNN-LIB 1.0 parser and by the vnnlib package (1.0 translated
   to 2.0), seconds of each, and whether the regions agree.

One thread; prints a markdown table per part (recorded in docs/benchmarks.md).
"""
from __future__ import annotations

import gzip
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, markdown_table  # noqa: E402


def models() -> None:
    from certnn.graph.from_onnx import onnx_to_model
    from certnn.specs.vnnlib import load_vnnlib

    rows = []
    by_family = defaultdict(list)
    for p in sorted((SHARED / "vnncomp2022").glob("*/onnx/*.onnx*")):
        by_family[p.parts[-3]].append(p)
    for fam, paths in by_family.items():
        specs = sorted((SHARED / "vnncomp2022" / fam / "vnnlib").glob("*.vnnlib.gz"))
        props = [load_vnnlib(s) for s in specs[:20]]
        worst, secs, ok = 0.0, [], 0
        nodes = []
        for p in paths:
            t = time.perf_counter()
            om = onnx_to_model(p)
            secs.append(time.perf_counter() - t)
            ok += 1
            nodes.append(len(om.graph.order))
            prop = next((q for q in props if q.n_inputs == int(np.prod(om.graph.input_shape))), None)
            if prop is None:
                continue
            lo, hi = prop.regions[0].input_box
            x = lo + (hi - lo) * np.random.default_rng(0).uniform(size=(20,) + lo.shape)
            x = x.astype(np.float32).astype(np.float64).reshape((-1,) + om.graph.input_shape)
            want = om.run_onnxruntime(x)
            got = om.graph.forward(torch.as_tensor(x)).reshape(len(x), -1).numpy()
            worst = max(worst, float(np.abs(got - want).max() / (1 + np.abs(want).max())))
        rows.append([fam, len(paths), ok, f"{min(nodes)}-{max(nodes)}", f"{np.mean(secs):.3f}", f"{worst:.1e}"])
    print(markdown_table(["family", "models", "imported", "IR nodes", "s / import", "max |IR - ort| / (1 + |ort|)"],
                         rows))


def properties() -> None:
    from certnn.specs import vnnlib2
    from certnn.specs.vnnlib import parse_vnnlib

    per = defaultdict(lambda: [0, 0, 0.0, 0.0])
    for p in sorted((SHARED / "vnncomp2022").glob("*/vnnlib/*.vnnlib.gz")):
        text = gzip.decompress(p.read_bytes()).decode()
        t = time.perf_counter()
        a = parse_vnnlib(text, str(p))
        t1 = time.perf_counter()
        b = vnnlib2.parse_query(text, str(p)).property()
        t2 = time.perf_counter()
        same = (a.n_inputs, a.n_outputs) == (b.n_inputs, b.n_outputs) and _canon(a) == _canon(b)
        r = per[p.parts[-3]]
        r[0] += 1
        r[1] += int(same)
        r[2] += t1 - t
        r[3] += t2 - t1
    rows = [[f, n, s, f"{tc:.2f}", f"{tv:.2f}"] for f, (n, s, tc, tv) in per.items()]
    tot = [sum(r[i] for r in per.values()) for i in range(4)]
    rows.append(["all", tot[0], tot[1], f"{tot[2]:.2f}", f"{tot[3]:.2f}"])
    print(markdown_table(["family", "files", "same regions", "certnn parser s", "vnnlib package s"], rows))


def _canon(prop):
    out = {}
    for r in prop.regions:
        key = (tuple(r.input_box.lower + 0.0), tuple(r.input_box.upper + 0.0))
        s = out.setdefault(key, set())
        for C, d in r.output_constraint:
            s.add(tuple(sorted((tuple(C[i] + 0.0), float(d[i]) + 0.0) for i in range(C.shape[0]))))
    return out


if __name__ == "__main__":
    torch.set_num_threads(1)
    models()
    print()
    properties()
