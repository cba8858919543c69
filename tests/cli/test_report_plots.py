"""Report plots a reader understands at a glance: titles name model, data and N; integer sample ticks;
certified / attack / CLEVER drawn differently and explained in the legend; the Markdown explains CLEVER
below a certified radius."""
from __future__ import annotations

import matplotlib
import pytest
import torch
from matplotlib.figure import Figure

import certnn
from certnn.estimate import CleverConfig
from certnn.report.build import build_report
from certnn.report.render import write_report

matplotlib.use("Agg")


@pytest.fixture()
def figures(monkeypatch):
    seen = []
    real = Figure.savefig

    def keep(self, *a, **k):
        ax = self.axes[0]
        seen.append({"title": ax.get_title(), "xticks": list(ax.get_xticks()),
                     "labels": [t.get_text() for t in ax.get_legend().get_texts()] if ax.get_legend() else [],
                     "markers": [ln.get_marker() for ln in ax.get_lines()],
                     "styles": [ln.get_linestyle() for ln in ax.get_lines()]})
        return real(self, *a, **k)

    monkeypatch.setattr(Figure, "savefig", keep)
    return seen


def test_plots_are_titled_and_kinds_distinct(tmp_path, figures):
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(5, 12), torch.nn.ReLU(), torch.nn.Linear(12, 3)).double()
    x = torch.rand(7, 5, dtype=torch.float64)
    y = m(x).argmax(1)
    data = build_report(certnn.from_torch(m, (5,)), x, y, "2", ["crown", "ibp"], attack=True, clever=True,
                        clever_config=CleverConfig(n_batches=10, n_samples=16))
    write_report(data, tmp_path / "rep", {"model": "/some/where/net.py:make", "data": "/x/d.npz"})
    assert len(figures) == 3
    for f in figures:
        assert "net.py:make on d.npz, N = 7, L2" in f["title"]
    radii = next(f for f in figures if "per-sample radii" in f["title"])
    assert all(float(t).is_integer() for t in radii["xticks"])
    labels = radii["labels"]
    assert any("proved lower bound" in s and "crown" in s for s in labels)
    assert any("upper bound" in s for s in labels) and any("estimate" in s for s in labels)
    # crown joined (the sort key), ibp markers only (no zig-zag line); attack and CLEVER differ in marker
    assert radii["styles"][:2] == ["-", "None"]
    assert len(set(radii["markers"][1:])) == 3
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "CLEVER estimate below a certified radius on" in md
