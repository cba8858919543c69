"""Verified robust training (certnn.train.robust): config validation, the eps / kappa / beta schedule,
gradients from the bounds to the parameters for every method x architecture, the robust loss against
the clean loss, a graph whose weights are the parameters (from_torch(keep_grad=True)), and short
seeded training runs that raise the certified accuracy over natural training."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import certnn
from certnn.certify.bounds import bounds_for_spec, make_spec
from certnn.errors import ConfigError, DataError
from certnn.specs.frames import frame_scale
from certnn.testing.nets import recurrent_classifier
from certnn.train.margins import margin_lower_bounds, robust_cross_entropy, training_graph
from certnn.train.robust import RobustTrainConfig, schedule, train_robust
from certnn.train.simple import train_classifier

torch.set_num_threads(1)


def _mlp(d: int = 5, classes: int = 3) -> nn.Module:
    return nn.Sequential(nn.Linear(d, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, classes))


def _cnn(classes: int = 3) -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, classes))


ARCHS = {  # name: (factory, input shape)
    "mlp": (_mlp, (5,)),
    "cnn": (_cnn, (1, 6, 6)),
    "rnn": (lambda: recurrent_classifier("rnn", 3, 4, 3), (3, 3)),
    "lstm": (lambda: recurrent_classifier("lstm", 3, 4, 3), (3, 3)),
    "gru": (lambda: recurrent_classifier("gru", 3, 4, 3), (3, 3)),
}
CASES = [(a, m) for a in ("mlp", "cnn") for m in ("ibp", "crown-ibp")]
CASES += [(a, m) for a in ("rnn", "lstm", "gru") for m in ("ibp", "crown-ibp", "certrnn")]
CASES += [("mlp", "certrnn"), ("cnn", "certrnn")]


def _model(arch: str, seed: int = 0) -> tuple[nn.Module, tuple[int, ...]]:
    torch.manual_seed(seed)
    make, shape = ARCHS[arch]
    return make(), shape


def _batch(shape, n: int = 4, seed: int = 1, classes: int = 3):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n,) + shape, generator=g), torch.arange(n) % classes


# ---------------------------------------------------------------- config and schedule

def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ConfigError, match="unknown key"):
        RobustTrainConfig.from_mapping({"method": "ibp", "epsilon": 0.1})
    bad = [{"method": "crown"}, {"method": "fastlin"}, {"norm": "1"}, {"norm": "3"}, {"eps": -0.1},
           {"eps": float("nan")}, {"lr": 0.0}, {"epochs": 0}, {"batch_size": 0}, {"epochs": 3, "ramp_epochs": 4},
           {"epochs": 4, "warmup_epochs": 2, "ramp_epochs": 3}, {"warmup_epochs": -1}, {"kappa_final": 1.5},
           {"beta_final": -0.1}, {"clip": (1.0, 0.0)}, {"clip": (0.0,)}, {"frames": ("a",)}, {"epochs": 2.5},
           {"embedded": "yes"}, {"eps": "0.1"}]
    for b in bad:
        with pytest.raises(ConfigError):
            RobustTrainConfig.from_mapping(b)


def test_config_normalises_values():
    cfg = RobustTrainConfig.from_mapping({"method": "crown-ibp", "norm": "Linf", "frames": [0, -1], "clip": [0, 1],
                                          "eps": 1})
    assert cfg.norm == "inf" and cfg.frames == (0, -1) and cfg.clip == (0.0, 1.0) and cfg.eps == 1.0
    assert RobustTrainConfig(norm="l2").norm == "2"
    assert RobustTrainConfig.from_mapping(cfg.to_dict()) == cfg


def test_schedule_values_at_given_steps():
    cfg = RobustTrainConfig(method="crown-ibp", eps=0.3, epochs=5, warmup_epochs=1, ramp_epochs=2, kappa_final=0.5,
                            beta_final=0.0)
    spe = 4
    for step in range(4):  # warm-up: clean
        s = schedule(cfg, step, spe)
        assert (s.eps, s.kappa, s.beta, s.robust) == (0.0, 1.0, 1.0, False)
    s = schedule(cfg, 4, spe)  # first ramp step: t = 1/8
    assert s.robust and s.eps == pytest.approx(0.3 / 8) and s.kappa == pytest.approx(1 - 0.5 / 8)
    assert s.beta == pytest.approx(1 - 1 / 8)
    s = schedule(cfg, 7, spe)  # t = 1/2
    assert (s.eps, s.kappa, s.beta) == pytest.approx((0.15, 0.75, 0.5))
    for step in (11, 12, 19):  # end of the ramp and after: the final values
        s = schedule(cfg, step, spe)
        assert (s.eps, s.kappa, s.beta) == pytest.approx((0.3, 0.5, 0.0))
    eps = [schedule(cfg, k, spe).eps for k in range(20)]
    assert all(a <= b for a, b in zip(eps, eps[1:]))
    # no ramp: full values right after the warm-up; eps = 0: clean throughout
    s = schedule(cfg.replace(ramp_epochs=0, beta_final=1.0), 4, spe)
    assert (s.eps, s.kappa, s.beta, s.robust) == (0.3, 0.5, 1.0, True)
    assert not any(schedule(cfg.replace(eps=0.0), k, spe).robust for k in range(20))


# ---------------------------------------------------------------- gradients and the loss

@pytest.mark.parametrize("arch,method", CASES)
def test_gradients_reach_every_parameter_finite(arch, method):
    model, shape = _model(arch)
    x, y = _batch(shape)
    for norm in ("inf", "2"):
        for frames in ((None, (-1,)) if len(shape) == 2 and arch != "cnn" else (None,)):
            scale = None if frames is None else frame_scale(shape, frames, dtype=torch.float32)
            model.zero_grad()
            m = margin_lower_bounds(model, x, y, shape, method, 0.1, norm, beta=0.5, scale=scale)
            assert m.shape == (4, 2) and m.requires_grad
            robust_cross_entropy(m).backward()
            for name, p in model.named_parameters():
                assert p.grad is not None and torch.isfinite(p.grad).all(), (norm, frames, name)
                assert p.grad.abs().sum() > 0, (norm, frames, name)


def test_gradients_reach_the_embedding_table():
    torch.manual_seed(0)
    model = recurrent_classifier("lstm", 3, 4, 3, vocab=7)
    tokens = torch.tensor([[1, 2, 3], [4, 5, 6], [0, 1, 2], [3, 3, 3]])
    y = torch.tensor([0, 1, 2, 0])
    for method in ("ibp", "crown-ibp", "certrnn"):
        model.zero_grad()
        m = margin_lower_bounds(model, tokens, y, (3, 3), method, 0.1, embedded=True)
        robust_cross_entropy(m).backward()
        g = model.embedding.weight.grad
        assert g is not None and torch.isfinite(g).all() and g[[1, 2, 3]].abs().sum() > 0
    with pytest.raises(DataError):
        margin_lower_bounds(model, tokens.float(), y, (3, 3), "ibp", 0.1, embedded=True)


@pytest.mark.parametrize("arch", ["mlp", "cnn", "lstm", "gru"])
def test_robust_loss_bounds_the_clean_loss(arch):
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-5)):
        model, shape = _model(arch)
        model = model.to(dtype)
        x, y = _batch(shape, n=6)
        x = x.to(dtype)
        with torch.no_grad():
            clean = nn.functional.cross_entropy(model(x), y).item()
        methods = ["ibp", "crown-ibp"] + (["certrnn"] if arch in ("lstm", "gru") else [])
        for method in methods:
            with torch.no_grad():
                at0 = robust_cross_entropy(margin_lower_bounds(model, x, y, shape, method, 0.0)).item()
                at = robust_cross_entropy(margin_lower_bounds(model, x, y, shape, method, 0.05)).item()
            # certrnn widens its bounds by rounding-error terms (~n ulps, 1024 ulps on IBP hulls): in
            # float32 that is ~1e-5 relative even at eps = 0
            t0 = tol * (10 if method == "certrnn" and dtype == torch.float32 else 1)
            assert at0 == pytest.approx(clean, rel=t0, abs=t0), (dtype, method)
            assert at >= clean - tol and at > at0, (dtype, method)


def test_crown_ibp_beta_mixes_the_two_bounds():
    model, shape = _model("mlp")
    x, y = _batch(shape)
    with torch.no_grad():
        ibp = margin_lower_bounds(model, x, y, shape, "ibp", 0.1)
        crown = margin_lower_bounds(model, x, y, shape, "crown-ibp", 0.1, beta=1.0)
        mixed = margin_lower_bounds(model, x, y, shape, "crown-ibp", 0.1, beta=0.25)
        none = margin_lower_bounds(model, x, y, shape, "crown-ibp", 0.1, beta=0.0)
    assert torch.allclose(mixed, 0.25 * crown + 0.75 * ibp, atol=1e-6)
    assert torch.equal(none, ibp)
    # the CROWN-IBP bound is the certification path's crown-ibp bound (float64, same model)
    g = certnn.from_torch(model, shape)
    spec = make_spec(g, x.double(), 0.1, "inf")
    from certnn.certify.targets import margin_matrix
    lo, _, _ = bounds_for_spec(g, spec, "crown-ibp", margin_matrix(y, 3), upper=False)
    assert torch.allclose(crown.double(), lo, atol=1e-5)


# ---------------------------------------------------------------- keep_grad graphs

def test_keep_grad_graph_uses_the_parameters_and_default_detaches():
    model, shape = _model("mlp")
    g = certnn.from_torch(model, shape, dtype=torch.float32, keep_grad=True)
    lin = [g.nodes[n].op for n in g.order if g.nodes[n].op.kind == "linear"]
    assert lin[0].weight is model[0].weight and lin[0].bias is model[0].bias
    g0 = certnn.from_torch(model, shape, dtype=torch.float32)
    assert all(not t.requires_grad for n in g0.order for t in vars(g0.nodes[n].op).values()
               if isinstance(t, torch.Tensor))
    # float64 keep_grad graph: differentiable conversions of the parameters, the same certified bounds
    lstm, sshape = _model("lstm")
    x, y = _batch(sshape)
    a = certnn.from_torch(lstm, sshape)
    b = certnn.from_torch(lstm, sshape, keep_grad=True)
    assert any(t.requires_grad for n in b.order for t in vars(b.nodes[n].op).values() if isinstance(t, torch.Tensor))
    for method in ("crown", "certrnn", "ibp"):
        spec = make_spec(a, x.double(), 0.05, "inf")
        la, ha, _ = bounds_for_spec(a, spec, method)
        lb, hb, _ = bounds_for_spec(b, spec, method)
        assert torch.equal(la, lb) and torch.equal(ha, hb)


def test_steps_after_in_place_updates_use_fresh_graphs():
    """Derived weights (an LSTM's b_ih + b_hh) are rebuilt every step: optimizer updates never leave a
    stale tensor in the autograd graph, and the bounds after a step equal a fresh computation."""
    model, shape = _model("lstm")
    x, y = _batch(shape)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for method in ("ibp", "crown-ibp", "certrnn"):
        for _ in range(2):
            opt.zero_grad()
            robust_cross_entropy(margin_lower_bounds(model, x, y, shape, method, 0.05)).backward()
            opt.step()
        with torch.no_grad():
            again = margin_lower_bounds(model, x, y, shape, method, 0.05)
            fresh = margin_lower_bounds(model, x, y, shape, method, 0.05)
        assert torch.equal(again, fresh)
    assert training_graph(model, shape).nodes  # builds without the parity check


# ---------------------------------------------------------------- training runs

def _blobs(n: int, seed: int, d: int = 4):
    """Two classes separated along x0 by a gap of 0.1 around 0.5, other features uniform noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.rand(n, d, generator=g) * 0.3
    x[:, 0] += y * 0.4 + 0.15
    return x, y


def _certified(model, x, y, eps, method, shape):
    return certnn.certify(model, x.double(), y, eps, method=method, input_shape=shape).certified.double().mean().item()


@pytest.mark.parametrize("method,cert", [("ibp", "ibp"), ("crown-ibp", "crown")])
def test_training_raises_certified_accuracy_mlp(method, cert):
    x, y = _blobs(256, 0)
    xt, yt = _blobs(256, 1)
    eps = 0.08

    def net():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2))

    natural = train_classifier(net(), x, y, epochs=10, batch_size=32, lr=1e-2, seed=0)
    seen = []
    cfg = RobustTrainConfig(method=method, eps=eps, epochs=10, batch_size=32, lr=1e-2, ramp_epochs=4, kappa_final=0.0)
    robust = net()
    log = train_robust(robust, x, y, (4,), cfg, progress=lambda k, n, rec: seen.append((k, n, rec.epoch)))
    assert seen == [(k, 10, k) for k in range(1, 11)]
    assert not robust.training
    assert len(log.epochs) == 10 and log.epochs[-1].eps == pytest.approx(eps)
    assert log.epochs[-1].verified_err < log.epochs[3].verified_err
    acc_nat, acc_rob = _certified(natural, xt, yt, eps, cert, (4,)), _certified(robust, xt, yt, eps, cert, (4,))
    assert acc_rob > acc_nat + 0.04, (acc_nat, acc_rob)
    # deterministic for a seed
    again = net()
    log2 = train_robust(again, x, y, (4,), cfg)
    assert [e.loss for e in log2.epochs] == [e.loss for e in log.epochs]
    assert all(torch.equal(p, q) for p, q in zip(robust.parameters(), again.parameters()))


@pytest.mark.parametrize("frames,eps,epochs", [(None, 0.1, 8), ((-1,), 0.15, 6)])
def test_training_raises_certified_accuracy_rnn_certrnn(frames, eps, epochs):
    # sequences of 2 frames of 4 features (the class lives in feature 0 of frame 0); all frames or only
    # the last one perturbed; certified by the float64 certrnn path with the same frames
    x, y = _blobs(192, 0, d=8)
    xt, yt = _blobs(192, 1, d=8)
    x, xt = x.reshape(-1, 2, 4), xt.reshape(-1, 2, 4)

    def net():
        torch.manual_seed(0)
        return recurrent_classifier("rnn", 4, 8, 2)

    natural = train_classifier(net(), x, y, epochs=epochs, batch_size=32, lr=1e-2, seed=0)
    robust = net()
    cfg = RobustTrainConfig(method="certrnn", eps=eps, epochs=epochs, batch_size=32, lr=1e-2, ramp_epochs=3,
                            kappa_final=0.0, frames=frames)
    train_robust(robust, x, y, (2, 4), cfg)
    res = {}
    for name, m in (("natural", natural), ("robust", robust)):
        c = certnn.Certifier(m, certnn.CertifyConfig(method="certrnn", frames=frames), input_shape=(2, 4))
        res[name] = c.certify(xt.double(), yt, eps).certified.double().mean().item()
    assert res["robust"] > res["natural"] + 0.15, res


def test_train_robust_checks_shapes():
    model, shape = _model("mlp")
    with pytest.raises(DataError):
        train_robust(model, torch.rand(4, 6), torch.zeros(4, dtype=torch.long), shape, ONE_EPOCH)
    with pytest.raises(DataError):
        train_robust(model, torch.rand(4, 5), torch.zeros(3, dtype=torch.long), shape, ONE_EPOCH)


ONE_EPOCH = RobustTrainConfig(epochs=1, ramp_epochs=0)
