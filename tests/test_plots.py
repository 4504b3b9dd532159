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
