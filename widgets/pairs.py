"""``PairLabeler``: a person answers "same or different?" for the pairs a model picked.

::

    from widgets import PairLabeler
    lab = PairLabeler(ActiveDeepClustering(10), X, y=y, budget=20, log_path="answers.jsonl")
    lab            # two items side by side, why they were picked, Same / Different / Skip /
                   # Undo, a progress bar, and "Train with these answers"

Every answer goes through the strategy's ask/tell interface (``clusterkit.active``) and is
appended at once to the JSON-lines log (``log_path``): a crashed kernel loses nothing, and
``PairLabeler(..., resume=True)`` continues the open round from the file. An answer that
contradicts earlier ones is refused and shown in red. "Train with these answers" trains the
next round of the method in a background thread and refreshes the clustering view (accuracy
so far when ``y`` is known, a few items per cluster); then the next round's pairs come.

Keyboard: click into the small "keys" box and type ``s`` (same), ``d`` (different), ``k``
(skip) or ``u`` (undo); the buttons do the same without it.

``interactive=False`` (papermill, tests): the ``oracle`` answers the round's pairs at once
and ``train()`` runs in the foreground.

Waiting for the person in a notebook ("Run All"): ``await lab.until_trained(timeout=600)``
in the next cell waits, the widget live, until a round has been trained on the person's
answers (they pressed "Train with these answers" and it finished); the cells below run
then. After ``timeout`` seconds it says so and returns False, so the notebook goes on.
``wait()`` blocks until a background round ends (serving widget events where
``jupyter_ui_poll`` can; see ``widgets/_wait.py``); ``await lab.wait_async()`` is the same
without blocking the kernel.
"""

from __future__ import annotations

import html
import io
import threading
from pathlib import Path
from typing import Any

import ipywidgets as W
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from clusterkit.active import AnswerLog, QueryStrategy, make_strategy
from widgets._wait import wait_until, wait_until_async


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


class PairLabeler:
    """Label pairs for an active clustering method; see the module docstring.

    method: an ``ActiveDeepClustering`` (anything with ``prepare``, ``record_round``,
    ``q_``, ``embedding_``); X: (n, c, h, w) images or (n, d) vectors; y: (n,) true labels,
    only to show accuracy; strategy: a ``clusterkit.active`` strategy (default: the
    method's ``strategy`` setting over n samples); oracle: answers pairs when
    ``interactive=False`` (e.g. ``LabelOracle(y)``); budget: pairs per round; log_path: the
    JSON-lines answer log; resume: replay an existing log first.

    Attributes for code and tests: ``buttons`` (``same``, ``different``, ``skip``,
    ``undo``, ``train``), ``keys`` (the keyboard box), ``progress`` (IntProgress against
    the round's budget), ``pair_image`` and ``view`` (Image, PNG), ``reason``, ``message``
    and ``status`` (HTML), ``current`` (the pair shown, or None), ``answers`` (all answers
    so far), ``constraints``, ``log_path``, ``strategy``, ``widget`` (the whole box).
    """

    def __init__(self, method: Any, X: Any, y: Any = None, *,
                 strategy: QueryStrategy | None = None, oracle: Any = None, budget: int = 20,
                 log_path: str | Path | None = "answers.jsonl", resume: bool = False,
                 interactive: bool = True, image_shape: tuple[int, ...] | None = None):
        X = np.asarray(X, dtype=np.float32)
        if X.ndim not in (2, 3, 4):
            raise ValueError(f"X has shape {X.shape}; pass images (n, c, h, w) or vectors "
                             "(n, d)")
        if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
            raise ValueError(f"budget (pairs per round) must be a positive integer; got "
                             f"{budget!r}")
        self.method, self.X, self.n = method, X, len(X)
        self.y = None if y is None else np.asarray(y)
        self.oracle, self.budget = oracle, int(budget)
        self.interactive = bool(interactive)
        self.image_shape = image_shape
        self.log_path = None if log_path is None else Path(log_path)
        if not self.interactive and oracle is None:
            raise ValueError("interactive=False needs an oracle to answer: "
                             "PairLabeler(..., oracle=LabelOracle(y), interactive=False)")
        if strategy is None:
            s = method.settings()
            strategy = make_strategy(s["strategy"], self.n, rounds=int(s["rounds"]),
                                     seed=getattr(method, "seed", 0))
        if strategy.n != self.n:
            raise ValueError(f"the strategy is over {strategy.n} samples but X has {self.n}")
        self.strategy = strategy
        if self.log_path is not None:
            if resume and self.log_path.exists():
                strategy.replay(self.log_path)
            else:
                if self.log_path.exists() and not resume:
                    raise ValueError(f"{self.log_path} exists: pass resume=True to continue "
                                     "it, or another log_path to start afresh")
                strategy.log = AnswerLog(self.log_path)
        self.run = None
        self.error: BaseException | None = None
        self.rounds_trained = 0  # training rounds this labeler has finished
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()
        self._build()
        self._start_round()
        if not self.interactive:
            self.auto_answer()

    # ------------------------------------------------------------------ widgets
    def _build(self) -> None:
        lay = W.Layout(width="120px")
        self.buttons = {
            "same": W.Button(description="Same (s)", button_style="success", layout=lay),
            "different": W.Button(description="Different (d)", button_style="danger",
                                  layout=lay),
            "skip": W.Button(description="Skip (k)", layout=lay),
            "undo": W.Button(description="Undo (u)", layout=lay),
            "train": W.Button(description="Train with these answers", button_style="primary",
                              layout=W.Layout(width="220px")),
        }
        self.buttons["same"].on_click(lambda _: self.answer(True))
        self.buttons["different"].on_click(lambda _: self.answer(False))
        self.buttons["skip"].on_click(lambda _: self.answer(None))
        self.buttons["undo"].on_click(lambda _: self.undo())
        self.buttons["train"].on_click(lambda _: self.train())
        self.keys = W.Text(placeholder="keys: s d k u", layout=W.Layout(width="110px"),
                           continuous_update=True)
        self.keys.observe(self._on_key, names="value")
        self.progress = W.IntProgress(value=0, min=0, max=self.budget, description="round 1",
                                      layout=W.Layout(width="360px"))
        self.pair_image = W.Image(format="png")
        self.view = W.Image(format="png", layout=W.Layout(display="none"))  # until trained
        self.reason = W.HTML()
        self.message = W.HTML()
        self.status = W.HTML()
        row = W.HBox([self.buttons["same"], self.buttons["different"], self.buttons["skip"],
                      self.buttons["undo"], self.keys])
        left = W.VBox([self.pair_image, self.reason, row, self.progress, self.message,
                       W.HBox([self.buttons["train"], self.status])])
        self.widget = W.HBox([left, self.view])

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    # ------------------------------------------------------------------ state
    @property
    def answers(self) -> list[dict]:
        return self.strategy.answers

    @property
    def constraints(self):
        return self.strategy.constraints

    @property
    def current(self) -> tuple[int, int] | None:
        p = self.strategy.pending
        return None if len(p) == 0 else (int(p[0, 0]), int(p[0, 1]))

    def _round_done(self) -> int:
        return len(self.strategy.round_answers())

    def _start_round(self) -> None:
        """Propose this round's pairs unless some are still open (e.g. after resume)."""
        st = self.strategy
        want = self.budget - self._round_done() - len(st.pending)
        if want > 0:
            try:
                st.propose(want)
            except ValueError as e:
                self._say(str(e), error=True)
        self.progress.max = max(self.budget, self._round_done() + len(st.pending))
        self._refresh()

    # ------------------------------------------------------------------ actions
    def answer(self, same: bool | None) -> str | None:
        """Answer the pair shown: True (same), False (different) or None (skip). Returns
        the status ("ok", "conflict", "skip"), or None when no pair is open."""
        with self._lock:
            pair = self.current
            if pair is None:
                self._say("No open pair: press <b>Train with these answers</b>.")
                return None
            status = self.strategy.tell([pair], [same], source="human")[0]
            if status == "conflict":
                c = self.strategy.conflicts_[-1]
                what = "same" if same else "different"
                self._say(f"Not added: <b>{what}</b> for {pair} contradicts earlier answers "
                          f"{[tuple(x) for x in c['conflicts']]} (must-links chain, so a "
                          "cannot-link inside a chain cannot hold). Undo to change it.",
                          error=True)
            else:
                self._say("")
            self._refresh()
            return status

    def undo(self) -> dict | None:
        """Take back the last answer of this round."""
        with self._lock:
            rec = self.strategy.undo()
            self._say("Nothing to undo in this round." if rec is None else
                      f"Undid {rec['answer']} for ({rec['i']}, {rec['j']}).")
            self._refresh()
            return rec

    def auto_answer(self) -> int:
        """Let the oracle answer every open pair of this round; returns how many."""
        if self.oracle is None:
            raise ValueError("no oracle: PairLabeler(..., oracle=LabelOracle(y))")
        with self._lock:
            p = self.strategy.pending.copy()
            if len(p):
                self.strategy.tell(p, self.oracle(p), source="oracle")
            self._refresh()
            return len(p)

    def _on_key(self, change: dict) -> None:
        v = change["new"]
        if not v:
            return
        key = v[-1].lower()
        self.keys.value = ""
        if key == "s":
            self.answer(True)
        elif key == "d":
            self.answer(False)
        elif key == "k":
            self.answer(None)
        elif key == "u":
            self.undo()

    # ------------------------------------------------------------------ training
    def train(self) -> PairLabeler:
        """Train the next round on all answers so far: in a background thread when
        interactive (the view refreshes when it ends), in the foreground otherwise."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                self._say("Training is already running.")
                return self
            if len(self.strategy.constraints) == 0:
                self._say("Answer at least one pair first.", error=True)
                return self
            self.error = None
            self.run = self.method.prepare(self.X, self.strategy.constraints, y=self.y)
            self.run.progress = False
            self.buttons["train"].disabled = True
            self.status.value = "<i>training...</i>"
        if self.interactive:
            self._thread = threading.Thread(target=self._train_body, daemon=True,
                                            name="pairlabeler-train")
            self._thread.start()
        else:
            self._train_body()
            if self.error is not None:
                raise self.error
        return self

    def training(self) -> bool:
        """Whether a background training round is running now."""
        t = self._thread
        return t is not None and t.is_alive()

    def wait(self, timeout: float | None = None) -> PairLabeler:
        """Block until a background training round ends (widget events are served meanwhile
        where ``jupyter_ui_poll`` can; elsewhere a plain join). Re-raises its error."""
        t = self._thread
        if t is not None:
            wait_until(lambda: not t.is_alive(), timeout, t.join)
        if self.error is not None:
            raise self.error
        return self

    async def wait_async(self, timeout: float | None = None) -> PairLabeler:
        """``await lab.wait_async()``: ``wait()`` without blocking the kernel."""
        await wait_until_async(lambda: not self.training(), timeout)
        if self.error is not None:
            raise self.error
        return self

    async def until_trained(self, rounds: int = 1, timeout: float | None = 600) -> bool:
        """``await lab.until_trained()`` in the cell after the widget: wait, the widget live,
        until ``rounds`` training rounds of this labeler have ended (answer the pairs, then
        press "Train with these answers"). Returns True then; re-raises a training error.
        After ``timeout`` seconds (None: no limit) prints why it stopped waiting and returns
        False, so that "Run All" goes on. Not interactive: trains now if no round has been."""
        if not self.interactive:
            if self.rounds_trained < rounds and not self.training():
                self.train()
            return self.rounds_trained >= rounds

        def done() -> bool:
            return self.error is not None or (self.rounds_trained >= rounds
                                              and not self.training())

        ok = await wait_until_async(done, timeout)
        if self.error is not None:
            raise self.error
        if not ok:
            where = f" (kept in {self.log_path})" if self.log_path is not None else ""
            print(f"No round trained on your answers after {timeout:.0f} s: the cells below "
                  f"go on without them. Your answers so far{where} stay; answer the rest "
                  "and press \"Train with these answers\" whenever you like.")
        return ok

    def _train_body(self) -> None:
        try:
            self.run.fit()
            rec = self.method.record_round(self.run)
            with self._lock:
                self.strategy.next_round(self.method.q_, self.method.embedding_)
                self.progress.description = f"round {self.strategy.round + 1}"
                self._start_round()
                if not self.interactive and self.oracle is not None:
                    self.auto_answer()
            self.rounds_trained += 1
            acc = f", ACC {rec['acc']:.3f}" if "acc" in rec else ""
            self.status.value = (f"round {rec['round']} trained on {rec['pairs']} pairs"
                                 f"{acc} ({rec['seconds']:.0f} s in all)")
            self._render_view()
        except BaseException as e:  # noqa: BLE001 - shown in the widget, re-raised by wait()
            self.error = e
            self.status.value = f"<span style='color:#b00'>training failed: " \
                                f"{html.escape(str(e))}</span>"
        finally:
            self.buttons["train"].disabled = False

    # ------------------------------------------------------------------ rendering
    def _say(self, text: str, error: bool = False) -> None:
        self.message.value = (f"<span style='color:#b00'>{text}</span>" if error else text)

    def _refresh(self) -> None:
        st = self.strategy
        done = self._round_done()
        self.progress.max = max(self.progress.max, done + len(st.pending), 1)
        self.progress.value = min(done, self.progress.max)
        c = st.constraints
        self.status.value = (f"{done} answered this round; {c.n_ml} same / {c.n_cl} different "
                             f"in all; {len(st.conflicts_)} refused")
        pair = self.current
        for k in ("same", "different", "skip"):
            self.buttons[k].disabled = pair is None
        if pair is None:
            self.reason.value = "<b>Round done.</b> Press <i>Train with these answers</i>."
            self.pair_image.value = b""
            self.pair_image.layout.display = "none"  # no broken-image icon in the browser
            return
        self.pair_image.layout.display = None
        why = st.explain(pair)
        parts = [f"picked by <b>{html.escape(str(why.get('strategy')))}</b>"]
        if "cluster" in why:
            parts.append(f"cluster {why['cluster']} ({html.escape(str(why.get('role', '')))})")
        if "q_i" in why:
            parts.append(f"q = {why['q_i']:.2f} / {why['q_j']:.2f}")
        self.reason.value = " · ".join(parts)
        self.pair_image.value = self._pair_png(pair, why)

    def _pair_png(self, pair: tuple[int, int], why: dict) -> bytes:
        x = self.X[list(pair)]
        if x.ndim == 4 or x.ndim == 3 or self.image_shape is not None:
            fig = Figure(figsize=(4.4, 2.4), dpi=80)
            axes = fig.subplots(1, 2)
            for ax, v, i, side in zip(axes, x, pair, ("i", "j"), strict=True):
                img = self._image(v)
                ax.imshow(img, cmap="gray_r" if img.ndim == 2 else None,
                          interpolation="nearest")
                ax.set_axis_off()
                q = f"  q={why[f'q_{side}']:.2f}" if f"q_{side}" in why else ""
                ax.set_title(f"#{i}{q}", fontsize=9)
        else:  # vectors: a compact profile plot of both
            fig = Figure(figsize=(4.4, 2.0), dpi=80)
            ax = fig.subplots()
            for v, i in zip(x, pair, strict=True):
                ax.plot(v, lw=1, label=f"#{i}")
            ax.legend(fontsize=8)
            ax.set_yticks([])
        fig.tight_layout()
        return _png(fig)

    def _image(self, v: np.ndarray) -> np.ndarray:
        if v.ndim == 3:
            return v[0] if v.shape[0] == 1 else v.transpose(1, 2, 0)
        if v.ndim == 2:
            return v
        c, h, w = self.image_shape
        return v.reshape(h, w) if c == 1 else v.reshape(c, h, w).transpose(1, 2, 0)

    def _render_view(self) -> None:
        m = self.method
        labels = getattr(m, "labels_", None)
        if labels is None:
            return
        rounds = getattr(m, "rounds_", [])
        k = int(labels.max()) + 1
        fig = Figure(figsize=(5.2, 6.0), dpi=80)
        gs = fig.add_gridspec(2, 1, height_ratios=[1, 3])
        ax = fig.add_subplot(gs[0])
        if rounds and "acc" in rounds[0]:
            ax.plot([r["pairs"] for r in rounds], [r["acc"] for r in rounds], "o-")
            ax.set_xlabel("answered pairs")
            ax.set_ylabel("ACC")
            ax.grid(alpha=0.3)
        else:
            ax.set_axis_off()
            ax.text(0.5, 0.5, f"round {len(rounds)} trained", ha="center", va="center")
        per = 6
        sub = gs[1].subgridspec(k, per, wspace=0.05, hspace=0.05)
        rng = np.random.default_rng(0)
        for r in range(k):
            members = np.flatnonzero(labels == r)
            pick = rng.choice(members, size=min(per, len(members)), replace=False) \
                if len(members) else []
            for c in range(per):
                a = fig.add_subplot(sub[r, c])
                a.set_axis_off()
                if c < len(pick) and (self.X.ndim >= 3 or self.image_shape is not None):
                    img = self._image(self.X[pick[c]])
                    a.imshow(img, cmap="gray_r" if img.ndim == 2 else None)
                elif c < len(pick):
                    a.plot(self.X[pick[c]], lw=0.5)
        fig.subplots_adjust(left=0.12, right=0.98, top=0.97, bottom=0.02, hspace=0.35)
        self.view.value = _png(fig)
        self.view.layout.display = None

    def __repr__(self) -> str:
        return f"PairLabeler({self.strategy!r}, log={str(self.log_path)!r})"
