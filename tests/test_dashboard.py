"""The training dashboard, driven as a person would: buttons clicked, sliders moved.

Pure-Python tests of the widget objects (no browser, no kernel), on tiny IDEC runs of the
digits: each asserts what the run did, not how the widgets look.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import ipywidgets as W
import numpy as np
import pytest
import torch

from clusterkit.engine import TrainingDiverged
from clusterkit.knobs import Knob
from clusterkit.methods import IDEC
from tests.conftest import tiny_idec
from widgets.dashboard import Dashboard

PNG = b"\x89PNG\r\n\x1a\n"


class BudgetIDEC(IDEC):
    """IDEC with a constraint-budget knob that the data limit to 500 pairs: a stand-in for
    the semi-supervised methods' budgets (their ``_validate_knob`` refuses what the data
    cannot supply)."""

    def knob_specs(self) -> list[Knob]:
        return [*super().knob_specs(),
                Knob("n_pairs", 100, "int", 0, 2000, help="pairs used", group="constraints")]

    def _validate_knob(self, run, name, value) -> None:
        if name == "n_pairs" and value > 500:
            raise ValueError(f"only 500 pairs are available; n_pairs={value} is too many")


def tiny_budget() -> BudgetIDEC:
    return BudgetIDEC(**tiny_idec().get_params())


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Tiny models gain nothing from more threads, and lose a lot on a busy machine."""
    from threadpoolctl import threadpool_limits

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(n)


@pytest.fixture
def dashboards() -> Iterator[list[Dashboard]]:
    """Dashboards made by a test, closed (their live-view threads ended) afterwards."""
    made: list[Dashboard] = []
    yield made
    for d in made:
        d.run.stop()
        d.close()
        if d.run._thread is not None:
            d.run._thread.join(30)


def wait_for(cond: Callable[[], bool], timeout: float = 60) -> None:
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, "timed out"
        time.sleep(0.01)


def test_one_control_per_knob_grouped_and_the_buttons_follow_the_state(digits, dashboards):
    X, y = digits
    run = tiny_budget().prepare(X, y=y)
    dash = Dashboard(run, interactive=False)
    dashboards.append(dash)
    c = dash.controls
    assert isinstance(c["lr"], W.FloatLogSlider) and isinstance(c["gamma"], W.FloatLogSlider)
    assert isinstance(c["tol"], W.FloatSlider) and isinstance(c["n_pairs"], W.IntSlider)
    assert isinstance(c["use_reconstruction"], W.Checkbox)
    assert list(dash.off_switches) == ["gamma"]  # lr's range excludes 0: no off switch
    assert c["lr"].min == pytest.approx(-5) and c["gamma"].min < np.log10(0.1) < c["gamma"].max
    assert dash.groups["constraints"] == ["n_pairs"] and "gamma" in dash.groups["weights"]
    assert {k: not b.disabled for k, b in dash.buttons.items()} == {
        "start": True, "pause": False, "resume": False, "stop": False}
    assert run.callbacks == []  # the training loop never calls into the dashboard

    only = Dashboard(run, knobs=["gamma", "use_clustering"], interactive=False)
    dashboards.append(only)
    assert list(only.controls) == ["gamma", "use_clustering"]
    with pytest.raises(ValueError, match="unknown knob"):
        Dashboard(run, knobs=["gama"], interactive=False)
    with pytest.raises(ValueError, match="not with a Run"):
        Dashboard(run, X)
    with pytest.raises(ValueError, match="needs the data"):
        Dashboard(tiny_idec())


def test_a_slider_moved_while_paused_reaches_the_next_step_and_is_marked(digits, dashboards):
    X, y = digits
    used: list[tuple[int, float]] = []
    paused = threading.Event()

    def record(event, run, payload):
        if event == "step":
            used.append((run.step, run.knobs["gamma"]))
            if run.step == 20:
                run.pause()
                paused.set()

    run = tiny_idec(cluster_epochs=1).prepare(X, y=y, callbacks=[record])  # 16 + 8 steps
    dash = Dashboard(run, refresh=0.1)
    dashboards.append(dash)
    dash.buttons["start"].click()
    assert paused.wait(60)
    dash.controls["gamma"].value = 0.5
    assert run.knobs["gamma"] == 0.1 and run.requested("gamma") == 0.5  # not yet in the loop
    assert "resumes" in dash.message.value
    dash.render()
    assert not dash.buttons["resume"].disabled and dash.buttons["pause"].disabled
    dash.buttons["resume"].click()
    dash.wait(60)
    assert run.state == "done"
    assert {g for s, g in used if s <= 20} == {0.1} and {g for s, g in used if s > 20} == {0.5}
    (change,) = run.history.changes
    assert (change["step"], change["knob"], change["old"], change["new"]) == (20, "gamma", 0.1,
                                                                               0.5)
    png = dash.render()
    assert png.startswith(PNG) and dash.image.value == png
    loss_ax = dash.figure.axes[0]
    assert any(t.get_text().strip() == "gamma=0.5" for t in loss_ax.texts)
    assert any(line.get_xdata()[0] == 20 for line in loss_ax.lines if line.get_linestyle() == "--")


def test_pause_holds_resume_continues_stop_leaves_a_usable_model(digits, dashboards):
    X, y = digits
    m = tiny_idec(cluster_epochs=300)
    dash = Dashboard(m, X, y=y, refresh=0.1)
    dashboards.append(dash)
    run = dash.run
    dash.buttons["start"].click()
    assert dash.buttons["start"].disabled and not dash.buttons["pause"].disabled
    wait_for(lambda: run.step >= 5)
    dash.buttons["pause"].click()
    assert run.state == "paused" and dash.buttons["pause"].disabled
    assert not dash.buttons["resume"].disabled
    clicked = run.step
    time.sleep(0.5)
    held = run.step
    assert held <= clicked + 1  # at most the step in flight when pause was pressed
    time.sleep(0.5)
    assert run.step == held
    dash.buttons["resume"].click()
    wait_for(lambda: run.step > held + 3)
    dash.buttons["stop"].click()
    assert dash.buttons["stop"].disabled and dash.buttons["pause"].disabled
    dash.wait(60)
    assert run.state == "stopped" and "stopped" in dash.status.value
    assert m.labels_.shape == (len(X),) and m.predict(X[:5]).shape == (5,)
    assert not dash.buttons["resume"].disabled and dash.buttons["start"].disabled
    assert dash.buttons["stop"].disabled


def test_refused_values_show_a_message_and_never_reach_the_run(digits, dashboards):
    X, y = digits
    m = tiny_budget()
    dash = Dashboard(m, X, y=y, interactive=False)
    dashboards.append(dash)
    run = dash.run

    assert dash.set_knob("gamma", -1.0) is False  # a slider cannot even go there
    assert "below zero" in dash.message.value and "Traceback" not in dash.message.value
    assert run.knobs["gamma"] == 0.1 and dash.controls["gamma"].value == pytest.approx(0.1)

    dash.controls["n_pairs"].value = 800  # in the knob's range, more than the data supply
    assert "only 500 pairs" in dash.message.value
    assert dash.controls["n_pairs"].value == 100  # the control returns to the run's value
    assert run.knobs["n_pairs"] == 100 and run.requested("n_pairs") == 100
    assert run.history.changes == []

    dash.controls["n_pairs"].value = 300  # accepted: not training, so applied at once
    assert run.knobs["n_pairs"] == 300 and "n_pairs = 300" in dash.message.value
    assert run.history.changes[-1]["knob"] == "n_pairs" and run.history.changes[-1]["step"] == 0


def test_off_switch_sets_a_weight_to_zero_and_code_changes_show_in_the_controls(digits,
                                                                               dashboards):
    X, y = digits
    dash = Dashboard(tiny_idec(), X, y=y, interactive=False)
    dashboards.append(dash)
    run, gamma, off = dash.run, dash.controls["gamma"], dash.off_switches["gamma"]
    off.value = True
    assert run.knobs["gamma"] == 0.0 and gamma.disabled
    gamma.value = 0.2  # moving the slider switches the term back on
    assert run.knobs["gamma"] == pytest.approx(0.2) and not off.value and not gamma.disabled
    dash.controls["use_reconstruction"].value = False
    assert run.knobs["use_reconstruction"] is False

    run.set_knob("gamma", 0.0)  # from code, not from the dashboard
    run.set_knob("update_interval", 7)
    dash.render()
    assert off.value and gamma.disabled and dash.controls["update_interval"].value == 7
    assert [c["knob"] for c in run.history.changes] == ["gamma", "gamma", "use_reconstruction",
                                                        "gamma", "update_interval"]


def test_a_loss_only_redraw_gives_the_same_pixels_as_a_full_one(digits, dashboards):
    X, y = digits
    dash = Dashboard(tiny_idec(), X, y=y, interactive=False)
    dashboards.append(dash)
    h = dash.run.history
    for s in range(1, 41):  # a synthetic history: no training needed
        h.steps.append({"step": s, "epoch": s // 8, "phase": "pretrain" if s <= 16 else "cluster",
                        "loss": 1.0 / s, "rec": 0.8 / s, **({"kl": 0.1} if s > 16 else {})})
    h.epochs += [{"epoch": e, "phase": "cluster", "step": 8 * e, "acc": 0.5, "nmi": 0.4,
                  "ne": 0.9, "sizes": [180] * 10} for e in (3, 4)]
    h.changes.append({"step": 20, "epoch": 2, "knob": "gamma", "old": 0.1, "new": 0.5,
                      "phase": "cluster"})
    dash.render()
    h.steps.append({"step": 41, "epoch": 5, "phase": "cluster", "loss": 0.01, "rec": 0.01,
                    "kl": 0.2})
    partial = dash.render()  # no epoch ended, no knob changed: only the loss panel redrawn
    dash._epoch_key = None
    assert dash.render() == partial


def test_a_recorded_q_histogram_replaces_the_knob_log_with_its_threshold(digits, dashboards):
    X, y = digits
    dash = Dashboard(tiny_idec(), X, y=y, interactive=False)
    dashboards.append(dash)
    extra = dash._axes.ravel()[3]
    h = dash.run.history
    h.steps += [{"step": s, "epoch": 1, "phase": "cluster", "loss": 1.0} for s in (1, 2)]
    h.epochs.append({"epoch": 1, "phase": "cluster", "step": 2, "acc": 0.5})
    dash.render()
    assert extra.get_title(loc="left") == "knob changes"
    counts = [0] * 50
    counts[2], counts[40] = 900, 100  # a histogram as DECS records it (q_hist)
    h.epochs.append({"epoch": 2, "phase": "cluster", "step": 4, "acc": 0.6, "t_last": 0.37,
                     "q_hist": counts})
    dash.render()
    assert extra.get_title(loc="left") == "histogram of q (epoch 2)"
    assert [ln.get_xdata()[0] for ln in extra.lines] == [0.37]  # the threshold's line
    assert extra.get_yscale() == "log" and len(extra.patches) == 1


def test_not_interactive_trains_in_the_foreground_to_the_end(digits, dashboards, capsys):
    X, y = digits
    dash = Dashboard(tiny_idec(pretrain_epochs=1, cluster_epochs=1), X, y=y, interactive=False)
    dashboards.append(dash)
    assert dash.train() is dash
    assert dash.run.state == "done" and dash._thread is None  # no thread was ever started
    assert bytes(dash.image.value).startswith(PNG) and "done" in dash.status.value
    assert all(b.disabled for b in dash.buttons.values())
    assert dash.result() is dash.run.method and dash.run.method.labels_.shape == (len(X),)

    shown = Dashboard(tiny_idec(pretrain_epochs=1, cluster_epochs=1), X, y=y, interactive=False)
    dashboards.append(shown)
    shown._ipython_display_()  # what display(dash) calls in a kernel
    assert shown.run.state == "done" and "Image" in capsys.readouterr().out


def test_live_view_refreshes_in_the_background_and_ends_with_the_run(digits, dashboards):
    X, y = digits
    dash = Dashboard(tiny_idec(cluster_epochs=2), X, y=y, refresh=0.1)
    dashboards.append(dash)
    assert dash._thread is not None and dash._thread.is_alive()
    dash.train()
    wait_for(lambda: bytes(dash.image.value).startswith(PNG) and dash.run.step > 0)
    t0 = time.perf_counter()
    assert dash.result(60) is dash.run.method  # waits for the end
    assert dash.run.state == "done" and dash.run.method.labels_.shape == (len(X),)
    wait_for(lambda: not dash._thread.is_alive(), timeout=10)  # ends after the final render
    assert dash.renders <= (time.perf_counter() - t0) / 0.1 + 3  # never more than 1/refresh
    assert "done" in dash.status.value and "steps/s" in dash.status.value
    assert dash._rendered_key == dash._key()
    assert all(b.disabled for b in dash.buttons.values())


def test_a_diverged_run_shows_the_error_as_a_message(digits, dashboards, monkeypatch):
    X, y = digits
    from clusterkit import losses

    real = losses.kl_clustering
    monkeypatch.setattr(losses, "kl_clustering", lambda q, p, eps=1e-10: real(q, p, eps) * np.nan)
    dash = Dashboard(tiny_idec(pretrain_epochs=1), X, y=y, refresh=0.1)
    dashboards.append(dash)
    dash.train()
    with pytest.raises(TrainingDiverged):
        dash.wait(60)
    with pytest.raises(TrainingDiverged):
        dash.result()
    assert "training failed" in dash.message.value and "became nan" in dash.message.value
    assert "failed" in dash.status.value and all(b.disabled for b in dash.buttons.values())


# ---------------------------------------------------------------- waiting in a notebook cell
class _FakeUiEvents:
    """Stands in for jupyter_ui_poll.ui_events: counts the polls, sync and async."""

    def __init__(self) -> None:
        self.polls = 0

    def __call__(self):
        return self

    def _poll(self, n: int) -> None:
        self.polls += 1

    async def _apoll(self, n: int) -> None:
        self.polls += 1

    def __enter__(self):
        return self._poll

    def __exit__(self, *exc) -> None:
        pass

    async def __aenter__(self):
        return self._apoll

    async def __aexit__(self, *exc) -> None:
        pass


def test_wait_outside_a_kernel_is_a_plain_join():
    from widgets import _wait

    assert _wait.kernel() is None and _wait._ui_events() is None  # pytest: no kernel
    joined = []
    assert _wait.wait_until(lambda: True, 5, joined.append) is True
    assert joined == [5]  # the fallback (a join) got the timeout


def test_ui_polling_only_where_the_kernel_lets_jupyter_ui_poll_work(monkeypatch):
    """jupyter_ui_poll drives kernel.do_one_iteration(), which ipykernel 7 removed: there a
    blocking wait joins (polling would serve nothing); with it, the wait polls."""
    import asyncio
    import sys
    import types

    from widgets import _wait

    fake = _FakeUiEvents()
    monkeypatch.setitem(sys.modules, "jupyter_ui_poll", types.SimpleNamespace(ui_events=fake))
    monkeypatch.setattr(_wait, "kernel", lambda: types.SimpleNamespace())  # ipykernel 7
    assert _wait._ui_events() is None
    monkeypatch.setattr(_wait, "kernel", lambda: types.SimpleNamespace(do_one_iteration=None))
    assert _wait._ui_events() is fake

    t0 = time.monotonic()
    ends = t0 + 0.3
    assert _wait.wait_until(lambda: time.monotonic() > ends, 10, pytest.fail) is True
    assert fake.polls >= 2  # polled until done, never joined
    polls = fake.polls
    assert _wait.wait_until(lambda: False, 0.2, pytest.fail) is False  # timed out
    assert fake.polls > polls
    polls = fake.polls
    assert asyncio.run(_wait.wait_until_async(lambda: False, 0.2, interval=0.01)) is False
    assert fake.polls > polls
    monkeypatch.delitem(sys.modules, "jupyter_ui_poll")  # not installed: plain join again
    monkeypatch.setattr("builtins.__import__", _no_ui_poll(__import__))
    assert _wait._ui_events() is None


def _no_ui_poll(real_import):
    def imp(name, *args, **kw):
        if name == "jupyter_ui_poll":
            raise ImportError(name)
        return real_import(name, *args, **kw)
    return imp


def test_result_async_waits_without_blocking_the_event_loop(digits, dashboards):
    """What ``await dash.result_async()`` does in a cell: other tasks (the kernel handling
    widget messages, on ipykernel 7) keep running while training goes on."""
    import asyncio

    X, y = digits
    dash = Dashboard(tiny_idec(cluster_epochs=2), X, y=y, refresh=0.1)
    dashboards.append(dash)
    dash.train()
    ticks = []

    async def other_task() -> None:  # stands in for the kernel dispatching a slider's message
        while dash.run.running:
            ticks.append(dash.run.step)
            await asyncio.sleep(0.01)

    async def cell():
        other = asyncio.ensure_future(other_task())
        method = await dash.result_async(60)
        await other
        return method

    assert asyncio.run(cell()) is dash.run.method
    assert dash.run.state == "done" and dash.run.method.labels_.shape == (len(X),)
    assert len(ticks) >= 2  # the loop ran while the cell waited
    assert "done" in dash.status.value and dash._rendered_key == dash._key()

    slow = Dashboard(tiny_idec(cluster_epochs=50), X, y=y, refresh=0.1)
    dashboards.append(slow)
    with pytest.raises(TimeoutError, match="still runs"):
        asyncio.run(slow.result_async(0.2))  # never started: started, then times out
    assert slow.run.running
    slow.run.stop()

    fg = Dashboard(tiny_idec(pretrain_epochs=1, cluster_epochs=1), X, y=y, interactive=False)
    dashboards.append(fg)
    assert asyncio.run(fg.result_async()) is fg.run.method and fg.run.state == "done"
