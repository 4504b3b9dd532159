"""DECS: the Otsu threshold, determinacy, stability and loss (eqs 6-8), its two variants, and
the method on real digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone

from clusterkit import losses, metrics
from clusterkit.methods import DECS
from clusterkit.methods.decs import Q_HIST_BINS
from clusterkit.models import ConvAutoencoder, student_t


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small convolutions run faster on one thread than on two busy ones."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def brute_force_otsu(v: np.ndarray) -> tuple[float, float]:
    """Best split of the values by exhaustive search over every cut between sorted values:
    (the between-class variance it reaches, a threshold in the middle of its gap)."""
    v = np.sort(v.astype(np.float64))
    best, cut = -1.0, 0
    for i in range(1, len(v)):
        if v[i] == v[i - 1]:
            continue
        lo, hi = v[:i], v[i:]
        w = i / len(v)
        between = w * (1 - w) * (lo.mean() - hi.mean()) ** 2
        if between > best:
            best, cut = between, i
    return best, (v[cut - 1] + v[cut]) / 2


def between_variance(v: np.ndarray, t: float) -> float:
    lo, hi = v[v < t], v[v >= t]
    w = len(lo) / len(v)
    return w * (1 - w) * (lo.mean() - hi.mean()) ** 2


def test_otsu_lands_between_the_modes_and_matches_brute_force():
    g = np.random.default_rng(0)
    v = np.concatenate([g.normal(0.08, 0.03, 600), g.normal(0.8, 0.06, 150)]).clip(0, 1)
    t = float(losses.otsu_threshold(torch.tensor(v, dtype=torch.float32)))
    assert v[v < 0.4].max() < t < v[v > 0.4].min()  # in the gap between the two modes
    best, _ = brute_force_otsu(v)
    assert between_variance(v, t) == pytest.approx(best, rel=1e-6)

    # overlapping modes: no gap, the histogram's cut still matches the exhaustive search
    w = np.concatenate([g.normal(0.3, 0.1, 700), g.normal(0.6, 0.1, 300)]).clip(0, 1)
    t = float(losses.otsu_threshold(torch.tensor(w, dtype=torch.float32)))
    best, t_best = brute_force_otsu(w)
    assert abs(t - t_best) < 0.01, (t, t_best)
    assert between_variance(w, t) >= best * (1 - 1e-3)


def test_otsu_has_no_gradient_and_handles_a_constant_batch():
    q = torch.softmax(torch.randn(64, 10), 1).requires_grad_(True)
    t = losses.otsu_threshold(q)
    assert not t.requires_grad and t.shape == ()
    flat = torch.full((32, 10), 0.1)
    assert float(losses.otsu_threshold(flat)) == pytest.approx(0.1)


@pytest.mark.parametrize("squared", [True, False])
def test_determinacy_is_zero_at_the_threshold_and_one_at_the_ends(squared):
    for t in (0.1, 0.37, 0.8):
        q = torch.tensor([[0.0, t, 1.0]])
        f = losses.determinacy(q, t, squared=squared)
        torch.testing.assert_close(f, torch.tensor([[1.0, 0.0, 1.0]]))
    q = torch.linspace(0, 1, 101)[None]
    f = losses.determinacy(q, 0.3, squared=squared)
    assert ((f >= 0) & (f <= 1)).all()
    # falls towards t from both sides
    below, above = f[0, :31], f[0, 30:]
    assert (below.diff() <= 0).all() and (above.diff() >= 0).all()
    half = float(losses.determinacy(torch.tensor([[0.15]]), 0.3, squared=squared))
    assert half == pytest.approx(0.25 if squared else 0.5)


@pytest.mark.parametrize("squared", [True, False])
def test_stability_near_one_for_one_hot_and_low_for_uniform_q(squared):
    k = 10
    one_hot = torch.eye(k)[torch.arange(40) % k] * 0.99 + 0.001
    uniform = torch.full((40, k), 1.0 / k)
    # thresholds near 1/k, where Otsu puts them for such batches (a t far above every q
    # would call a uniform q "surely apart from all centres": determinate, by design)
    for t in (1.0 / k, 0.15, 0.2):
        s_hot = losses.stability(losses.determinacy(one_hot, t, squared), 0.8)
        s_uni = losses.stability(losses.determinacy(uniform, t, squared), 0.8)
        assert (s_hot > 0.97).all(), (t, s_hot.min())
        assert (s_uni < s_hot - 0.2).all(), (t, s_uni.max())
    # at the natural threshold of a uniform q, nothing is determined
    s_uni = losses.stability(losses.determinacy(uniform, 1.0 / k, squared), 0.8)
    assert s_uni.abs().max() < 1e-5
    assert float(losses.stability_loss(s_uni)) == pytest.approx(1.0, abs=1e-5)


def test_stability_is_mean_minus_lambda_variance_and_the_code_loss_adds_variance():
    f = torch.tensor([[1.0, 0.0, 0.5, 0.5], [1.0, 1.0, 1.0, 1.0]])
    s = losses.stability(f, 0.8)
    torch.testing.assert_close(s, torch.tensor([0.5 - 0.8 * 0.125, 1.0]))
    lc = losses.stability_loss(s)
    torch.testing.assert_close(lc, 1 - s.mean())
    torch.testing.assert_close(losses.stability_loss(s, variance_term=True),
                               1 - (s.mean() + s.var(unbiased=False)))


@pytest.mark.parametrize("variant", ["paper", "code"])
def test_the_loss_gradient_moves_points_toward_their_centre(variant):
    s = DECS(variant=variant).settings()
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(5, 4, generator=g) * 4
    own = torch.arange(60) % 5
    z = (centers[own] + torch.randn(60, 4, generator=g) * 1.2).requires_grad_(True)
    q = student_t(z, centers, s["alpha"])
    t = losses.otsu_threshold(q)
    f = losses.determinacy(q, t, squared=s["determinacy"] == "squared")
    loss = losses.stability_loss(losses.stability(f, s["lam"]), s["stability_variance"])
    loss.backward()
    nearest = q.argmax(1)
    confident = q.max(1).values >= t  # points the threshold calls "in" a cluster
    assert confident.sum() > 30
    toward = (centers[nearest] - z.detach()) * (-z.grad)
    assert (toward.sum(1)[confident] > 0).all()
    # a small step down the gradient brings every confident point closer to its centre
    z1 = z.detach() - 0.5 * z.grad / z.grad.norm(dim=1, keepdim=True).clamp_min(1e-12)
    d0 = (z.detach() - centers[nearest]).norm(dim=1)
    d1 = (z1 - centers[nearest]).norm(dim=1)
    assert (d1 < d0)[confident].all()


def test_variants_settings_and_overrides():
    p = DECS(variant="paper").settings()
    assert (p["lam"], p["alpha"], p["determinacy"], p["stability_variance"],
            p["optimizer"]) == (0.8, 1.0, "squared", False, "sgd")
    c = DECS(variant="code").settings()
    assert (c["lam"], c["alpha"], c["determinacy"], c["stability_variance"],
            c["optimizer"]) == (0.4, 0.5, "linear", True, "adam")
    # eq (1) keeps the decoder in the paper variant; the code drops it; an argument wins
    assert p["use_reconstruction"] and not c["use_reconstruction"]
    assert not DECS(variant="paper", use_reconstruction=False).settings()["use_reconstruction"]
    assert p["cluster_lr"] == 0.01 and DECS(profile="paper").settings()["cluster_lr"] == 1e-3
    assert DECS(profile="demo").settings()["cluster_lr"] == 1e-4
    assert DECS(variant="paper", lam=0.3).settings()["lam"] == 0.3
    paper = DECS(profile="paper").settings()
    assert paper["channels"] == (32, 64, 128, 256) and paper["pretrain_epochs"] == 500
    assert not paper["use_reconstruction"]
    assert clone(DECS(variant="paper", lam=0.2)).lam == 0.2
    knobs = {k.name: k for k in DECS().knob_specs()}
    assert {"lr", "lam", "alpha", "threshold", "t", "augment", "use_reconstruction"} <= set(knobs)
    assert knobs["threshold"].options == ("otsu", "fixed")


@pytest.mark.parametrize("bad, match", [
    (dict(variant="text"), "variant"), (dict(threshold="mean"), "threshold"),
    (dict(t=1.0), "between 0 and 1"), (dict(lam=-1.0), "lam"), (dict(alpha=0.0), "alpha"),
    (dict(channels=(8, 16)), "channels"), (dict(determinacy="cubic"), "determinacy"),
])
def test_bad_settings_are_refused_with_a_clear_message(bad, match):
    with pytest.raises(ValueError, match=match):
        DECS(**bad).settings()


def test_bad_input_and_knobs_are_refused(digits):
    X, _ = digits
    with pytest.raises(ValueError, match="NaN"):
        bad = X[:50].copy()
        bad[3, 0, 0, 0] = np.nan
        DECS(profile="smoke").fit(bad)
    with pytest.raises(ValueError, match="n_clusters"):
        DECS(60, profile="smoke").fit(X[:50])
    run = DECS(profile="smoke", verbose=False).prepare(X[:300])
    with pytest.raises(ValueError, match="threshold"):
        run.set_knob("threshold", "mean")
    with pytest.raises(ValueError, match="exceed"):
        run.set_knob("t", 1.5)
    pre = ConvAutoencoder((1, 28, 28), channels=(2, 2, 2, 2))
    with pytest.raises(ValueError, match="shape"):
        DECS(profile="smoke", pretrained=pre).prepare(X[:50])


def test_conv_autoencoder_shapes():
    for side in (8, 16, 28, 30):
        ae = ConvAutoencoder((1, side, side), 10, (2, 4, 4, 8))
        z, x_hat = ae(torch.rand(3, 1, side, side))
        assert z.shape == (3, 10) and x_hat.shape == (3, 1, side, side)
    with pytest.raises(ValueError, match="8"):
        ConvAutoencoder((1, 6, 6))


def test_decs_clusters_digits_and_records_threshold_and_stability(digits):
    X, y = digits
    torch.manual_seed(0)
    m = DECS(10, variant="code", profile="smoke", pretrain_epochs=40, cluster_epochs=6,
             channels=(8, 16, 32, 32), batch_size=128, augment=False, verbose=False,
             snapshot_size=300, snapshot_epochs=[0, 3, 6])
    m.fit(X, y=y)
    acc = metrics.acc(y, m.labels_)
    cl = [r for r in m.history_.epochs if r["phase"] == "cluster"]
    assert acc > 0.6, acc  # chance is 0.1
    assert cl[-1]["acc"] >= cl[0]["acc"] - 0.02  # clustering does not undo k-means
    assert all(0 < r["t"] < 1 for r in cl)  # the Otsu threshold, per epoch
    # each epoch's histogram counts every q of its batches once: n samples x k centres
    assert all(len(r["q_hist"]) == Q_HIST_BINS and sum(r["q_hist"]) == len(X) * 10 for r in cl)
    # and the threshold sits between its two piles: mass on both sides of t_last
    edges = np.linspace(0, 1, Q_HIST_BINS + 1)[1:]
    assert all(0 < sum(np.asarray(r["q_hist"])[edges <= r["t_last"]]) < len(X) * 10 for r in cl)
    assert m.stability_.shape == (len(X),) and 0 < m.threshold_ < 1
    assert m.history_.snapshots[-1].extras["stability"].shape == (300,)
    # the stability of the points rose while clustering
    s0 = m.history_.snapshots[0].extras["stability"].mean()
    assert m.history_.snapshots[-1].extras["stability"].mean() > s0
    # every evaluated clustering epoch records the objective on all n points; the last one
    # is the fitted model's (same q, same t), and it rose as the loss fell
    assert all("mean_stability" in r for r in cl)
    assert cl[-1]["mean_stability"] == pytest.approx(float(m.stability_.mean()), abs=1e-6)
    assert cl[-1]["mean_stability"] > cl[0]["mean_stability"]
    assert m.cluster_centers_.shape == (10, 10) and m.transform(X[:7]).shape == (7, 10)
    np.testing.assert_array_equal(m.predict(X), m.labels_)


def test_a_cpu_run_repeats_exactly_and_knobs_reach_the_loss(digits):
    X, y = digits
    X = X[:400]
    kw = dict(profile="smoke", pretrain_epochs=1, cluster_epochs=2, verbose=False,
              snapshot_epochs=None, batch_size=128)
    a = DECS(**kw).fit(X)
    b = DECS(**kw).fit(X)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_allclose(a.embedding_, b.embedding_)
    run = DECS(**kw).prepare(X)
    run.set_knob("threshold", "fixed")
    run.set_knob("t", 0.42)
    run.set_knob("use_reconstruction", True)
    run.fit()
    last = run.history.steps[-1]
    assert last["t"] == pytest.approx(0.42) and "rec" in last
    assert "rec" not in a.history_.steps[-1]  # the code variant drops the decoder...
    paper = DECS(**kw, variant="paper").fit(X)  # ...the paper variant keeps it (eq 1)
    assert "rec" in paper.history_.steps[-1]


def test_reuses_a_pretrained_autoencoder_and_works_on_vectors(digits):
    X, y = digits
    X = X[:500]
    pre = DECS(profile="smoke", cluster_epochs=0, verbose=False, snapshot_epochs=None).fit(X)
    pre.autoencoder_.eval()  # left in eval mode by a reader: BatchNorm must still train
    m = DECS(profile="smoke", pretrained=pre, verbose=False, snapshot_epochs=None).fit(X)
    assert m.autoencoder_.training
    assert not any(r["phase"] == "pretrain" for r in m.history_.steps)
    assert next(pre.autoencoder_.parameters()).data_ptr() != \
        next(m.autoencoder_.parameters()).data_ptr()
    v = DECS(profile="smoke", dims=(32, 10), verbose=False, snapshot_epochs=None)
    v.fit(X.reshape(len(X), -1))
    assert type(v.autoencoder_).__name__ == "MLPAutoencoder" and v.labels_.shape == (500,)


def test_a_run_resumed_mid_epoch_records_the_same_threshold_and_histogram(digits, tmp_path):
    from clusterkit.engine import Run

    X, y = digits
    X, y = X[:400], y[:400]
    kw = dict(profile="smoke", pretrain_epochs=1, cluster_epochs=2, verbose=False,
              snapshot_epochs=None, batch_size=128, seed=3)
    full = DECS(**kw).fit(X, y=y)

    def stop(event, run, payload):  # 4 steps an epoch: step 6 is inside the first clustering one
        if event == "step" and run.step == 6:
            run.stop()

    run = DECS(**kw).prepare(X, y=y, callbacks=[stop])
    run.fit()
    resumed = Run.load(run.save(tmp_path / "decs.ckpt"), X, y, progress=False).fit()
    want = [r for r in full.history_.epochs if r["phase"] == "cluster"]
    got = [r for r in resumed.history.epochs if r["phase"] == "cluster"]
    assert [r["q_hist"] for r in got] == [r["q_hist"] for r in want]
    assert [r["t"] for r in got] == pytest.approx([r["t"] for r in want])
    np.testing.assert_array_equal(resumed.method.labels_, full.labels_)
