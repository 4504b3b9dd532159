"""ClusterNet: its losses (eqs 6-7, 4-5, 17), centre updates (eqs 12-13), constrained
k-means (Alg. 1), the partial-label API and a short fit on real digits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from clusterkit import losses, metrics
from clusterkit.methods import ClusterNet
from clusterkit.methods.clusternet import (
    check_partial_labels,
    constrained_kmeans,
    label_order,
    labels_at_fraction,
    partial_labels,
    update_centers,
)
from clusterkit.models import ClusterNetAE, softmax_distance


def _kl(p, q):
    return float((p * (p / q).log()).sum())


# --------------------------------------------------------------------------- losses


def test_pair_kl_is_zero_for_identical_distributions_and_grows_with_divergence():
    base = torch.tensor([0.7, 0.2, 0.1])
    sims = []
    for t in (0.0, 0.3, 0.6, 0.9):
        other = (1 - t) * base + t * torch.tensor([0.05, 0.05, 0.9])
        log_p = torch.stack([base, other]).log()
        sim, dis = losses.pair_loss(log_p, torch.tensor([0, 0]), margin=2.0)
        assert float(dis) == 0.0  # no dissimilar pair
        sims.append(float(sim))
        want = _kl(base, other) + _kl(other, base)  # eq 2
        # float32: the KL is a difference of terms near 1, so "zero" is a few ulps (1.2e-7)
        assert math.isclose(float(sim), want, rel_tol=1e-5, abs_tol=1e-6)
    assert sims[0] == pytest.approx(0.0, abs=1e-6)
    assert all(a < b for a, b in zip(sims, sims[1:], strict=False)), sims


def test_hinge_is_zero_beyond_the_margin_and_positive_inside():
    p = torch.tensor([[0.98, 0.01, 0.01], [0.01, 0.98, 0.01]])
    kl = _kl(p[0], p[1])  # about 4.5, symmetric here
    labels = torch.tensor([0, 1])
    _, beyond = losses.pair_loss(p.log(), labels, margin=kl - 0.5)
    assert float(beyond) == 0.0
    _, inside = losses.pair_loss(p.log(), labels, margin=kl + 1.0)
    assert float(inside) == pytest.approx(2 * 1.0, rel=1e-4)  # both directions short by 1


def test_pair_loss_matches_a_loop_over_pairs_and_trains_only_the_free_side():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 4, generator=g, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 2, 1, 0, 2])
    mask = torch.tensor([True, True, True, False, True, True, True])
    log_p = torch.log_softmax(logits, 1)
    sim, dis = losses.pair_loss(log_p, labels, 1.5, mask)
    p = log_p.detach().exp()
    s, d = [], []
    for i in range(7):
        for j in range(7):
            if i == j or not (mask[i] and mask[j]):
                continue
            a, b = _kl(p[i], p[j]), _kl(p[j], p[i])
            if labels[i] == labels[j]:
                s.append(a + b)
            else:
                d.append(max(0.0, 1.5 - a) + max(0.0, 1.5 - b))
    assert float(sim.detach()) == pytest.approx(np.mean(s), rel=1e-5)
    assert float(dis.detach()) == pytest.approx(np.mean(d), rel=1e-5)
    # the fixed side is detached: KL(p_i || p_j) moves p_j only
    m = losses.kl_matrix(log_p)
    m[0, 1].backward()
    assert logits.grad[0].abs().sum() == 0 and logits.grad[1].abs().sum() > 0


def test_kmeans_loss_is_the_mean_squared_distance_to_the_assigned_centre():
    z = torch.tensor([[0.0, 0.0], [1.0, 1.0], [3.0, 0.0]])
    c = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    a = torch.tensor([0, 1, 1])
    assert float(losses.kmeans_loss(z, c, a)) == pytest.approx((1 + 2 + 1) / 3)


def test_annealing_schedule_eq17():
    assert losses.anneal_lambda(0, 5, 40) == 0.0
    assert losses.anneal_lambda(4, 5, 40) == 0.0
    assert losses.anneal_lambda(5, 5, 40) == 0.0  # at T1
    assert losses.anneal_lambda(22.5, 5, 40) == pytest.approx(0.5)
    assert losses.anneal_lambda(40, 5, 40) == 1.0  # at T2
    assert losses.anneal_lambda(59, 5, 40) == 1.0
    with pytest.raises(ValueError, match="T1 < T2"):
        losses.anneal_lambda(3, 10, 10)
    m = ClusterNet(profile="paper")
    assert m.lambda_at(5) == 0.0 and m.lambda_at(40) == 1.0
    assert ClusterNet(profile="paper", anneal=False, lam=0.3).lambda_at(0) == 0.3
    half = ClusterNet(profile="paper", lam=0.5)  # annealing ends at lam instead of 1
    assert half.lambda_at(5) == 0.0 and half.lambda_at(40) == 0.5
    assert half.lambda_at(22.5) == pytest.approx(0.25)


def test_softmax_distance_is_eq16():
    z = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    c = torch.tensor([[0.0, 1.0], [2.0, 0.0], [1.0, 1.0]])
    d2 = torch.cdist(z, c).pow(2)
    want = torch.exp(-d2) / torch.exp(-d2).sum(1, keepdim=True)
    torch.testing.assert_close(softmax_distance(z, c).exp(), want)


# --------------------------------------------------------------------------- centres


def test_centre_update_matches_the_per_point_formula():
    g = torch.Generator().manual_seed(1)
    centers = torch.randn(4, 3, generator=g)
    z = torch.randn(9, 3, generator=g)
    assign = torch.tensor([0, 2, 2, 1, 0, 2, 0, 0, 2])
    counts = torch.tensor([10.0, 3.0, 50.0, 7.0])
    want = centers.clone()
    for i in range(len(z)):  # eqs 12-13, each step from the batch's starting centre
        k = int(assign[i])
        want[k] -= (centers[k] - z[i]) / counts[k]
    got = update_centers(centers.clone(), z, assign, counts)
    torch.testing.assert_close(got, want)
    assert torch.equal(got[3], centers[3])  # a cluster without points stays put
    # never past the batch mean: N_k smaller than the batch's count moves to the mean
    one = update_centers(centers.clone(), z, assign, torch.ones(4))
    torch.testing.assert_close(one[2], z[assign == 2].mean(0))


# --------------------------------------------------------------------------- labels


def test_partial_labels_are_stratified_seeded_and_hide_the_rest():
    y = np.repeat(np.arange(4), [100, 200, 50, 150])
    yp = partial_labels(y, 0.02, seed=3)
    assert yp.shape == y.shape and yp.dtype == np.int64
    lab = yp >= 0
    np.testing.assert_array_equal(yp[lab], y[lab])
    np.testing.assert_array_equal(np.bincount(yp[lab]), [2, 4, 1, 3])
    np.testing.assert_array_equal(partial_labels(y, 0.02, seed=3), yp)
    assert not np.array_equal(partial_labels(y, 0.02, seed=4), yp)


def test_bad_labels_raise_clear_errors():
    y = np.repeat(np.arange(3), 100)
    with pytest.raises(ValueError, match="too small"):
        partial_labels(y, 0.001)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        partial_labels(y, 0.0)
    with pytest.raises(ValueError, match="out of range"):
        check_partial_labels((np.array([0, 150, 300]), np.array([0, 1, 2])), 300, 3)
    with pytest.raises(ValueError, match=r"class\(es\) \[2\] have no labeled"):
        check_partial_labels((np.array([0, 150]), np.array([0, 1])), 300, 3)
    with pytest.raises(ValueError, match="shape"):
        check_partial_labels(np.zeros(10, int), 300, 3)
    with pytest.raises(ValueError, match="n_clusters"):
        check_partial_labels((np.array([0, 1, 2]), np.array([0, 1, 3])), 300, 3)
    with pytest.raises(ValueError, match="repeat"):
        check_partial_labels((np.array([0, 0, 2]), np.array([0, 1, 2])), 300, 3)
    with pytest.raises(ValueError, match="semi-supervised"):
        ClusterNet(3, profile="smoke").fit(np.zeros((30, 1, 8, 8), np.float32))
    with pytest.raises(ValueError, match="T1 < T2"):
        ClusterNet(3, profile="smoke", T1=5, T2=5).prepare(
            np.zeros((30, 1, 8, 8), np.float32), np.r_[0, 1, 2, [-1] * 27])


# --------------------------------------------------------------------------- Alg. 1


def test_constrained_kmeans_keeps_labeled_points_and_ends_at_the_means(digits):
    X, y = digits
    yp = partial_labels(y, 0.02, seed=0)
    labels, centers, it = constrained_kmeans(X, yp, 10)
    lab = yp >= 0
    np.testing.assert_array_equal(labels[lab], yp[lab])
    flat = X.reshape(len(X), -1)
    for k in range(10):
        np.testing.assert_allclose(centers[k], flat[labels == k].mean(0), atol=1e-5)
    d = ((flat[:, None] - centers[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(labels[~lab], d.argmin(1)[~lab])  # converged
    assert metrics.acc(y, labels) > 0.7 and it > 1


# --------------------------------------------------------------------------- the method


def test_conv_autoencoder_shapes():
    for shape in [(1, 28, 28), (1, 16, 16), (1, 8, 8), (3, 32, 32)]:
        ae = ClusterNetAE(shape)
        z, x_hat = ae(torch.rand(3, *shape))
        assert z.shape == (3, 32) and x_hat.shape == (3, *shape)
        assert z.abs().max() < 1  # tanh
    with pytest.raises(ValueError, match="at least 8"):
        ClusterNetAE((1, 4, 4))


def test_clusternet_learns_keeps_labeled_points_and_predicts_unseen_digits(digits):
    X, y = digits
    rng = np.random.default_rng(0)
    test = rng.choice(len(X), 300, replace=False)
    train = np.setdiff1d(np.arange(len(X)), test)
    yp = partial_labels(y[train], 0.05, seed=0)
    lab = yp >= 0
    seen = []

    def watch(event, run, payload):  # the labeled points' cluster during training
        m = run.method
        if event == "step" and m.assign_ is not None:
            seen.append(bool(torch.equal(m.assign_[m._is_lab], m._yp[m._is_lab])))

    m = ClusterNet(10, profile="smoke", pretrain_epochs=8, cluster_epochs=4, T1=0, T2=2,
                   batch_size=256, verbose=False, snapshot_size=200, seed=0)
    m.prepare(X[train], yp, y=y[train], eval_set=(X[test], y[test]), callbacks=[watch]).fit()
    assert seen and all(seen)
    np.testing.assert_array_equal(m.labels_[lab], yp[lab])
    pred = m.predict(X[test])
    assert pred.shape == (300,) and pred.dtype == np.int64
    acc = metrics.acc(y[test], pred)
    assert acc > 0.6, acc  # chance is 0.1
    assert m.history_.epochs[-1]["test_acc"] == pytest.approx(acc)
    assert m.cluster_centers_.shape == (10, 32)
    assert m.decode_centers().shape == (10, 1, 8, 8)
    assert m.predict_proba(X[test][:5]).sum(1) == pytest.approx(np.ones(5), abs=1e-5)
    steps = m.history_.steps
    assert {"pair_l", "pair_u", "kmeans_l", "kmeans_u", "rec"} <= set(steps[-1])
    lam = [r["lambda"] for r in m.history_.epochs if r["phase"] == "cluster"]
    assert lam == [0.0, 0.5, 1.0, 1.0]


def test_knobs_switch_terms_and_refuse_a_bad_schedule(digits):
    X, y = digits
    X, y = X[:400], y[:400]
    yp = partial_labels(y, 0.05, seed=0)
    m = ClusterNet(10, profile="smoke", pretrain_epochs=0, cluster_epochs=1, verbose=False,
                   batch_size=200, snapshot_size=100)
    run = m.prepare(X, yp, y=y)
    with pytest.raises(ValueError, match="below T2"):
        run.set_knob("T1", 5)
    run.set_knob("use_pair", False)
    run.set_knob("use_reconstruction", False)
    run.fit()
    assert "pair_l" not in m.history_.steps[-1] and "rec" not in m.history_.steps[-1]
    assert "kmeans_u" in m.history_.steps[-1]


def test_same_seed_same_result(digits):
    X, y = digits
    X, y = X[:300], y[:300]
    yp = partial_labels(y, 0.1, seed=0)
    kw = dict(profile="smoke", pretrain_epochs=1, cluster_epochs=1, verbose=False,
              batch_size=100, snapshot_size=50, augment=True, device="cpu")
    a = ClusterNet(10, **kw).fit(X, yp)
    b = ClusterNet(10, **kw).fit(X, yp)
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)


def test_a_pretrained_autoencoder_left_in_eval_mode_still_trains_with_dropout(digits):
    X, y = digits
    X, y = X[:300], y[:300]
    ae = ClusterNetAE(tuple(X.shape[1:]), latent=8).eval()  # as a reader may leave it
    modes: list[bool] = []

    def watch(event, run, payload):
        if event == "step":
            modes.append(all(mod.training for mod in run.method.autoencoder_.modules()))

    m = ClusterNet(10, profile="smoke", pretrained=ae, cluster_epochs=1, verbose=False,
                   batch_size=100, snapshot_epochs=None)
    m.prepare(X, partial_labels(y, 0.1, seed=0), callbacks=[watch]).fit()
    assert modes and all(modes)  # dropout on in every step
    assert not ae.training  # the caller's module is left as it was


def test_kmeans_weight_scales_both_kmeans_terms_in_the_loss(digits):
    X, y = digits
    X, y = X[:400], y[:400]
    yp = partial_labels(y, 0.05, seed=0)
    for w in (0.0, 0.5):
        m = ClusterNet(10, profile="smoke", pretrain_epochs=0, cluster_epochs=2, T1=0, T2=1,
                       kmeans_weight=w, verbose=False, batch_size=200, snapshot_size=100)
        m.fit(X, yp, y=y)
        for r in [s for s in m.history_.steps if s.get("phase", "cluster") == "cluster"]:
            want = (r["pair_l"] + r["lambda"] * r["pair_u"] + r["rec"]
                    + w * (r["kmeans_l"] + r["lambda"] * r["kmeans_u"]))  # eq 3, weighted
            assert r["loss"] == pytest.approx(want, rel=1e-5)
            assert r["kmeans_l"] > 0  # computed (and drawn) even at weight 0
    assert ClusterNet(10, profile="paper").settings()["kmeans_weight"] == 1.0  # eq 3
    assert "kmeans_weight" in [k.name for k in m.knob_specs()]


def test_labels_at_fraction_nest_and_start_from_the_given_labels(digits):
    _, y = digits
    yp = partial_labels(y, 0.05, seed=0)
    rank = label_order(yp, y, seed=0)
    counts = np.bincount(y)
    sets = {f: labels_at_fraction(y, rank, f) >= 0 for f in (0.0, 0.02, 0.05, 0.2, 1.0)}
    for f, lab in sets.items():
        want = np.maximum(1, np.floor(f * counts + 0.5))
        np.testing.assert_array_equal(np.bincount(y[lab], minlength=10), want)
    assert (sets[0.0] <= sets[0.02]).all() and (sets[0.02] <= sets[0.05]).all()
    assert (sets[0.05] <= sets[0.2]).all() and sets[1.0].all()
    np.testing.assert_array_equal(sets[0.05], yp >= 0)  # the given labels come first
    assert (labels_at_fraction(y, rank, 0.2)[sets[0.2]] == y[sets[0.2]]).all()


def test_label_fraction_knob_changes_the_labeled_set_while_training(digits, tmp_path):
    from clusterkit.engine import Run

    X, y = digits
    yp = partial_labels(y, 0.05, seed=0)
    given = yp >= 0
    seen = []

    def watch(event, run, payload):
        m = run.method
        if event == "step" and payload["phase"] == "cluster":
            lab = m._is_lab.cpu().numpy()
            seen.append((run.step, int(lab.sum()),
                         bool(torch.equal(m.assign_[m._is_lab], m._yp[m._is_lab]))))
            if len(seen) == 2:
                run.set_knob("label_fraction", 0.2)  # reaches the next step
            if len(seen) == 5:
                run.stop()

    m = ClusterNet(10, profile="smoke", pretrain_epochs=1, cluster_epochs=3, verbose=False,
                   batch_size=256, snapshot_size=100)
    run = m.prepare(X, yp, y=y, label_pool=y, callbacks=[watch])
    assert run.knobs["label_fraction"] == pytest.approx(given.mean(), abs=1e-4)
    run.fit()
    n20 = int(np.maximum(1, np.floor(0.2 * np.bincount(y) + 0.5)).sum())
    assert [n for _, n, _ in seen] == [int(given.sum())] * 2 + [n20] * 3
    assert all(ok for _, _, ok in seen)  # labeled points sit in their class (eq 11)
    now = m.y_partial_ >= 0
    assert (now >= given).all() and (m.y_partial_[now] == y[now]).all()
    # the pool travels with a checkpoint: a resumed run can move the knob again
    resumed = Run.load(run.save(tmp_path / "cn.ckpt"), X, y, progress=False)
    resumed.set_knob("label_fraction", 0.001)
    assert (resumed.method.y_partial_ >= 0).sum() == 10  # one a class
    assert ((resumed.method.y_partial_ >= 0) <= given).all()  # a prefix of the given set


def test_label_fraction_knob_refuses_without_or_against_the_given_labels(digits):
    X, y = digits
    X, y = X[:300], y[:300]
    yp = partial_labels(y, 0.1, seed=0)
    m = ClusterNet(10, profile="smoke", verbose=False)
    with pytest.raises(ValueError, match="label_pool"):
        m.prepare(X, yp).set_knob("label_fraction", 0.2)
    wrong = y.copy()
    i = int(np.flatnonzero(yp >= 0)[0])
    wrong[i] = (wrong[i] + 1) % 10
    with pytest.raises(ValueError, match="contradicts"):
        m.prepare(X, yp, label_pool=wrong)
    with pytest.raises(ValueError, match="no -1"):
        m.prepare(X, yp, label_pool=yp)
