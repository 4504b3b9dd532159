"""Query strategies (ADC Alg. 1, random, uncertain), ask/tell, the answer log, oracles."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clusterkit.active import (
    ADCSelection,
    AnswerLog,
    LabelOracle,
    RandomPairs,
    UncertainPairs,
    _split_budget,
    make_strategy,
)


def _q(n: int, k: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q = rng.random((n, k)).astype(np.float32) ** 3
    return q / q.sum(1, keepdims=True)


def _codes(p: np.ndarray, n: int) -> np.ndarray:
    return np.minimum(p[:, 0], p[:, 1]) * n + np.maximum(p[:, 0], p[:, 1])


def test_round_zero_draws_random_unique_pairs():
    s = ADCSelection(100, rounds=3, seed=1)
    p = s.propose(40)
    assert p.shape == (40, 2) and p.dtype == np.int64
    assert (p[:, 0] != p[:, 1]).all() and p.min() >= 0 and p.max() < 100
    assert len(np.unique(_codes(p, 100))) == 40
    assert s.explain(p[0])["strategy"] == "random"


def test_budget_split_is_floor_of_k_np_over_sum():
    n, k, T = 400, 10, 4
    s = ADCSelection(n, rounds=T, seed=0, fill=False)
    s.propose(5)
    q = _q(n, k)
    s.next_round(q)
    sub = s.subsets[1]
    sizes = np.bincount(q[sub].argmax(1), minlength=k)
    budget = 37
    pairs = s.propose(budget)
    centre_cluster = q[pairs[:, 0]].argmax(1)
    got = np.bincount(centre_cluster, minlength=k)
    np.testing.assert_array_equal(got, np.floor(budget * sizes / sizes.sum()).astype(int))
    assert len(pairs) <= budget


def test_fill_gives_exactly_k_with_largest_remainders():
    sizes = np.array([5, 3, 2])
    b = _split_budget(4, sizes, fill=True)
    assert b.sum() == 4
    assert (b >= np.floor(4 * sizes / 10)).all() and (b <= np.floor(4 * sizes / 10) + 1).all()
    np.testing.assert_array_equal(_split_budget(4, sizes, fill=False), [2, 1, 0])
    np.testing.assert_array_equal(b, [2, 1, 1])  # remainders .0, .2, .8 -> the last


def test_alg1_pairs_central_member_with_least_central_inside_subset():
    n, k, T = 300, 5, 3
    s = ADCSelection(n, rounds=T, seed=3)
    s.propose(10)
    q = _q(n, k, seed=4)
    s.next_round(q)
    pairs = s.propose(30)
    sub = set(s.subsets[1].tolist())
    assert set(pairs.ravel().tolist()) <= sub, "round 1 must stay inside subset 1"
    lab = q.argmax(1)
    for p in np.unique(lab[pairs[:, 0]]):
        rows = pairs[lab[pairs[:, 0]] == p]
        members = np.array(sorted(i for i in sub if lab[i] == p))
        centre = members[np.argmax(q[members, p])]
        assert (rows[:, 0] == centre).all(), "the most central member comes first"
        assert (lab[rows[:, 1]] == p).all()
        b = len(rows)
        least = members[np.argsort(q[members, p])[:b]]
        assert set(rows[:, 1].tolist()) == set(least.tolist())
        info = s.explain(rows[0])
        assert info["cluster"] == p and info["strategy"] == "adc"


def test_no_pair_repeated_across_rounds_and_subsets_disjoint():
    n, k, T = 500, 4, 5
    s = ADCSelection(n, rounds=T, seed=0)
    allp = []
    for t in range(T):
        p = s.propose(20)
        allp.append(p)
        s.tell(p, np.zeros(len(p), bool))
        s.next_round(_q(n, k, seed=t))
    allp = np.concatenate(allp)
    assert len(np.unique(_codes(allp, n))) == len(allp) == 20 * T
    cat = np.concatenate(s.subsets)
    assert len(np.unique(cat)) == n
    with pytest.raises(ValueError, match="rounds"):
        s.propose(3)


def test_ask_tell_bookkeeping_skip_and_undo():
    s = RandomPairs(50, rounds=2, seed=0)
    p = s.propose(4)
    assert len(s.pending) == 4
    st = s.tell(p[:3], [True, "different", None])
    assert st == ["ok", "ok", "skip"]
    assert s.constraints.n_ml == 1 and s.constraints.n_cl == 1
    assert len(s.pending) == 1 and tuple(s.pending[0]) == tuple(p[3])
    assert s.n_answered == 2
    rec = s.undo()  # the skip
    assert rec["answer"] == "skip" and len(s.pending) == 2
    rec = s.undo()  # the cannot-link
    assert rec["answer"] == "different" and s.constraints.n_cl == 0
    assert tuple(s.pending[0]) == tuple(p[1])
    with pytest.raises(ValueError, match="one answer per pair"):
        s.tell(p[:2], [True])


def test_contradiction_is_flagged_not_accepted(tmp_path):
    s = RandomPairs(10, seed=0, log=tmp_path / "a.jsonl")
    assert s.tell([(0, 1), (1, 2)], [True, True]) == ["ok", "ok"]
    st = s.tell([(0, 2), (3, 4)], [False, True])
    assert st == ["conflict", "ok"]
    assert s.constraints.n_cl == 0 and s.constraints.n_ml == 3
    c = s.conflicts_[0]
    assert (c["i"], c["j"]) == (0, 2) and sorted(map(tuple, c["conflicts"])) == [(0, 1), (1, 2)]
    # a must-link across an existing cannot-link is refused too
    s.tell([(5, 6)], [False])
    assert s.tell([(6, 5)], [True]) == ["conflict"]
    lines = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [x["status"] for x in lines if x["event"] == "answer"].count("conflict") == 2


def test_answers_persist_and_replay(tmp_path):
    path = tmp_path / "answers.jsonl"
    n = 200
    s = ADCSelection(n, rounds=3, seed=5, log=path)
    oracle = LabelOracle(np.arange(n) % 4)
    p = s.propose(12)
    s.tell(p, oracle(p))
    s.next_round(_q(n, 4))
    p2 = s.propose(8)
    s.tell(p2[:3], oracle(p2[:3]), source="human")
    s.tell(p2[3:4], [None])
    s.undo()
    events = AnswerLog(path).read()
    assert [e["event"] for e in events].count("answer") == 12 + 3 + 1
    assert events[-1]["event"] == "undo"
    r = ADCSelection(n, rounds=3, seed=5).replay(path)
    assert r.round == s.round == 1
    np.testing.assert_array_equal(r.constraints.ml, s.constraints.ml)
    np.testing.assert_array_equal(r.constraints.cl, s.constraints.cl)
    np.testing.assert_array_equal(r.pending, s.pending)
    assert len(r.answers) == len(s.answers)
    # a torn last line (crash mid-write) is ignored
    with open(path, "a") as f:
        f.write('{"event": "ans')
    assert len(AnswerLog(path).read()) == len(events)
    # new answers after a replay go to the same file
    r.tell(r.pending[:1], [True])
    assert AnswerLog(path).read()[-1]["event"] == "answer"


def test_uncertain_picks_farthest_pairs_within_cluster():
    n, k = 120, 3
    s = UncertainPairs(n, rounds=2, seed=0)
    s.propose(3)
    rng = np.random.default_rng(0)
    z = rng.normal(size=(n, 2)).astype(np.float32)
    q = _q(n, k)
    s.next_round(q, z)
    pairs = s.propose(9)
    lab = q.argmax(1)
    sub = s.subsets[1]
    for p in np.unique(lab[pairs[:, 0]]):
        mem = sub[lab[sub] == p]
        d = ((z[mem][:, None] - z[mem][None]) ** 2).sum(-1)
        rows = pairs[lab[pairs[:, 0]] == p]
        first = ((z[rows[0, 0]] - z[rows[0, 1]]) ** 2).sum()
        assert np.isclose(first, d.max(), rtol=1e-5)
        assert (lab[rows] == p).all()
    with pytest.raises(ValueError, match="embedding"):
        t = UncertainPairs(n, rounds=2)
        t.next_round(q)
        t.propose(3)


def test_oracle_error_rate_and_validation():
    y = np.repeat(np.arange(10), 100)
    rng = np.random.default_rng(0)
    p = np.stack([rng.integers(0, 1000, 20000), rng.integers(0, 1000, 20000)], 1)
    p = p[p[:, 0] != p[:, 1]]
    truth = y[p[:, 0]] == y[p[:, 1]]
    assert (LabelOracle(y)(p) == truth).all()
    wrong = (LabelOracle(y, error_rate=0.2, seed=1)(p) != truth).mean()
    assert 0.18 < wrong < 0.22
    with pytest.raises(ValueError, match="error_rate"):
        LabelOracle(y, error_rate=1.5)
    with pytest.raises(ValueError, match="outside"):
        LabelOracle(y)([(0, 1000)])


def test_bad_requests_raise_clear_errors():
    s = RandomPairs(4, rounds=1)
    with pytest.raises(ValueError, match="at most 6"):
        s.propose(7)
    with pytest.raises(ValueError, match="positive integer"):
        s.propose(0)
    with pytest.raises(ValueError, match="unknown strategy"):
        make_strategy("greedy", 10)
    with pytest.raises(ValueError, match="shape"):
        ADCSelection(10).next_round(np.ones((9, 2)))
    with pytest.raises(ValueError, match="different samples"):
        s.tell([(1, 1)], [True])
