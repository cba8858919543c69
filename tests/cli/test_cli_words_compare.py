"""`certnn words` (sensitive words) and `certnn compare` (models on the same samples) on tiny bundles."""
from __future__ import annotations

import json

import pytest

from certnn.cli.main import main

FAST = ["--bisection-steps", "5", "--quiet"]


@pytest.fixture(scope="module")
def bundles(tiny_text_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("bundles")
    out = []
    for name, seed in (("a", 0), ("b", 1)):
        p = d / f"{name}.pt"
        assert main(["train", "--task", "mr", "--data-dir", str(tiny_text_dir), "--cell", "rnn", "--hidden", "4",
                     "--max-len", "6", "--epochs", "15", "--lr", "0.02", "--batch-size", "16", "--seed", str(seed),
                     "--quiet", "--out", str(p)]) == 0
        out.append(p)
    return out


def test_words_on_given_sentences_ranks_every_word_and_matches_radius(bundles, tmp_path):
    out = tmp_path / "w.json"
    texts = ["the movie is good .", "a dull film"]
    assert main(["words", "--model", str(bundles[0]), "--text", texts[0], "--text", texts[1], "--method", "crown",
                 "--batch-size", "1", "--attack", "--attack-steps", "30", "--attack-restarts", "1",
                 "--json", str(out), *FAST]) == 0  # exit 3 if a certified radius exceeded an attack radius
    doc = json.loads(out.read_text())
    assert doc["command"] == "words" and doc["settings"]["method"] == "crown"
    s0 = doc["samples"][0]
    assert [w["word"] for w in s0["words"]] == ["the", "movie", "is", "good", "."]
    for s in doc["samples"]:
        n = len(s["words"])
        assert sorted(w["rank"] for w in s["words"]) == list(range(1, n + 1))
        assert sorted(w["saliency_rank"] for w in s["words"]) == list(range(1, n + 1))
        for w in s["words"]:
            assert w["in_vocabulary"] and w["attack_radius"] == "inf" or w["certified_radius"] <= w["attack_radius"]
    # the same word through `certnn radius --words k` (same search): the same radius
    k = 3
    r = tmp_path / "r.json"
    assert main(["radius", "--model", str(bundles[0]), "--text", texts[0], "--words", str(k), "--method", "crown",
                 "--norm", "2", "--json", str(r), *FAST]) == 0
    rad = json.loads(r.read_text())["samples"][0]["certified_radius"]
    assert s0["words"][k]["certified_radius"] == pytest.approx(rad, rel=1e-9)


def test_words_prints_coloured_or_plain(bundles, capsys):
    assert main(["words", "--model", str(bundles[0]), "--text", "the movie is good .", "--no-color",
                 "--method", "ibp", "--bisection-steps", "4"]) == 0
    out = capsys.readouterr().out
    assert "good(" in out and "most sensitive" in out and "\x1b[" not in out


def test_words_batch_mode_aggregates(bundles, tiny_text_dir, tmp_path):
    out = tmp_path / "b.json"
    assert main(["words", "--model", str(bundles[1]), "--data-dir", str(tiny_text_dir), "--samples", "4",
                 "--method", "ibp", "--json", str(out), *FAST]) == 0
    doc = json.loads(out.read_text())
    assert doc["settings"]["task"] == "mr" and doc["summary"]["sentences"] == 4
    agg = doc["summary"]["aggregate"]
    assert sum(d["count"] for d in agg["most_sensitive"]) == doc["summary"]["correct"]
    radii = [d["mean_certified_radius"] for d in agg["by_word"]]
    assert radii == sorted(radii)


@pytest.mark.parametrize("extra,message", [
    (["--text", ""], "no words"),
    (["--text", "zzz qqq"], "no word in the model's vocabulary"),
    (["--text", "good", "--task", "mr"], "either --text or --task"),
    (["--text", "good", "--label", "5"], "--label"),
    (["--text", "good", "--method", "nope"], "unknown method"),
])
def test_words_bad_input_exits_2(bundles, extra, message, capsys):
    assert main(["words", "--model", str(bundles[0]), *extra, "--quiet"]) == 2
    assert message in capsys.readouterr().err


def test_words_and_compare_refuse_a_non_text_model(tmp_path, capsys):
    src = tmp_path / "net.py"
    src.write_text("import torch\n\ndef make():\n    return torch.nn.Linear(3, 2)\n")
    assert main(["words", "--model", f"{src}:make", "--text", "good", "--quiet"]) == 2
    assert "text model bundle" in capsys.readouterr().err
    assert main(["compare", "--models", f"{src}:make", "--quiet"]) == 2
    assert "bundle" in capsys.readouterr().err


def test_compare_two_models_on_the_same_sentences(bundles, tiny_text_dir, tmp_path):
    js, md = tmp_path / "c.json", tmp_path / "c.md"
    assert main(["compare", "--models", *map(str, bundles), "--data-dir", str(tiny_text_dir), "--samples", "5",
                 "--method", "ibp", "--words", "-1", "--eps", "0.01", "0.1", "--attack", "--attack-steps", "20",
                 "--attack-restarts", "1", "--json", str(js), "--md", str(md), *FAST]) == 0
    doc = json.loads(js.read_text())
    assert doc["command"] == "compare" and len(doc["models"]) == 2 and doc["settings"]["samples"] == 5
    for m in doc["models"]:
        assert m["samples"] == 5 and 0 <= m["clean_accuracy"] <= 1
        assert set(m["certified_accuracy"]) == {"0.01", "0.1"}
        assert m["certified_accuracy"]["0.1"] <= m["certified_accuracy"]["0.01"] <= m["clean_accuracy"]
        radii = m["certified_radius"]
        assert m["mean_certified_radius"] == pytest.approx(sum(radii) / 5)
        for r, a in zip(radii, m["attack_radius"]):
            assert a == "inf" or r <= a
    table = md.read_text()
    assert "a.pt" in table and "b.pt" in table and "mean attack radius" in table


def test_compare_bad_flags_exit_2(bundles, tiny_text_dir, capsys):
    base = ["compare", "--models", *map(str, bundles), "--data-dir", str(tiny_text_dir), "--quiet"]
    assert main(base + ["--method", "ibp,crown"]) == 2
    assert "one --method" in capsys.readouterr().err
    assert main(base + ["--task", "urls"]) == 2
    assert "compare needs models of one task" in capsys.readouterr().err
    assert main(base + ["--words", "9", "--method", "ibp"]) == 2
    assert "no test sentence" in capsys.readouterr().err


def test_compare_image_bundles(tmp_path):
    pytest.importorskip("sklearn")
    p = tmp_path / "d.pt"
    assert main(["train", "--task", "digits", "--hidden", "8", "--layers", "1", "--epochs", "2", "--quiet",
                 "--out", str(p)]) == 0
    js = tmp_path / "c.json"
    assert main(["compare", "--models", str(p), str(p), "--task", "digits", "--samples", "4", "--method", "crown",
                 "--norm", "inf", "--clip", "0", "1", "--eps", "0.01", "--json", str(js), *FAST]) == 0
    a, b = json.loads(js.read_text())["models"]
    assert a["certified_radius"] == b["certified_radius"] and a["samples"] == 4
