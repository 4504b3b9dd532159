"""DEC and IDEC on real data: they learn, and they follow scikit-learn's conventions; what
every autoencoder method inherits from clusterkit/methods/base.py."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from clusterkit import metrics
from clusterkit.methods import DCCF, DEC, DECS, IDEC, BalancedSemiSupervised
from tests.conftest import tiny_idec


def test_idec_clusters_digits_better_than_chance_and_keeps_its_contract(digits):
    X, y = digits
    m = tiny_idec(pretrain_epochs=30, cluster_epochs=8, dims=(256, 256, 10), batch_size=64,
                  augment=False)
    m.fit(X, y=y)
    acc = metrics.acc(y, m.labels_)
    assert acc > 0.6, acc  # chance is 0.1; k-means on these pixels gets about 0.79
    assert m.labels_.shape == (len(X),) and m.cluster_centers_.shape == (10, 10)
    assert m.transform(X[:20]).shape == (20, 10)
    np.testing.assert_array_equal(m.predict(X), m.labels_)
    first = m.history_.curve("acc", "cluster")[1][0]
    assert m.history_.last("acc") >= first - 0.02  # clustering does not undo k-means


def test_dec_drops_the_decoder_and_reuses_a_pretrained_autoencoder(digits):
    X, y = digits
    pre = tiny_idec(cluster_epochs=0).fit(X)
    dec = DEC(10, profile="smoke", pretrained=pre, cluster_epochs=2, verbose=False).fit(X, y=y)
    assert not any(r["phase"] == "pretrain" for r in dec.history_.steps)
    assert "rec" not in dec.history_.steps[-1] and "kl" in dec.history_.steps[-1]
    # the pretrained model itself is left untouched
    w0 = next(pre.autoencoder_.parameters())
    w1 = next(dec.autoencoder_.parameters())
    assert w0.data_ptr() != w1.data_ptr()


def test_profiles_and_params():
    m = IDEC(profile="paper")
    s = m.settings()
    assert s["pretrain_epochs"] == 200 and s["gamma"] == 0.1 and s["update_interval"] == 140
    assert IDEC(profile="paper", gamma=0.5).settings()["gamma"] == 0.5
    assert DEC().settings()["gamma"] == 1.0
    assert clone(IDEC(gamma=0.3)).gamma == 0.3


def test_per_batch_targets_learn_without_a_full_data_refresh(digits, monkeypatch):
    """update_interval=0: P from each batch's own q (ClustPy's schedule), no refresh after the
    steps; the labels' change is still recorded once an epoch (the stop rule's input)."""
    import torch

    from clusterkit import losses
    from clusterkit.methods import parts

    X, y = digits
    pre = tiny_idec(pretrain_epochs=30, cluster_epochs=0, dims=(256, 256, 10), batch_size=64,
                    augment=False).fit(X)
    refreshes: list[int] = []
    real = parts.SelfTraining.refresh

    def counting(run):
        refreshes.append(run.step)
        return real(run)

    monkeypatch.setattr(parts.SelfTraining, "refresh", staticmethod(counting))
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    real_kl = losses.kl_clustering
    monkeypatch.setattr(losses, "kl_clustering",
                        lambda q, p, **kw: seen.append((q.detach(), p)) or real_kl(q, p, **kw))
    dec = DEC(10, profile="smoke", pretrained=pre, cluster_epochs=4, update_interval=0,
              batch_size=64, verbose=False).fit(X, y=y)
    steps_per_epoch = -(-len(X) // 64)
    assert len(seen) == 4 * steps_per_epoch
    for q, p in seen[:3]:  # the target of every step is the batch's own sharpened q
        torch.testing.assert_close(p, losses.target_distribution(q))
    # one refresh at the start (k-means), then one per epoch end, none after the steps
    assert refreshes == [0] + [steps_per_epoch * e for e in range(1, 5)]
    changed = [r["changed"] for r in dec.history_.epochs if r["phase"] == "cluster"]
    assert len(changed) == 4 and all(0.0 <= c <= 1.0 for c in changed)
    assert metrics.acc(y, dec.labels_) > 0.5


def test_bad_schedules_are_refused():
    import pytest

    with pytest.raises(ValueError, match="update_interval must be an int >= 0"):
        IDEC(profile="smoke", update_interval=-1).settings()
    with pytest.raises(ValueError, match="update_interval must be an int >= 0"):
        DEC(profile="smoke", update_interval=2.5).settings()
    with pytest.raises(ValueError, match=r"tol must be in \[0, 1\)"):
        IDEC(profile="smoke", tol=1.5).settings()


def test_per_batch_targets_keep_the_stop_rule(digits):
    X, y = digits
    pre = tiny_idec(cluster_epochs=0).fit(X)
    # tol 0.99: fewer than 99 % of the labels change after the first epoch, so it stops there
    dec = DEC(10, profile="smoke", pretrained=pre, cluster_epochs=5, update_interval=0,
              tol=0.99, eval_every=0, snapshot_epochs=None, verbose=False).fit(X, y=y)
    epochs = [r for r in dec.history_.epochs if r["phase"] == "cluster"]
    assert len(epochs) == 1 and epochs[0]["changed"] < 0.99
    # without a stop rule or per-epoch evaluation, no pass over the data is made for it
    dec = DEC(10, profile="smoke", pretrained=pre, cluster_epochs=2, update_interval=0,
              eval_every=0, snapshot_epochs=None, verbose=False).fit(X, y=y)
    changed = [r["changed"] for r in dec.history_.epochs if r["phase"] == "cluster"]
    assert len(changed) == 2 and np.isnan(changed[0])


def test_stopped_in_pretraining_it_predicts_by_the_nearest_kmeans_centre(digits):
    X, _ = digits
    pre = tiny_idec(cluster_epochs=0).fit(X)
    assert pre.cluster_centers_.shape == (10, 10) and pre.cluster_centers_.dtype == np.float32
    np.testing.assert_array_equal(pre.predict(X), pre.labels_)


@pytest.mark.parametrize("make", [
    lambda pre: IDEC(10, profile="smoke", pretrained=pre, verbose=False),
    lambda pre: DCCF(10, profile="smoke", pretrained=pre, verbose=False),
    lambda pre: DECS(10, profile="smoke", pretrained=pre, verbose=False),
    lambda pre: BalancedSemiSupervised(10, profile="smoke", pretrained=pre, verbose=False),
], ids=["IDEC", "DCCF", "DECS", "balanced"])
def test_a_pretrained_autoencoder_for_other_inputs_is_refused(digits, make):
    X, _ = digits  # (n, 1, 8, 8): 64 values a sample
    pre = tiny_idec(cluster_epochs=0, pretrain_epochs=1).fit(X)
    other = np.random.default_rng(0).random((50, 1, 10, 10), dtype=np.float32)  # 100 values
    with pytest.raises(ValueError, match=r"shape \(1, 8, 8\) \(64 values\).*\(1, 10, 10\)"):
        make(pre).fit(other)
