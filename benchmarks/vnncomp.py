"""Issue 7 benchmark: `certnn verify` on the VNN-COMP 2022 instances in ../shared/data/vnncomp2022.

    python benchmarks/vnncomp.py                              # every family, 8 instances each, 15 s each
    python benchmarks/vnncomp.py --families acasxu,mnist_fc --cap 20 --timeout 30

Per family, a seeded random subset of `--cap` instances of its results file (the 2022 instances with
the majority verdict of 11 tools: unsat = holds, sat = a counterexample exists); each instance gets
min(--timeout, its competition timeout) seconds, one thread. Columns: holds / violated / unknown as
certnn answered, `wrong` = holds where the majority says sat or violated where it says unsat (a
violated answer always carries a counterexample checked by onnxruntime, so that would mean the majority
is wrong), seconds per instance (mean wall time, import included), the majority's unsat / sat counts on
the same subset, and alpha-beta-CROWN's solved count on that subset (competition hardware and
timeouts, so not a like-for-like speed comparison). Families whose models certnn cannot import are
reported with the error. Writes benchmarks/out/vnncomp.jsonl and benchmarks/out/vnncomp.md.
"""
from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, SHARED, append_jsonl, markdown_table  # noqa: E402

FAMILIES = ["acasxu", "mnist_fc", "rl_benchmarks", "reach_prob_density", "collins_rul_cnn", "oval21"]


def instances(family: str, cap: int, seed: int) -> list[dict]:
    root = SHARED / "vnncomp2022" / family
    timeouts = {}
    with open(root / "instances.csv") as fh:
        for row in csv.reader(fh):
            if len(row) >= 3:
                timeouts[(Path(row[0]).name, Path(row[1]).name)] = float(row[2])
    with open(root / "results_vnncomp2022_consensus.csv") as fh:
        rows = list(csv.DictReader(fh))
    rows = [r for r in rows if r.get("in_instances_csv", "1") == "1"]
    random.Random(seed).shuffle(rows)
    out = []
    for r in rows[:cap]:
        r = dict(r)
        r["timeout"] = timeouts.get((r["onnx"], r["vnnlib"]), 60.0)
        r["onnx_path"] = str(root / "onnx" / (r["onnx"] + ".gz"))
        r["vnnlib_path"] = str(root / "vnnlib" / (r["vnnlib"] + ".gz"))
        out.append(r)
    return out


def run_one(r: dict, timeout: float, bab: dict | None = None, verify: dict | None = None) -> dict:
    from certnn.bab.config import BabConfig
    from certnn.certify.verify import VerifyConfig, verify_property
    from certnn.errors import CertnnError
    from certnn.graph.from_onnx import onnx_to_model
    from certnn.specs.vnnlib import load_vnnlib, property_violated

    t0 = time.perf_counter()
    rec = {"onnx": r["onnx"], "vnnlib": r["vnnlib"], "majority": r["majority"],
           "abcrown": r.get("alpha_beta_crown", "")}
    try:
        om = onnx_to_model(r["onnx_path"])
        prop = load_vnnlib(r["vnnlib_path"])
        t = min(timeout, float(r["timeout"]))
        cfg = VerifyConfig.from_mapping({**(verify or {}), "timeout": t}).replace(
            bab_config=BabConfig.from_mapping(bab or {}))
        res = verify_property(om.graph, prop, cfg, reference=om.run_onnxruntime)
        rec.update(verdict=res.verdict, decided_by=res.decided_by, stages=res.stages)
        if res.verdict == "violated":  # re-check independently of the verifier
            y = om.run_onnxruntime(res.x.reshape((1,) + om.graph.input_shape))[0]
            rec["cex_ok"] = bool(property_violated(prop, res.x, y))
    except CertnnError as exc:
        rec.update(verdict="error", error=f"{type(exc).__name__}: {str(exc)[:160]}")
    rec["seconds"] = time.perf_counter() - t0
    return rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--cap", type=int, default=8, help="instances per family")
    ap.add_argument("--timeout", type=float, default=15.0, help="seconds per instance (at most the competition's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--bab", default="{}", help="BabConfig overrides as JSON (e.g. recompute_intermediate: true)")
    ap.add_argument("--verify", default="{}", help="VerifyConfig overrides as JSON (e.g. split_branching: sb)")
    ap.add_argument("--only", default="", help="comma-separated substrings: run only instances whose vnnlib name has one")
    ap.add_argument("--doc", default=None, help="also write the table to this Markdown file")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    jl = OUT / "vnncomp.jsonl"
    rows = []
    for fam in a.families.split(","):
        recs = []
        for r in instances(fam, a.cap, a.seed):
            if a.only and not any(k in r["vnnlib"] for k in a.only.split(",")):
                continue
            rec = run_one(r, a.timeout, json.loads(a.bab), json.loads(a.verify))
            rec["family"] = fam
            append_jsonl(jl, rec)
            recs.append(rec)
            print(fam, rec["onnx"], rec["vnnlib"], rec["majority"], "->", rec["verdict"],
                  f"{rec['seconds']:.1f}s", rec.get("error", ""), flush=True)
        n = len(recs)
        cnt = {v: sum(x["verdict"] == v for x in recs) for v in ("holds", "violated", "unknown", "error")}
        wrong = sum((x["verdict"] == "holds" and x["majority"] == "sat") or
                    (x["verdict"] == "violated" and (x["majority"] == "unsat" or not x.get("cex_ok")))
                    for x in recs)
        agree = sum((x["verdict"] == "holds" and x["majority"] == "unsat") or
                    (x["verdict"] == "violated" and x["majority"] == "sat") for x in recs)
        maj_unsat = sum(x["majority"] == "unsat" for x in recs)
        maj_sat = sum(x["majority"] == "sat" for x in recs)
        ab = sum(x["abcrown"] in ("sat", "unsat") for x in recs)
        err = next((x["error"] for x in recs if x["verdict"] == "error"), "")
        rows.append([fam, n, cnt["holds"], cnt["violated"], cnt["unknown"], cnt["error"], wrong, agree,
                     sum(x["seconds"] for x in recs) / max(1, n), maj_unsat, maj_sat, ab, err[:90]])
    cols = ["family", "instances", "holds", "violated", "unknown", "error", "wrong", "agree w/ majority",
            "s/instance", "majority unsat", "majority sat", "abcrown solved", "note"]
    table = markdown_table(cols, rows)
    head = (f"VNN-COMP 2022 subset: {a.cap} instances per family (seed {a.seed}), timeout "
            f"min({a.timeout:g} s, competition), {a.threads} thread(s), `python benchmarks/vnncomp.py "
            f"--cap {a.cap} --timeout {a.timeout:g}"
            + (f" --bab '{a.bab}'" if a.bab != "{}" else "")
            + (f" --verify '{a.verify}'" if a.verify != "{}" else "") + "`\n\n")
    (OUT / "vnncomp.md").write_text(head + table + "\n")
    if a.doc:
        Path(a.doc).write_text("# VNN-COMP 2022 benchmark\n\n" + head + table + "\n")
    print(table)


if __name__ == "__main__":
    main()
