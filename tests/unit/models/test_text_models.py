"""Text classifiers: training lowers the loss, bundles round-trip, from_torch parity, bad bundles, per-sample
frames certification."""
from __future__ import annotations

import pytest
import torch

import certnn
from certnn.certify.per_sample_frames import certify_by_frames, frame_scales, radius_by_frames
from certnn.data import Tokenizer, Vocabulary
from certnn.errors import ConfigError, ModelImportError
from certnn.graph.loading import load_model
from certnn.models import (ImageModelConfig, TextClassifier, TextEncoder, TextModelConfig, build_image_model,
                           load_text_model, read_bundle, save_image_model, save_text_model, text_graph)
from certnn.models.bundle import BUNDLE_FORMAT
from certnn.train.loop import TrainConfig, accuracy, fit

META = {"task": "mr", "max_len": 6, "level": "word", "lowercase": True, "padding": "left"}


def _toy(n=64, T=6, V=12, seed=0):
    """label 1 iff token 2 occurs."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(3, V, (n, T), generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    pos = torch.randint(0, T, (n,), generator=g)
    x[y == 1, pos[y == 1]] = 2
    return x, y


def _model(cell="lstm", layers=1, V=12, E=5, H=6, freeze=False, seed=0):
    torch.manual_seed(seed)
    return TextClassifier(TextModelConfig(vocab_size=V, embed_dim=E, cell=cell, layers=layers, hidden=H,
                                          freeze_embedding=freeze))


def test_training_lowers_the_loss_and_keeps_a_frozen_embedding():
    x, y = _toy()
    m = _model(freeze=True)
    emb = m.embedding.weight.detach().clone()
    hist = fit(m, x, y, TrainConfig(epochs=8, batch_size=16, lr=1e-2, seed=0))
    assert hist.epoch_loss[-1] < hist.epoch_loss[0] * 0.9
    assert torch.equal(m.embedding.weight, emb)
    assert not m.training and accuracy(m, x, y) > 0.6
    m2 = _model(freeze=True)
    fit(m2, x, y, TrainConfig(epochs=8, batch_size=16, lr=1e-2, seed=0))
    assert torch.equal(m.fc.weight, m2.fc.weight)  # deterministic for a seed


def test_train_config_rejects_bad_values():
    with pytest.raises(ConfigError):
        TrainConfig(epochs=0)
    with pytest.raises(ConfigError, match="unknown key"):
        TrainConfig.from_mapping({"epochs": 1, "momentum": 0.9})
    with pytest.raises(ConfigError):
        TextModelConfig(cell="transformer")
    with pytest.raises(ConfigError):
        TextModelConfig(hidden=0)


@pytest.mark.parametrize("cell,layers", [("rnn", 1), ("lstm", 2), ("gru", 1)])
def test_from_torch_parity_on_the_text_model(cell, layers):
    m = _model(cell, layers).eval()
    tokens = torch.randint(0, 12, (5, 6))
    g = text_graph(m, 6)
    assert g.input_shape == (6, 5)
    x = certnn.embed_tokens(m, tokens)
    with torch.no_grad():
        assert torch.allclose(g.forward(x), m(tokens).double(), atol=1e-5)
    g2 = certnn.from_torch(m, (6, 5), embedded=True)
    assert torch.allclose(g2.forward(x), g.forward(x))


def test_bundle_round_trip_gives_identical_logits(tmp_path):
    m = _model("gru").eval()
    vocab = Vocabulary(["<pad>", "<unk>"] + [f"w{i}" for i in range(10)])
    p = save_text_model(tmp_path / "m.pt", m, vocab, {**META, "test_accuracy": 0.5, "epoch_loss": [0.7, 0.6]})
    raw = torch.load(p, weights_only=True)  # plain types only
    assert raw["format"] == BUNDLE_FORMAT and raw["vocab"] == vocab.to_list()
    m2, v2, meta = load_text_model(p)
    assert v2 == vocab and meta["test_accuracy"] == 0.5 and meta["max_len"] == 6
    tokens = torch.randint(0, 12, (7, 6))
    with torch.no_grad():
        assert torch.equal(m(tokens), m2(tokens))
    assert isinstance(load_model(str(p)), TextClassifier)
    enc = TextEncoder.from_meta(v2, meta)
    e = enc.encode(["w1 w2 zzz", "w3"])
    assert e.tokens.tolist() == [[0, 0, 0, 3, 4, 1], [0, 0, 0, 0, 0, 5]]
    assert enc.kept_tokens("W1 w2") == ["w1", "w2"] and enc.tokenizer == Tokenizer()


def test_image_bundle_round_trip(tmp_path):
    cfg = ImageModelConfig(arch="cnn", input_shape=(1, 8, 8), hidden=10)
    m = build_image_model(cfg).eval()
    p = save_image_model(tmp_path / "img.pt", m, cfg, {"task": "digits"})
    m2 = load_model(str(p))
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(m(x), m2(x))


def test_bad_bundles_give_clear_errors(tmp_path):
    m = _model()
    vocab = Vocabulary(["<pad>", "<unk>"] + [f"w{i}" for i in range(10)])
    with pytest.raises(ModelImportError, match="not found"):
        load_text_model(tmp_path / "none.pt")
    torch.save(m.state_dict(), tmp_path / "sd.pt")
    with pytest.raises(ModelImportError, match="not a certnn model bundle"):
        load_text_model(tmp_path / "sd.pt")
    good = torch.load(save_text_model(tmp_path / "g.pt", m, vocab, META), weights_only=True)

    def broken(name, **change):
        doc = {**good, **change}
        torch.save(doc, tmp_path / name)
        return tmp_path / name

    with pytest.raises(ModelImportError, match="version"):
        load_text_model(broken("v.pt", version=99))
    with pytest.raises(ModelImportError, match="vocabulary"):
        load_text_model(broken("voc.pt", vocab=["<pad>", "<unk>", "a"]))
    with pytest.raises(ModelImportError, match="meta lacks"):
        load_text_model(broken("meta.pt", meta={"task": "mr"}))
    with pytest.raises(ModelImportError, match="bad model config"):
        load_text_model(broken("cfg.pt", config={**good["config"], "attention": True}))
    with pytest.raises(ModelImportError, match="state_dict does not match"):
        load_text_model(broken("sd2.pt", config={**good["config"], "hidden": 7}))
    with pytest.raises(ModelImportError, match="state_dict"):
        load_text_model(broken("nosd.pt", state_dict=None))
    assert read_bundle(tmp_path / "sd.pt") is None
    with pytest.raises(ModelImportError, match="only str"):
        save_text_model(tmp_path / "x.pt", m, vocab, {**META, "bad": object()})


def test_radius_by_frames_equals_one_certifier_per_frame_set():
    m = _model("rnn", E=4, H=5).eval()
    tokens = torch.randint(2, 12, (5, 6))
    g = text_graph(m, 6)
    x = certnn.embed_tokens(m, tokens)
    with torch.no_grad():
        y = g.forward(x).argmax(1)
    frames = [(5,), (3, 5), (5,), (0, 1, 2, 3, 4, 5), (3, 5)]
    cfg = certnn.CertifyConfig(method="crown", norm="2")
    search = certnn.RadiusConfig(bisection_steps=5)
    res = radius_by_frames(g, x, y, frames, cfg, search)
    for fr in set(frames):
        idx = [i for i, f in enumerate(frames) if f == fr]
        one = certnn.Certifier(g, cfg.replace(frames=fr)).radius(x[idx], y[idx], search)
        assert torch.allclose(res.certified_radius[idx], one.certified_radius)
    assert (res.certified_radius > 0).all()
    s = frame_scales((6, 4), frames)
    assert s.shape == (5, 6, 4) and s[1, 3].eq(1).all() and s[1, 4].eq(0).all()
    # perturbing fewer frames of the same sentence never lowers the radius
    full = radius_by_frames(g, x, y, [tuple(range(6))] * 5, cfg, search)
    assert (res.certified_radius >= full.certified_radius * (1 - 1e-6)).all()
    ok = certify_by_frames(g, x, y, frames, float(res.certified_radius.min()) * 0.99, cfg)
    assert ok.all()
