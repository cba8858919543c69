"""Where the time of `certnn verify`'s branch and bound goes, on VNN-COMP 2022 instances (issue 12).

    python benchmarks/bab_profile.py --net 256x6 --prop prop_8_0.05 --timeout 60
    python benchmarks/bab_profile.py --net 256x4 --prop prop_14_0.05 --progress --cprofile 25
    python benchmarks/bab_profile.py --net 256x6 --prop prop_8_0.05 --bab '{"batch": 512}'

Runs verify_property on one mnist_fc instance (or --family / --onnx / --vnnlib given in full), one
thread, and prints: the stages (attack, ibp, crown, bab, lp, milp) with their seconds, branch and bound's
phases (root alpha-CROWN, capture = the backward pass giving branching scores and candidate points,
falsify = checking / attacking candidates, branch = scores + FSB's trial bounds, bound = the children's
beta-CROWN optimisation, finish = fully split sub-domains), optimiser iterations per bound call, sub-domains
bounded per second; with --progress one line per round (open sub-domains, depth, batch, the worst open
margin); with --cprofile N the N functions with the most cumulative time. --bab overrides BabConfig
fields (a JSON mapping; nested AlphaConfig fields as mappings). Appends a JSON line to
benchmarks/out/bab_profile.jsonl.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, SHARED, append_jsonl  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", default="mnist_fc")
    ap.add_argument("--net", default="256x6", help="mnist_fc net: 256x2, 256x4 or 256x6")
    ap.add_argument("--prop", default="prop_8_0.05", help="vnnlib name without extension")
    ap.add_argument("--onnx", help="full path (overrides --family/--net)")
    ap.add_argument("--vnnlib", help="full path (overrides --family/--prop)")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--bab", default="{}", help="BabConfig overrides as JSON")
    ap.add_argument("--progress", action="store_true", help="print one line per branch-and-bound round")
    ap.add_argument("--cprofile", type=int, default=0, help="print the top N functions by cumulative time")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t_start = time.perf_counter()

    from certnn.bab.config import BabConfig
    from certnn.certify import verify_bab
    from certnn.certify.verify import VerifyConfig, verify_property
    from certnn.graph.from_onnx import onnx_to_model
    from certnn.specs.vnnlib import load_vnnlib

    root = SHARED / "vnncomp2022" / a.family
    onnx = a.onnx or str(root / "onnx" / f"mnist-net_{a.net}.onnx.gz")
    vnnlib = a.vnnlib or str(root / "vnnlib" / f"{a.prop}.vnnlib.gz")
    bab_cfg = BabConfig.from_mapping(json.loads(a.bab))
    rounds = []
    if a.progress:  # the verifier does not expose round callbacks: wrap the driver for this script only
        inner = verify_bab.branch_and_bound

        def traced(*args, **kw):
            def show(info):
                rounds.append(info)
                print("  round {round}: open {open}, bounded {bounded}, depth {depth}, batch {batch}, "
                      "worst margin {worst_margin:.4g}, {seconds:.1f} s".format(**info), flush=True)
            return inner(*args, progress=show, **kw)
        verify_bab.branch_and_bound = traced

    om = onnx_to_model(onnx)
    prop = load_vnnlib(vnnlib)
    cfg = VerifyConfig(timeout=a.timeout, bab_config=bab_cfg)
    prof = cProfile.Profile() if a.cprofile else None
    if prof:
        prof.enable()
    cpu0 = time.process_time()
    res = verify_property(om.graph, prop, cfg, reference=om.run_onnxruntime, started_at=t_start)
    cpu = time.process_time() - cpu0
    if prof:
        prof.disable()
    print(f"{Path(onnx).name} {Path(vnnlib).name}: {res.verdict} by {res.decided_by} in {res.time_s:.1f} s "
          f"(verify CPU {cpu:.1f} s)")
    for st in res.stages:
        print("  " + json.dumps(st))
        if st["stage"] == "bab" and st.get("bound"):
            calls = max(1, st.get("bound_calls", 1))
            print(f"  bab: {st['domains'] / max(1e-9, st['seconds']):.0f} sub-domains / s, "
                  f"{st.get('iterations', 0) / calls:.1f} iterations per bound call")
    if prof:
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(a.cprofile)
        print(out.getvalue())
    append_jsonl(OUT / "bab_profile.jsonl", {"onnx": Path(onnx).name, "vnnlib": Path(vnnlib).name,
                                             "bab": json.loads(a.bab), "timeout": a.timeout,
                                             "verdict": res.verdict, "decided_by": res.decided_by,
                                             "seconds": res.time_s, "cpu_s": cpu, "stages": res.stages,
                                             "rounds": rounds})


if __name__ == "__main__":
    main()
