"""Constraints: validation, sampling from labels (prefix property), growth, torch lookups."""

from __future__ import annotations

import io
import time
from collections import Counter

import numpy as np
import pytest
import torch

from clusterkit import constraints as cmod
from clusterkit.constraints import Constraints


def _labels(n: int, k: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, k, n)


def _check_types(c: Constraints, y: np.ndarray) -> None:
    assert c.ml.dtype == np.int64 and c.cl.dtype == np.int64
    assert (y[c.ml[:, 0]] == y[c.ml[:, 1]]).all()
    assert (y[c.cl[:, 0]] != y[c.cl[:, 1]]).all()
    for a in (c.ml, c.cl):
        assert (a[:, 0] < a[:, 1]).all()
        assert len({tuple(r) for r in a.tolist()}) == len(a)  # no duplicates


@pytest.fixture
def stream_mode(monkeypatch):
    """Force the sampled-stream path with tiny chunks (exercises many chunks cheaply)."""
    monkeypatch.setattr(cmod, "PERMUTATION_LIMIT", 0)
    monkeypatch.setattr(cmod, "_CHUNK0", 16)
    monkeypatch.setattr(cmod, "_CHUNK_MAX", 64)


# -------------------------------------------------------------------- explicit pairs
def test_from_pairs_normalises_and_merges_duplicates():
    c = Constraints.from_pairs(6, ml=[(3, 1), (0, 2), (1, 3), (2, 0), (4, 5)], cl=[(5, 0)])
    np.testing.assert_array_equal(c.ml, [[1, 3], [0, 2], [4, 5]])
    np.testing.assert_array_equal(c.cl, [[0, 5]])
    assert (c.n_ml, c.n_cl, len(c)) == (3, 1, 4)
    np.testing.assert_array_equal(c.pairs(), [[1, 3], [0, 2], [4, 5], [0, 5]])
    np.testing.assert_array_equal(c.is_ml(), [True, True, True, False])
    assert "n_ml=3" in repr(c) and "n_cl=1" in repr(c)
    with pytest.raises(ValueError):
        c.ml[0, 0] = 2  # read-only
    assert Constraints(6, [(3, 1)]).ml.tolist() == [[1, 3]]
    # numpy and torch inputs, and empty sets
    c2 = Constraints.from_pairs(4, np.array([[0, 1]]), torch.tensor([[2, 3]]))
    assert c2.ml.tolist() == [[0, 1]] and c2.cl.tolist() == [[2, 3]]
    e = Constraints.from_pairs(4)
    assert len(e) == 0 and e.pairs().shape == (0, 2)


@pytest.mark.parametrize(
    "ml, cl, match",
    [
        ([(0, 5)], (), r"outside \[0, 5\)"),
        ([(-1, 2)], (), "outside"),
        ([(1, 1)], (), "itself"),
        ((), [(2, 2)], "itself"),
        ([0, 1], (), r"shape \(2,\).*\[\(i, j\)\]"),
        ([(0, 1, 2)], (), r"shape \(1, 3\)"),
        ([(0.5, 1)], (), "integer"),
        ([(0, 1)], [(1, 0)], r"\(0, 1\) is both must-link and cannot-link"),
        ([(0, 1), (1, 2)], [(0, 2)], r"cannot-link \(0, 2\).*chain 0-1-2"),
        ([(1, 0), (2, 1), (3, 2)], [(3, 0)], "chain 0-1-2-3"),
    ],
)
def test_from_pairs_errors(ml, cl, match):
    with pytest.raises(ValueError, match=match):
        Constraints.from_pairs(5, ml, cl)


def test_contradiction_report_is_capped():
    ml = [(0, i) for i in range(1, 20)]
    cl = [(i, i + 1) for i in range(1, 19)]  # all inside the star component
    with pytest.raises(ValueError, match=r"and 13 more") as e:
        Constraints.from_pairs(20, ml, cl)
    assert str(e.value).count("chain") == 5


# ----------------------------------------------------------------------- from_labels
@pytest.mark.parametrize("mode", ["perm", "stream"])
def test_from_labels_types_counts_determinism(mode, request):
    if mode == "stream":
        request.getfixturevalue("stream_mode")
    y = _labels(300, 4)
    c = Constraints.from_labels(y, n_pairs=101, ml_ratio=0.3, seed=7)
    assert (c.n_ml, c.n_cl) == (30, 71)  # round(101 * 0.3) = 30
    _check_types(c, y)
    again = Constraints.from_labels(list(y), n_pairs=101, ml_ratio=0.3, seed=7)
    np.testing.assert_array_equal(c.ml, again.ml)
    np.testing.assert_array_equal(c.cl, again.cl)
    other = Constraints.from_labels(y, n_pairs=101, ml_ratio=0.3, seed=8)
    assert not np.array_equal(c.ml, other.ml)
    f = Constraints.from_labels(torch.as_tensor(y), fraction=0.2, seed=7)
    assert len(f) == 60 and (f.n_ml, f.n_cl) == (30, 30)
    assert bool(c._source._rng) == (mode == "stream")  # the intended path was exercised


@pytest.mark.parametrize("mode", ["perm", "stream"])
def test_prefix_property_grow_and_shrink(mode, request):
    if mode == "stream":
        request.getfixturevalue("stream_mode")
    y = _labels(200, 3, seed=1)
    budgets = [0, 5, 40, 333, 1000, 40, 5]
    sets = [Constraints.from_labels(y, n_pairs=b, seed=3) for b in budgets]
    big = max(sets, key=len)
    for s in sets:
        np.testing.assert_array_equal(s.ml, big.ml[: s.n_ml])
        np.testing.assert_array_equal(s.cl, big.cl[: s.n_cl])
    # with_budget from a small set grows along the same streams; shrinking keeps a prefix
    small = sets[1]
    grown = small.with_budget(n_pairs=1000)
    np.testing.assert_array_equal(grown.ml, big.ml)
    np.testing.assert_array_equal(grown.cl, big.cl)
    shrunk = grown.with_budget(fraction=0.2)
    assert len(shrunk) == 40
    np.testing.assert_array_equal(shrunk.ml, big.ml[:20])
    # changing ml_ratio re-splits, each type still a prefix of its own stream
    skew = grown.with_budget(ml_ratio=0.9)
    assert (skew.n_ml, skew.n_cl) == (900, 100)
    np.testing.assert_array_equal(skew.ml[:500], big.ml)
    np.testing.assert_array_equal(skew.cl, big.cl[:100])
    assert skew.source is not None and skew.source["ml_ratio"] == 0.9
    _check_types(skew, y)


@pytest.mark.parametrize("mode", ["perm", "stream"])
def test_all_pairs_of_a_type_tiny_n(mode, request):
    if mode == "stream":
        request.getfixturevalue("stream_mode")
    y = np.array([0, 0, 0, 1, 1, 2])
    max_ml, max_cl = Constraints.max_pairs(y)
    assert (max_ml, max_cl) == (4, 11)
    c = Constraints.from_labels(y, n_pairs=15, ml_ratio=4 / 15)
    assert (c.n_ml, c.n_cl) == (4, 11)
    _check_types(c, y)
    assert {tuple(r) for r in c.ml.tolist()} == {(0, 1), (0, 2), (1, 2), (3, 4)}


@pytest.mark.parametrize("mode", ["perm", "stream"])
def test_first_pair_is_uniform(mode, request):
    if mode == "stream":
        request.getfixturevalue("stream_mode")
    y = np.array([0, 0, 0, 1, 1, 1])  # 6 ML pairs, 9 CL pairs
    reps = 1800
    ml = Counter()
    cl = Counter()
    for s in range(reps):
        c = Constraints.from_labels(y, n_pairs=2, seed=s)
        ml[tuple(c.ml[0])] += 1
        cl[tuple(c.cl[0])] += 1
    assert len(ml) == 6 and len(cl) == 9
    # each count ~ Binomial(reps, 1/m): 6 sigma bounds
    for counts, m in ((ml, 6), (cl, 9)):
        mean, sd = reps / m, (reps / m * (1 - 1 / m)) ** 0.5
        assert all(abs(v - mean) < 6 * sd for v in counts.values()), counts


def test_budget_too_large_names_the_max():
    y = np.array([0, 0, 0, 1, 1, 2])
    with pytest.raises(ValueError, match="at most 4 distinct must-link"):
        Constraints.from_labels(y, n_pairs=10, ml_ratio=0.5)
    with pytest.raises(ValueError, match="at most 11 distinct cannot-link"):
        Constraints.from_labels(y, n_pairs=12, ml_ratio=0.0)
    c = Constraints.from_labels(y, n_pairs=4)
    with pytest.raises(ValueError, match="at most 4"):
        c.with_budget(n_pairs=10)


def test_from_labels_argument_errors():
    y = _labels(50, 3)
    with pytest.raises(ValueError, match="exactly one"):
        Constraints.from_labels(y)
    with pytest.raises(ValueError, match="exactly one"):
        Constraints.from_labels(y, n_pairs=5, fraction=0.1)
    with pytest.raises(ValueError, match="ml_ratio"):
        Constraints.from_labels(y, n_pairs=5, ml_ratio=1.5)
    with pytest.raises(ValueError, match="seed"):
        Constraints.from_labels(y, n_pairs=5, seed=-1)
    with pytest.raises(ValueError, match="from_labels"):
        Constraints.from_pairs(5, [(0, 1)]).with_budget(n_pairs=3)
    with pytest.raises(ValueError, match="from_labels"):
        Constraints.from_labels(y, n_pairs=4).extend(ml=[(0, 1)] if y[0] == y[1] else [],
                                                    cl=[] if y[0] == y[1] else [(0, 1)]
                                                    ).with_budget(n_pairs=8)


def test_from_labels_is_fast_at_mnist_scale():
    y = _labels(70_000, 10)
    t0 = time.perf_counter()
    c = Constraints.from_labels(y, n_pairs=14_000, seed=0)
    elapsed = time.perf_counter() - t0
    assert (c.n_ml, c.n_cl) == (7000, 7000)
    _check_types(c, y)
    assert elapsed < 1.0, elapsed


# ---------------------------------------------------------------- extend / conflicts
def test_extend_appends_and_detects_contradictions():
    c = Constraints.from_pairs(6, ml=[(0, 1)], cl=[(2, 3)])
    e = c.extend(ml=[(2, 1), (1, 0)], cl=[(4, 5)])
    np.testing.assert_array_equal(e.ml, [[0, 1], [1, 2]])  # (1, 0) merged into (0, 1)
    np.testing.assert_array_equal(e.cl, [[2, 3], [4, 5]])
    np.testing.assert_array_equal(c.ml, [[0, 1]])  # original unchanged
    with pytest.raises(ValueError, match=r"chain 0-1-2"):
        e.extend(cl=[(0, 2)])
    with pytest.raises(ValueError, match="both must-link and cannot-link"):
        e.extend(ml=[(3, 2)])
    with pytest.raises(ValueError, match=r"cannot-link \(2, 3\)"):
        e.extend(ml=[(1, 3)])  # joins 3 to the component of 2
    with pytest.raises(ValueError, match="itself"):
        e.extend(ml=[(4, 4)])


def test_extend_one_at_a_time_matches_from_pairs():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 40)
    c = Constraints.from_pairs(40)
    ml, cl = [], []
    for _ in range(120):
        i, j = (int(v) for v in rng.choice(40, 2, replace=False))
        same = bool(y[i] == y[j])
        assert c.conflicts(i, j, same) == []  # answers from labels never contradict
        c = c.extend(ml=[(i, j)]) if same else c.extend(cl=[(i, j)])
        (ml if same else cl).append((i, j))
    ref = Constraints.from_pairs(40, ml, cl)
    np.testing.assert_array_equal(c.ml, ref.ml)
    np.testing.assert_array_equal(c.cl, ref.cl)
    # a wrong answer is reported, not accepted silently
    i, j = (int(v) for v in c.ml[0])
    assert c.conflicts(i, j, False) == [(i, j)]


def test_conflicts():
    c = Constraints.from_pairs(8, ml=[(0, 1), (1, 2), (5, 6)], cl=[(2, 3), (0, 5), (4, 7)])
    assert c.conflicts(0, 2, same=False) == [(0, 1), (1, 2)]  # the ML chain 0-1-2
    assert c.conflicts(2, 0, same=True) == []  # already implied
    assert c.conflicts(1, 3, same=True) == [(2, 3)]
    assert c.conflicts(6, 1, same=True) == [(0, 5)]
    assert c.conflicts(7, 4, same=True) == [(4, 7)]
    assert c.conflicts(3, 4, same=True) == []
    assert c.conflicts(3, 4, same=False) == []
    assert c.conflicts(2, 3, same=False) == []  # already present
    with pytest.raises(ValueError, match="two different"):
        c.conflicts(1, 1, True)
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        c.conflicts(1, 8, True)


# ------------------------------------------------------------------ satisfied / torch
def test_satisfied():
    c = Constraints.from_pairs(5, ml=[(0, 1), (2, 3)], cl=[(0, 4), (1, 2)])
    lab = np.array([0, 0, 1, 2, 0])
    np.testing.assert_array_equal(c.satisfied(lab), [True, False, False, True])
    np.testing.assert_array_equal(c.satisfied(torch.as_tensor(lab)), c.satisfied(lab))
    with pytest.raises(ValueError, match="n = 5"):
        c.satisfied(lab[:3])


def _in_batch_reference(c: Constraints, idx: list[int]):
    pos = {}
    for k, v in enumerate(idx):
        pos.setdefault(v, k)
    out = []
    for r, ((i, j), m) in enumerate(zip(c.pairs().tolist(), c.is_ml().tolist(), strict=True)):
        if i in pos and j in pos:
            out.append((pos[i], pos[j], m, r))
    return out


@pytest.mark.parametrize("seed", range(5))
def test_in_batch_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = 120
    c = Constraints.from_labels(rng.integers(0, 4, n), n_pairs=300, seed=seed)
    idx = torch.as_tensor(rng.permutation(n)[: rng.integers(1, 60)])
    if seed == 4:  # repeated indices: the first position is used
        idx = torch.cat([idx, idx[:5]])
    a, b, is_ml, which = c.in_batch(idx)
    assert a.dtype == b.dtype == which.dtype == torch.long and is_ml.dtype == torch.bool
    got = list(zip(a.tolist(), b.tolist(), is_ml.tolist(), which.tolist(), strict=True))
    assert got == _in_batch_reference(c, idx.tolist())
    p = c.pairs()
    np.testing.assert_array_equal(idx[a].numpy(), p[which.numpy(), 0])
    np.testing.assert_array_equal(idx[b].numpy(), p[which.numpy(), 1])


def test_in_batch_edge_cases_and_torch_pairs():
    c = Constraints.from_pairs(5, ml=[(0, 1)], cl=[(1, 2)])
    pairs, is_ml = c.torch_pairs("cpu")
    assert pairs.dtype == torch.long and pairs.shape == (2, 2) and is_ml.tolist() == [True, False]
    assert c.torch_pairs(torch.device("cpu"))[0] is pairs  # cached
    a, b, m, w = c.in_batch(torch.tensor([3, 4], dtype=torch.int32))
    assert a.numel() == b.numel() == m.numel() == w.numel() == 0
    a, b, m, w = c.in_batch(torch.tensor([1, 0, 1, 2, 0]))  # repeats: first position used
    assert (a.tolist(), b.tolist(), m.tolist(), w.tolist()) == ([1, 0], [0, 3], [True, False],
                                                                [0, 1])
    a, b, m, w = Constraints.from_pairs(5).in_batch(torch.arange(5))
    assert w.numel() == 0
    with pytest.raises(ValueError, match="outside"):
        c.in_batch(torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="shape"):
        c.in_batch(torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="dtype"):
        c.in_batch(torch.tensor([0.0, 1.0]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_in_batch_on_gpu():
    c = Constraints.from_labels(_labels(500, 5), n_pairs=400)
    idx = torch.randperm(500)[:128]
    cpu = c.in_batch(idx)
    gpu = c.in_batch(idx.cuda())
    for x, g in zip(cpu, gpu, strict=True):
        assert g.device.type == "cuda"
        assert torch.equal(x, g.cpu())


# ----------------------------------------------------------------------- persistence
def _roundtrip(state: dict) -> dict:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def test_state_roundtrip_from_labels():
    y = _labels(100, 3)
    c = Constraints.from_labels(y, n_pairs=30, ml_ratio=0.4, seed=5)
    d = c.to_state()
    c2 = Constraints.from_state(_roundtrip(d))
    np.testing.assert_array_equal(c2.ml, c.ml)
    np.testing.assert_array_equal(c2.cl, c.cl)
    assert c2.n == 100 and repr(c2) == repr(c)
    np.testing.assert_array_equal(c2.source["y"], y)
    g1, g2 = c.with_budget(n_pairs=80), c2.with_budget(n_pairs=80)
    np.testing.assert_array_equal(g1.ml, g2.ml)
    np.testing.assert_array_equal(g1.cl, g2.cl)


def test_state_roundtrip_explicit():
    c = Constraints.from_pairs(7, ml=[(0, 1), (5, 2)], cl=[(3, 4)])
    c2 = Constraints.from_state(_roundtrip(c.to_state()))
    np.testing.assert_array_equal(c2.pairs(), c.pairs())
    assert c2.source is None
    with pytest.raises(ValueError, match="to_state"):
        Constraints.from_state({"n": 3})


def test_module_stays_light():
    import subprocess
    import sys

    code = ("import sys, clusterkit.constraints; "
            "bad = [m for m in ('ipywidgets', 'sklearn', 'scipy', 'matplotlib') "
            "if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
