"""ActiveDeepClustering: the Siamese CNN, the contrastive loss (eq 2), the T-round loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clusterkit import datasets, losses
from clusterkit.active import LabelOracle, RandomPairs
from clusterkit.constraints import Constraints
from clusterkit.methods import ActiveDeepClustering
from clusterkit.methods.adc import knn_graph
from clusterkit.models import SiameseCNN


@pytest.fixture(scope="module")
def small():
    return datasets.load("mnist-5k", subset=200, seed=0)


def _method(**kw):
    base = dict(profile="smoke", device="cpu", budget=30, seed=0)
    return ActiveDeepClustering(10, **{**base, **kw})


def test_contrastive_loss_matches_eq2():
    za = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    zb = torch.tensor([[3.0, 4.0], [0.3, 0.4], [3.0, 4.0]])
    same = torch.tensor([True, False, False])
    # ML: 5² = 25; CL at distance 0.5 < δ=1: (1 - 0.5)² = 0.25; CL at 5 > δ: 0
    got = losses.contrastive(za, zb, same, margin=1.0)
    assert torch.isclose(got, torch.tensor((25 + 0.25 + 0) / 3))
    assert torch.isclose(losses.contrastive(za[1:2], zb[1:2], same[1:2], margin=2.0),
                         torch.tensor(1.5 ** 2))
    assert losses.contrastive(za[:0], zb[:0], same[:0]) == 0


def test_siamese_cnn_backbone_shape_and_layers():
    net = SiameseCNN(1, (8, 16, 32), dim=10)
    assert net(torch.rand(5, 1, 28, 28)).shape == (5, 10)
    kinds = [type(m).__name__ for m in net.features]
    assert kinds.count("MaxPool2d") == 3 and kinds[-2] == "AdaptiveAvgPool2d"
    assert all(m.kernel_size == (3, 3) for m in net.features if isinstance(m, torch.nn.Conv2d))
    assert net(torch.rand(2, 1, 16, 16)).shape == (2, 10)  # USPS-sized input too


def test_knn_graph_matches_brute_force():
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.normal(size=(60, 7)).astype(np.float32))
    nb = knn_graph(x, 3, chunk=16).numpy()
    d = ((x[:, None] - x[None]) ** 2).sum(-1).numpy()
    np.fill_diagonal(d, np.inf)
    want = np.argsort(d, 1)[:, :3]
    np.testing.assert_array_equal(np.sort(nb, 1), np.sort(want, 1))


def test_fit_runs_T_rounds_with_growing_budget(small):
    m = _method()
    seen = []
    m.fit(small.X, y=small.y, oracle=LabelOracle(small.y), callback=seen.append)
    assert [r["pairs"] for r in m.rounds_] == [30, 60]
    assert len(seen) == 2 and "acc" in seen[-1]
    assert m.labels_.shape == (200,) and m.q_.shape == (200, 10)
    assert np.allclose(m.q_.sum(1), 1, atol=1e-4)
    assert m.predict(small.X[:7]).shape == (7,)
    assert m.transform(small.X[:7]).shape == (7, 10)
    assert m.strategy_.round == 2 and len(m.strategy_.constraints) == 60
    assert [h.epochs[-1]["phase"] for h in m.histories_] == ["dec", "dec"]
    assert {s["phase"] for s in m.histories_[0].steps} == {"pretrain", "siamese", "dec"}
    assert {s["phase"] for s in m.histories_[1].steps} == {"siamese", "dec"}
    frames = m.round_snapshots()
    assert [f.phase for f in frames] == ["round 1 (before DEC)", "round 1", "round 2"]


def test_same_seed_same_result_on_cpu(small):
    a = _method(pretrain_epochs=0).fit(small.X, y=small.y, oracle=LabelOracle(small.y))
    b = _method(pretrain_epochs=0).fit(small.X, y=small.y, oracle=LabelOracle(small.y))
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_allclose(a.q_, b.q_, rtol=0, atol=1e-6)


def test_same_seed_same_result_on_two_threads(small, two_threads):
    """The notebooks run on every core: pretraining's all-pairs contrastive loss gathers
    each sample many times, which with plain indexing made two-thread runs differ."""
    a, b = (_method().fit(small.X, y=small.y, oracle=LabelOracle(small.y, seed=0))
            for _ in range(2))
    np.testing.assert_array_equal(a.embedding_, b.embedding_)


def test_training_pulls_must_links_together_and_pushes_cannot_links_apart(small):
    c = Constraints.from_labels(small.y, n_pairs=200, ml_ratio=0.5, seed=0)
    m = _method(pretrain_epochs=0, siamese_epochs=20, dec_epochs=0, closure=False,
                pair_weight=0.0)
    m.fit(small.X, c, y=small.y)
    z = m.embedding_
    d = np.linalg.norm(z[c.pairs()[:, 0]] - z[c.pairs()[:, 1]], axis=1)
    ml, cl = d[c.is_ml()], d[~c.is_ml()]
    assert ml.mean() < 0.5 * cl.mean()
    assert (cl > np.median(ml)).mean() > 0.8  # an untrained network gives about 0.5


def test_prepare_continues_the_network_and_knobs_carry_over(small):
    m = _method(pretrain_epochs=0)
    s = RandomPairs(len(small.X), seed=0)
    p = s.propose(20)
    s.tell(p, LabelOracle(small.y)(p))
    run = m.prepare(small.X, s.constraints, y=small.y)
    run.set_knob("dec_epochs", 2)
    run.set_knob("margin", 2.0)
    assert [ph.epochs for ph in run.phases if ph.name == "dec"] == [2]
    run.fit()
    m.record_round(run)
    net = m.net_
    run2 = m.prepare(small.X, s.constraints, y=small.y)
    assert m.net_ is net, "the next round starts from the trained network"
    assert run2.knobs["dec_epochs"] == 2 and run2.knobs["margin"] == 2.0
    assert [ph.name for ph in run2.phases] == ["siamese", "dec"]
    assert [ph.epochs for ph in run2.phases if ph.name == "dec"] == [2]
    with pytest.raises(ValueError, match="margin"):
        run2.set_knob("margin", 0.0)


def test_pretrained_network_is_reused(small):
    a = _method(rounds=1).fit(small.X, y=small.y, oracle=LabelOracle(small.y))
    b = _method(rounds=1, pretrained=a)
    b.fit(small.X, y=small.y, oracle=LabelOracle(small.y))
    assert "pretrain" not in {s["phase"] for s in b.histories_[0].steps}
    w0 = a.pretrained_net_.state_dict()
    for k, v in b.pretrained_net_.state_dict().items():
        assert torch.equal(v, w0[k])


def test_a_method_without_pretraining_can_be_shared(small):
    # the paper profile has no pretraining phase: its first round still hands its starting
    # network to later methods (the notebook's pre-round -> pretrained= pattern)
    a = _method(pretrain_epochs=0, dec_epochs=0)
    a.fit_round(small.X, None, y=small.y)
    b = _method(rounds=1, pretrained=a)
    b.fit(small.X, y=small.y, oracle=LabelOracle(small.y))
    w0 = a.pretrained_net_.state_dict()
    assert all(torch.equal(v, w0[k]) for k, v in b.pretrained_net_.state_dict().items())


def test_vectors_get_an_mlp():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (60, 5)), rng.normal(6, 1, (60, 5))]).astype(
        np.float32)
    y = np.repeat([0, 1], 60)
    m = ActiveDeepClustering(2, profile="smoke", device="cpu", budget=20, knn=3)
    m.fit(X, y=y, oracle=LabelOracle(y))
    assert m.rounds_[-1]["acc"] > 0.9


def test_bad_arguments_raise_clear_errors(small):
    with pytest.raises(ValueError, match="oracle"):
        _method().fit(small.X, y=small.y)
    with pytest.raises(ValueError, match="margin"):
        _method(margin=-1).fit(small.X, y=small.y, oracle=LabelOracle(small.y))
    with pytest.raises(ValueError, match="strategy"):
        _method(strategy="best").fit(small.X, y=small.y, oracle=LabelOracle(small.y))
    with pytest.raises(ValueError, match="update_interval must be a positive integer"):
        _method(update_interval=0).fit(small.X, y=small.y, oracle=LabelOracle(small.y))
    with pytest.raises(ValueError, match="n_clusters"):
        ActiveDeepClustering(300, profile="smoke").fit(small.X, oracle=LabelOracle(small.y))
    with pytest.raises(ValueError, match="constraints"):
        _method().fit(small.X, Constraints.from_pairs(10, [(0, 1)]), y=small.y)
    with pytest.raises(ValueError, match="callable"):
        _method().fit(small.X, oracle=small.y)
    with pytest.raises(ValueError, match="larger than the pool"):
        _method(budget=10**6).fit(small.X, oracle=LabelOracle(small.y))
