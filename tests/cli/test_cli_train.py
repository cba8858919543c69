"""`certnn train` end to end (tiny runs) and `certnn radius` on text bundles (--words, --text, --eps)."""
from __future__ import annotations

import json

import pytest
import torch

from certnn.cli.main import main
from certnn.models import load_text_model


@pytest.fixture(scope="module")
def text_bundle(tiny_text_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "mr_rnn.pt"
    rc = main(["train", "--task", "mr", "--data-dir", str(tiny_text_dir), "--cell", "rnn", "--hidden", "4",
               "--max-len", "6", "--epochs", "15", "--lr", "0.02", "--batch-size", "16", "--quiet", "--out", str(out)])
    assert rc == 0
    return out


def test_train_text_writes_a_loadable_bundle_with_the_test_accuracy(text_bundle, tiny_text_dir, tmp_path):
    model, vocab, meta = load_text_model(text_bundle)
    assert meta["task"] == "mr" and meta["max_len"] == 6 and meta["padding"] == "left"
    assert meta["model_name"] == "RNN-1-4" and meta["train_size"] == 72 and meta["test_size"] == 8
    assert meta["epoch_loss"][-1] < meta["epoch_loss"][0]
    assert 0.75 <= meta["test_accuracy"] <= 1.0  # the synthetic task is separable by one word
    assert "good" in vocab and model.config.embed_dim == 8 and model.config.freeze_embedding
    out = tmp_path / "t.json"
    assert main(["train", "--task", "urls", "--data-dir", str(tiny_text_dir), "--cell", "gru", "--hidden", "4",
                 "--max-len", "12", "--epochs", "2", "--embed-dim", "3", "--quiet", "--out", str(tmp_path / "u.pt"),
                 "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["command"] == "train" and 0.0 <= doc["summary"]["test_accuracy"] <= 1.0
    m, v, meta = load_text_model(tmp_path / "u.pt")
    assert meta["level"] == "char" and m.config.embed_dim == 3 and not m.config.freeze_embedding


def test_train_reads_the_data_dir_from_the_environment(tiny_text_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("CERTNN_DATA_DIR", raising=False)
    assert main(["train", "--task", "mr", "--epochs", "1", "--out", str(tmp_path / "m.pt")]) == 2
    assert "--data-dir" in capsys.readouterr().err
    monkeypatch.setenv("CERTNN_DATA_DIR", str(tiny_text_dir))
    assert main(["train", "--task", "mr", "--epochs", "1", "--hidden", "2", "--max-len", "4", "--quiet",
                 "--out", str(tmp_path / "m.pt")]) == 0


def test_train_image_task_digits(tmp_path):
    pytest.importorskip("sklearn")
    out = tmp_path / "d.pt"
    assert main(["train", "--task", "digits", "--arch", "cnn", "--hidden", "16", "--epochs", "2", "--limit", "300",
                 "--quiet", "--out", str(out)]) == 0
    rc = main(["radius", "--model", str(out), "--task", "digits", "--samples", "3", "--method", "crown",
               "--bisection-steps", "4", "--quiet", "--json", str(tmp_path / "r.json")])
    assert rc == 0
    assert len(json.loads((tmp_path / "r.json").read_text())["samples"]) == 3


def _certified_accuracy(bundle, tmp_path, eps: str) -> float:
    out = tmp_path / f"{bundle.stem}.json"
    assert main(["radius", "--model", str(bundle), "--task", "digits", "--samples", "100", "--method", "ibp",
                 "--bisection-steps", "4", "--eps", eps, "--quiet", "--json", str(out)]) == 0
    return json.loads(out.read_text())["summary"]["certified_accuracy"][eps]


def test_train_robust_ibp_raises_the_certified_accuracy_of_digits(tmp_path):
    pytest.importorskip("sklearn")
    common = ["train", "--task", "digits", "--epochs", "6", "--hidden", "50", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "plain.pt")]) == 0
    assert main([*common, "--robust", "ibp", "--eps", "0.05", "--out", str(tmp_path / "ibp.pt"),
                 "--json", str(tmp_path / "t.json")]) == 0
    from certnn.graph.loading import load_model

    meta = torch.load(tmp_path / "ibp.pt", weights_only=True)["meta"]
    assert meta["training"]["loss"] == "robust_ibp" and meta["training"]["robust"]["eps"] == 0.05
    assert meta["training"]["robust"]["ramp_epochs"] == 3 and list(meta["training"]["robust"]["clip"]) == [0.0, 1.0]
    load_model(str(tmp_path / "ibp.pt"))  # still a plain image bundle
    plain, robust = (_certified_accuracy(tmp_path / f, tmp_path, "0.02") for f in ("plain.pt", "ibp.pt"))
    assert robust > plain + 0.2, (plain, robust)


def test_train_robust_on_a_text_task(tiny_text_dir, tmp_path):
    out = tmp_path / "m.pt"
    assert main(["train", "--task", "mr", "--data-dir", str(tiny_text_dir), "--cell", "lstm", "--hidden", "4",
                 "--max-len", "6", "--epochs", "3", "--robust", "certrnn", "--eps", "0.01", "--norm", "2",
                 "--quiet", "--out", str(out)]) == 0
    _, _, meta = load_text_model(out)
    assert meta["training"]["loss"] == "robust_certrnn" and meta["training"]["robust"]["embedded"]


@pytest.mark.parametrize("argv,message", [
    (["--task", "mr", "--arch", "cnn"], "--arch"),
    (["--task", "digits", "--robust", "ibp"], "--eps"),
    (["--task", "digits", "--eps", "0.1"], "--robust"),
    (["--task", "digits", "--robust", "ibp", "--eps", "0.1", "--epochs", "2", "--warmup-epochs", "3"], "warmup"),
    (["--task", "digits", "--cell", "lstm"], "--cell"),
    (["--task", "mr", "--hidden", "0"], "--hidden"),
    (["--task", "mr", "--dropout", "1.5"], "--dropout"),
])
def test_train_bad_flags_exit_2_with_a_message(argv, message, tiny_text_dir, tmp_path, capsys):
    rc = main(["train", *argv, "--data-dir", str(tiny_text_dir), "--out", str(tmp_path / "x.pt")])
    assert rc == 2 and message in capsys.readouterr().err


def test_train_unknown_task_is_an_argparse_error(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--task", "imdb", "--out", str(tmp_path / "x.pt")])
    assert exc.value.code == 2


@pytest.mark.shared_data
def test_train_on_a_slice_of_the_real_mr_files(shared_data, tmp_path):
    out = tmp_path / "mr.pt"
    assert main(["train", "--task", "mr", "--data-dir", str(shared_data), "--limit", "300", "--hidden", "4",
                 "--max-len", "8", "--epochs", "1", "--quiet", "--out", str(out)]) == 0
    _, vocab, meta = load_text_model(out)
    assert meta["train_size"] == 300 and meta["glove_found"] > 0.9 * len(vocab) - 2


# ------------------------------------------------------------------ radius on text bundles

def test_radius_on_words_is_below_the_attack_radius(text_bundle, tiny_text_dir, tmp_path):
    out = tmp_path / "r.json"
    rc = main(["radius", "--model", str(text_bundle), "--task", "mr", "--data-dir", str(tiny_text_dir),
               "--samples", "4", "--method", "certrnn,crown", "--norm", "2", "--words", "0,-1", "--attack",
               "--attack-steps", "30", "--attack-restarts", "1", "--bisection-steps", "6", "--eps", "0.01",
               "--json", str(out), "--quiet"])
    assert rc == 0  # a certified radius above the attack radius would exit 3
    doc = json.loads(out.read_text())
    assert doc["settings"]["words"] == "0,-1" and doc["settings"]["task"] == "mr"
    assert "certified_accuracy" in doc["summary"]
    _, _, meta = load_text_model(text_bundle)
    T = meta["max_len"]
    for s in doc["samples"]:
        L = s["length"]
        assert s["frames"] == [T - L, T - 1]  # left padding: the words sit at the end
        assert len(s["words"]) == 2
        for r in s["certified_radius_by_method"].values():
            assert s["attack_radius"] == "inf" or r <= s["attack_radius"]
        if s["label"] == s["predicted"]:
            assert s["certified_radius"] > 0
            if s["certified_radius"] >= 0.01:
                assert s["certified"]["0.01"]


def test_radius_on_a_given_sentence(text_bundle, tmp_path):
    out = tmp_path / "r.json"
    rc = main(["radius", "--model", str(text_bundle), "--text", "the movie is good .", "--text", "a dull film",
               "--label", "1,0", "--words", "-2", "--method", "crown", "--norm", "2", "--bisection-steps", "5",
               "--json", str(out), "--quiet"])
    assert rc == 0
    samples = json.loads(out.read_text())["samples"]
    assert [s["words"] for s in samples] == [["good"], ["dull"]]
    assert [s["in_vocabulary"] for s in samples] == [[True], [True]]
    assert [s["frames"] for s in samples] == [[4], [4]]  # T = 6: word 3 of 5, word 1 of 3
    assert [s["label"] for s in samples] == [1, 0] and [s["index"] for s in samples] == [0, 1]


@pytest.mark.parametrize("extra,message", [
    (["--text", "good", "--words", "4"], "no word at the --words positions"),
    (["--text", "good", "--frames", "0"], "--words"),
    (["--text", "good", "--words", "x"], "--words"),
    (["--text", "good", "--label", "7"], "--label"),
    (["--task", "mr", "--text", "good"], "either --text or --task"),
    (["--task", "urls", "--data-dir", "."], "reads words"),
    (["--task", "nosuch", "--data-dir", "."], "is not a text task"),
    (["--label", "1"], "--label is for --text sentences"),
    (["--data", "d.npz"], "--data is for models on arrays"),
])
def test_radius_text_bad_flags_exit_2(text_bundle, extra, message, capsys):
    rc = main(["radius", "--model", str(text_bundle), *extra, "--method", "crown", "--quiet"])
    assert rc == 2 and message in capsys.readouterr().err


def test_radius_text_flags_need_a_text_bundle(tmp_path, capsys):
    src = tmp_path / "net.py"
    src.write_text("import torch\n\ndef make():\n    return torch.nn.Linear(3, 2)\n")
    assert main(["radius", "--model", f"{src}:make", "--words", "1", "--quiet"]) == 2
    assert "text model bundles" in capsys.readouterr().err
    assert main(["radius", "--model", f"{src}:make", "--quiet"]) == 2
    assert "--data" in capsys.readouterr().err


def test_text_bundle_logits_match_the_certified_graph(text_bundle):
    from certnn.graph.recurrent import embed_tokens
    from certnn.models import TextEncoder, text_graph

    model, vocab, meta = load_text_model(text_bundle)
    enc = TextEncoder.from_meta(vocab, meta).encode(["the movie is good .", "boring"])
    g = text_graph(model, meta["max_len"])
    with torch.no_grad():
        assert torch.allclose(g.forward(embed_tokens(model, enc.tokens)), model(enc.tokens).double(), atol=1e-5)


def test_radius_frame_eps_weights_every_word(text_bundle, tiny_text_dir, tmp_path):
    """--words all --frame-eps 0.5: each word moves by at most eps / 2, so the radius doubles."""
    common = ["radius", "--model", str(text_bundle), "--data-dir", str(tiny_text_dir), "--samples", "3",
              "--method", "crown", "--norm", "2", "--bisection-steps", "8", "--quiet"]
    assert main(common + ["--json", str(tmp_path / "a.json")]) == 0
    assert main(common + ["--frame-eps", "0.5", "--json", str(tmp_path / "b.json")]) == 0
    a = json.loads((tmp_path / "a.json").read_text())["samples"]
    b = json.loads((tmp_path / "b.json").read_text())["samples"]
    for ra, rb in zip(a, b):
        if ra["certified_radius"] > 0:
            assert rb["certified_radius"] == pytest.approx(2 * ra["certified_radius"], rel=0.05)


@pytest.mark.slow
@pytest.mark.shared_data
def test_train_mnist_and_radius_on_its_test_split(shared_data, tmp_path):
    out = tmp_path / "mnist.pt"
    assert main(["train", "--task", "mnist", "--data-dir", str(shared_data), "--limit", "500", "--epochs", "2",
                 "--hidden", "16", "--quiet", "--out", str(out)]) == 0
    assert main(["radius", "--model", str(out), "--task", "mnist", "--data-dir", str(shared_data), "--samples", "3",
                 "--method", "crown", "--clip", "0", "1", "--bisection-steps", "4", "--quiet"]) == 0


@pytest.mark.parametrize("command", [["certify", "--eps", "0.1"], ["attack"], ["clever"]])
def test_array_commands_on_a_text_bundle_point_to_the_text_commands(text_bundle, tmp_path, command, capsys):
    import numpy as np

    data = tmp_path / "d.npz"
    np.savez(data, x=np.zeros((2, 6), dtype=np.float32), y=np.zeros(2, dtype=np.int64))
    rc = main([command[0], "--model", str(text_bundle), "--data", str(data), *command[1:], "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "text model bundle" in err and "certnn radius --model M --task T" in err
