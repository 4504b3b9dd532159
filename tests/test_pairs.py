"""widgets.PairLabeler driven programmatically: buttons, keys, log, conflicts, training."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clusterkit import datasets
from clusterkit.active import LabelOracle, RandomPairs
from clusterkit.methods import ActiveDeepClustering
from widgets import PairLabeler


@pytest.fixture(scope="module")
def small():
    return datasets.load("mnist-5k", subset=150, seed=0)


def _method():
    return ActiveDeepClustering(10, profile="smoke", device="cpu", pretrain_epochs=0, seed=0)


def _log(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_buttons_record_constraints_and_log(small, tmp_path):
    log = tmp_path / "answers.jsonl"
    lab = PairLabeler(_method(), small.X, small.y, budget=5, log_path=log)
    assert set(lab.buttons) == {"same", "different", "skip", "undo", "train"}
    assert lab.progress.max == 5 and lab.progress.value == 0
    assert lab.pair_image.value[:4] == b"\x89PNG"
    first = lab.current
    lab.buttons["same"].click()
    second = lab.current
    lab.buttons["different"].click()
    lab.buttons["skip"].click()
    assert lab.progress.value == 3
    assert [a["answer"] for a in lab.answers] == ["same", "different", "skip"]
    assert lab.constraints.n_ml == 1 and lab.constraints.n_cl == 1
    assert tuple(lab.constraints.ml[0]) == tuple(sorted(first))
    assert tuple(lab.constraints.cl[0]) == tuple(sorted(second))
    lab.buttons["undo"].click()
    assert len(lab.answers) == 2 and lab.progress.value == 2
    lab.keys.value = "d"  # keyboard shortcut
    assert lab.answers[-1]["answer"] == "different" and lab.keys.value == ""
    events = _log(log)
    answers = [e for e in events if e["event"] == "answer"]
    assert [a["answer"] for a in answers] == ["same", "different", "skip", "different"]
    assert all(a["source"] == "human" for a in answers)
    assert [e["event"] for e in events].count("undo") == 1
    with pytest.raises(ValueError, match="resume"):
        PairLabeler(_method(), small.X, small.y, budget=5, log_path=log)


def test_contradiction_is_shown_and_refused(small, tmp_path):
    lab = PairLabeler(_method(), small.X, small.y, budget=3, log_path=tmp_path / "a.jsonl")
    i, j = lab.current
    x = next(v for v in range(len(small.X)) if v not in (i, j))
    lab.strategy.tell([(i, x), (x, j)], [True, True])
    lab.buttons["different"].click()
    assert lab.answers[-1]["status"] == "conflict"
    assert "contradicts" in lab.message.value
    assert lab.constraints.n_cl == 0
    lab.buttons["undo"].click()
    assert lab.current == (i, j) and not lab.strategy.conflicts_


def test_resume_continues_the_open_round(small, tmp_path):
    log = tmp_path / "answers.jsonl"
    lab = PairLabeler(_method(), small.X, small.y, budget=4, log_path=log)
    lab.buttons["same"].click()
    lab.buttons["different"].click()
    rest = lab.strategy.pending.copy()
    again = PairLabeler(_method(), small.X, small.y, budget=4, log_path=log, resume=True)
    assert [a["answer"] for a in again.answers] == ["same", "different"]
    np.testing.assert_array_equal(again.strategy.pending, rest)
    assert again.progress.value == 2 and again.current == tuple(rest[0])


def test_non_interactive_oracle_answers_and_train_runs_next_round(small, tmp_path):
    y = small.y
    lab = PairLabeler(_method(), small.X, y, budget=12, oracle=LabelOracle(y),
                      interactive=False, log_path=tmp_path / "a.jsonl")
    assert lab.current is None and len(lab.answers) == 12
    truth = [y[a["i"]] == y[a["j"]] for a in lab.answers]
    assert [a["answer"] == "same" for a in lab.answers] == truth
    lab.train()
    assert len(lab.method.rounds_) == 1 and lab.method.rounds_[0]["pairs"] == 12
    assert lab.view.value[:4] == b"\x89PNG"
    assert lab.strategy.round == 1 and len(lab.answers) == 24  # round 2 answered by oracle
    last = lab.answers[-1]
    assert lab.strategy.explain((last["i"], last["j"]))["strategy"] == "adc"
    with pytest.raises(ValueError, match="oracle"):
        PairLabeler(_method(), small.X, y, interactive=False, log_path=None)


def test_vectors_are_plotted(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 6)).astype(np.float32)
    lab = PairLabeler(ActiveDeepClustering(2, profile="smoke"), X, budget=2, log_path=None,
                      strategy=RandomPairs(30))
    assert lab.pair_image.value[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="budget"):
        PairLabeler(ActiveDeepClustering(2, profile="smoke"), X, budget=0, log_path=None)


def test_until_trained_waits_for_the_persons_round_and_times_out(small, tmp_path, capsys):
    """What ``await labeler.until_trained()`` does after the widget in a notebook."""
    import asyncio

    lab = PairLabeler(_method(), small.X, small.y, budget=3, log_path=tmp_path / "a.jsonl")
    assert lab.rounds_trained == 0 and not lab.training()
    assert asyncio.run(lab.until_trained(timeout=0.2)) is False  # nobody answered
    out = capsys.readouterr().out
    assert "No round trained" in out and "a.jsonl" in out

    async def person_then_wait():
        async def person():  # answers while the cell waits, then presses Train
            await asyncio.sleep(0.1)
            for _ in range(3):
                lab.buttons["same" if lab.current[0] % 2 else "different"].click()
            lab.buttons["train"].click()
        helper = asyncio.ensure_future(person())
        ok = await lab.until_trained(timeout=120)
        await helper
        return ok

    assert asyncio.run(person_then_wait()) is True
    assert lab.rounds_trained == 1 and not lab.training()
    assert "round 1 trained" in lab.status.value or "trained on" in lab.status.value
    assert asyncio.run(lab.until_trained(timeout=0)) is True  # already trained: at once
    assert lab.wait(5) is lab  # no round running: returns at once


def test_until_trained_not_interactive_trains_at_once(small, tmp_path):
    import asyncio

    lab = PairLabeler(_method(), small.X, small.y, budget=4, log_path=tmp_path / "o.jsonl",
                      oracle=LabelOracle(small.y), interactive=False)
    assert asyncio.run(lab.until_trained()) is True and lab.rounds_trained == 1
