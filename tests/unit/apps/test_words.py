"""certnn.apps.words: per-word certified radii (batched over all (sentence, word) pairs) and saliency."""
from __future__ import annotations

import pytest
import torch

from certnn.apps.words import ranking_agreement, word_pairs, word_sensitivity
from certnn.attacks import PGDConfig, attack_radius
from certnn.certify.per_sample_frames import frame_scales, radius_by_frames
from certnn.certify.radius import CertifyConfig, RadiusConfig
from certnn.errors import ConfigError, DataError
from certnn.graph.recurrent import embed_tokens
from certnn.models import TextClassifier, TextModelConfig, text_graph

T = 6
SEARCH = RadiusConfig(bisection_steps=8)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = TextClassifier(TextModelConfig(vocab_size=12, embed_dim=4, cell="lstm", hidden=4)).eval()
    lengths = torch.tensor([3, 5, 1, 2])
    tokens = torch.zeros(4, T, dtype=torch.long)
    gen = torch.Generator().manual_seed(1)
    for i, L in enumerate(lengths.tolist()):
        tokens[i, T - L:] = torch.randint(2, 12, (L,), generator=gen)
    x = embed_tokens(model, tokens)
    return text_graph(model, T), x, lengths


@pytest.mark.parametrize("method,batch_size,rel", [
    ("ibp", 32, 1e-9),  # interval bounds do not depend on the batch: batched = separate calls
    ("certrnn", 1, 1e-9),  # batch_size 1: every pair alone, exactly the separate calls
    ("crown", 1, 1e-9),  # (crown's refinement also pads to the batch's largest neuron count)
    # batched certrnn = separate calls too (near-tied Cert-RNN tilts are chosen stably, relax/products.py)
    ("certrnn", 32, 1e-9),
])
def test_ranks_are_permutations_and_radii_match_separate_calls(setup, method, batch_size, rel):
    graph, x, lengths = setup
    keep = {"ibp": [0, 1, 2, 3], "certrnn": [0, 2] if batch_size == 1 else [0, 3], "crown": [2, 3]}[method]
    x, lengths = x[keep], lengths[keep]  # a few pairs: the separate calls below are one search each
    cfg = CertifyConfig(method=method, norm="2", batch_size=batch_size)
    ws = word_sensitivity(graph, x, lengths, None, cfg, SEARCH)
    assert ws.sentence.numel() == int(lengths.sum())
    for i, L in enumerate(lengths.tolist()):
        idx = ws.pairs_of(i)
        assert ws.position[idx].tolist() == list(range(L))
        assert ws.frame[idx].tolist() == list(range(T - L, T))
        assert sorted(ws.rank[idx].tolist()) == list(range(1, L + 1))
        assert sorted(ws.saliency_rank[idx].tolist()) == list(range(1, L + 1))
        # the most sensitive word has the smallest radius
        r = ws.certified_radius[idx]
        assert r[ws.rank[idx] == 1].item() == r.min().item()
        by_rank = r[torch.argsort(ws.rank[idx])]
        assert torch.equal(torch.sort(by_rank).values, by_rank)  # rank order = ascending radius
        for k in range(L):
            alone = radius_by_frames(graph, x[i:i + 1], ws.label[i:i + 1], [(T - L + k,)], cfg, SEARCH)
            a, b = float(alone.certified_radius[0]), float(r[k])
            assert b == pytest.approx(a, rel=rel, abs=1e-15)
    assert (ws.certified_radius[ws.correct[ws.sentence]] > 0).all()
    assert (ws.saliency >= 0).all()


def test_certified_radius_of_each_word_is_below_its_attack_radius(setup):
    graph, x, lengths = setup
    ws = word_sensitivity(graph, x, lengths, None, CertifyConfig(method="certrnn", norm="2"), SEARCH)
    frames = [(int(f),) for f in ws.frame.tolist()]
    ar = attack_radius(graph, x[ws.sentence], ws.label[ws.sentence], "2", PGDConfig(steps=40, restarts=2, seed=0),
                       scale=frame_scales(tuple(x.shape[1:]), frames), eps_max=1e3)
    assert (ws.certified_radius <= ar.radius.double() * (1 + 1e-9)).all()


def test_saliency_is_the_dual_norm_of_the_margin_gradient(setup):
    graph, x, lengths = setup
    ws = word_sensitivity(graph, x[:1], lengths[:1], None, CertifyConfig(method="ibp", norm="inf"),
                          RadiusConfig(bisection_steps=2))
    xg = x[:1].clone().requires_grad_(True)
    out = graph.forward(xg)[0]
    y = int(ws.label[0])
    (out[y] - out[1 - y]).backward()
    g = xg.grad[0]
    for p in range(ws.sentence.numel()):
        assert float(ws.saliency[p]) == pytest.approx(float(g[ws.frame[p]].abs().sum()), rel=1e-9)


def test_ranking_agreement_and_word_pairs():
    s, p, f = word_pairs(torch.tensor([2, 3]), 4)
    assert s.tolist() == [0, 0, 1, 1, 1] and p.tolist() == [0, 1, 0, 1, 2] and f.tolist() == [2, 3, 1, 2, 3]
    s, p, f = word_pairs(torch.tensor([2]), 4, padding="right")
    assert f.tolist() == [0, 1]


def test_rank_ties_are_broken_by_saliency(setup):
    graph, x, lengths = setup
    # a wrong label: every radius is 0, so the ranking is the saliency ranking
    ws = word_sensitivity(graph, x[1:2], lengths[1:2], None, CertifyConfig(method="ibp", norm="2"), SEARCH)
    wrong = 1 - ws.label
    ws = word_sensitivity(graph, x[1:2], lengths[1:2], wrong, CertifyConfig(method="ibp", norm="2"), SEARCH)
    assert not ws.correct[0] and (ws.certified_radius == 0).all()
    assert torch.equal(ws.rank, ws.saliency_rank)
    agree = ranking_agreement(ws, torch.tensor([0]))
    assert agree["spearman"] == [1.0] and agree["top1"] == [True]
    assert ranking_agreement(ws)["sentences"] == []


def test_bad_inputs_raise(setup):
    graph, x, lengths = setup
    with pytest.raises(DataError, match="no words"):
        word_sensitivity(graph, x[:2], torch.tensor([0, 2]))
    with pytest.raises(DataError, match="lengths"):
        word_sensitivity(graph, x[:2], torch.tensor([2]))
    with pytest.raises(ConfigError, match="frames"):
        word_sensitivity(graph, x, lengths, config=CertifyConfig(frames=(1,)))
    from certnn import from_torch

    flat = from_torch(torch.nn.Linear(3, 2), (3,))
    with pytest.raises(DataError, match="sequence model"):
        word_sensitivity(flat, torch.zeros(1, 3), torch.tensor([1]))
