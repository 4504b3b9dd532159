"""DEC and IDEC on real data: they learn, and they follow scikit-learn's conventions."""

from __future__ import annotations

import numpy as np
from sklearn.base import clone

from clusterkit import metrics
from clusterkit.methods import DEC, IDEC
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
