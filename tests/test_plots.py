"""Figures of clusterkit/plots.py: what they draw, from records a run makes."""

import numpy as np

from clusterkit import plots
from clusterkit.history import History


def _history(sizes_per_epoch: list[list[int]]) -> History:
    h = History()
    h.epochs.append({"epoch": 3, "phase": "pretrain"})  # no sizes: skipped
    for i, sizes in enumerate(sizes_per_epoch):
        h.epochs.append({"epoch": 4 + i, "phase": "cluster", "sizes": sizes})
    h.epochs.append({"epoch": 9, "phase": "cluster"})  # an epoch without evaluation
    return h


def test_size_curves_follow_each_rank_of_the_sorted_sizes():
    collapsing = _history([[30, 40, 30], [10, 60, 30], [0, 70, 30]])
    steady = _history([[33, 33, 34], [34, 33, 33]])
    fig = plots.size_curves({"collapsing": collapsing, "steady": steady})
    ax0, ax1 = fig.axes
    lines = [ln for ln in ax0.get_lines() if ln.get_linestyle() == "-"]
    assert len(lines) == 3  # one line per cluster rank
    np.testing.assert_array_equal(lines[0].get_xdata(), [1, 2, 3])  # epochs of the phase
    np.testing.assert_array_equal(lines[0].get_ydata(), [40, 60, 70])  # the largest
    np.testing.assert_array_equal(lines[-1].get_ydata(), [30, 10, 0])  # the smallest dies
    balanced = [ln for ln in ax0.get_lines() if ln.get_linestyle() == "--"]
    assert balanced and balanced[0].get_ydata()[0] == 100 / 3
    assert len([ln for ln in ax1.get_lines() if ln.get_linestyle() == "-"]) == 3


def test_size_curves_say_when_a_run_recorded_no_sizes():
    h = History()
    h.epochs.append({"epoch": 1, "phase": "cluster", "acc": 0.5})
    fig = plots.size_curves({"no evaluation": h})
    assert "no cluster sizes recorded" in [t.get_text() for t in fig.axes[0].texts]


def _confusion_cells(fig, panel=0):
    ax = fig.axes[panel]
    return ax.images[0].get_array(), [t.get_text() for t in ax.get_xticklabels()], \
        [t.get_text() for t in ax.get_yticklabels()], ax.get_title()


def test_confusion_puts_the_matched_clusters_on_the_diagonal_and_shows_a_merge():
    y = np.repeat([0, 1, 2], 10)
    # cluster 7 is class 0, cluster 3 is class 1, and cluster 5 holds class 2 and 4 of class 1
    pred = np.array([7] * 10 + [3] * 6 + [5] * 4 + [5] * 10)
    fig = plots.confusion(y, {"run": pred})
    share, cols, rows, title = _confusion_cells(fig)
    assert rows == ["0", "1", "2"] and cols == ["7", "3", "5"]
    np.testing.assert_allclose(np.diag(share), [1.0, 0.6, 1.0])
    assert share[1, 2] == 0.4  # the merge: class 1's rest sits in class 2's cluster
    assert title.endswith(f"{26 / 30:.3f} on the diagonal")  # = ACC
    assert f"{26 / 30:.3f}" == f"{__import__('clusterkit').metrics.acc(y, pred):.3f}"
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert sorted(texts) == sorted(["10", "6", "4", "10"])  # counts in the non-empty cells


def test_confusion_without_matching_keeps_cluster_j_in_column_j():
    y = np.repeat([0, 1, 2], 4)
    pred = np.array([0, 0, 0, 0, 2, 2, 2, 1, 1, 1, 1, 1])  # 1 and 2 swapped: right only on 0
    share, cols, rows, title = _confusion_cells(plots.confusion(y, {"cn": pred}, match=False))
    assert cols == ["0", "1", "2"] and rows == ["0", "1", "2"]
    np.testing.assert_allclose(np.diag(share), [1.0, 0.25, 0.0])
    assert title.endswith(f"{5 / 12:.3f} on the diagonal")  # classified right
    share_m, *_ , title_m = _confusion_cells(plots.confusion(y, {"cn": pred}))
    assert title_m.endswith(f"{11 / 12:.3f} on the diagonal")  # matched: ACC


def test_confusion_with_more_clusters_than_classes_puts_the_extra_last():
    y = np.repeat([0, 1], 6)
    pred = np.array([4] * 6 + [1] * 3 + [9] * 3)
    share, cols, rows, _ = _confusion_cells(plots.confusion(y, {"a": pred, "b": y}), 0)
    assert cols[:2] == ["4", cols[1]] and len(cols) == 3 and rows == ["0", "1"]
    assert share.shape == (2, 3) and share[:, 2].sum() == 0.5  # the unmatched cluster
    assert len(plots.confusion(y, {"a": pred, "b": y}).axes) == 2


def test_confusion_refuses_labels_of_another_length():
    import pytest

    with pytest.raises(ValueError, match="one true and one predicted label per sample"):
        plots.confusion(np.zeros(5, int), {"a": np.zeros(4, int)})


def test_metrics_table_keeps_columns_apart_for_long_keys_and_names():
    rows = {"k-means": {"acc": 0.5, "ne": 0.99},
            "a method with a rather long name": {"acc": 0.9, "ne": 1.0, "satisfied": 0.991}}
    text = plots.metrics_table(rows, keys=("acc", "ne", "satisfied"))
    head, rule, first, second = text.splitlines()
    assert head.split() == ["method", "ACC", "NE", "SATISFIED"]
    assert second.split()[-3:] == ["0.900", "1.000", "0.991"]
    assert second.startswith("a method with a rather long name  ")
    assert first.split() == ["k-means", "0.500", "0.990"]  # the missing value left blank
    assert len(rule) == len(head)
    # the values sit under their headers (right-aligned columns end at the same place)
    assert head.index("SATISFIED") + len("SATISFIED") == second.index("0.991") + 5
