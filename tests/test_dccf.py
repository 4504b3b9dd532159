"""DCCF: the exact contractive penalty, the focal loss, the target refresh and the stop rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone

from clusterkit import losses, metrics
from clusterkit.methods import DCCF
from clusterkit.models import MLPAutoencoder


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one thread each for torch and k-means is fastest on a shared machine."""
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)


def tiny_dccf(**kw) -> DCCF:
    args = dict(profile="smoke", dims=(32, 32, 48), pretrain_epochs=2, cluster_epochs=3,
                batch_size=128, verbose=False, snapshot_size=200, device="cpu")
    args.update(kw)
    return DCCF(10, **args)


# ---------------------------------------------------------------- contractive penalty (eq 6)
def finite_difference_jacobian(f, x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """(B, k, d) central differences of f: (B, d) -> (B, k), in float64."""
    d = x.shape[1]
    e = torch.eye(d, dtype=x.dtype)
    plus = f((x[:, None, :] + eps * e).reshape(-1, d)).reshape(len(x), d, -1)
    minus = f((x[:, None, :] - eps * e).reshape(-1, d)).reshape(len(x), d, -1)
    return ((plus - minus) / (2 * eps)).transpose(1, 2)


def test_contractive_penalty_matches_a_finite_difference_jacobian():
    torch.manual_seed(0)
    enc = MLPAutoencoder([20, 16, 12, 24, 5]).encoder.double()
    x = torch.randn(7, 20, dtype=torch.float64)
    z, pen = losses.contractive_penalty(enc, x)
    jac = finite_difference_jacobian(enc, x)
    torch.testing.assert_close(z, enc(x))
    torch.testing.assert_close(pen, jac.pow(2).sum((1, 2)), rtol=1e-6, atol=1e-8)
    assert pen.shape == (7,) and (pen > 0).all()
    # and against autograd's Jacobian on the float32 model the method trains
    enc32 = enc.float()
    x32 = x.float().requires_grad_(False)
    ref = torch.func.vmap(torch.func.jacrev(enc32))(x32).pow(2).sum((1, 2))
    torch.testing.assert_close(losses.contractive_penalty(enc32, x32)[1], ref)


def test_contractive_penalty_trains_the_weights_and_rejects_other_layers():
    enc = MLPAutoencoder([10, 8, 3]).encoder
    _, pen = losses.contractive_penalty(enc, torch.randn(4, 10))
    pen.mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in enc.named_parameters()
               if n.endswith("weight"))
    with pytest.raises(ValueError, match="Linear and ReLU"):
        losses.contractive_penalty(torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Tanh()),
                                   torch.randn(2, 3))


# ---------------------------------------------------------------- focal loss (eq 12)
def test_focal_loss_is_cross_entropy_at_gamma_zero():
    torch.manual_seed(1)
    q = torch.softmax(torch.randn(32, 6), 1)
    t = losses.target_distribution(q)
    c = t.argmax(1)
    ce = torch.nn.functional.nll_loss(torch.log(q), c)
    torch.testing.assert_close(losses.focal_loss(q, t, gamma=0.0), ce)
    soft_ce = -(t * torch.log(q)).sum(1).mean()
    torch.testing.assert_close(losses.focal_loss(q, t, gamma=0.0, soft=True), soft_ce)


def test_focal_loss_down_weights_confident_samples():
    # two samples whose target is class 0: one confident (p_t = 0.95), one hard (p_t = 0.2)
    q = torch.tensor([[0.95, 0.05], [0.2, 0.8]])
    t = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    per = lambda g: torch.stack([losses.focal_loss(q[i:i + 1], t[i:i + 1], g)  # noqa: E731
                                 for i in range(2)])
    ce, fl = per(0.0), per(2.0)
    assert (fl < ce).all()
    ratio = fl / ce  # = (1 - p_t)^γ: 0.0025 for the confident one, 0.64 for the hard one
    torch.testing.assert_close(ratio, torch.tensor([0.05 ** 2, 0.8 ** 2]))
    assert fl[1] / fl[0] > ce[1] / ce[0]  # the hard sample's share of the loss grows
    # the gradient flows into S only, never into the target
    q2 = q.clone().requires_grad_(True)
    t2 = t.clone().requires_grad_(True)
    losses.dccf_clustering(q2, t2).backward()
    assert q2.grad is not None and t2.grad is None


# ---------------------------------------------------------------- the method
def test_dccf_learns_digits_with_its_contract(digits):
    X, y = digits
    m = tiny_dccf(pretrain_epochs=20, cluster_epochs=5, dims=(128, 128, 256), lam=1e-3,
                  contractive_samples=32, batch_size=64)
    m.fit(X, y=y)
    assert metrics.acc(y, m.labels_) > 0.6  # chance 0.1
    assert m.autoencoder_.dims == [64, 128, 128, 256, 10]  # d-...-k: embedding = clusters
    assert m.labels_.shape == (len(X),) and m.cluster_centers_.shape == (10, 10)
    np.testing.assert_array_equal(m.predict(X), m.labels_)
    last = m.history_.steps[-1]
    assert {"rec", "jac", "kl", "focal", "loss"} <= set(last)
    snap = m.history_.snapshots[-1]
    assert snap.extras["hard"].dtype == bool and snap.extras["p_t"].shape == (200,)
    np.testing.assert_array_equal(snap.extras["hard"], snap.extras["p_t"] < 0.5)
    w = m.focal_weights()
    assert w.shape == (len(X),) and ((0 <= w) & (w <= 1)).all()


def test_terms_switch_off_and_reuse_one_pretrained_autoencoder(digits):
    X, y = digits
    pre = tiny_dccf(cluster_epochs=0).fit(X)
    arm = tiny_dccf(pretrained=pre, cluster_epochs=1, use_contractive=False,
                    use_focal=False).fit(X, y=y)
    assert not any(r["phase"] == "pretrain" for r in arm.history_.steps)
    last = arm.history_.steps[-1]
    assert "jac" not in last and "focal" not in last and "kl" in last and "rec" in last
    assert next(pre.autoencoder_.parameters()).data_ptr() != \
        next(arm.autoencoder_.parameters()).data_ptr()
    # the penalty in pretraining only when asked for
    assert "jac" not in pre.history_.steps[-1]
    pc = tiny_dccf(cluster_epochs=0, pretrain_epochs=1, pretrain_contractive=True).fit(X)
    assert "jac" in pc.history_.steps[-1]


@pytest.mark.parametrize("interval", [1, 2])
def test_target_is_refreshed_every_o_epochs(digits, interval):
    X, _ = digits
    m = tiny_dccf(pretrain_epochs=1, cluster_epochs=5, update_interval=interval, tol=0.0)
    targets = []
    run = m.prepare(X, callbacks=[lambda ev, r, p: targets.append(m.target_)
                                  if ev == "epoch" and p["phase"] == "cluster" else None])
    run.fit()
    eps = [r for r in m.history_.epochs if r["phase"] == "cluster"]
    assert [r["refreshed"] for r in eps] == [(e + 1) % interval == 0 for e in range(5)]
    for e in range(1, 5):  # the target object changes exactly at the refreshes
        assert (targets[e] is not targets[e - 1]) == eps[e]["refreshed"]


def test_stop_rule_ends_training_when_few_labels_change(digits):
    X, _ = digits
    # lr = 0: nothing changes after the first refresh, so 0 labels change at the second
    m = tiny_dccf(pretrain_epochs=1, cluster_epochs=10, update_interval=2, tol=0.001, lr=0.0)
    m.fit(X)
    eps = [r for r in m.history_.epochs if r["phase"] == "cluster"]
    assert len(eps) == 2 and eps[-1]["changed"] == 0.0
    # with tol = 0 it runs all epochs
    m = tiny_dccf(pretrain_epochs=1, cluster_epochs=4, update_interval=2, tol=0.0, lr=0.0)
    m.fit(X)
    assert len([r for r in m.history_.epochs if r["phase"] == "cluster"]) == 4


def test_bad_arguments_are_refused_with_a_message(digits):
    X, _ = digits
    with pytest.raises(ValueError, match="focal_target"):
        tiny_dccf(focal_target="medium").fit(X)
    with pytest.raises(ValueError, match="update_interval"):
        tiny_dccf(update_interval=0).fit(X)
    with pytest.raises(ValueError, match="n_clusters"):
        DCCF(5000, profile="smoke", verbose=False).fit(X[:50])
    run = tiny_dccf(cluster_epochs=1).prepare(X)
    with pytest.raises(ValueError, match="gamma"):
        run.set_knob("gamma", -1.0)


def test_profiles_and_params():
    s = DCCF(profile="paper").settings()
    assert (s["pretrain_epochs"], s["cluster_epochs"], s["gamma"], s["beta"], s["tol"]) == \
        (100, 200, 2.0, 0.1, 0.001)
    assert DCCF(profile="paper", beta=0.5).settings()["beta"] == 0.5
    assert clone(DCCF(lam=0.3)).lam == 0.3
    names = {k.name for k in DCCF().knob_specs()}
    assert {"lam", "gamma", "beta", "update_interval", "use_contractive", "use_focal",
            "lr", "augment"} <= names
