"""Metrics against scikit-learn and hand-computed cases, and input validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from clusterkit.constraints import Constraints
from clusterkit.metrics import (
    acc,
    ari,
    constraint_satisfaction,
    constraint_satisfaction_detail,
    contingency,
    evaluate,
    match_clusters,
    ne,
    nmi,
)


def _brute_acc(t: np.ndarray, p: np.ndarray) -> float:
    """Best accuracy over all injective maps cluster -> class (tiny cases only)."""
    from itertools import permutations

    clusters, classes = np.unique(p), np.unique(t)
    best = 0
    slots = list(classes) + [None] * max(0, len(clusters) - len(classes))
    for perm in permutations(slots, len(clusters)):
        m = dict(zip(clusters.tolist(), perm, strict=True))
        best = max(best, sum(m[a] == b for a, b in zip(p.tolist(), t.tolist(), strict=True)))
    return best / len(t)


# ---------------------------------------------------------------------------------- ACC
def test_acc_permuted_labelling_is_one():
    t = np.array([0, 0, 1, 1, 2, 2, 2])
    p = np.array([2, 2, 0, 0, 1, 1, 1])
    assert acc(t, p) == 1.0
    assert match_clusters(t, p) == {2: 0, 0: 1, 1: 2}


def test_acc_three_clusters_two_classes_hand_case():
    # classes: 0 x4, 1 x4; cluster 2 takes 2 samples of class 0 and 1 of class 1.
    t = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p = np.array([0, 0, 2, 2, 1, 1, 1, 2])
    # contingency (cluster x class): c0 [2,0], c1 [0,3], c2 [2,1]; best one-to-one:
    # c0->0 (2) + c1->1 (3) = 5, or c2->0 (2) + c1->1 (3) = 5; unmatched cluster = errors.
    assert acc(t, p) == pytest.approx(5 / 8)
    cm, clusters, classes = contingency(t, p)
    np.testing.assert_array_equal(cm, [[2, 0], [0, 3], [2, 1]])
    assert clusters.tolist() == [0, 1, 2] and classes.tolist() == [0, 1]
    m = match_clusters(t, p)
    assert set(m) == {0, 1, 2} and m[1] == 1 and m[2] == 0
    strict = match_clusters(t, p, fill_unmatched=False)
    assert len(strict) == 2 and strict[1] == 1


def test_acc_more_classes_than_clusters():
    t = np.array([0, 1, 2, 3])
    p = np.array([0, 0, 1, 1])
    assert acc(t, p) == 0.5


@pytest.mark.parametrize("seed", range(6))
def test_acc_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 3, 12)
    p = rng.integers(0, rng.integers(2, 5), 12) * 7 - 3  # arbitrary (negative) cluster ids
    assert acc(t, p) == pytest.approx(_brute_acc(t, p))


# ---------------------------------------------------------------------------- NMI / ARI
@pytest.mark.parametrize("seed", range(4))
def test_nmi_ari_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 5, 200)
    p = np.where(rng.random(200) < 0.7, t, rng.integers(0, 6, 200))
    assert nmi(t, p) == pytest.approx(normalized_mutual_info_score(t, p))
    assert ari(t, p) == pytest.approx(adjusted_rand_score(t, p))
    assert isinstance(nmi(t, p), float) and isinstance(ari(t, p), float)


# ----------------------------------------------------------------------------------- NE
def test_ne_balanced_is_one():
    assert ne(np.repeat(np.arange(4), 25)) == pytest.approx(1.0)


def test_ne_skewed_known_value():
    p = np.array([0] * 3 + [1])  # p = (3/4, 1/4), K = 2
    expected = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)) / math.log(2)
    assert ne(p) == pytest.approx(expected)
    assert ne(p) == pytest.approx(0.8112781244591328)


def test_ne_one_cluster_and_empty_clusters():
    assert ne(np.zeros(10, int), n_clusters=3) == 0.0
    assert ne(np.zeros(10, int)) == 1.0  # K = 1: defined as 1.0
    # two equal clusters out of K = 4: entropy log 2 / log 4 = 0.5
    assert ne(np.array([0, 0, 3, 3]), n_clusters=4) == pytest.approx(0.5)
    assert ne(np.array([0, 0, 3, 3])) == pytest.approx(0.5)  # K = max + 1 = 4


def test_ne_errors():
    with pytest.raises(ValueError, match="n_clusters"):
        ne(np.array([0, 5]), n_clusters=3)
    with pytest.raises(ValueError, match="negative"):
        ne(np.array([-1, 0]))


# --------------------------------------------------------------------------- evaluate
def test_evaluate_floats_and_inputs():
    t = [0, 0, 1, 1]
    p = torch.tensor([1, 1, 0, 0])
    out = evaluate(t, p, n_clusters=2)
    assert set(out) == {"acc", "nmi", "ari", "ne"}
    assert all(type(v) is float for v in out.values())
    assert out == {"acc": 1.0, "nmi": pytest.approx(1.0), "ari": 1.0, "ne": 1.0}
    # float labels that are integer-valued are fine
    assert acc(np.array([0.0, 1.0]), np.array([1.0, 0.0])) == 1.0


# ------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "y_pred, match",
    [
        (np.zeros((5, 2)), r"shape \(5, 2\).*shape \(n,\)"),
        (np.array([0, 1, np.nan, 1, 0]), "NaN"),
        (np.array([0, 1, 0.5, 1, 0]), "non-integer"),
        (np.array(["a", "b", "a", "b", "a"]), "dtype"),
        (np.array(3), "scalar"),
        (np.array([0, 1, 0]), "y_true has 5 labels but y_pred has 3"),
    ],
)
def test_validation_messages(y_pred, match):
    with pytest.raises(ValueError, match=match):
        acc(np.array([0, 1, 0, 1, 0]), y_pred)


def test_validation_empty():
    with pytest.raises(ValueError, match="empty"):
        nmi([], [])
    with pytest.raises(ValueError, match="empty"):
        ne([])


# ------------------------------------------------------------- constraint satisfaction
def test_constraint_satisfaction_hand_case():
    p = np.array([0, 0, 1, 1, 2])
    ml = np.array([[0, 1], [1, 2], [2, 3]])  # satisfied, not, satisfied
    cl = np.array([[0, 4], [2, 3]])  # satisfied, not
    d = constraint_satisfaction_detail(p, (ml, cl))
    assert d["ml"] == pytest.approx(2 / 3) and d["cl"] == pytest.approx(1 / 2)
    assert d["all"] == pytest.approx(3 / 5)
    assert (d["n_ml"], d["n_cl"], d["n_all"]) == (3, 2, 5)
    assert (d["ml_satisfied"], d["cl_satisfied"], d["all_satisfied"]) == (2, 1, 3)
    assert constraint_satisfaction(p, (ml, cl)) == pytest.approx(3 / 5)
    # as a Constraints object: the ML chain 0-1-2-3 forbids CL (2, 3), so keep (0, 4) only
    c = Constraints.from_pairs(5, ml, [[0, 4]])
    d2 = constraint_satisfaction_detail(p, c)
    assert d2["ml"] == pytest.approx(2 / 3) and d2["cl"] == 1.0
    assert d2["all"] == pytest.approx(c.satisfied(p).mean())


def test_constraint_satisfaction_empty_parts_are_nan():
    p = np.array([0, 1, 1])
    d = constraint_satisfaction_detail(p, ([(1, 2)], ()))
    assert d["ml"] == 1.0 and math.isnan(d["cl"]) and d["all"] == 1.0
    assert math.isnan(constraint_satisfaction(p, ((), ())))


def test_constraint_satisfaction_errors():
    with pytest.raises(ValueError, match="outside"):
        constraint_satisfaction(np.array([0, 1]), ([(0, 2)], ()))
    c = Constraints.from_pairs(4, [(0, 1)])
    with pytest.raises(ValueError, match="n = 4"):
        constraint_satisfaction(np.array([0, 1]), c)
    with pytest.raises(ValueError, match="Constraints object or a tuple"):
        constraint_satisfaction(np.array([0, 1]), "pairs")
