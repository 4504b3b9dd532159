"""The training engine: knobs, run control, reproducibility, checkpoints, divergence."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from clusterkit.engine import Run, TrainingDiverged
from tests.conftest import tiny_idec


def test_seed_makes_cpu_runs_repeat_exactly(digits):
    X, y = digits
    a = tiny_idec(seed=3).fit(X, y=y)
    b = tiny_idec(seed=3).fit(X, y=y)
    c = tiny_idec(seed=4).fit(X, y=y)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    assert not np.array_equal(a.embedding_, c.embedding_)


def test_history_records_steps_epochs_and_snapshots(digits):
    X, y = digits
    m = tiny_idec(snapshot_epochs=[0, 2, 3]).fit(X, y=y)
    h = m.history_
    steps_per_epoch = -(-len(X) // 256)
    assert len(h.steps) == 5 * steps_per_epoch
    assert {"loss", "rec"} <= set(h.steps[0]) and {"loss", "kl", "rec"} <= set(h.steps[-1])
    cluster_epochs = [r for r in h.epochs if r["phase"] == "cluster"]
    assert len(cluster_epochs) == 3 and all("acc" in r and "ne" in r for r in cluster_epochs)
    assert [s.epoch for s in h.snapshots] == [0, 2, 3]
    s = h.snapshots[-1]
    assert s.embedding.shape == (200, 10) and s.centers.shape == (10, 10)
    assert s.labels.shape == (200,) and s.metrics["acc"] == pytest.approx(cluster_epochs[-1]["acc"])
    np.testing.assert_array_equal(h.snapshot_y, y[h.snapshot_index])


def test_eval_every_thins_the_metrics_but_not_the_training(digits):
    X, y = digits
    every = tiny_idec(cluster_epochs=7, snapshot_epochs=[0, 5]).fit(X, y=y)
    thin = tiny_idec(cluster_epochs=7, snapshot_epochs=[0, 5], eval_every=3).fit(X, y=y)
    np.testing.assert_array_equal(every.labels_, thin.labels_)
    evaluated = [r["phase_epoch"] for r in thin.history_.epochs
                 if r["phase"] == "cluster" and "acc" in r]
    assert evaluated == [3, 5, 6, 7]  # every 3rd, the snapshot at 5, the phase's last
    assert all("acc" in r for r in every.history_.epochs if r["phase"] == "cluster")
    assert thin.history_.snapshots[-1].metrics["acc"] == pytest.approx(
        [r for r in thin.history_.epochs if r.get("phase_epoch") == 5
         and r["phase"] == "cluster"][0]["acc"])
    with pytest.raises(ValueError, match="eval_every"):
        tiny_idec(eval_every=-1).fit(X)


def test_knob_change_from_another_thread_reaches_the_next_step(digits):
    X, y = digits
    used = []
    gate = threading.Event()

    def record(event, run, payload):
        if event == "step":
            used.append((run.step, run.knobs["gamma"]))
            if run.step == 20:
                run.pause()
                gate.set()

    run = tiny_idec(cluster_epochs=6).prepare(X, y=y, callbacks=[record])
    run.start()
    assert gate.wait(60)
    steps_when_paused = run.step
    threading.Event().wait(0.3)
    assert run.step == steps_when_paused and run.state == "paused"  # paused: no progress
    run.set_knob("gamma", 0.5)
    run.resume()
    run.join(120)
    assert run.state == "done"
    before = [g for s, g in used if s <= 20]
    after = [g for s, g in used if s > 20]
    assert set(before) == {0.1} and set(after) == {0.5}
    assert run.history.changes == [
        {"step": 20, "epoch": run.history.changes[0]["epoch"], "knob": "gamma", "old": 0.1,
         "new": 0.5, "phase": run.history.changes[0]["phase"]}]


def test_bad_knob_values_are_refused_with_a_message(digits):
    X, y = digits
    run = tiny_idec().prepare(X, y=y)
    with pytest.raises(ValueError, match="below zero"):
        run.set_knob("gamma", -1)
    with pytest.raises(ValueError, match="unknown knob"):
        run.set_knob("gama", 1)
    with pytest.raises(ValueError, match="True or False"):
        run.set_knob("use_reconstruction", "maybe")
    assert run.knobs["gamma"] == 0.1 and not run.history.changes


def test_stop_leaves_a_usable_model(digits):
    X, y = digits

    def stop_early(event, run, payload):
        if event == "step" and run.step == 3:
            run.stop()

    m = tiny_idec()
    run = m.prepare(X, y=y, callbacks=[stop_early])
    run.fit()
    assert run.state == "stopped" and run.step == 3
    assert m.labels_.shape == (len(X),) and m.predict(X[:7]).shape == (7,)


@pytest.mark.parametrize("stop_at", [5, 19])  # in pretraining; in the clustering phase
def test_checkpoint_resume_ends_where_an_uninterrupted_run_ends(digits, tmp_path, stop_at):
    X, y = digits
    full = tiny_idec(seed=1).fit(X, y=y)

    def stop(event, run, payload):
        if event == "step" and run.step == stop_at:
            run.stop()

    m = tiny_idec(seed=1)
    run = m.prepare(X, y=y, callbacks=[stop])
    run.fit()
    path = run.save(tmp_path / "run.ckpt")
    torch.manual_seed(12345)  # the global RNG state must come from the checkpoint
    resumed = Run.load(path, X, y, progress=False).fit()
    m2 = resumed.method
    np.testing.assert_array_equal(m2.labels_, full.labels_)
    np.testing.assert_allclose(m2.cluster_centers_, full.cluster_centers_, rtol=0, atol=1e-6)
    assert resumed.step == full.run_.step
    assert len(resumed.history.steps) == len(full.history_.steps)


def test_checkpoints_load_weights_only_and_refuse_foreign_classes(digits, tmp_path):
    X, y = digits
    run = tiny_idec(pretrain_epochs=1, cluster_epochs=1).prepare(X, y=y)
    run.fit()
    path = run.save(tmp_path / "a.ckpt")
    state = torch.load(path, weights_only=True)  # no pickled code needed
    state["method_class"] = "os.system"
    torch.save(state, tmp_path / "evil.ckpt")
    with pytest.raises(ValueError, match="refusing"):
        Run.load(tmp_path / "evil.ckpt", X, y)
    with pytest.raises(ValueError, match="differs in size from the checkpoint"):
        Run.load(path, X[:100], y[:100])


def _stop_at(step):
    def cb(event, run, payload):
        if event == "step" and run.step == step:
            run.stop()
    return cb


def test_a_run_of_a_pretrained_method_resumes_with_the_method_or_refuses_clearly(digits,
                                                                                 tmp_path):
    X, y = digits
    pre = tiny_idec(seed=2, cluster_epochs=0).fit(X, y=y)
    full = tiny_idec(seed=2, pretrained=pre).fit(X, y=y)
    run = tiny_idec(seed=2, pretrained=pre).prepare(X, y=y, callbacks=[_stop_at(4)])
    run.fit()
    path = run.save(tmp_path / "pre.ckpt")
    # rebuilt from its plain hyperparameters, the method would pretrain again: refused
    with pytest.raises(ValueError, match=r"phases \['cluster'\].*pretrained="):
        Run.load(path, X, y, progress=False)
    back = Run.load(path, X, y, progress=False, method=tiny_idec(seed=2, pretrained=pre)).fit()
    np.testing.assert_array_equal(back.method.labels_, full.labels_)
    # restore() into a prepared run keeps that run's callbacks
    seen = []
    fresh = tiny_idec(seed=2, pretrained=pre).prepare(
        X, y=y, callbacks=[lambda e, r, p: seen.append(r.step) if e == "step" else None])
    fresh.restore(path).fit()
    np.testing.assert_array_equal(fresh.method.labels_, full.labels_)
    assert seen == list(range(5, full.run_.step + 1))


def test_restore_refuses_a_trained_run_and_another_method(digits, tmp_path):
    from clusterkit.methods import DEC

    X, y = digits
    run = tiny_idec(cluster_epochs=1).prepare(X, y=y, callbacks=[_stop_at(3)])
    run.fit()
    path = run.save(tmp_path / "a.ckpt")
    with pytest.raises(RuntimeError, match="not trained yet"):
        run.restore(path)
    other = DEC(10, profile="smoke", dims=(32, 32, 10), verbose=False).prepare(X, y=y)
    with pytest.raises(ValueError, match="not of clusterkit.methods.dec.DEC"):
        other.restore(path)
    with pytest.raises(ValueError, match="differs in size from the checkpoint"):
        tiny_idec(cluster_epochs=1).prepare(X[:50], y=y[:50]).restore(path)


def test_a_finished_run_is_saved_without_its_optimizer_and_loads_as_it_ended(digits, tmp_path):
    X, y = digits
    m = tiny_idec(seed=5)
    run = m.prepare(X, y=y)
    run.fit()
    path = run.save(tmp_path / "done.ckpt")
    assert torch.load(path, weights_only=True)["optimizer"] is None
    back = Run.load(path, X, y, progress=False).fit()
    assert back.state == "done" and back.step == run.step
    np.testing.assert_array_equal(back.method.labels_, m.labels_)
    np.testing.assert_array_equal(back.method.embedding_, m.embedding_)


def test_nan_loss_stops_with_the_term_and_step_and_keeps_the_last_good_state(digits,
                                                                            monkeypatch):
    X, y = digits
    from clusterkit import losses

    calls = {"n": 0}
    real = losses.kl_clustering

    def flaky(q, p, eps=1e-10):
        calls["n"] += 1
        out = real(q, p, eps)
        return out * float("nan") if calls["n"] == 4 else out

    monkeypatch.setattr(losses, "kl_clustering", flaky)
    good = {}

    def keep(event, run, payload):
        if event == "step":
            good["w"] = [p.detach().clone() for p in run.method.autoencoder_.parameters()]
            good["step"] = run.step

    m = tiny_idec()
    run = m.prepare(X, y=y, callbacks=[keep])
    with pytest.raises(TrainingDiverged, match=r"'kl' became nan at step \d+"):
        run.fit()
    assert run.state == "failed" and run.step == good["step"]
    for p, q in zip(m.autoencoder_.parameters(), good["w"], strict=True):
        assert torch.equal(p, q)


def test_bad_input_is_refused_at_the_door(digits):
    X, y = digits
    m = tiny_idec()
    bad = X.copy()
    bad[3, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        m.fit(bad)
    with pytest.raises(ValueError, match="larger than the number of samples"):
        tiny_idec().set_params(n_clusters=20).fit(X[:10])
    with pytest.raises(ValueError, match="must be an integer"):
        tiny_idec().set_params(n_clusters=10.0).fit(X)
    with pytest.raises(ValueError, match="no samples"):
        m.fit(X[:0])
    with pytest.raises(ValueError, match="one label per row"):
        m.fit(X, y=y[:10])
    with pytest.raises(ValueError, match="shape"):
        m.fit(np.zeros((10, 2, 3, 4, 5), np.float32))
    with pytest.raises(ValueError, match="profile"):
        tiny_idec(profile="fast").fit(X)
    with pytest.raises(RuntimeError, match="not fitted"):
        tiny_idec().predict(X)


def test_peek_reads_the_model_mid_training_and_lets_it_go_on(digits):
    X, y = digits
    reached = threading.Event()

    def mark(event, run, payload):
        if event == "step" and run.step == 25:
            reached.set()

    run = tiny_idec(cluster_epochs=6).prepare(X, y=y, callbacks=[mark])
    run.start()
    assert reached.wait(60)
    m = run.peek()
    assert m.labels_.shape == (len(X),) and run.state == "running"
    run.join(120)
    assert run.state == "done" and run.step == 8 * 8  # 2 + 6 epochs of 8 steps
