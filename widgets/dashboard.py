"""The training dashboard every paper notebook opens with.

Press **start**, move a slider, and see the effect in the plots a second later, without
restarting::

    from widgets import Dashboard
    dash = Dashboard(IDEC(10), X, y=y)   # or Dashboard(run) for a prepared Run
    dash                                 # the widget; press start, or:
    dash.train()                         # background training (foreground when interactive=False)
    method = dash.result()               # block until the run ends; the fitted method
    method = await dash.result_async()   # the same in a notebook cell, the controls kept live

Layout: the buttons **start / pause / resume / stop** (only the ones that make sense in the
run's current state are enabled), a status line (state, phase, epoch, step, steps/s, elapsed),
a message area, one control per knob grouped by :attr:`~clusterkit.knobs.Knob.group`, and
the live figure:

- loss terms over steps (log-y, one line per term, bin-averaged past 600 points; a term that
  goes negative is drawn as ``|term|``);
- ACC / NMI / NE over epochs, when the run knows the true labels;
- the cluster sizes of the last evaluated epoch (dashed: the balanced size n / k);
- the fraction of pairwise constraints satisfied, when the run has constraints; the
  histogram of the soft assignments q that the last epoch's batches gave, with the
  threshold t of its last step, when the method records one (``q_hist``: DECS, whose loss
  is built around that threshold); otherwise the log of knob changes.

Every knob change (``run.history.changes``) is a dashed vertical line on the curves, labelled
``knob=value``, at the step after which the new value was used (on the epoch axis, at the
matching fraction of the epoch); phase boundaries are dotted grey lines.

Knob controls: ``log`` -> ``FloatLogSlider``; ``float`` -> ``FloatSlider``; ``int`` (constraint
budgets) -> ``IntSlider``; ``bool`` (loss terms) -> ``Checkbox``; ``choice`` -> ``Dropdown``
(a knob without both bounds gets a number box instead of a slider). A log knob whose lower
bound is 0 (a loss weight, where 0 switches the term off) gets a slider whose minimum is a
small positive value (10⁻⁴ times its maximum, rounded down to a power of ten, or lower if
the default is smaller) **and an "off" checkbox next to it**: ticking it sets the knob to exactly 0
and greys the slider out, unticking it (or moving the slider) restores the slider's value.
Sliders send their value when released (``continuous_update=False``), so one drag is one
change in the history. A value the run refuses (the knob's validation, or the method's
``_validate_knob``: a budget larger than the data can supply...) is shown in the message
area, never as a traceback, and the control returns to the run's requested value.

The live view refreshes from a background thread of the dashboard, never from the training
thread: the training loop does not know the dashboard exists (it registers no callback), so
rendering costs training only the CPU (and GIL) time the renders take, which is bounded:
the status line refreshes every ``refresh`` seconds; the figure at most once per ``refresh``
seconds, and after a render that took *c* seconds not again for *c* / ``render_share``
seconds (default 8 %), so on a slow or busy machine the figure refreshes less often rather
than slowing training. A render redraws only the loss panel when no epoch ended and no knob
changed since the last one (the other panels keep their pixels).
``benchmarks/bench_dashboard.py`` measures the cost.

Waiting for the end in a cell: while a cell blocks, the kernel handles no widget messages.
``await dash.result_async()`` (or ``wait_async()``) waits without blocking the kernel, so
the buttons and sliders keep working, also during "Run All" (the later cells wait their
turn). The blocking ``result()`` / ``wait()`` serve widget events with ``jupyter_ui_poll``
where the kernel allows it (ipykernel 6) and are a plain join elsewhere (see
``widgets/_wait.py``). With ``interactive=False``
(papermill, tests) nothing runs in the background: ``train()``, ``run_to_end()`` or
``display(dash)`` train in the foreground to the end and render the final state once.
"""

from __future__ import annotations

import html
import io
import math
import threading
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import ipywidgets as W
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import LogLocator, MaxNLocator, NullFormatter

from clusterkit.engine import Run
from clusterkit.knobs import Knob
from widgets._wait import wait_until, wait_until_async

__all__ = ["Dashboard"]

RENDER_SHARE = 0.08  # the live view spends at most this fraction of the time rendering
MAX_POINTS = 600  # loss curves are bin-averaged down to this many points
MAX_LABELS = 12  # knob-change marks labelled with their name (all are drawn)
METRICS = {"acc": "#1f77b4", "nmi": "#ff7f0e", "ne": "#2ca02c"}  # name -> line colour
#: loss-term colours, in order of first appearance (red is kept for the knob-change marks)
TERM_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf",
               "#bcbd22", "#7f7f7f")
_NOT_TERMS = frozenset({"step", "epoch", "phase"})
_TERMINAL = ("done", "failed")
_DESC = {"description_width": "120px"}
_CTRL_WIDTH = "340px"


class Dashboard:
    """Live control and view of one training :class:`~clusterkit.engine.Run`.

    Parameters
    ----------
    method_or_run:
        A prepared :class:`~clusterkit.engine.Run`, or a clusterkit method; with a method,
        ``X`` is required and the dashboard calls ``method.prepare(X, constraints, y=y)``
        (with the run's progress bars off: the dashboard shows the progress).
    X, y, constraints:
        The data, true labels (reported only) and pairwise constraints, for a method.
    knobs:
        Names of the knobs to show, in this order (default: all of ``run.knob_specs``).
    interactive:
        ``True`` (notebooks): training runs in the engine's background thread and the view
        refreshes in the background. ``False`` (papermill, tests): ``train()`` /
        ``display(dash)`` train in the foreground to the end; no thread is started.
    refresh:
        Seconds between two refreshes of the live view (default 1.0: at most once a second).

    Attributes for code and tests: ``run``; ``buttons`` (``start``, ``pause``, ``resume``,
    ``stop``); ``controls`` (knob name -> widget); ``off_switches`` (knob name -> the "off"
    checkbox of a weight that may be 0); ``groups`` (group -> knob names, as laid out);
    ``message`` and ``status`` (``HTML``); ``image``
    (``Image``, PNG); ``figure`` (the matplotlib figure, reused by every render); ``widget``
    (the whole box); ``renders`` and ``render_seconds`` (how many figures were rendered, and
    the time they took: the live view's cost).
    """

    def __init__(
        self,
        method_or_run: Any,
        X: Any = None,
        y: Any = None,
        constraints: Any = None,
        knobs: Iterable[str] | None = None,
        interactive: bool = True,
        refresh: float = 1.0,
    ) -> None:
        if isinstance(method_or_run, Run):
            if X is not None or y is not None or constraints is not None:
                raise ValueError("pass X, y and constraints with a method, not with a Run "
                                 "(the run already holds its data)")
            run = method_or_run
        elif hasattr(method_or_run, "prepare"):
            if X is None:
                raise ValueError(f"Dashboard({type(method_or_run).__name__}(...)) needs the "
                                 "data: Dashboard(method, X, y=y)")
            run = method_or_run.prepare(X, constraints, y=y)
            run.progress = False
        else:
            raise TypeError("Dashboard takes a clusterkit Run or method; got "
                            f"{type(method_or_run).__name__}")
        if not refresh > 0:
            raise ValueError(f"refresh must be a positive number of seconds; got {refresh!r}")
        self.run: Run = run
        self.interactive = bool(interactive)
        self.refresh = float(refresh)

        names = list(run.knob_specs) if knobs is None else list(knobs)
        unknown = [k for k in names if k not in run.knob_specs]
        if unknown:
            raise ValueError(f"unknown knob(s) {unknown}; this run has {sorted(run.knob_specs)}")
        self.knob_names = names

        self._lock = threading.RLock()  # control <-> run.set_knob bookkeeping
        self._render_lock = threading.Lock()
        self._thread_lock = threading.Lock()
        self._local = threading.local()  # .syncing: value changes made by the dashboard
        self._closed = threading.Event()
        self._wake = threading.Event()  # cuts the live view's wait short
        self._live = self.interactive
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._known: dict[str, Any] = {k: run.requested(k) for k in names}
        self._rendered_key: tuple | None = None
        self._losses = _StepCache()
        self._rate: float | None = None
        self._last_sample: tuple[float, int] | None = None
        self._clock: tuple[float, float] | None = None  # (run.seconds seen, when)
        self._error_shown: BaseException | None = None
        self.renders = 0  # figures rendered so far, and the seconds they took
        self.render_seconds = 0.0
        self.render_share = RENDER_SHARE
        self._next_render = 0.0  # perf_counter() before which the live view does not render

        self._build_widgets()
        # a fixed layout: constrained/tight layout would triple the cost of every render
        self.figure = Figure(figsize=(10, 6.2), dpi=80)
        self.figure.subplots_adjust(left=0.07, right=0.98, bottom=0.08, top=0.95,
                                    wspace=0.18, hspace=0.35)
        self._canvas = FigureCanvasAgg(self.figure)
        self._axes = self.figure.subplots(2, 2)
        for ax in self._axes.ravel():  # few tick labels: text is most of a render's cost
            ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
            ax.yaxis.set_major_locator(MaxNLocator(nbins=5))
            ax.tick_params(labelsize=8)
        # the loss panel's quarter of the figure, painted white before the panel is redrawn
        # alone (when only steps were added; see _render_png)
        a, b, c = (ax.get_position() for ax in self._axes.ravel()[:3])
        xmid, ymid = (a.x1 + b.x0) / 2, (a.y0 + c.y1) / 2
        self._blank = Rectangle((0, ymid), xmid, 1 - ymid, transform=self.figure.transFigure,
                                facecolor=self.figure.get_facecolor(), edgecolor="none")
        self._blank.set_figure(self.figure)
        self._epoch_key: tuple | None = None
        self._update_all()
        if self.interactive:
            self._ensure_refresher()

    # ------------------------------------------------------------------ widgets
    def _build_widgets(self) -> None:
        b = {
            "start": W.Button(description="start", icon="play", button_style="success",
                              tooltip="train in the background"),
            "pause": W.Button(description="pause", icon="pause",
                              tooltip="hold training at the next step"),
            "resume": W.Button(description="resume", icon="play",
                               tooltip="continue a paused or stopped run"),
            "stop": W.Button(description="stop", icon="stop", button_style="danger",
                             tooltip="stop at the next step; the model is finalised"),
        }
        for name, fn in (("start", self._on_start), ("pause", self._on_pause),
                         ("resume", self._on_resume), ("stop", self._on_stop)):
            b[name].layout = W.Layout(width="96px")
            b[name].on_click(fn)
        self.buttons: dict[str, W.Button] = b
        self.status = W.HTML(layout=W.Layout(margin="0 0 0 12px"))
        self.message = W.HTML()
        self.image = W.Image(format="png", layout=W.Layout(width="800px"))

        self.controls: dict[str, W.ValueWidget] = {}
        self.off_switches: dict[str, W.Checkbox] = {}
        groups: dict[str, list[W.Widget]] = {}
        for name in self.knob_names:
            spec = self.run.knob_specs[name]
            row = self._make_control(spec, self.run.requested(name))
            groups.setdefault(spec.group, []).append(row)
        self.groups: dict[str, list[str]] = {}
        for name in self.knob_names:
            self.groups.setdefault(self.run.knob_specs[name].group, []).append(name)
        boxes: list[W.Widget] = []
        for group, rows in groups.items():
            boxes.append(W.HTML(f"<b>{html.escape(group)}</b>"))
            boxes.extend(rows)
        controls = W.VBox(boxes, layout=W.Layout(min_width="400px", margin="0 8px 0 0"))
        top = W.HBox([*b.values(), self.status], layout=W.Layout(align_items="center"))
        self.widget = W.VBox([top, self.message, W.HBox([controls, self.image])])

    def _make_control(self, spec: Knob, value: Any) -> W.Widget:
        """The widget for one knob, wired to ``run.set_knob``; returns the row to lay out."""
        common = dict(description=spec.name, tooltip=spec.help or spec.name, style=_DESC,
                      layout=W.Layout(width=_CTRL_WIDTH))
        lo, hi = spec.low, spec.high
        off: W.Checkbox | None = None
        if spec.kind == "log":
            hi = hi if hi is not None else max(abs(float(value)) * 100, 1.0)
            zero_ok = lo is not None and lo <= 0
            if zero_ok or lo is None:
                min_exp = math.floor(math.log10(hi)) - 4
                if value > 0:
                    min_exp = min(min_exp, math.floor(math.log10(value)))
            else:
                min_exp = math.log10(lo)
            max_exp = math.log10(hi)
            start = value if value > 0 else 10 ** round((min_exp + max_exp) / 2)
            ctrl = W.FloatLogSlider(value=start, base=10, min=min_exp, max=max_exp, step=0.01,
                                    readout_format=".3g", continuous_update=False, **common)
            if zero_ok:
                off = W.Checkbox(value=value == 0, description="off", indent=False,
                                 tooltip=f"set {spec.name} to 0 (switch the term off)",
                                 layout=W.Layout(width="60px"))
                ctrl.disabled = value == 0
        elif spec.kind in ("float", "int") and lo is not None and hi is not None:
            if spec.kind == "float":
                ctrl = W.FloatSlider(value=value, min=lo, max=hi, step=(hi - lo) / 200,
                                     readout_format=".3g", continuous_update=False, **common)
            else:
                ctrl = W.IntSlider(value=value, min=int(lo), max=int(hi), step=1,
                                   continuous_update=False, **common)
        elif spec.kind == "float":
            ctrl = W.FloatText(value=value, **common)
        elif spec.kind == "int":
            ctrl = W.IntText(value=value, **common)
        elif spec.kind == "bool":
            ctrl = W.Checkbox(value=bool(value), indent=False, **common)
        elif spec.kind == "choice":
            ctrl = W.Dropdown(options=list(spec.options), value=value, **common)
        else:
            raise ValueError(f"knob {spec.name!r} has an unknown kind {spec.kind!r}")
        self.controls[spec.name] = ctrl
        ctrl.observe(partial(self._on_control, spec.name), names="value")
        if off is None:
            return ctrl
        self.off_switches[spec.name] = off
        off.observe(partial(self._on_off, spec.name), names="value")
        return W.HBox([ctrl, off])

    # ------------------------------------------------------------------ knobs
    def set_knob(self, name: str, value: Any) -> bool:
        """Ask for a knob change as its control would: on success the control shows the new
        value and ``True`` is returned; a refused value (``ValueError``) is shown in the
        message area, the control keeps the run's requested value and ``False`` is
        returned. Unlike moving a slider, this reaches values outside the slider's range
        (which a slider clamps), so the run's own validation speaks."""
        if name not in self.controls:
            raise ValueError(f"this dashboard has no control for knob {name!r}; it shows "
                             f"{self.knob_names}")
        ok = self._request(name, value)
        if ok:
            self._sync_control(name)
        return ok

    def _syncing(self) -> bool:
        return getattr(self._local, "syncing", False)

    def _on_control(self, name: str, change: dict) -> None:
        if self._syncing():
            return
        off = self.off_switches.get(name)
        if off is not None and off.value:  # moving the slider switches the term back on
            self._set_quietly(off, False)
            self.controls[name].disabled = False
        self._request(name, self._clip(name, change["new"]))

    def _on_off(self, name: str, change: dict) -> None:
        if self._syncing():
            return
        ctrl = self.controls[name]
        ctrl.disabled = bool(change["new"])
        self._request(name, 0.0 if change["new"] else self._clip(name, ctrl.value))

    def _clip(self, name: str, value: Any) -> Any:
        """A slider's value within its knob's bounds: 10 ** log10(0.3) may exceed 0.3 by a
        rounding error, which the knob would refuse."""
        spec = self.run.knob_specs[name]
        if spec.kind in ("log", "float") and isinstance(self.controls[name], W.FloatLogSlider
                                                        | W.FloatSlider):
            if spec.high is not None:
                value = min(value, spec.high)
            if spec.low is not None:
                value = max(value, spec.low)
        return value

    def _request(self, name: str, value: Any) -> bool:
        with self._lock:
            try:
                v = self.run.set_knob(name, value)
            except ValueError as e:
                self._show(str(e), error=True)
                self._sync_control(name)
                return False
            self._known[name] = v
        state = self.run.state
        when = ("the loop uses it from its next step" if state == "running" and self.run.running
                else "used when training resumes" if state == "paused"
                else "applied")
        self._show(f"{name} = {_fmt(v)}: {when}")
        return True

    def _set_quietly(self, widget: W.ValueWidget, value: Any) -> None:
        self._local.syncing = True
        try:
            widget.value = value
        finally:
            self._local.syncing = False

    def _displayed(self, name: str) -> Any:
        off = self.off_switches.get(name)
        if off is not None and off.value:
            return 0.0
        return self.controls[name].value

    def _sync_control(self, name: str) -> None:
        """Show the run's requested value of ``name`` in its control."""
        with self._lock:
            value = self.run.requested(name)
            self._known[name] = value
            if self._displayed(name) == value:
                return
            ctrl, off = self.controls[name], self.off_switches.get(name)
            if off is not None:
                self._set_quietly(off, value == 0)
                ctrl.disabled = value == 0
                if value != 0:
                    self._set_quietly(ctrl, value)
            else:
                self._set_quietly(ctrl, value)

    def _sync_controls(self) -> None:
        """Follow knob changes made elsewhere (``run.set_knob`` from a cell, say)."""
        with self._lock:
            for name in self.knob_names:
                if self.run.requested(name) != self._known[name]:
                    self._sync_control(name)

    # ------------------------------------------------------------------ buttons
    def _on_start(self, _: Any = None) -> None:
        self._control(self.run.start)

    def _on_pause(self, _: Any = None) -> None:
        self._control(self.run.pause)

    def _on_resume(self, _: Any = None) -> None:
        self._stopping = False
        self._control(self.run.resume)

    def _on_stop(self, _: Any = None) -> None:
        if self.run.state in ("running", "paused") and self.run.running:
            self._stopping = True
        self._control(self.run.stop)

    def _control(self, action: Callable[[], Any]) -> None:
        try:
            action()
        except (RuntimeError, ValueError) as e:
            self._show(str(e), error=True)
        self._update_all()
        self._ensure_refresher()

    def _update_buttons(self) -> None:
        state, alive = self.run.state, self.run.running
        if self._stopping and not (alive and state in ("running", "paused")):
            self._stopping = False
        active = alive and state in ("running", "paused") and not self._stopping
        enabled = {
            "start": state == "ready",
            "pause": active and state == "running",
            "resume": (active and state == "paused") or (state == "stopped" and not alive),
            "stop": active,
        }
        for name, on in enabled.items():
            if self.buttons[name].disabled == on:
                self.buttons[name].disabled = not on

    # ------------------------------------------------------------------ training
    def train(self) -> Dashboard:
        """Interactive: start (or resume) training in the background and return at once.
        Not interactive: train in the foreground to the end and render the final state."""
        if not self.interactive:
            return self.run_to_end()
        state = self.run.state
        if state == "ready":
            self._on_start()
        elif state in ("paused", "stopped"):
            self._on_resume()
        elif state in _TERMINAL:
            self._show(f"this run is {state}; make a new run to train again", error=True)
        return self

    def run_to_end(self) -> Dashboard:
        """Train in the foreground to the end (``run.fit()``; a background run is resumed
        and joined) and render the final state once. Re-raises a training error after
        showing it."""
        try:
            if self.run.running:
                if self.run.state == "paused":
                    self.run.resume()
                self.run.join()
            elif self.run.state in ("ready", "stopped"):
                self.run.fit()
        finally:
            self._final_refresh()
        return self

    def wait(self, timeout: float | None = None) -> Dashboard:
        """Block until the background run ends (or ``timeout`` seconds pass), then refresh
        the view. Re-raises a training error (it is also shown in the message area).

        In a kernel where ``jupyter_ui_poll`` can serve widget events (ipykernel 6) the
        controls stay live meanwhile; elsewhere this is a plain join: in a notebook prefer
        ``await dash.wait_async()``, which keeps them live on every kernel."""
        try:
            wait_until(self._ended, timeout, self.run.join)
        finally:
            self._final_refresh()
        if self.run.error is not None:
            raise self.run.error
        return self

    async def wait_async(self, timeout: float | None = None) -> Dashboard:
        """``await dash.wait_async()`` in a cell: like ``wait``, but the kernel keeps handling
        the buttons and sliders while it waits (also during "Run All")."""
        try:
            await wait_until_async(self._ended, timeout)
        finally:
            self._final_refresh()
        if self.run.error is not None:
            raise self.run.error
        return self

    def _ended(self) -> bool:
        return not self.run.running

    def result(self, timeout: float | None = None) -> Any:
        """The trained method, once training has ended: waits for a background run (see
        ``wait``; one never started is started), trains a not-interactive one to the end
        (see ``run_to_end``), and returns ``run.method`` with its fitted attributes
        (``labels_``...; a stopped run is finalised too). Re-raises a training error.

        A blocking wait: unless ``jupyter_ui_poll`` can serve widget events from this kernel
        (see ``wait``), the sliders and buttons answer only once it returns. In a notebook
        use ``await dash.result_async()``, which keeps them live."""
        if not self.interactive and not self.run.running:
            self.run_to_end()
        else:
            if self.run.state == "ready":  # never started: start it now
                self.train()
            self.wait(timeout)
        return self._method(timeout)

    async def result_async(self, timeout: float | None = None) -> Any:
        """``method = await dash.result_async()`` in a notebook cell: ``result()``, waiting
        without blocking the kernel, so the controls stay live until training ends (during
        "Run All" too: the later cells run once it returns). Not interactive: as
        ``result()`` (trains in the foreground)."""
        if not self.interactive and not self.run.running:
            return self.result(timeout)
        if self.run.state == "ready":
            self.train()
        await self.wait_async(timeout)
        return self._method(timeout)

    def _method(self, timeout: float | None) -> Any:
        if self.run.error is not None:
            raise self.run.error
        if self.run.running:
            raise TimeoutError(f"training still runs after {timeout} s; call result() again "
                               "later, or stop it with the stop button")
        return self.run.method

    def _final_refresh(self) -> None:
        self._update_all()
        if self._key() != self._rendered_key:
            self._render_png()

    def close(self) -> None:
        """Stop the live view's thread and close the widgets (the run is left as it is)."""
        self._closed.set()
        self._join_refresher()
        self._close_widgets()

    @property
    def live(self) -> bool:
        """Whether the live view refreshes in the background (interactive dashboards). Set it
        to ``False`` to freeze the view while training goes on, ``True`` to resume it."""
        return self._live

    @live.setter
    def live(self, on: bool) -> None:
        if on and not self.interactive:
            raise ValueError("a dashboard made with interactive=False has no live view; "
                             "call render() to refresh it")
        self._live = bool(on)
        if on:
            self._ensure_refresher()
        else:
            self._join_refresher()

    def _join_refresher(self) -> None:
        self._wake.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(10)

    def _close_widgets(self) -> None:
        for w in [*self.buttons.values(), *self.controls.values(), *self.off_switches.values(),
                  self.status, self.message, self.image, self.widget]:
            w.close()

    # ------------------------------------------------------------------ live view
    def _ensure_refresher(self) -> None:
        if not self._live or self._closed.is_set():
            return
        with self._thread_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._refresh_loop, daemon=True,
                                                name="clusterkit-dashboard")
                self._thread.start()

    def _refresh_loop(self) -> None:
        """The live view's thread: one tick per ``refresh`` seconds; ends after rendering a
        finished run (a button press starts it again), on ``live = False`` or ``close()``."""
        self._wake.clear()
        while self._live and not self._closed.is_set():
            try:
                self._tick()
            except Exception as e:  # noqa: BLE001 - shown, never raised into the kernel
                self._show(f"live view failed: {type(e).__name__}: {e}", error=True)
            if self.run.state in _TERMINAL and not self.run.running \
                    and self._rendered_key == self._key():
                return
            self._wake.wait(self.refresh)

    def _tick(self) -> None:
        self._update_all()
        if self._key() != self._rendered_key and time.perf_counter() >= self._next_render:
            t0 = time.perf_counter()
            self._render_png()
            # a render that took c seconds is followed by none for c / render_share seconds:
            # on a slow or busy machine the figure refreshes less often, training keeps its pace
            cost = time.perf_counter() - t0 if self.renders > 1 else 0.0  # 1st: fonts load
            self._next_render = t0 + max(self.refresh, cost / self.render_share) - 0.05

    def _update_all(self) -> None:
        """Status line, buttons, controls and failure message from the run's state now."""
        with self._lock:
            self._update_status()
            self._update_buttons()
            self._sync_controls()
            self._show_failure()

    def _key(self) -> tuple:
        h = self.run.history
        return (id(h), len(h.steps), len(h.epochs), len(h.changes), self.run.state)

    def _show(self, text: str, error: bool = False) -> None:
        color = "#b00020" if error else "#555"
        self.message.value = (f'<span style="color:{color}">{html.escape(text)}</span>'
                              if text else "")

    def _show_failure(self) -> None:
        err = self.run.error
        if self.run.state == "failed" and err is not None and err is not self._error_shown:
            self._error_shown = err
            self._show(f"training failed: {type(err).__name__}: {err}", error=True)

    def _update_status(self) -> None:
        run = self.run
        now = time.perf_counter()
        state = run.state
        live = state in ("running", "paused") and run.running
        step = run.step
        # steps/s: smoothed over the dashboard's ticks while running
        if live and state == "running" and self._last_sample is not None:
            t0, s0 = self._last_sample
            if now - t0 > 1e-3:
                r = (step - s0) / (now - t0)
                self._rate = r if self._rate is None else 0.5 * self._rate + 0.5 * r
        elif not live:
            self._rate = step / run.seconds if run.seconds > 0 and step else None
        if state == "paused":
            self._rate = 0.0
        self._last_sample = (now, step)
        # elapsed: run.seconds moves only at epoch ends; interpolate in between
        if live:
            if self._clock is None or self._clock[0] != run.seconds:
                self._clock = (run.seconds, now)
            elapsed = self._clock[0] + now - self._clock[1]
        else:
            self._clock = None
            elapsed = run.seconds
        phases = run.phases
        pi = run.phase_idx
        if pi < len(phases):
            ph = phases[pi]
            phase = f"{ph.name} {run.phase_epoch}/{ph.epochs}"
        else:
            phase = "finished"
        total_epochs = sum(p.epochs for p in phases)
        total_steps = sum(p.epochs * -(-run.n // p.batch_size) for p in phases)
        state_txt = "stopping" if self._stopping and live else state
        rate = "–" if self._rate is None else f"{self._rate:.1f}"
        color = {"running": "#1b7f2a", "paused": "#b07500", "failed": "#b00020",
                 "done": "#1f4e99"}.get(state, "#333")
        self.status.value = (
            f'<span style="font-family:monospace"><b style="color:{color}">{state_txt}</b>'
            f" · phase {html.escape(phase)} · epoch {run.epoch}/{total_epochs}"
            f" · step {step}/{total_steps} · {rate} steps/s · {_fmt_time(elapsed)}</span>")

    # ------------------------------------------------------------------ rendering
    def render(self) -> bytes:
        """One synchronous refresh, as the live view does once per ``refresh`` seconds:
        status line, buttons, controls (knob values set elsewhere), then the figure, drawn
        from the run's history now. Puts the PNG in ``image`` and returns its bytes."""
        self._update_all()
        return self._render_png()

    def _render_png(self) -> bytes:
        with self._render_lock:
            t0 = time.perf_counter()
            key = self._key()
            h = self.run.history
            epochs, changes = list(h.epochs), list(h.changes)
            ax_loss = self._axes[0, 0]
            epoch_key = (id(h), len(epochs), len(changes))
            if epoch_key == self._epoch_key:
                # only steps were added: redraw the loss panel over the last image
                _reset(ax_loss)
                self._draw_losses(ax_loss, changes)
                renderer = self._canvas.get_renderer()
                self._blank.draw(renderer)
                ax_loss.draw(renderer)
            else:
                for ax in self._axes.ravel():
                    _reset(ax)
                self._draw_losses(ax_loss, changes)
                self._draw_epochs(epochs, changes)
                self._canvas.draw()
                self._epoch_key = epoch_key
            png = _encode_png(self._canvas)
            self.image.value = png
            self._rendered_key = key
            self.renders += 1
            self.render_seconds += time.perf_counter() - t0
        return png

    def _draw_losses(self, ax_loss: Any, changes: list[dict]) -> None:
        """The loss panel: one line per term over steps, phase boundaries, knob changes."""
        steps = self._losses.update(self.run.history)
        ax_loss.set_title("loss terms", fontsize=10, loc="left", y=1.0, pad=3)
        ax_loss.set_xlabel("step")
        drawn = False
        for name, (xs, vs) in steps.terms.items():
            x = np.asarray(xs, dtype=np.float64)
            v = np.asarray(vs, dtype=np.float64)
            label = name
            if (v < 0).any():
                v, label = np.abs(v), f"|{name}|"
            x, v = _downsample(x, v, MAX_POINTS)
            if name == "loss":
                ax_loss.plot(x, v, color="black", lw=1.6, label=label, zorder=3)
            else:
                color = TERM_COLORS[list(steps.terms).index(name) % len(TERM_COLORS)]
                ax_loss.plot(x, v, lw=1.0, label=label, color=color, zorder=4)
            drawn = True
        if drawn:
            if ax_loss.get_yscale() != "log":
                ax_loss.set_yscale("log", nonpositive="mask")
                ax_loss.yaxis.set_major_locator(LogLocator(numticks=6))
                ax_loss.yaxis.set_minor_formatter(NullFormatter())
            ax_loss.legend(fontsize=8, loc="lower left", framealpha=0.8)
            for s, name in steps.phase_starts[1:]:
                ax_loss.axvline(s, color="grey", ls=":", lw=1)
                ax_loss.text(s, 0.01, f" {name}", transform=ax_loss.get_xaxis_transform(),
                             fontsize=7, color="grey", va="bottom")
            _marks(ax_loss, [(c["step"], c) for c in changes])
        else:
            _empty(ax_loss, "waiting for the first step")
        ax_loss.relim()
        ax_loss.autoscale_view()

    def _draw_epochs(self, epochs: list[dict], changes: list[dict]) -> None:
        """The epoch-level panels: metrics, cluster sizes, constraints or the change log."""
        run = self.run
        _, ax_met, ax_size, ax_extra = self._axes.ravel()

        # metrics over epochs
        ax_met.set_title("ACC / NMI / NE", fontsize=10, loc="left", y=1.0, pad=3)
        ax_met.set_xlabel("epoch")
        found = False
        for key, color in METRICS.items():
            rows = [r for r in epochs if key in r]
            if rows:
                ax_met.plot([r["epoch"] for r in rows], [r[key] for r in rows], marker=".",
                            ms=4, label=key.upper(), color=color)
                found = True
        if found:
            ax_met.set_ylim(0, 1.02)
            ax_met.legend(fontsize=8, loc="lower right")
            to_epoch = _step_to_epoch(run, epochs)
            _marks(ax_met, [(to_epoch(c), c) for c in changes])
        else:
            _empty(ax_met, "no metrics yet" + (" (pretraining)" if epochs or run.step else ""))

        # cluster sizes
        last = next((r for r in reversed(epochs) if "sizes" in r), None)
        if last is not None:
            sizes = np.asarray(last["sizes"])
            ax_size.bar(np.arange(len(sizes)), sizes, color="#4c72b0")
            ax_size.axhline(run.n / max(len(sizes), 1), color="black", ls="--", lw=0.8)
            ax_size.set_title(f"cluster sizes (epoch {last['epoch']})", fontsize=10, loc="left",
                              y=1.0, pad=3)
            ax_size.set_xlabel("cluster")
            if len(sizes) <= 20:
                ax_size.set_xticks(np.arange(len(sizes)))
        else:
            ax_size.set_title("cluster sizes", fontsize=10, loc="left", y=1.0, pad=3)
            _empty(ax_size, "no clusters yet")

        # constraints satisfied, the q histogram of a thresholding method, or the knob log
        rows = [r for r in epochs if "satisfied" in r]
        hist = next((r for r in reversed(epochs) if "q_hist" in r), None)
        if not rows and hist is not None:
            counts = np.asarray(hist["q_hist"], dtype=float)
            edges = np.linspace(0.0, 1.0, len(counts) + 1)
            # log counts: most q are near 0 (a sample's k - 1 far centres); empty bins unfilled
            ax_extra.stairs(np.where(counts > 0, counts, np.nan), edges, baseline=0.8,
                            fill=True, color="#8172b3", alpha=0.7)
            ax_extra.set_yscale("log", nonpositive="mask")
            ax_extra.set_xlim(0, 1)
            ax_extra.set_xlabel("q (all of the epoch's batches)")
            if "t_last" in hist:
                ax_extra.axvline(hist["t_last"], color="#c44e52", ls="--", lw=1.2,
                                 label=f"t = {hist['t_last']:.3f} (last step)")
                ax_extra.legend(fontsize=8, loc="upper center")
            ax_extra.set_title(f"histogram of q (epoch {hist['epoch']})", fontsize=10,
                               loc="left", y=1.0, pad=3)
        elif rows:
            ax_extra.set_title("constraints satisfied", fontsize=10, loc="left", y=1.0, pad=3)
            ax_extra.plot([r["epoch"] for r in rows], [r["satisfied"] for r in rows],
                          marker=".", ms=4, color="#2a9d8f")
            ax_extra.set_ylim(0, 1.02)
            ax_extra.set_xlabel("epoch")
            to_epoch = _step_to_epoch(run, epochs)
            _marks(ax_extra, [(to_epoch(c), c) for c in changes])
        else:
            ax_extra.set_title("knob changes", fontsize=10, loc="left", y=1.0, pad=3)
            ax_extra.set_axis_off()
            lines = [f"step {c['step']:>6}  {c['knob']}: {_fmt(c['old'])} → {_fmt(c['new'])}"
                     for c in changes[-10:]]
            if len(changes) > 10:
                lines.insert(0, f"... {len(changes) - 10} earlier")
            ax_extra.text(0.0, 1.0, "\n".join(lines) or "none yet", va="top", ha="left",
                          family="monospace", fontsize=8, transform=ax_extra.transAxes)
        for ax in (ax_met, ax_size, ax_extra):
            ax.relim()
            ax.autoscale_view()

    # ------------------------------------------------------------------ display
    def _ipython_display_(self) -> None:
        """Interactive: the widget (the live view keeps refreshing). Not interactive: train
        to the end in the foreground, then show the final status and figure as plain HTML
        and PNG, which survive in a papermill-executed notebook without widget state."""
        from IPython.display import HTML, Image, display

        if self.interactive:
            self._ensure_refresher()
            display(self.widget)
            return
        if self.run.state not in _TERMINAL:
            self.run_to_end()
        png = self.image.value if self._rendered_key == self._key() else self.render()
        display(HTML(self.status.value + "<br>" + self.message.value), Image(data=png))

    def __repr__(self) -> str:
        r = self.run
        return (f"<Dashboard {type(r.method).__name__}: {r.state}, epoch {r.epoch}, "
                f"step {r.step}, knobs {self.knob_names}>")


# ---------------------------------------------------------------------- helpers
class _StepCache:
    """Per-term (steps, values) lists, extended incrementally from ``history.steps`` so
    that a render reads only the steps recorded since the previous one."""

    def __init__(self) -> None:
        self._reset(None)

    def _reset(self, history: Any) -> None:
        self.history = history
        self.n = 0
        self.terms: dict[str, tuple[list[int], list[float]]] = {}
        self.phase_starts: list[tuple[int, str]] = []

    def update(self, history: Any) -> _StepCache:
        if history is not self.history or len(history.steps) < self.n:
            self._reset(history)
        new = history.steps[self.n:]  # a copy, safe while the loop appends
        for r in new:
            s = r["step"]
            ph = r.get("phase")
            if not self.phase_starts or self.phase_starts[-1][1] != ph:
                self.phase_starts.append((s - 1, ph))
            for k, v in r.items():
                if k not in _NOT_TERMS:
                    xs, vs = self.terms.setdefault(k, ([], []))
                    xs.append(s)
                    vs.append(v)
        self.n += len(new)
        return self


def _encode_png(canvas: FigureCanvasAgg) -> bytes:
    """The canvas's current pixels as an RGB PNG, fast (zlib level 1: ~60 kB, ~8 ms)."""
    from PIL import Image

    w, h = canvas.get_width_height()
    img = Image.frombuffer("RGBA", (w, h), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="png", compress_level=1)
    return buf.getvalue()


def _downsample(x: np.ndarray, v: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Bin-average (x, v) down to at most ``max_points`` points."""
    n = len(x)
    if n <= max_points:
        return x, v
    k = -(-n // max_points)
    m = n // k * k
    xd, vd = x[:m].reshape(-1, k).mean(1), v[:m].reshape(-1, k).mean(1)
    if m < n:
        xd = np.append(xd, x[m:].mean())
        vd = np.append(vd, v[m:].mean())
    return xd, vd


def _step_to_epoch(run: Run, epochs: list[dict]) -> Callable[[dict], float]:
    """Where a knob change falls on an epoch axis: its epoch plus the fraction of that
    epoch's steps done when it was applied."""
    start = {0: 0}
    for r in epochs:
        start[r["epoch"]] = r["step"]
    nb = {p.name: -(-run.n // p.batch_size) for p in run.phases}

    def at(c: dict) -> float:
        e = c["epoch"]
        s0 = start.get(e)
        n = nb.get(c.get("phase"), 0)
        if s0 is None or not n:
            return float(e)
        return e + min(max((c["step"] - s0) / n, 0.0), 1.0)

    return at


def _marks(ax: Any, changes: list[tuple[float, dict]]) -> None:
    """Dashed vertical lines at knob changes, the last ``MAX_LABELS`` labelled."""
    changes = changes[-200:]
    for i, (x, c) in enumerate(changes):
        ax.axvline(x, color="#d62728", ls="--", lw=0.8, alpha=0.7)
        if i >= len(changes) - MAX_LABELS:
            ax.text(x, 0.98, f"{c['knob']}={_fmt(c['new'])} ", transform=ax.get_xaxis_transform(),
                    rotation=90, va="top", ha="right", fontsize=7, color="#d62728")


def _reset(ax: Any) -> None:
    """Empty an axes for the next render, keeping its tick objects (``ax.clear()`` would
    rebuild them: most of a render's cost)."""
    for a in [*ax.lines, *ax.texts, *ax.patches, *ax.collections]:
        a.remove()
    if ax.get_legend() is not None:
        ax.get_legend().remove()
    ax.set_title("", loc="left")
    ax.set_xlabel("")
    ax.set_axis_on()
    ax.set_autoscale_on(True)


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", color="grey", transform=ax.transAxes)
    ax.set_axis_off()


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int):
        return str(v)
    return f"{v:.3g}"


def _fmt_time(seconds: float) -> str:
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"
