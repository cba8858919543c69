"""Writing a report: report.json, report.md and PNG plots (matplotlib, Agg backend)."""
from __future__ import annotations

from pathlib import Path

import torch

from .build import ReportData
from .records import environment, write_json


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "inf" if v == float("inf") else f"{v:.4g}"
    return str(v)


def certified_accuracy_curve(radius: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Fraction of samples whose certified radius is >= eps (a proved ball of radius r contains every
    smaller ball, so these are proved statements). Misclassified samples have radius 0."""
    return (radius.unsqueeze(0) >= eps.unsqueeze(1)).double().mean(1)


def write_plots(data: ReportData, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    methods = list(data.radii)
    rmax = max([float(r.max()) for r in data.radii.values()] + [1e-12])
    if data.attack_radius is not None:
        fin = data.attack_radius[torch.isfinite(data.attack_radius)]
        if fin.numel():
            rmax = max(rmax, float(fin.max()))
    eps = torch.linspace(0, rmax * 1.05, 200, dtype=torch.float64)
    fig, ax = plt.subplots(figsize=(6, 4))
    for m in methods:
        ax.plot(eps.numpy(), certified_accuracy_curve(data.radii[m], eps).numpy(), label=f"certified: {m}")
    if data.attack_radius is not None:
        att = torch.where(data.correct, data.attack_radius, torch.zeros_like(data.attack_radius))
        ax.plot(eps.numpy(), certified_accuracy_curve(att, eps).numpy(), "k--", label="attack (upper bound on robust acc.)")
    ax.set_xlabel(f"eps (L{data.settings['norm']})")
    ax.set_ylabel("accuracy")
    ax.set_title("certified accuracy vs eps")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "certified_accuracy.png", dpi=120)
    plt.close(fig)
    files.append("certified_accuracy.png")

    ok = data.correct
    fig, ax = plt.subplots(figsize=(6, 4))
    order = torch.argsort(data.radii[methods[0]][ok])
    xs = range(int(ok.sum()))
    for m in methods:
        ax.plot(xs, data.radii[m][ok][order].numpy(), "o-", ms=3, label=f"certified: {m}")
    if data.clever_estimate is not None:
        ax.plot(xs, data.clever_estimate[ok][order].numpy(), "s", ms=3, label="CLEVER estimate")
    if data.attack_radius is not None:
        ax.plot(xs, data.attack_radius[ok][order].numpy(), "^", ms=3, label="attack radius")
    ax.set_yscale("log")
    ax.set_xlabel(f"correctly classified samples, sorted by {methods[0]} radius")
    ax.set_ylabel(f"radius (L{data.settings['norm']})")
    ax.set_title("per-sample radii")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "radii.png", dpi=120)
    plt.close(fig)
    files.append("radii.png")

    fig, ax = plt.subplots(figsize=(6, 3.5))
    secs = data.summary["seconds_per_sample"]
    names = list(secs)
    ax.bar(names, [secs[n] for n in names])
    ax.set_yscale("log")
    ax.set_ylabel("seconds per sample")
    ax.set_title("run time")
    fig.tight_layout()
    fig.savefig(out / "time.png", dpi=120)
    plt.close(fig)
    files.append("time.png")
    return files


def write_report(data: ReportData, out_dir: str | Path, settings_extra: dict | None = None,
                 plots: bool = True) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = {**(settings_extra or {}), **data.settings}
    summary = {**data.summary, "violation_details": data.violations}
    write_json(out / "report.json", "report", settings, data.samples, summary, environment())
    files = write_plots(data, out) if plots else []
    s = data.summary
    methods = list(data.radii)
    lines = ["# certnn robustness report", "",
             f"Model `{settings.get('model', '-')}`, data `{settings.get('data', '-')}`, norm L{settings['norm']}, "
             f"target {settings['target']}, clip {settings['clip']}.", "",
             f"{s['samples']} samples, {s['correct']} correctly classified (clean accuracy {_fmt(s['clean_accuracy'])}).",
             "", "## Summary (means over correctly classified samples)", "",
             "| quantity | kind | mean | seconds / sample |", "|---|---|---|---|"]
    for m in methods:
        lines.append(f"| certified radius, {m} | proved lower bound | {_fmt(s['mean_certified_radius'][m])} | "
                     f"{_fmt(s['seconds_per_sample'][m])} |")
    if data.attack_radius is not None:
        lines.append(f"| attack radius | upper bound (found {s['attack_found']} of {s['correct']}) | "
                     f"{_fmt(s['mean_attack_radius'])} | {_fmt(s['seconds_per_sample'].get('attack'))} |")
    if data.clever_estimate is not None:
        lines.append(f"| CLEVER | estimate (no guarantee) | {_fmt(s['mean_clever_estimate'])} | "
                     f"{_fmt(s['seconds_per_sample'].get('clever'))} |")
    lines += ["", "## Checks", ""]
    if data.attack_radius is not None:
        if data.violations:
            lines.append(f"**BUG: {len(data.violations)} certified radii exceed the attack radius** (a certificate "
                         "was broken by an attack; please report this with the model and data):")
            for v in data.violations[:20]:
                lines.append(f"- sample {v['index']}, {v['method']}: certified {v['certified_radius']:.6g} > attack "
                             f"{v['attack_radius']:.6g}")
        else:
            lines.append("- every certified radius is at most the attack radius (as it must be).")
    if data.clever_estimate is not None and data.attack_radius is not None:
        lines.append(f"- CLEVER estimate above the attack radius on {data.clever_above_attack} of {s['correct']} "
                     "samples: there the estimate is provably too high (an estimate can be wrong).")
    lines += ["", "## Per sample", ""]
    head = ["index", "label", "pred"] + [f"cert. {m}" for m in methods]
    head += (["attack"] if data.attack_radius is not None else []) + (["CLEVER"] if data.clever_estimate is not None else [])
    lines += ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for i, rec in enumerate(data.samples):
        row = [rec.index, rec.label, rec.predicted] + [_fmt(float(data.radii[m][i])) for m in methods]
        if data.attack_radius is not None:
            row.append(_fmt(float(data.attack_radius[i])))
        if data.clever_estimate is not None:
            row.append(_fmt(float(data.clever_estimate[i])))
        lines.append("| " + " | ".join(str(v) for v in row) + " |")
    if files:
        lines += ["", "## Plots", ""] + [f"![{f}]({f})" for f in files]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return {"json": out / "report.json", "md": out / "report.md", **{f: out / f for f in files}}
