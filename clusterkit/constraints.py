"""Pairwise constraints: must-link (ML) and cannot-link (CL) index pairs over ``n`` samples.

One ``Constraints`` object serves every consumer in clusterkit:

* the training engine looks up the constraints inside a mini-batch (:meth:`in_batch`);
* the balanced semi-supervised method (PAPERS.md section 1) keeps one Lagrange multiplier
  per constraint, indexed by the row of :meth:`pairs`, whose order is **ML rows, then CL
  rows**, each in insertion order; that order never changes for a given object;
* active learning grows the set one answered pair at a time (:meth:`extend`,
  :meth:`conflicts`);
* a dashboard's budget slider grows or shrinks a label-drawn set (:meth:`with_budget`):
  every smaller budget is a prefix of every larger one (per type, same seed and labels).

Objects are immutable: the pair arrays are read-only and every "change" returns a new
object. Pairs are stored normalised (``i < j``) and without duplicates.

Sampling from labels (:meth:`Constraints.from_labels`) uses one ordered, seeded stream of
pairs per type, so growing a budget means reading further along the same stream:

* a type with at most ``PERMUTATION_LIMIT`` (2 000 000) possible pairs is enumerated in full
  and shuffled with a seeded permutation (exact, any request up to the maximum is instant);
* a larger type is sampled: chunks of uniformly random pairs drawn from
  ``np.random.default_rng([seed, type])`` (ML: a class with probability proportional to its
  number of pairs, then two distinct members; CL: two distinct samples, kept when their
  labels differ), deduplicated in order of first appearance. Chunk sizes are fixed
  (65 536, doubling up to 4 194 304), so the stream does not depend on the request.
  Requests close to the maximum of such a type are slow (coupon collecting); they are
  unusual (over a million pairs).

This module imports only numpy and torch.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np
import torch

__all__ = ["Constraints", "PERMUTATION_LIMIT"]

#: Types with at most this many possible pairs are enumerated and permuted, not sampled.
PERMUTATION_LIMIT = 2_000_000
_CHUNK0 = 1 << 16
_CHUNK_MAX = 1 << 22
_MAX_REPORT = 5
_ML, _CL = 0, 1


# ----------------------------------------------------------------------------- validation
def _as_labels(y: Any, name: str = "y") -> np.ndarray:
    """Validate a label vector and return it as a new (n,) int64 numpy array.

    Accepts numpy arrays, lists and torch tensors (any device). Raises ``ValueError`` for a
    wrong shape, an empty vector, NaN/inf, non-integer values or a non-numeric dtype.
    Shared by :mod:`clusterkit.metrics`.
    """
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    try:
        a = np.asarray(y)
    except Exception as e:  # ragged lists and the like
        raise ValueError(f"{name} could not be read as an array ({e}); pass a 1-D sequence "
                         "of integer labels, shape (n,)") from e
    if a.ndim != 1:
        what = "a scalar" if a.ndim == 0 else f"shape {tuple(a.shape)}"
        hint = ""
        if a.ndim == 2 and a.shape[1] > 1:
            hint = " (for soft assignments q of shape (n, k) pass q.argmax(1))"
        elif a.ndim >= 2:
            hint = " (e.g. y.ravel())"
        raise ValueError(f"{name} has {what}; pass one label per sample, shape (n,){hint}")
    if a.size == 0:
        raise ValueError(f"{name} is empty; pass at least one label")
    if a.dtype == bool:
        return a.astype(np.int64)
    if np.issubdtype(a.dtype, np.integer):
        return a.astype(np.int64, copy=True)
    if np.issubdtype(a.dtype, np.floating):
        bad = np.isnan(a)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{name} contains {int(bad.sum())} NaN value(s) (first at index "
                             f"{first}); drop or fill those samples before evaluating")
        bad = ~np.isfinite(a) | (a != np.round(a))
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{name} holds non-integer values (first: {a[first]!r} at index "
                             f"{first}); pass integer labels, e.g. q.argmax(1) for soft "
                             "assignments")
        return a.astype(np.int64)
    raise ValueError(f"{name} has dtype {a.dtype}; pass integer labels (map class names to "
                     "0..K-1 first, e.g. with np.unique(y, return_inverse=True)[1])")


def _as_pairs(p: Any, n: int, name: str) -> np.ndarray:
    """Validate index pairs and return a new (p, 2) int64 array (not normalised).

    Checks the shape (p, 2), integer values and the range [0, n). Self-pairs are NOT
    checked here (see :func:`_check_self_pairs`).
    """
    if isinstance(p, torch.Tensor):
        p = p.detach().cpu().numpy()
    try:
        a = np.asarray(p)
    except Exception as e:
        raise ValueError(f"{name} pairs could not be read as an array ({e}); pass a sequence "
                         "of (i, j) index pairs, shape (p, 2)") from e
    if a.size == 0:
        return np.empty((0, 2), dtype=np.int64)
    if a.ndim != 2 or a.shape[1] != 2:
        hint = " (a single pair is written [(i, j)])" if a.shape == (2,) else ""
        raise ValueError(f"{name} pairs have shape {tuple(a.shape)}; pass index pairs of "
                         f"shape (p, 2){hint}")
    if a.dtype == bool or not (np.issubdtype(a.dtype, np.integer)
                               or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"{name} pairs have dtype {a.dtype}; pass integer sample indices")
    if np.issubdtype(a.dtype, np.floating):
        bad = ~np.isfinite(a) | (a != np.round(a))
        if bad.any():
            r = int(np.flatnonzero(bad.any(1))[0])
            raise ValueError(f"{name} pair {r} = {a[r].tolist()} is not a pair of integer "
                             "indices; pass integer sample indices")
    a = a.astype(np.int64)
    bad = (a < 0) | (a >= n)
    if bad.any():
        rows = np.flatnonzero(bad.any(1))
        shown = ", ".join(str(tuple(a[r].tolist())) for r in rows[:_MAX_REPORT])
        raise ValueError(f"{len(rows)} {name} pair(s) have indices outside [0, {n}) "
                         f"(n = {n} samples): {shown}; indices must be sample positions "
                         "0..n-1")
    return a


def _check_self_pairs(a: np.ndarray, name: str) -> None:
    bad = np.flatnonzero(a[:, 0] == a[:, 1])
    if len(bad):
        shown = ", ".join(str(tuple(a[r].tolist())) for r in bad[:_MAX_REPORT])
        raise ValueError(f"{len(bad)} {name} pair(s) link a sample to itself: {shown}; "
                         "remove them (a pair needs two different samples)")


def _normalise(a: np.ndarray, n: int) -> np.ndarray:
    """Rows sorted to i < j and duplicates dropped, keeping first-occurrence order."""
    a = np.sort(a, axis=1)
    if len(a) < 2:
        return np.ascontiguousarray(a)
    _, first = np.unique(a[:, 0] * n + a[:, 1], return_index=True)
    return np.ascontiguousarray(a[np.sort(first)])


def _codes(a: np.ndarray, n: int) -> np.ndarray:
    """(p,) int64 code i*n + j of normalised pairs."""
    return a[:, 0] * n + a[:, 1]


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.int64).reshape(-1, 2)
    a.setflags(write=False)
    return a


def _half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


# ------------------------------------------------------------------ connected components
def _components(n: int, ml: np.ndarray, init: np.ndarray | None = None) -> np.ndarray:
    """Component id of every sample under the ML pairs, (n,) int64.

    Vectorised union-find: hook the larger root onto the smaller one for every pair whose
    endpoints differ, then pointer-jump until every sample points at its root; repeat until
    all pairs agree. ``init`` (a previous result) lets new pairs be added incrementally.
    Invariant of the result: ``comp[x] <= x`` and ``comp[comp[x]] == comp[x]``.
    """
    comp = np.arange(n, dtype=np.int64) if init is None else init.copy()
    if len(ml) == 0:
        return comp
    a, b = ml[:, 0], ml[:, 1]
    while True:
        ca, cb = comp[a], comp[b]
        diff = ca != cb
        if not diff.any():
            return comp
        lo, hi = np.minimum(ca[diff], cb[diff]), np.maximum(ca[diff], cb[diff])
        np.minimum.at(comp, hi, lo)
        while True:
            nxt = comp[comp]
            if np.array_equal(nxt, comp):
                break
            comp = nxt


def _ml_chain(ml: np.ndarray, comp: np.ndarray, i: int, j: int) -> list[int]:
    """Shortest chain of samples i -> ... -> j along ML pairs (breadth-first search)."""
    sub = ml[comp[ml[:, 0]] == comp[i]]
    adj: dict[int, list[int]] = {}
    for u, v in sub.tolist():
        adj.setdefault(u, []).append(v)
        adj.setdefault(v, []).append(u)
    prev = {i: i}
    todo = deque([i])
    while todo:
        u = todo.popleft()
        if u == j:
            break
        for v in adj.get(u, ()):
            if v not in prev:
                prev[v] = u
                todo.append(v)
    if j not in prev:
        return []
    path = [j]
    while path[-1] != i:
        path.append(prev[path[-1]])
    return path[::-1]


def _contradictions(n: int, ml: np.ndarray, cl: np.ndarray, comp: np.ndarray) -> list[str]:
    """Human-readable contradictions (at most ``_MAX_REPORT`` + a count line), [] if none."""
    both = np.flatnonzero(np.isin(_codes(cl, n), _codes(ml, n)))
    inside = np.flatnonzero(comp[cl[:, 0]] == comp[cl[:, 1]])
    inside = np.setdiff1d(inside, both)  # direct ML/CL clashes are reported as such
    lines = [f"{tuple(cl[r].tolist())} is both must-link and cannot-link" for r in
             both[:_MAX_REPORT]]
    for r in inside[: max(0, _MAX_REPORT - len(lines))]:
        i, j = (int(v) for v in cl[r])
        chain = "-".join(map(str, _ml_chain(ml, comp, i, j)))
        lines.append(f"cannot-link {(i, j)} joins samples already linked by the must-link "
                     f"chain {chain}")
    total = len(both) + len(inside)
    if total > len(lines):
        lines.append(f"... and {total - len(lines)} more")
    return lines


# ------------------------------------------------------------------- streams from labels
class _LabelStreams:
    """Ordered, seeded streams of ML and CL pairs for one label vector and seed.

    ``take(kind, k)`` returns the first ``k`` pairs of the stream of that type, (k, 2) int64
    normalised; results are cached so a growing budget does not redraw.
    """

    def __init__(self, y: np.ndarray, seed: int) -> None:
        self.y = y
        self.y.setflags(write=False)
        self.seed = int(seed)
        self.n = n = len(y)
        self.order = np.argsort(y, kind="stable")
        ys = y[self.order]
        cuts = np.flatnonzero(ys[1:] != ys[:-1]) + 1
        self.starts = np.concatenate([[0], cuts]).astype(np.int64)
        self.counts = np.diff(np.concatenate([self.starts, [n]])).astype(np.int64)
        self.max_ml = int((self.counts * (self.counts - 1) // 2).sum())
        self.max_cl = n * (n - 1) // 2 - self.max_ml
        self._cache: dict[int, np.ndarray] = {}  # kind -> codes drawn so far (deduplicated)
        self._rng: dict[int, np.random.Generator] = {}
        self._chunk: dict[int, int] = {}
        self._drawn: dict[int, int] = {}  # candidates drawn so far, per type

    def max_pairs(self, kind: int) -> int:
        return self.max_ml if kind == _ML else self.max_cl

    def take(self, kind: int, k: int) -> np.ndarray:
        if k > self.max_pairs(kind):  # callers check first, with a friendlier message
            raise ValueError(f"only {self.max_pairs(kind)} pairs of this type exist")
        if k == 0:
            return np.empty((0, 2), dtype=np.int64)
        if self.max_pairs(kind) <= PERMUTATION_LIMIT:
            if kind not in self._cache:
                rng = np.random.default_rng([self.seed, kind])
                codes = self._enumerate(kind)
                self._cache[kind] = codes[rng.permutation(len(codes))]
        else:
            while len(self._cache.get(kind, ())) < k:
                self._grow(kind)
                if self._drawn[kind] > 64 * self.max_pairs(kind) + 10 * _CHUNK_MAX:
                    raise RuntimeError(f"sampling stalled at {len(self._cache[kind])} of {k} "
                                       "pairs; please report this as a clusterkit bug")
        codes = self._cache[kind][:k]
        return np.stack([codes // self.n, codes % self.n], axis=1)

    def _enumerate(self, kind: int) -> np.ndarray:
        """All codes of one type, in a fixed order (label-sorted positions), (m,) int64."""
        n = self.n
        group_end = np.repeat(self.starts + self.counts, self.counts)  # per sorted position
        pos = np.arange(n, dtype=np.int64)
        # ML: position p pairs with p+1..end-1; CL: with end..n-1.
        first = pos + 1 if kind == _ML else group_end
        last = group_end if kind == _ML else np.full(n, n, dtype=np.int64)
        cnt = last - first
        total = int(cnt.sum())
        src = np.repeat(pos, cnt)
        offset = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        dst = np.repeat(first, cnt) + offset
        i, j = self.order[src], self.order[dst]
        return np.minimum(i, j) * n + np.maximum(i, j)

    def _grow(self, kind: int) -> None:
        """Append the next chunk of the stream, deduplicated in order of first appearance."""
        if kind not in self._rng:
            self._rng[kind] = np.random.default_rng([self.seed, kind])
            self._chunk[kind] = _CHUNK0
            self._drawn[kind] = 0
            self._cache[kind] = np.empty(0, dtype=np.int64)
        rng, s, n = self._rng[kind], self._chunk[kind], self.n
        self._chunk[kind] = min(2 * s, _CHUNK_MAX)
        self._drawn[kind] += s
        if kind == _ML:
            ok = self.counts >= 2
            cnt, st = self.counts[ok], self.starts[ok]
            cumw = np.cumsum(cnt * (cnt - 1) // 2).astype(np.float64)
            g = np.searchsorted(cumw, rng.random(s) * cumw[-1], side="right")
            g = np.minimum(g, len(cnt) - 1)
            m = cnt[g]
            u = rng.integers(0, m)
            v = rng.integers(0, m - 1)
            v += v >= u  # two distinct members, uniformly
            i, j = self.order[st[g] + u], self.order[st[g] + v]
        else:
            i = rng.integers(0, n, size=s)
            j = rng.integers(0, n - 1, size=s)
            j += j >= i
            keep = self.y[i] != self.y[j]
            i, j = i[keep], j[keep]
        codes = np.concatenate([self._cache[kind], np.minimum(i, j) * n + np.maximum(i, j)])
        _, first = np.unique(codes, return_index=True)
        self._cache[kind] = codes[np.sort(first)]


# -------------------------------------------------------------------------- Constraints
class Constraints:
    """Must-link and cannot-link pairs over ``n`` samples (immutable).

    Attributes:
        n: number of samples; indices are in ``[0, n)``.
        ml: (p, 2) int64, read-only; must-link pairs, each row ``i < j``, no duplicates,
            in insertion order.
        cl: (q, 2) int64, read-only; cannot-link pairs, same conventions.

    Build with :meth:`from_pairs` (explicit pairs, validated) or :meth:`from_labels`
    (drawn from ground-truth labels). ``Constraints(n, ml, cl)`` is the same as
    ``from_pairs``.

    Constraint order: :meth:`pairs` is ``ml`` rows then ``cl`` rows; row ``r`` of it is
    "constraint r" everywhere (``which`` of :meth:`in_batch`, :meth:`satisfied`,
    per-constraint multipliers).
    """

    n: int
    ml: np.ndarray
    cl: np.ndarray

    def __init__(self, n: int, ml: Any = (), cl: Any = ()) -> None:
        other = Constraints.from_pairs(n, ml, cl)
        self.__dict__.update(other.__dict__)

    # -- construction ------------------------------------------------------------------
    @classmethod
    def _make(cls, n: int, ml: np.ndarray, cl: np.ndarray, comp: np.ndarray | None = None,
              source: _LabelStreams | None = None, budget: tuple[int, float] | None = None,
              ) -> Constraints:
        """Build without validation (callers guarantee normalised, consistent pairs)."""
        obj = cls.__new__(cls)
        obj.n = int(n)
        obj.ml = _frozen(ml)
        obj.cl = _frozen(cl)
        obj._comp = comp  # ML component ids, (n,) int64, computed lazily
        obj._source = source
        obj._budget = budget  # (n_pairs, ml_ratio) when drawn from labels
        obj._torch: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        return obj

    @staticmethod
    def _check_n(n: Any) -> int:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be a non-negative integer (the number of samples); "
                             f"got {n!r}")
        return int(n)

    @classmethod
    def from_pairs(cls, n: int, ml: Any = (), cl: Any = ()) -> Constraints:
        """Validated constraints from explicit index pairs.

        Args:
            n: number of samples.
            ml, cl: must-link / cannot-link pairs, anything convertible to a (p, 2) integer
                array (list of tuples, numpy array, torch tensor); ``()`` for none.

        Rows are normalised to ``i < j``; duplicates (also ``(j, i)`` after ``(i, j)``) are
        merged, keeping the first occurrence's position.

        Raises:
            ValueError: bad shape, non-integer or out-of-range indices, self-pairs, or
                contradictions: a pair that is both ML and CL, or a CL pair whose endpoints
                are joined by a chain of ML pairs (the message names up to 5 such pairs and
                the chains).
        """
        n = cls._check_n(n)
        ml_a, cl_a = _as_pairs(ml, n, "must-link"), _as_pairs(cl, n, "cannot-link")
        _check_self_pairs(ml_a, "must-link")
        _check_self_pairs(cl_a, "cannot-link")
        ml_a, cl_a = _normalise(ml_a, n), _normalise(cl_a, n)
        comp = _components(n, ml_a)
        lines = _contradictions(n, ml_a, cl_a, comp)
        if lines:
            raise ValueError("contradictory constraints:\n  " + "\n  ".join(lines) +
                             "\nRemove or correct these pairs (a wrong answer?): must-link is "
                             "transitive, so a cannot-link pair may not join samples that "
                             "must-link pairs connect.")
        return cls._make(n, ml_a, cl_a, comp=comp)

    @staticmethod
    def max_pairs(y: Any) -> tuple[int, int]:
        """``(max_ml, max_cl)``: how many distinct ML / CL pairs the labels ``y`` allow.

        ``max_ml = Σ_c n_c (n_c - 1) / 2`` and ``max_cl = n (n - 1) / 2 - max_ml``.
        """
        y = _as_labels(y, "y")
        _, counts = np.unique(y, return_counts=True)
        max_ml = int((counts * (counts - 1) // 2).sum())
        return max_ml, len(y) * (len(y) - 1) // 2 - max_ml

    @staticmethod
    def _budget_from(n: int, n_pairs: Any, fraction: Any) -> int:
        if (n_pairs is None) == (fraction is None):
            raise ValueError("give exactly one of n_pairs (a count) or fraction (pairs as a "
                             "fraction of the number of samples, e.g. 0.2)")
        if n_pairs is not None:
            if isinstance(n_pairs, bool) or not isinstance(n_pairs, (int, np.integer)) \
                    or n_pairs < 0:
                raise ValueError(f"n_pairs must be a non-negative integer; got {n_pairs!r}")
            return int(n_pairs)
        f = float(fraction)
        if not math.isfinite(f) or f < 0:
            raise ValueError(f"fraction must be a finite number >= 0; got {fraction!r}")
        return _half_up(f * n)

    @classmethod
    def _draw(cls, src: _LabelStreams, n_pairs: int, ml_ratio: Any) -> Constraints:
        r = float(ml_ratio)
        if not 0.0 <= r <= 1.0:
            raise ValueError(f"ml_ratio must be in [0, 1] (the share of must-link pairs); "
                             f"got {ml_ratio!r}")
        n_ml = _half_up(n_pairs * r)
        n_cl = n_pairs - n_ml
        for kind, k, name in ((_ML, n_ml, "must-link"), (_CL, n_cl, "cannot-link")):
            if k > src.max_pairs(kind):
                raise ValueError(
                    f"{n_pairs} pairs with ml_ratio={r} need {k} {name} pairs, but these "
                    f"labels allow at most {src.max_pairs(kind)} distinct {name} pairs "
                    f"(max_ml={src.max_ml}, max_cl={src.max_cl}); lower n_pairs/fraction "
                    "or change ml_ratio")
        return cls._make(src.n, src.take(_ML, n_ml), src.take(_CL, n_cl), source=src,
                         budget=(n_pairs, r))

    @classmethod
    def from_labels(cls, y: Any, n_pairs: int | None = None, fraction: float | None = None,
                    ml_ratio: float = 0.5, seed: int = 0) -> Constraints:
        """Random constraints drawn from ground-truth labels (a simulated oracle).

        Args:
            y: (n,) integer labels (numpy, list or torch).
            n_pairs: total number of pairs; or
            fraction: pairs as a fraction of n (``0.2`` -> ``round(0.2 * n)``, half up).
            ml_ratio: share of ML pairs: ``n_ml = round(n_pairs * ml_ratio)`` (half up),
                ``n_cl = n_pairs - n_ml``.
            seed: non-negative integer; same seed and labels -> same pairs.

        Pairs are uniform among the distinct pairs of their type, without duplicates.
        Prefix property: the ML (and CL) pairs of a budget are the first rows of those of
        any larger budget with the same ``y`` and ``seed`` (see the module docstring for
        how). The labels and seed stay on the object for :meth:`with_budget`.

        Raises:
            ValueError: both or neither of n_pairs/fraction, or more pairs of a type than
                the labels allow (the message gives the maximum; see :meth:`max_pairs`).
        """
        y = _as_labels(y, "y")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
        k = cls._budget_from(len(y), n_pairs, fraction)
        return cls._draw(_LabelStreams(y, int(seed)), k, ml_ratio)

    def with_budget(self, n_pairs: int | None = None, fraction: float | None = None,
                    ml_ratio: float | None = None) -> Constraints:
        """The same label-drawn constraints with another budget (grown or shrunk).

        ``n_pairs``/``fraction`` as in :meth:`from_labels` (neither: keep the current
        total); ``ml_ratio=None`` keeps the current ratio. Each type is a prefix of its own
        stream, so shrinking keeps a prefix and growing appends. Streams are cached and
        shared with the original object, so slider moves are cheap.

        Raises:
            ValueError: the object was not built by :meth:`from_labels` (explicit pairs, or
                extended with :meth:`extend`), or the budget is too large.
        """
        if self._source is None or self._budget is None:
            raise ValueError("with_budget needs constraints drawn with Constraints.from_labels"
                             " (these were given as explicit pairs or extended); build them "
                             "with from_labels(y, n_pairs=..., seed=...) instead")
        if n_pairs is None and fraction is None:
            k = self._budget[0]
        else:
            k = self._budget_from(self.n, n_pairs, fraction)
        return self._draw(self._source, k, self._budget[1] if ml_ratio is None else ml_ratio)

    # -- growing one answer at a time ----------------------------------------------------
    def _components(self) -> np.ndarray:
        if self._comp is None:
            self._comp = _components(self.n, self.ml)
        return self._comp

    def extend(self, ml: Any = (), cl: Any = ()) -> Constraints:
        """A new validated object with pairs appended (existing pairs first, then new ones).

        New pairs already present (either orientation) are merged into the existing rows.
        The ML union-find is updated incrementally, so adding one pair costs O(n + P)
        vectorised work. The result has no label source (``with_budget`` is unavailable).

        Raises:
            ValueError: as :meth:`from_pairs`, including contradictions between new and
                existing pairs.
        """
        n = self.n
        new_ml, new_cl = _as_pairs(ml, n, "must-link"), _as_pairs(cl, n, "cannot-link")
        _check_self_pairs(new_ml, "must-link")
        _check_self_pairs(new_cl, "cannot-link")
        all_ml = _normalise(np.concatenate([self.ml, new_ml]), n)
        all_cl = _normalise(np.concatenate([self.cl, new_cl]), n)
        added_ml = all_ml[len(self.ml):]
        comp = _components(n, added_ml, init=self._components())
        lines = _contradictions(n, all_ml, all_cl, comp)
        if lines:
            raise ValueError("these pairs would contradict the existing constraints:\n  " +
                             "\n  ".join(lines) + "\nDrop or correct the new pairs (use "
                             "conflicts(i, j, same) to check an answer before adding it).")
        return Constraints._make(n, all_ml, all_cl, comp=comp)

    def conflicts(self, i: int, j: int, same: bool) -> list[tuple[int, int]]:
        """Which existing pairs an answer would contradict, without raising.

        Args:
            i, j: two different sample indices.
            same: True for a must-link answer ("same cluster"), False for cannot-link.

        Returns:
            ``[]`` if adding the pair is consistent (including when it is already present
            or already implied). Otherwise the existing pairs it clashes with, normalised
            ``(a, b)`` with ``a < b``: for a must-link answer, the cannot-link pairs that
            would end up inside one ML component; for a cannot-link answer, the must-link
            pairs of the shortest ML chain from ``i`` to ``j`` (or the ML pair ``(i, j)``).
        """
        for v in (i, j):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) \
                    or not 0 <= v < self.n:
                raise ValueError(f"sample index {v!r} is not an integer in [0, {self.n})")
        if i == j:
            raise ValueError(f"a pair needs two different samples; got ({i}, {j})")
        i, j = (int(i), int(j)) if i < j else (int(j), int(i))
        comp = self._components()
        if same:
            ci, cj = comp[i], comp[j]
            if ci == cj:
                return []
            a, b = comp[self.cl[:, 0]], comp[self.cl[:, 1]]
            hit = ((a == ci) & (b == cj)) | ((a == cj) & (b == ci))
            return [tuple(r) for r in self.cl[hit].tolist()]
        if comp[i] != comp[j]:
            return []
        chain = _ml_chain(self.ml, comp, i, j)
        return [(min(u, v), max(u, v)) for u, v in zip(chain[:-1], chain[1:], strict=True)]

    # -- views ---------------------------------------------------------------------------
    @property
    def n_ml(self) -> int:
        """Number of must-link pairs."""
        return len(self.ml)

    @property
    def n_cl(self) -> int:
        """Number of cannot-link pairs."""
        return len(self.cl)

    def __len__(self) -> int:
        return len(self.ml) + len(self.cl)

    @property
    def source(self) -> dict[str, Any] | None:
        """``{"y", "seed", "n_pairs", "ml_ratio"}`` for label-drawn constraints, else None."""
        if self._source is None or self._budget is None:
            return None
        return {"y": self._source.y, "seed": self._source.seed, "n_pairs": self._budget[0],
                "ml_ratio": self._budget[1]}

    def pairs(self) -> np.ndarray:
        """(P, 2) int64: ML rows, then CL rows; row r is constraint r."""
        return np.concatenate([self.ml, self.cl])

    def is_ml(self) -> np.ndarray:
        """(P,) bool: True for the ML rows of :meth:`pairs` (the first ``n_ml``)."""
        return np.arange(len(self)) < self.n_ml

    def __repr__(self) -> str:
        src = ""
        if self._budget is not None and self._source is not None:
            src = (f", from_labels(n_pairs={self._budget[0]}, ml_ratio={self._budget[1]}, "
                   f"seed={self._source.seed})")
        return f"Constraints(n={self.n}, n_ml={self.n_ml}, n_cl={self.n_cl}{src})"

    def satisfied(self, labels: Any) -> np.ndarray:
        """(P,) bool per constraint of :meth:`pairs`: ML pair in one cluster, CL pair apart.

        ``labels``: (n,) integer cluster labels (numpy, list or torch).
        """
        lab = _as_labels(labels, "labels")
        if len(lab) != self.n:
            raise ValueError(f"labels has {len(lab)} entries but the constraints are over "
                             f"n = {self.n} samples; pass one label per sample")
        p = self.pairs()
        same = lab[p[:, 0]] == lab[p[:, 1]]
        return np.where(self.is_ml(), same, ~same)

    # -- torch ---------------------------------------------------------------------------
    def torch_pairs(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor,
                                                                        torch.Tensor]:
        """``(pairs, is_ml)`` on ``device``: (P, 2) int64 and (P,) bool, cached per device."""
        key = str(torch.device(device))
        if key not in self._torch:
            p = torch.from_numpy(self.pairs()).to(device)
            self._torch[key] = (p, torch.from_numpy(self.is_ml()).to(device))
        return self._torch[key]

    def in_batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                   torch.Tensor]:
        """Constraints whose both endpoints are in a mini-batch, vectorised.

        Args:
            idx: (B,) integer tensor of sample indices (any device). Entries should be
                distinct; if one repeats, its first position is used.

        Returns:
            ``(a, b, is_ml, which)`` on ``idx``'s device: ``a``, ``b`` (m,) int64 positions
            within the batch (``idx[a]``, ``idx[b]`` are the two samples), ``is_ml`` (m,)
            bool, ``which`` (m,) int64 rows of :meth:`pairs` (ascending).
        """
        if not isinstance(idx, torch.Tensor):
            idx = torch.as_tensor(idx)
        if idx.ndim != 1:
            raise ValueError(f"idx has shape {tuple(idx.shape)}; pass the (B,) indices of "
                             "the batch's samples")
        if idx.dtype.is_floating_point or idx.dtype == torch.bool or idx.is_complex():
            raise ValueError(f"idx has dtype {idx.dtype}; pass integer sample indices")
        dev = idx.device
        idx = idx.long()
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.n):
            raise ValueError(f"idx holds indices outside [0, {self.n}); pass sample "
                             "positions of the data the constraints were built for")
        pairs, is_ml = self.torch_pairs(dev)
        pos = torch.full((self.n,), -1, dtype=torch.long, device=dev)
        pos.scatter_reduce_(0, idx, torch.arange(idx.numel(), device=dev), reduce="amin",
                            include_self=False)
        pa, pb = pos[pairs[:, 0]], pos[pairs[:, 1]]
        which = torch.nonzero((pa >= 0) & (pb >= 0)).squeeze(1)
        return pa[which], pb[which], is_ml[which], which

    # -- persistence ---------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """A dict of tensors/ints/floats/None that ``torch.load(weights_only=True)`` reads.

        Keys: ``version`` (1), ``n``, ``ml`` (p, 2) int64, ``cl`` (q, 2) int64, ``source``
        (None, or ``{"y": (n,) int64, "seed", "n_pairs", "ml_ratio"}`` for label-drawn
        constraints, so :meth:`with_budget` keeps working after loading).
        """
        src = None
        if self._source is not None and self._budget is not None:
            src = {"y": torch.from_numpy(self._source.y.copy()), "seed": self._source.seed,
                   "n_pairs": int(self._budget[0]), "ml_ratio": float(self._budget[1])}
        return {"version": 1, "n": self.n, "ml": torch.from_numpy(self.ml.copy()),
                "cl": torch.from_numpy(self.cl.copy()), "source": src}

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> Constraints:
        """Inverse of :meth:`to_state` (pairs are re-validated; stored pairs are kept as is)."""
        try:
            n, ml, cl, src = d["n"], d["ml"], d["cl"], d.get("source")
        except (KeyError, TypeError) as e:
            raise ValueError(f"not a Constraints state (missing {e}); pass the dict made by "
                             "Constraints.to_state()") from e
        c = cls.from_pairs(int(n), ml, cl)
        if src is not None:
            y = _as_labels(src["y"], "source y")
            if len(y) != c.n:
                raise ValueError(f"state is inconsistent: source y has {len(y)} labels, n = "
                                 f"{c.n}")
            c._source = _LabelStreams(y, int(src["seed"]))
            c._budget = (int(src["n_pairs"]), float(src["ml_ratio"]))
        return c
