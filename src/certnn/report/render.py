"""Writing a report: report.json, report.md and PNG plots (matplotlib, Agg backend)."""
from __future__ import annotations

from pathlib import Path

import torch

from .build import ReportData
from .atomic import atomic_write_bytes, atomic_write_text
from .records import environment, write_json


def _save_png(fig, path: Path) -> None:
    """savefig into memory, then an atomic write (no half-written PNG)."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    atomic_write_bytes(path, buf.getvalue())


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v != v:  # NaN: a stage the --timeout kept from this sample
            return "undecided"
        return "inf" if v == float("inf") else f"{v:.4g}"
    return str(v)


def certified_accuracy_curve(radius: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Fraction of samples whose certified radius is >= eps (a proved ball of radius r contains every
    smaller ball, so these are proved statements). Misclassified samples have radius 0."""
    return (radius.unsqueeze(0) >= eps.unsqueeze(1)).double().mean(1)


def plot_title(settings: dict, n: int) -> str:
    """'net.onnx on d.npz, N = 20, L2' for plot titles."""
    model = Path(str(settings.get("model") or "model")).name
    data = Path(str(settings.get("data") or "data")).name
    return f"{model} on {data}, N = {n}, L{settings.get('norm')}"


def clever_below_certified(data: ReportData) -> int:
    """Correct samples whose CLEVER estimate lies below a proved radius (the estimate is then too low)."""
    if data.clever_estimate is None or not data.radii:
        return 0
    best = torch.stack(list(data.radii.values())).amax(0)
    return int((data.correct & (data.clever_estimate < best)).sum())


def write_plots(data: ReportData, out: Path, settings: dict | None = None) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    head = plot_title(settings or data.settings, len(data.correct))
    return [_plot_accuracy(plt, data, head, out), _plot_radii(plt, data, head, out), _plot_time(plt, data, head, out)]


def _plot_accuracy(plt, data: ReportData, head: str, out: Path) -> str:
    """Certified accuracy vs eps per method, and the attack's upper bound on robust accuracy."""
    methods = list(data.radii)
    rmax = max([float(r.max()) for r in data.radii.values()] + [1e-12])
    if data.attack_radius is not None:
        fin = data.attack_radius[torch.isfinite(data.attack_radius)]
        if fin.numel():
            rmax = max(rmax, float(fin.max()))
    eps = torch.linspace(0, rmax * 1.05, 200, dtype=torch.float64)
    dec = torch.tensor([not r.extra.get("undecided") for r in data.samples], dtype=torch.bool)  # --timeout
    fig, ax = plt.subplots(figsize=(6, 4))
    for m in methods:
        ax.plot(eps.numpy(), certified_accuracy_curve(data.radii[m][dec], eps).numpy(), label=f"certified: {m}")
    if data.attack_radius is not None:
        att = torch.where(data.correct, data.attack_radius, torch.zeros_like(data.attack_radius))
        att = att[dec & ~data.attack_radius.isnan()]
        ax.plot(eps.numpy(), certified_accuracy_curve(att, eps).numpy(), "k--", label="attack (upper bound on robust acc.)")
    ax.set_xlabel(f"eps (L{data.settings['norm']})")
    ax.set_ylabel("accuracy")
    ax.set_title(f"certified accuracy vs eps\n{head}", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save_png(fig, out / "certified_accuracy.png")
    plt.close(fig)
    return "certified_accuracy.png"


def _plot_radii(plt, data: ReportData, head: str, out: Path) -> str:
    """Per-sample radii of the correctly classified samples: certified, attack, CLEVER."""
    from matplotlib.ticker import MaxNLocator

    methods = list(data.radii)
    ok = data.correct
    fig, ax = plt.subplots(figsize=(6, 4))
    order = torch.argsort(data.radii[methods[0]][ok])
    xs = list(range(1, int(ok.sum()) + 1))
    # certified: filled circles (the sort key joined by a line; the others markers only, no zig-zag);
    # attack: black downward triangles; CLEVER: hollow squares
    for k, m in enumerate(methods):
        ax.plot(xs, data.radii[m][ok][order].numpy(), "o-" if k == 0 else "o", ms=4,
                label=f"certified, {m} (proved lower bound)")
    if data.attack_radius is not None:
        ax.plot(xs, data.attack_radius[ok][order].numpy(), "v", color="black", ms=5,
                label="attack radius (upper bound: an adversarial example)")
    if data.clever_estimate is not None:
        ax.plot(xs, data.clever_estimate[ok][order].numpy(), "s", mfc="none", color="tab:gray", ms=5,
                label="CLEVER (estimate, no guarantee; can fall below a certified radius)")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(f"correctly classified samples (1 .. {len(xs)}), sorted by the {methods[0]} radius")
    ax.set_ylabel(f"radius (L{data.settings['norm']})")
    ax.set_title(f"per-sample radii\n{head}", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save_png(fig, out / "radii.png")
    plt.close(fig)
    return "radii.png"


def _plot_time(plt, data: ReportData, head: str, out: Path) -> str:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    secs = data.summary["seconds_per_sample"]
    names = list(secs)
    ax.bar(names, [secs[n] for n in names])
    ax.set_yscale("log")
    ax.set_ylabel("seconds per sample")
    ax.set_title(f"run time\n{head}", fontsize=10)
    fig.tight_layout()
    _save_png(fig, out / "time.png")
    plt.close(fig)
    return "time.png"


def write_report(data: ReportData, out_dir: str | Path, settings_extra: dict | None = None,
                 plots: bool = True) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = {**(settings_extra or {}), **data.settings}
    summary = {**data.summary, "violation_details": data.violations}
    env = {**environment(device=str(data.settings.get("device", "cpu"))), "dtype": data.settings.get("dtype", "float64")}
    write_json(out / "report.json", "report", settings, data.samples, summary, env)
    files = write_plots(data, out, settings) if plots else []
    s = data.summary
    methods = list(data.radii)
    lines = ["# certnn robustness report", "",
             f"Model `{settings.get('model', '-')}`, data `{settings.get('data', '-')}`, norm L{settings['norm']}, "
             f"target {settings['target']}, clip {settings['clip']}.", "",
             f"{s['samples']} samples, {s['correct']} correctly classified (clean accuracy {_fmt(s['clean_accuracy'])})."
             + (f" {s['undecided']} samples undecided (--timeout reached before they were run; not counted)."
                if s.get("undecided") else ""),
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
    lines += ["", "## Checks", ""] + _check_lines(data) + ["", "## Per sample", ""] + _sample_rows(data)
    if files:
        lines += ["", "## Plots", ""] + [f"![{f}]({f})" for f in files]
    atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
    return {"json": out / "report.json", "md": out / "report.md", **{f: out / f for f in files}}


def _check_lines(data: ReportData) -> list[str]:
    """The report's checks: certified radii against the attack radius, CLEVER against both."""
    s = data.summary
    lines = []
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
    if data.clever_estimate is not None:
        lines.append(f"- CLEVER estimate below a certified radius on {clever_below_certified(data)} of {s['correct']} "
                     "samples: there the estimate is provably too low (CLEVER extrapolates sampled gradient norms; "
                     "it is neither a lower nor an upper bound).")
    return lines


def _sample_rows(data: ReportData) -> list[str]:
    """The per-sample table (Markdown): label, prediction, radii; undecided samples marked."""
    methods = list(data.radii)
    head = ["index", "label", "pred"] + [f"cert. {m}" for m in methods]
    head += (["attack"] if data.attack_radius is not None else []) + (["CLEVER"] if data.clever_estimate is not None else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for i, rec in enumerate(data.samples):
        row = [rec.index, rec.label, rec.predicted] + [_fmt(float(data.radii[m][i])) for m in methods]
        if rec.extra.get("undecided"):
            row[3:] = ["undecided"] * (len(head) - 3)
        elif data.attack_radius is not None:
            row.append(_fmt(float(data.attack_radius[i])))
        if data.clever_estimate is not None and not rec.extra.get("undecided"):
            row.append(_fmt(float(data.clever_estimate[i])))
        lines.append("| " + " | ".join(str(v) for v in row) + " |")
    return lines
