"""The Markdown tables of benchmarks/crown_vs_autolirpa.py (latest record per model and label)."""
from __future__ import annotations

from pathlib import Path

from common import markdown_table, read_jsonl


def _load(r: dict) -> str:
    return f"{r['loadavg_before'][0]:.1f}/{r['loadavg_after'][0]:.1f}"


def time_rows(recs: list[dict], which: str) -> list[list]:
    rows = []
    for r in recs:
        t, q = r["cpu_s_per_sample"][which], r["ratio"][which]
        b = 1 if which == "b1" else r["batch"]
        rows.append([r["model"], r["label"], r["weights"], r["samples"] if which == "bN" else r["batch1"], b,
                     t.get("certnn_float64"), t.get("alirpa_float64"), q["f64"], t.get("certnn_float32"),
                     t.get("alirpa_float32"), q["f32"], t.get("certnn_float32-sound"), q["sound_vs_f64"],
                     q["sound_vs_f32"], r["threads"], _load(r)])
    return rows


def memory_rows(recs: list[dict], mem_keys: list[str]) -> list[list]:
    rows = []
    for r in recs:
        mem = r.get("memory", {})
        peak = {k: v.get("peak_mb") for k, v in mem.items()}
        q = lambda c, al: peak[c] / peak[al] if peak.get(c) and peak.get(al) else None  # noqa: E731
        cell = lambda v: f"{v['peak_mb']:.0f} (+{v['call_mb']:.0f})" if "peak_mb" in v else "refused"  # noqa: E731
        rows.append([r["model"], r["label"], r["batch"]] + [cell(mem[k]) if k in mem else None for k in mem_keys]
                    + [q("certnn:float64", "alirpa:float64"), q("certnn:float32-sound", "alirpa:float64"),
                       q("certnn:float32-sound", "alirpa:float32")])
    return rows


def write_table(jsonl: Path, md: Path, models: list[str], mem_keys: list[str]) -> str:
    latest = {(r["model"], r["label"]): r for r in read_jsonl(jsonl)}
    order = {m: i for i, m in enumerate(models)}
    ordered = [r for _, r in sorted(latest.items(), key=lambda kv: (order.get(kv[0][0], 99), kv[0][1]))]
    recs = [r for r in ordered if "error" not in r]
    t_cols = ["model", "label", "weights", "n", "batch", "certnn f64", "aL f64", "ratio f64", "certnn f32",
              "aL f32", "ratio f32", "certnn f32-sound", "sound / aL f64", "sound / aL f32", "threads", "load"]
    a_cols = ["model", "label", "eps", "aL conv mode (f64/f32)", "max|d| f64", "max|d| f32", "sound <= f64",
              "sound widening mean/max", "cert f64/f32-sound", "certnn refused"]
    a_rows = []
    for r in recs:
        ag, cm = r["agreement"], r["alirpa_conv_mode"]
        a_rows.append([r["model"], r["label"], r["eps"], f"{cm.get('float64')}/{cm.get('float32')}",
                       ag.get("max_abs_diff_float64"), ag.get("max_abs_diff_float32"), ag.get("sound_le_f64"),
                       (f"{ag['sound_widening_mean']:.3g}/{ag['sound_widening_max']:.3g}"
                        if "sound_widening_mean" in ag else None),
                       "/".join(f"{ag['certified'][k]:.0%}" if k in ag["certified"] else "-"
                                for k in ("certnn_float64", "certnn_float32-sound")),
                       "; ".join(v[:90] for v in r["certnn_refused"].values()) or None])
    m_cols = ["model", "label", "batch"] + [f"{k} MB" for k in mem_keys] + [
        "c f64 / aL f64", "c sound / aL f64", "c sound / aL f32"]
    text = ("CPU seconds per sample at batch N (ratio = certnn / auto_LiRPA; < 1: certnn faster; device cpu)\n\n"
            + markdown_table(t_cols, time_rows(recs, "bN"))
            + "\n\nCPU seconds per sample, first samples one at a time (batch 1)\n\n"
            + markdown_table(t_cols, time_rows(recs, "b1"))
            + "\n\nLower-bound agreement (d = certnn - auto_LiRPA at the same dtype; sound: certnn float32-sound "
              "against certnn float64, widening = float64 - float32-sound)\n\n" + markdown_table(a_cols, a_rows)
            + "\n\nPeak resident memory in MB (+ the bound call's own rise over the peak after loading model and data) "
              "of one call on `batch` samples, each in its own child process; ratios of the peaks\n\n"
            + markdown_table(m_cols, memory_rows(recs, mem_keys)) + "\n")
    notes = [f"* {r['model']} ({r['label']}): {msg}" for r in recs for msg in r.get("suspicious", [])]
    notes += [f"* {r['model']} ({r['label']}): FAILED, {r['error']}" for r in ordered if "error" in r]
    if notes:
        text += "\nSuspicious or failed\n\n" + "\n".join(notes) + "\n"
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(text)
    return text
