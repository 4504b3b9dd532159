"""Balanced semi-supervised deep clustering (PAPERS.md section 1): its losses, its Lagrange
multipliers, the constraint-budget knob, and a tiny run on real digits."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from sklearn.base import clone

from clusterkit import losses, metrics
from clusterkit.constraints import Constraints
from clusterkit.methods import BalancedSemiSupervised


@pytest.fixture(autouse=True)
def one_thread():
    """Two threads on two busy cores run these tiny nets ten times slower than one."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def one_hot(labels, k):
    return torch.nn.functional.one_hot(torch.as_tensor(labels), k).float()


# ----------------------------------------------------------------------------- eq 7
@pytest.mark.parametrize("n,k", [(12, 3), (10, 3), (9, 4)])
def test_balance_loss_is_minimal_at_equal_sizes_theorem_1(n, k):
    # every hard assignment's value depends only on its cluster sizes: try them all
    best, argbest = np.inf, []
    for sizes in itertools.product(range(1, n), repeat=k):
        if sum(sizes) != n:
            continue
        y = one_hot(np.repeat(np.arange(k), sizes), k)
        v = float(losses.balance_loss(y))
        np.testing.assert_allclose(v, sum(1.0 / s for s in sizes), rtol=1e-5)
        if v < best - 1e-9:
            best, argbest = v, [sorted(sizes)]
        elif abs(v - best) < 1e-9:
            argbest.append(sorted(sizes))
    lo, hi = n // k, -(-n // k)
    assert all(set(s) <= {lo, hi} for s in argbest), argbest  # the floor/ceil sizes only
    assert best >= k * k / n - 1e-6  # eq (6)


def test_balance_loss_gradient_moves_mass_towards_the_small_cluster():
    torch.manual_seed(0)
    labels = torch.tensor([0] * 30 + [1] * 10)
    logits = (one_hot(labels, 2) + 0.3 * torch.randn(40, 2)).requires_grad_(True)
    sizes0 = torch.softmax(logits, 1).sum(0).detach()
    v0 = float(losses.balance_loss(torch.softmax(logits.detach(), 1)))
    for _ in range(50):
        g, = torch.autograd.grad(losses.balance_loss(torch.softmax(logits, 1)), logits)
        with torch.no_grad():
            logits -= 100.0 * g
    sizes1 = torch.softmax(logits, 1).sum(0).detach()
    # soft sizes: the big cluster shrinks, the small one grows, and the loss went down
    assert sizes1[0] < sizes0[0] - 1.0 and sizes1[1] > sizes0[1] + 1.0, (sizes0, sizes1)
    assert float(losses.balance_loss(torch.softmax(logits.detach(), 1))) < v0


# ------------------------------------------------------------------------- eqs 13-14
def test_semi_loss_is_zero_when_all_constraints_are_met_and_counts_violations():
    y = one_hot([0, 0, 1, 1, 2], 3)
    i, j = torch.tensor([0, 2, 0, 1]), torch.tensor([1, 3, 2, 4])
    is_ml = torch.tensor([True, True, False, False])
    mult = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert float(losses.semi_loss(y[i], y[j], is_ml, mult)) == 0.0
    # break one ML pair (0, 1) and one CL pair (0, 2): the loss is their multipliers' sum
    y2 = one_hot([0, 2, 0, 0, 1], 3)
    v = losses.pair_violation(y2[i], y2[j], is_ml)
    np.testing.assert_array_equal(v.numpy(), [1.0, 0.0, 1.0, 0.0])
    assert float(losses.semi_loss(y2[i], y2[j], is_ml, mult)) == pytest.approx(1.0 + 3.0)
    assert float(losses.semi_loss(y2[i], y2[j], is_ml, mult, "mean")) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="reduction"):
        losses.semi_loss(y2[i], y2[j], is_ml, mult, "max")


# ------------------------------------------------------------------------- eqs 17-18
@pytest.mark.parametrize("rule", ["eq17", "eq18"])
def test_multipliers_grow_only_on_violated_constraints_and_respect_the_cap(rule):
    y = one_hot([0, 2, 0, 1, 2, 2], 3)
    i, j = torch.tensor([0, 2, 0, 1, 4]), torch.tensor([1, 3, 2, 4, 5])
    is_ml = torch.tensor([True, True, False, False, True])
    viol = losses.pair_violation(y[i], y[j], is_ml)  # violated: rows 0 (ML), 2 (CL), 1 (ML)
    mult = torch.ones(5)
    for _ in range(100):
        new = losses.dual_ascent(mult, viol, gamma=0.5, cap=10.0, rule=rule)
        assert torch.all(new[viol == 0] == mult[viol == 0])  # met: unchanged
        assert torch.all(new[viol > 0] >= mult[viol > 0])
        assert torch.all(new <= 10.0)
        mult = new
    np.testing.assert_allclose(mult.numpy(), np.where(viol.numpy() > 0, 10.0, 1.0))
    # the first step of eq 17 is additive, of eq 18 multiplicative
    m2 = torch.tensor([2.0, 2.0, 2.0, 2.0, 2.0])
    step = losses.dual_ascent(m2, viol, gamma=0.5, cap=10.0, rule=rule)
    expect = 2.0 + 0.5 * viol if rule == "eq17" else 2.0 + 0.5 * 2.0 * viol
    np.testing.assert_allclose(step.numpy(), expect.numpy())
    # the authors' code skips an update that would pass the cap instead of clipping it
    skipped = losses.dual_ascent(torch.full((5,), 1.8), viol, 0.5, 2.0, rule, skip_above=True)
    np.testing.assert_allclose(skipped.numpy(), np.full(5, 1.8))


# ------------------------------------------------------------------------- the method
def tiny(**kw):
    args = dict(profile="smoke", dims=(64, 64, 10), pretrain_epochs=15, cluster_epochs=12,
                batch_size=128, verbose=False, snapshot_size=200, beta=1.0, seed=0)
    args.update(kw)
    return BalancedSemiSupervised(10, **args)


def test_a_tiny_run_satisfies_its_constraints_and_balances(digits):
    X, y = digits
    X, y = X[:600], y[:600]
    cons = BalancedSemiSupervised.make_constraints(y, fraction=0.2, seed=1)  # 120 pairs
    assert len(cons) == 120 and cons.n_ml == 60
    m = tiny(pairs_per_step=0, batch_size=64, pretrain_epochs=20, cluster_epochs=50,
             beta=10.0, lr=5e-3).fit(X, cons, y=y)
    sat = cons.satisfied(m.labels_).mean()
    assert sat >= 0.95, sat
    assert m.history_.last("satisfied") == pytest.approx(sat)
    assert metrics.ne(m.labels_, n_clusters=10) > 0.95
    assert m.multipliers_.shape == (120,) and float(m.multipliers_.max()) <= 10.0
    # the multipliers were recorded each epoch of the clustering phase (and at its start)
    assert len(m.multiplier_history_) == 51
    assert m.labels_.shape == (600,) and m.cluster_centers_.shape == (10, 10)
    np.testing.assert_array_equal(m.predict(X), m.labels_)
    extras = m.history_.snapshots[-1].extras["multiplier"]
    assert extras.shape == (200,) and extras.max() <= 10.0


def test_budget_knob_grows_and_shrinks_keeping_each_pairs_multiplier(digits):
    X, y = digits
    cons = Constraints.from_labels(y, n_pairs=100, ml_ratio=0.5, seed=3)
    m = tiny(cluster_epochs=1, pretrain_epochs=1)
    run = m.prepare(X, cons, y=y)
    assert run.knobs["n_pairs"] == 100 and run.knobs["ml_ratio"] == 0.5
    m.multipliers_ = torch.arange(100, dtype=torch.float32) + 1.0  # distinct, by position

    def identities():
        c = run.constraints
        return {(bool(ml), int(a), int(b)): float(v) for (a, b), ml, v in
                zip(c.pairs(), c.is_ml(), m.multipliers_.tolist(), strict=True)}

    def check(c, before):  # every surviving pair kept its multiplier; new pairs start at 1
        assert len(m.multipliers_) == len(c)
        for (a, b), ml, v in zip(c.pairs(), c.is_ml(), m.multipliers_.tolist(), strict=True):
            assert v == before.get((bool(ml), int(a), int(b)), 1.0)

    ident = identities()
    run.set_knob("n_pairs", 40)  # shrink: ML rows 0..19 and CL rows 50..69 survive
    small = run.constraints
    assert len(small) == 40 and small.n_ml == 20
    np.testing.assert_array_equal(small.ml, cons.ml[:20])
    np.testing.assert_array_equal(small.cl, cons.cl[:20])
    check(small, ident)
    np.testing.assert_array_equal(m.multipliers_[20:].numpy(), np.arange(51, 71))
    ident = identities()
    run.set_knob("n_pairs", 160)  # grow: the old pairs keep their multipliers, new start at 1
    big = run.constraints
    np.testing.assert_array_equal(big.ml[:50], cons.ml)
    check(big, ident)
    np.testing.assert_array_equal(m.multipliers_[:20].numpy(), np.arange(1, 21))
    assert float(m.multipliers_[20:80].sum()) == 60.0  # new ML rows start at 1
    ident = identities()
    run.set_knob("ml_ratio", 0.25)
    assert run.constraints.n_ml == 40
    check(run.constraints, ident)
    # a budget beyond Constraints.max_pairs(y) is refused, naming the limits
    small_y = y[:30]
    max_ml, _ = Constraints.max_pairs(small_y)
    r2 = tiny().prepare(X[:30], Constraints.from_labels(small_y, n_pairs=10, seed=0), y=small_y)
    with pytest.raises(ValueError, match=f"at most {max_ml} must-link"):
        r2.set_knob("n_pairs", 2 * max_ml + 2)
    assert r2.knobs["n_pairs"] == 10 and len(r2.constraints) == 10
    run.fit()  # trains with the changed constraints
    assert run.history.last("satisfied") is not None
    assert [c["knob"] for c in run.history.changes] == ["n_pairs", "n_pairs", "ml_ratio"]


def test_budget_knob_refuses_explicit_pairs(digits):
    X, y = digits
    cons = Constraints.from_pairs(len(X), ml=[(0, 10)], cl=[(0, 1)])
    run = tiny().prepare(X, cons, y=y)
    with pytest.raises(ValueError, match="from labels"):
        run.set_knob("n_pairs", 10)


def test_switches_drop_their_terms_and_variants_differ(digits):
    X, y = digits
    X, y = X[:300], y[:300]
    cons = BalancedSemiSupervised.make_constraints(y, seed=0)
    m = tiny(pretrain_epochs=1, cluster_epochs=1, use_balance=False).fit(X, cons, y=y)
    terms = set(m.history_.steps[-1])
    assert "bal" not in terms and {"rec", "semi"} <= terms
    m = tiny(pretrain_epochs=1, cluster_epochs=1, use_semi=False,
             use_reconstruction=False).fit(X, cons, y=y)
    assert {"bal"} <= set(m.history_.steps[-1]) and "semi" not in m.history_.steps[-1]
    code = BalancedSemiSupervised(profile="paper", variant="code").settings()
    paper = BalancedSemiSupervised(profile="paper").settings()
    assert code["assignment"] == "q" and paper["assignment"] == "target"
    assert code["cap"] == 2.0 and paper["cap"] == 10.0 and code["beta"] == 0.01
    assert code["scope"] == "chunk" and paper["scope"] == "sample"
    assert BalancedSemiSupervised(variant="code", cap=5.0).settings()["cap"] == 5.0
    assert clone(BalancedSemiSupervised(alpha=0.3)).alpha == 0.3


def test_bad_arguments_get_clear_errors(digits):
    X, y = digits
    with pytest.raises(ValueError, match="variant"):
        BalancedSemiSupervised(variant="authors").settings()
    with pytest.raises(ValueError, match="scope"):
        BalancedSemiSupervised(scope="everything").settings()
    with pytest.raises(ValueError, match="alpha"):
        BalancedSemiSupervised(alpha=-1.0).settings()
    with pytest.raises(ValueError, match="Constraints"):
        tiny().fit(X, [(0, 1)], y=y)
    with pytest.raises(ValueError, match="n_clusters"):
        BalancedSemiSupervised(5000, profile="smoke").fit(X[:10])


def test_checkpoint_resume_keeps_multipliers_and_ends_like_an_uninterrupted_run(digits, tmp_path):
    from clusterkit.engine import Run

    X, y = digits
    X, y = X[:400], y[:400]
    cons = BalancedSemiSupervised.make_constraints(y, seed=2)
    kw = dict(pretrain_epochs=2, cluster_epochs=3, snapshot_epochs=None)
    full = tiny(**kw).fit(X, cons, y=y)
    run = tiny(**kw).prepare(X, cons, y=y)
    stops = iter([True])
    run.callbacks.append(lambda ev, r, p: r.stop() if ev == "epoch" and p["phase"] == "cluster"
                         and next(stops, False) else None)
    run.fit()
    path = run.save(tmp_path / "bal.pt")
    back = Run.load(path, X, y, progress=False)
    torch.testing.assert_close(back.method.multipliers_, run.method.multipliers_)
    assert back.knobs["n_pairs"] == len(cons) and back.knob_specs["n_pairs"].high >= len(cons)
    back.fit()
    torch.testing.assert_close(back.method.multipliers_, full.multipliers_)
    np.testing.assert_array_equal(back.method.labels_, full.labels_)
