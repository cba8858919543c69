"""`certnn demo`: train a small MLP on scikit-learn's digits (seconds) and certify it."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from .common import add_log_args, Console, Stopwatch, add_method_list_arg, parse_methods
from .precision_args import add_precision_args, precision_kwargs

if TYPE_CHECKING:  # imported by the functions that use them: `certnn --help` does not import torch
    import torch
    from ..certify.radius import CertifyConfig, Certifier
    from ..data.digits import load_digits_split
    from ..graph.from_torch import from_torch
    from ..train.simple import accuracy, mlp, train_classifier


def register(sub) -> None:
    p = sub.add_parser("demo", help="train a small MLP on scikit-learn's digits and certify it",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--samples", type=int, default=20, help="test samples to certify")
    add_method_list_arg(p, "ibp,fastlin,crown,lipschitz")
    p.add_argument("--norm", default="inf,2", help="Lp norm(s) of the ball, separated by commas: inf, 2, 1")
    p.add_argument("--norms", dest="norm", help=argparse.SUPPRESS)
    p.add_argument("--out", default="demo_out", help="folder for the trained model and data (npz)")
    p.add_argument("--seed", type=int, default=0, help="random seed (training, attacks)")
    p.add_argument("--quiet", action="store_true", help="no table or progress output")
    add_log_args(p)
    add_precision_args(p, what="where bounds, attacks and CLEVER run (training stays on the cpu)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..graph.from_torch import from_torch

    con = Console.for_args(args)
    sw = Stopwatch()
    model, x, y = _train(args, con, sw)
    out = Path(args.out)
    _save(out, model, x, y)
    graph = from_torch(model, (64,))
    methods = parse_methods(args.method)
    rows = _radius_rows(args, con, graph, x, y, methods)
    con.table(f"digits MLP: mean radius over the correctly classified of {len(y)} test samples (ball clipped to [0,1])",
              ["norm", "method", "certified radius (lower bound)", "attack radius (upper bound)", "s / sample"], rows)
    _report(args, con, graph, x, y, out)
    con.print(f"model and data written to {out}/ ; try:\n  certnn radius --model {out}/digits_mlp.py:make "
              f"--weights {out}/digits_mlp.pt --data {out}/digits_test.npz --norm 2 --method crown,fastlin --attack")
    con.print(f"done in {sw():.1f} s")
    return 0


def _train(args, con, sw):
    """(a 64-32-32-10 ReLU MLP trained on the digits' training split, the first --samples test inputs, labels)."""
    import torch

    from ..data.digits import load_digits_split
    from ..train.simple import accuracy, mlp, train_classifier

    xtr, ytr, xte, yte = load_digits_split()
    torch.manual_seed(args.seed)
    model = mlp([64, 32, 32, 10])
    with con.progress("training (epochs)", 40) as task:
        train_classifier(model, xtr, ytr, epochs=40, batch_size=64, lr=3e-3, seed=args.seed, on_epoch=task)
    con.print(f"trained a 64-32-32-10 ReLU MLP on {len(ytr)} digits in {sw():.1f} s; "
              f"test accuracy {accuracy(model, xte, yte):.3f}")
    return model, xte[:args.samples], yte[:args.samples]


def _save(out: Path, model, x, y) -> None:
    """The model (FILE.py:make + state dict) and the test samples (npz), for the `certnn radius` hint."""
    import numpy as np
    import torch

    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "digits_mlp.pt")
    (out / "digits_mlp.py").write_text(
        "import torch\n\n\ndef make():\n    return torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), "
        "torch.nn.Linear(32, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))\n")
    np.savez(out / "digits_test.npz", x=x.numpy(), y=y.numpy())


def _radius_rows(args, con, graph, x, y, methods: list[str]) -> list:
    """Per norm and method: mean certified radius, mean attack radius (FMN) and seconds per sample; a
    certified radius above an attack radius is a SoundnessError."""
    import torch

    from ..attacks import attack_radius
    from ..certify.radius import CertifyConfig, Certifier
    from ..config import parse_norm

    rows = []
    for norm in [parse_norm(n) for n in args.norm.split(",") if n.strip()]:
        with con.progress(f"L{norm} attack radius (FMN)", len(y)) as cb:
            ar = attack_radius(graph, x, y, norm, clip=(0.0, 1.0), progress=cb.detail, device=args.device)
        for m in methods:
            cert = Certifier(graph, CertifyConfig(method=m, norm=norm, clip=(0.0, 1.0)), **precision_kwargs(args))
            with con.progress(f"L{norm} {m}", len(y)) as cb:
                res = cert.radius(x, y, progress=cb)
            ok = res.correct
            att = ar.radius[ok & torch.isfinite(ar.radius)]
            rows.append([f"L{norm}", m, float(res.certified_radius[ok].mean()), float(att.mean()) if att.numel() else None,
                         float(res.time_s.mean())])
            if (res.certified_radius > ar.radius * (1 + 1e-9) + 1e-12).any():
                from ..errors import SoundnessError
                raise SoundnessError("certified radius above attack radius in the demo: a bug")
    return rows


def _report(args, con, graph, x, y, out: Path) -> None:
    """The L2 report (crown, fastlin, ibp, attack, CLEVER) written under out/report."""
    from ..estimate import CleverConfig
    from ..report.build import build_report
    from ..report.render import write_report

    with con.progress("report (L2: crown, fastlin, ibp, attack, CLEVER)", 1) as cb:
        data = build_report(graph, x, y, "2", ["crown", "fastlin", "ibp"], clip=(0.0, 1.0), seed=args.seed,
                            clever_config=CleverConfig(n_batches=50, n_samples=128, seed=args.seed),
                            progress=lambda what, d, t: cb(d, t), **precision_kwargs(args))
    files = write_report(data, out / "report", {"model": "digits 64-32-32-10 ReLU MLP (demo)",
                                                "data": "scikit-learn digits, test split"})
    con.print(f"report written to {files['md']} (plots beside it); CLEVER above the attack radius on "
              f"{data.clever_above_attack} of {data.summary['correct']} samples")
    if data.violations:
        from ..errors import SoundnessError
        raise SoundnessError("certified radius above attack radius in the demo report: a bug")
