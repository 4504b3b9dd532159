"""Clustering metrics: ACC, NMI, ARI, NE and constraint satisfaction.

Every function validates its inputs at the door: labels must be 1-D, non-empty, free of
NaN and integer-valued (numpy arrays, lists and torch tensors on any device are accepted);
two label vectors must have the same length. Violations raise ``ValueError`` with what is
wrong and how to fix it. All return plain Python floats / ints.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from .constraints import Constraints, _as_labels, _as_pairs

__all__ = ["acc", "nmi", "ari", "ne", "evaluate", "match_clusters", "contingency",
           "constraint_satisfaction", "constraint_satisfaction_detail"]


def _pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t, p = _as_labels(y_true, "y_true"), _as_labels(y_pred, "y_pred")
    if len(t) != len(p):
        raise ValueError(f"y_true has {len(t)} labels but y_pred has {len(p)}; pass one true "
                         "and one predicted label per sample")
    return t, p


def contingency(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Contingency matrix of predicted clusters against true classes.

    Returns:
        ``(C, clusters, classes)``: ``C`` (k, c) int64 with ``C[a, b]`` = number of samples
        in cluster ``clusters[a]`` and class ``classes[b]``; ``clusters`` (k,) and
        ``classes`` (c,) the sorted distinct labels.
    """
    t, p = _pair(y_true, y_pred)
    classes, ti = np.unique(t, return_inverse=True)
    clusters, pi = np.unique(p, return_inverse=True)
    c = np.bincount(pi * len(classes) + ti, minlength=len(clusters) * len(classes))
    return c.reshape(len(clusters), len(classes)).astype(np.int64), clusters, classes


def _hungarian(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # ACC = max over one-to-one maps m of Σ_i 1[y_i = m(c_i)] / n (Hungarian on C).
    return linear_sum_assignment(cm, maximize=True)


def acc(y_true: Any, y_pred: Any) -> float:
    """Clustering accuracy with the best one-to-one matching of clusters to classes.

    Hungarian matching on the (k, c) contingency matrix; works for k != c (rectangular):
    samples in clusters left without a class (k > c) count as errors.
    """
    cm, _, _ = contingency(y_true, y_pred)
    r, c = _hungarian(cm)
    return float(cm[r, c].sum() / cm.sum())


def match_clusters(y_true: Any, y_pred: Any, fill_unmatched: bool = True) -> dict[int, int]:
    """Map each predicted cluster to a class (e.g. to colour clusters like classes).

    The one-to-one part is the Hungarian matching used by :func:`acc`. When there are more
    clusters than classes, the clusters left over are mapped to their majority class if
    ``fill_unmatched`` (so the map covers every cluster; several clusters then share a
    class and ``map(y_pred) == y_true`` can exceed ``acc``) or left out otherwise.

    Returns:
        ``{cluster label: class label}`` as Python ints.
    """
    cm, clusters, classes = contingency(y_true, y_pred)
    r, c = _hungarian(cm)
    out = {int(clusters[a]): int(classes[b]) for a, b in zip(r, c, strict=True)}
    if fill_unmatched:
        for a in np.setdiff1d(np.arange(len(clusters)), r):
            out[int(clusters[a])] = int(classes[np.argmax(cm[a])])
    return out


def nmi(y_true: Any, y_pred: Any) -> float:
    """Normalised mutual information (scikit-learn, arithmetic mean normalisation)."""
    t, p = _pair(y_true, y_pred)
    return float(normalized_mutual_info_score(t, p, average_method="arithmetic"))


def ari(y_true: Any, y_pred: Any) -> float:
    """Adjusted Rand index (scikit-learn)."""
    t, p = _pair(y_true, y_pred)
    return float(adjusted_rand_score(t, p))


def ne(y_pred: Any, n_clusters: int | None = None) -> float:
    """Normalised entropy of the cluster sizes; 1.0 = perfectly balanced.

    ``NE = -(1 / log K) Σ_k p_k log p_k`` with ``p_k = n_k / n`` (PAPERS.md, "NE"); empty
    clusters contribute 0 (``0 log 0 = 0``). ``K = n_clusters`` if given, else
    ``max(y_pred) + 1``. Labels must be in ``[0, K)``. For ``K = 1`` the ratio is 0/0; we
    define NE = 1.0 (a single cluster is trivially balanced).
    """
    p = _as_labels(y_pred, "y_pred")
    if p.min() < 0:
        raise ValueError(f"y_pred has negative labels (min {p.min()}); NE needs cluster ids "
                         "0..K-1 (remap with np.unique(y_pred, return_inverse=True)[1])")
    if n_clusters is None:
        k = int(p.max()) + 1
    else:
        if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)) \
                or n_clusters < 1:
            raise ValueError(f"n_clusters must be a positive integer; got {n_clusters!r}")
        k = int(n_clusters)
        if p.max() >= k:
            raise ValueError(f"y_pred has label {p.max()} but n_clusters = {k}; labels must "
                             "be in [0, n_clusters), or leave n_clusters=None")
    if k == 1:
        return 1.0
    prob = np.bincount(p, minlength=k) / len(p)
    prob = prob[prob > 0]
    return float(-(prob * np.log(prob)).sum() / math.log(k))


def _as_constraint_pairs(constraints: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(ml, cl) arrays from a Constraints object or a tuple (ml, cl) of (p, 2) arrays."""
    if isinstance(constraints, Constraints):
        if constraints.n != n:
            raise ValueError(f"y_pred has {n} labels but the constraints are over n = "
                             f"{constraints.n} samples; pass the labels of the same data")
        return constraints.ml, constraints.cl
    if isinstance(constraints, (tuple, list)) and len(constraints) == 2:
        return (_as_pairs(constraints[0], n, "must-link"),
                _as_pairs(constraints[1], n, "cannot-link"))
    raise ValueError("constraints must be a Constraints object or a tuple (ml, cl) of "
                     f"(p, 2) index arrays; got {type(constraints).__name__}")


def constraint_satisfaction_detail(y_pred: Any, constraints: Any) -> dict[str, float | int]:
    """Satisfied must-link / cannot-link pairs, as fractions and counts.

    An ML pair is satisfied when both samples share a cluster, a CL pair when they do not.

    Returns:
        ``{"ml", "cl", "all"}``: fractions (float; ``nan`` when there are no pairs of that
        kind), ``{"n_ml", "n_cl", "n_all"}``: pair counts, ``{"ml_satisfied",
        "cl_satisfied", "all_satisfied"}``: satisfied counts.
    """
    p = _as_labels(y_pred, "y_pred")
    ml, cl = _as_constraint_pairs(constraints, len(p))
    ml_ok = int((p[ml[:, 0]] == p[ml[:, 1]]).sum())
    cl_ok = int((p[cl[:, 0]] != p[cl[:, 1]]).sum())

    def frac(k: int, m: int) -> float:
        return k / m if m else math.nan

    return {"ml": frac(ml_ok, len(ml)), "cl": frac(cl_ok, len(cl)),
            "all": frac(ml_ok + cl_ok, len(ml) + len(cl)),
            "n_ml": len(ml), "n_cl": len(cl), "n_all": len(ml) + len(cl),
            "ml_satisfied": ml_ok, "cl_satisfied": cl_ok, "all_satisfied": ml_ok + cl_ok}


def constraint_satisfaction(y_pred: Any, constraints: Any) -> float:
    """Fraction of all pairs satisfied (ML together, CL apart); ``nan`` if there are none."""
    return float(constraint_satisfaction_detail(y_pred, constraints)["all"])


def evaluate(y_true: Any, y_pred: Any, n_clusters: int | None = None) -> dict[str, float]:
    """``{"acc", "nmi", "ari", "ne"}`` as Python floats (``n_clusters`` is passed to NE)."""
    t, p = _pair(y_true, y_pred)
    return {"acc": acc(t, p), "nmi": nmi(t, p), "ari": ari(t, p),
            "ne": ne(p, n_clusters=n_clusters)}
