"""The training engine every method runs on.

A method describes its training as a list of :class:`Phase` (e.g. "pretrain", then
"cluster"); a :class:`Run` executes them over the data held as one tensor on the device,
with mini-batches as index slices (no DataLoader). The run

- reads its **knobs** at every step: ``run.set_knob(name, value)`` from any thread is
  validated at once and takes effect at the start of the next step (logged in
  ``history.changes``);
- records per-step losses, per-epoch metrics and **snapshots** of a fixed subsample's
  embedding (for the t-SNE animations) in ``run.history``;
- runs in the foreground (``fit()``) or a background thread (``start()``, ``pause()``,
  ``resume()``, ``stop()``, ``join()``);
- saves and resumes **checkpoints** at any step boundary (``save`` / ``Run.load``, or
  ``restore`` into a run made by ``prepare``): a resumed run ends exactly where an
  uninterrupted one ends on the CPU;
- stops with :class:`TrainingDiverged`, naming the loss term and the step, when a loss turns
  NaN or infinite, before the bad step touches the weights.
"""

from __future__ import annotations

import importlib
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from clusterkit.history import History, Snapshot
from clusterkit.knobs import Knob

if TYPE_CHECKING:
    from clusterkit.constraints import Constraints
    from clusterkit.methods.base import DeepClusteringMethod

StepFn = Callable[["Run", torch.Tensor], dict[str, torch.Tensor]]


class TrainingDiverged(FloatingPointError):
    """A loss term became NaN or infinite; the model keeps its last good state."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} asked for CUDA, but no GPU is visible to torch; "
                         "use device='auto' or 'cpu'")
    return dev


def eval_chunk(device: torch.device) -> int:
    """Rows per forward pass when embedding a whole data set without gradient: small chunks
    stay in a CPU's caches (a conv encoder over 5000 digits: 0.14 s in chunks of 512, 0.38 s
    in chunks of 4096), large ones keep a GPU busy."""
    return 512 if torch.device(device).type == "cpu" else 4096


@dataclass
class Phase:
    """One stage of training.

    step(run, idx) computes the loss terms for the batch ``idx`` ((B,) long tensor of row
    indices into ``run.X``) and returns a dict with the total under ``"loss"`` plus one
    entry per term (scalars; they are logged). ``optimizer(run)`` builds the optimizer
    (at the phase's start and again when a checkpoint is resumed); ``start(run)`` does the
    one-off initialisation of a fresh phase (k-means on the embedding, say);
    ``after_step(run, idx, out)`` runs under ``no_grad`` after each optimizer step (dual
    ascent, target refresh...); ``end_epoch(run)`` returns extra epoch-level numbers.
    ``evaluate``: compute metrics on the whole data at each epoch's end (when the method
    can predict in this phase); ``snapshots``: take t-SNE snapshots in this phase.
    """

    name: str
    epochs: int
    step: StepFn
    optimizer: Callable[[Run], torch.optim.Optimizer]
    start: Callable[[Run], None] | None = None
    after_step: Callable[[Run, torch.Tensor, dict], None] | None = None
    end_epoch: Callable[[Run], dict | None] | None = None
    batch_size: int = 256
    evaluate: bool = True
    snapshots: bool = False


class Run:
    """One training run of a method on one dataset. See the module docstring.

    X: (n, ...) float32 array or tensor (moved to the device once); y: (n,) true labels,
    used only to report metrics, never to learn; constraints: pairwise constraints for the
    semi-supervised methods. snapshot_epochs: epochs of the snapshot phase at which to
    record the embedding of ``snapshot_size`` fixed random points (epoch 0 = its start);
    ``"auto"`` picks about 10 spread over the phase. eval_every: evaluate (a pass over the
    whole data + metrics) every this many epochs of a phase, and always at a phase's last
    epoch and whenever a snapshot is taken; 0 = only then. Evaluation never changes training,
    so this trades the resolution of the accuracy curves for speed.
    """

    def __init__(
        self,
        method: DeepClusteringMethod,
        X: np.ndarray | torch.Tensor,
        y: np.ndarray | None = None,
        constraints: Constraints | None = None,
        *,
        device: str | torch.device = "auto",
        seed: int = 0,
        snapshot_epochs: list[int] | str | None = "auto",
        snapshot_size: int = 2000,
        eval_every: int = 1,
        progress: bool = True,
        callbacks: list[Callable[[str, Run, Any], None]] | None = None,
    ):
        if isinstance(eval_every, bool) or not isinstance(eval_every, (int, np.integer)) \
                or eval_every < 0:
            raise ValueError(f"eval_every must be an int >= 0 (epochs between evaluations; 0 = "
                             f"only at each phase's end and at snapshots); got {eval_every!r}")
        self.method = method
        self.eval_every = int(eval_every)
        self.device = resolve_device(device)
        self.seed = int(seed)
        self.X = torch.as_tensor(np.asarray(X, dtype=np.float32) if not torch.is_tensor(X)
                                 else X, dtype=torch.float32).to(self.device)
        self.n = int(self.X.shape[0])
        self.y = None if y is None else np.asarray(y).astype(np.int64)
        self.constraints = constraints
        self.progress = progress
        self.callbacks = list(callbacks or [])
        self.history = History()
        self.snapshot_epochs = snapshot_epochs
        self.snapshot_size = int(snapshot_size)

        self.knob_specs: dict[str, Knob] = {k.name: k for k in method.knob_specs()}
        self.knobs: dict[str, Any] = {k: s.value for k, s in self.knob_specs.items()}
        self._pending: queue.SimpleQueue = queue.SimpleQueue()
        self._knob_lock = threading.Lock()
        self._requested: dict[str, Any] = dict(self.knobs)

        self.step = 0  # optimizer steps done, all phases
        self.epoch = 0  # epochs done, all phases
        self.phase_idx = 0
        self.phase_epoch = 0  # epochs done in the current phase
        self._batch_pos = 0  # batches done in the current epoch
        self._perm: torch.Tensor | None = None
        self._phase_started = False
        self.phases: list[Phase] = []
        self.optimizer: torch.optim.Optimizer | None = None
        self.state = "ready"  # ready | running | paused | stopped | done | failed
        self.error: BaseException | None = None
        self.seconds = 0.0
        self._finish_phase = False
        self._stop = threading.Event()
        self._unpaused = threading.Event()
        self._unpaused.set()
        self._parked = threading.Event()  # set while the loop waits at a pause
        self._thread: threading.Thread | None = None
        self._embed_cache: tuple[int, torch.Tensor, torch.Tensor | None] | None = None

        method.settings_ = method.settings()
        method.device_ = self.device
        method.run_ = self
        method.history_ = self.history
        torch.manual_seed(self.seed)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(self.seed)
        self._pick_snapshot_points()
        method._build(self)
        self.phases = method._phases(self)

    # ------------------------------------------------------------------ knobs
    def set_knob(self, name: str, value: Any) -> Any:
        """Ask for a knob change; it is validated now and used from the next step on.

        Raises ``ValueError`` with a message fit to show a person (unknown knob, out of
        range, a budget the data cannot supply...). Returns the coerced value.
        """
        if name not in self.knob_specs:
            raise ValueError(f"unknown knob {name!r}; this run has {sorted(self.knob_specs)}")
        value = self.knob_specs[name].validate(value)
        self.method._validate_knob(self, name, value)
        with self._knob_lock:
            self._requested[name] = value
        self._pending.put((name, value))
        if self.state in ("ready", "stopped", "done", "failed") or self._thread is None:
            self._apply_knobs()  # not training: apply now so the next fit() sees it
        return value

    def requested(self, name: str) -> Any:
        """The latest value asked for (may not have reached the loop yet)."""
        with self._knob_lock:
            return self._requested[name]

    def _apply_knobs(self) -> None:
        while True:
            try:
                name, value = self._pending.get_nowait()
            except queue.Empty:
                return
            old = self.knobs[name]
            if old == value:
                continue
            self.knobs[name] = value
            change = {"step": self.step, "epoch": self.epoch, "knob": name, "old": old,
                      "new": value, "phase": self._phase_name()}
            self.history.changes.append(change)
            if name == "lr" and self.optimizer is not None:
                for g in self.optimizer.param_groups:
                    g["lr"] = float(value)
            self.method._on_knob_change(self, name, old, value)
            self._emit("knob", change)

    # ------------------------------------------------------------------ control
    def fit(self) -> Run:
        """Train in the foreground to the end (or until ``stop()``). Returns self."""
        self._loop()
        if self.error is not None:
            raise self.error
        return self

    def start(self) -> Run:
        """Train in a background thread; the caller keeps control."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("this run is already training")
        if self.state in ("done", "failed"):
            raise RuntimeError(f"this run is {self.state}; make a new run to train again")
        self._stop.clear()
        self._unpaused.set()
        self._thread = threading.Thread(target=self._loop, name="clusterkit-run", daemon=True)
        self.state = "running"
        self._thread.start()
        return self

    def pause(self) -> None:
        """Hold the loop at the next step boundary (the model stays consistent)."""
        if self.state == "running":
            self._unpaused.clear()
            self.state = "paused"

    def resume(self) -> None:
        """Continue after ``pause()`` (or restart a stopped run from where it stopped)."""
        if self.state == "paused":
            self.state = "running"
            self._unpaused.set()
        elif self.state in ("stopped", "ready"):
            self.start()

    def stop(self) -> None:
        """Stop at the next step boundary; the model is finalised and usable."""
        self._stop.set()
        self._unpaused.set()

    def join(self, timeout: float | None = None) -> Run:
        """Wait for the background thread; re-raises its error, if any."""
        if self._thread is not None:
            self._thread.join(timeout)
        if self.error is not None:
            raise self.error
        return self

    def peek(self, timeout: float = 60.0) -> DeepClusteringMethod:
        """The method with its fitted attributes (``labels_``...) set from the model as it is
        now. A training run is paused at its next step boundary for the moment this takes,
        then resumed; a finished run is returned as it is."""
        if self.state in ("done",) or self.method is None:
            return self.method
        if self.running:
            was_running = self.state == "running"
            self.pause()
            deadline = time.monotonic() + timeout
            while self.running and not self._parked.wait(0.05):
                if time.monotonic() > deadline:
                    self.resume()
                    raise TimeoutError("the run did not reach a step boundary in time")
            try:
                self.method._finalize(self)
            finally:
                if was_running:
                    self.resume()
        elif self.state != "failed":
            self.method._finalize(self)
        return self.method

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def finish_phase(self) -> None:
        """Called by a method (e.g. its stop rule) to end the current phase after this epoch."""
        self._finish_phase = True

    # ------------------------------------------------------------------ loop
    def _loop(self) -> None:
        from tqdm.auto import tqdm

        self.state = "running"
        self.error = None
        t0 = time.perf_counter() - self.seconds
        bar = None
        try:
            while self.phase_idx < len(self.phases):
                ph = self.phases[self.phase_idx]
                if not self._phase_started:
                    self._begin_phase(ph)
                total = ph.epochs * self._n_batches(ph)
                done = self.phase_epoch * self._n_batches(ph) + self._batch_pos
                bar = tqdm(total=total, initial=done, desc=ph.name, disable=not self.progress,
                           leave=False, unit="step")
                while self.phase_epoch < ph.epochs and not self._finish_phase:
                    if self._perm is None:
                        self._perm = torch.randperm(self.n, generator=self.generator,
                                                    device=self.device)
                    nb = self._n_batches(ph)
                    while self._batch_pos < nb:
                        if not self._unpaused.is_set():
                            self._parked.set()
                            self._unpaused.wait()
                            self._parked.clear()
                        if self._stop.is_set():
                            self.state = "stopped"
                            return
                        self._apply_knobs()
                        lo = self._batch_pos * ph.batch_size
                        idx = self._perm[lo:lo + ph.batch_size]
                        self._train_step(ph, idx)
                        self._batch_pos += 1
                        bar.update(1)
                    self._perm = None
                    self._batch_pos = 0
                    self.phase_epoch += 1
                    self.epoch += 1
                    self.seconds = time.perf_counter() - t0
                    self._end_epoch(ph)
                bar.close()
                bar = None
                self.phase_idx += 1
                self.phase_epoch = 0
                self._phase_started = False
                self._finish_phase = False
            self.state = "done"
        except BaseException as e:  # noqa: BLE001 - recorded, re-raised by fit()/join()
            self.error = e
            self.state = "failed"
        finally:
            if bar is not None:
                bar.close()
            self.seconds = time.perf_counter() - t0
            if self.state in ("done", "stopped"):
                self.method._finalize(self)
            self._emit("end", self.state)

    def _n_batches(self, ph: Phase) -> int:
        return -(-self.n // ph.batch_size)

    def _begin_phase(self, ph: Phase) -> None:
        if ph.start is not None:
            ph.start(self)
        self.optimizer = ph.optimizer(self)
        if "lr" in self.knobs:
            for g in self.optimizer.param_groups:
                g["lr"] = float(self.knobs["lr"])
        self._phase_started = True
        self._embed_cache = None
        if ph.snapshots:
            self._snapshot(ph)

    def _train_step(self, ph: Phase, idx: torch.Tensor) -> None:
        out = ph.step(self, idx)
        names = list(out)
        vals = torch.stack([out[k].detach().float().reshape(()) for k in names]).tolist()
        for k, v in zip(names, vals, strict=True):
            if not np.isfinite(v):
                raise TrainingDiverged(
                    f"loss term {k!r} became {v} at step {self.step} (phase {ph.name!r}, "
                    f"epoch {self.epoch}); training stopped before this step changed the "
                    f"weights, so the model keeps its last good state. Lower the learning "
                    f"rate or the weight of {k!r}, or check the input for extreme values.")
        self.optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        self.optimizer.step()
        self.step += 1
        self._embed_cache = None
        if ph.after_step is not None:
            with torch.no_grad():
                ph.after_step(self, idx, out)
        rec = {"step": self.step, "epoch": self.epoch, "phase": ph.name}
        rec.update(zip(names, vals, strict=True))
        self.history.steps.append(rec)
        self._emit("step", rec)

    def _end_epoch(self, ph: Phase) -> None:
        rec: dict[str, Any] = {"epoch": self.epoch, "phase": ph.name,
                               "phase_epoch": self.phase_epoch, "step": self.step,
                               "seconds": round(self.seconds, 3)}
        if ph.end_epoch is not None:
            rec.update(ph.end_epoch(self) or {})
        snap = ph.snapshots and self._want_snapshot(ph)
        if ph.evaluate and self._want_evaluation(ph, snap):
            rec.update(self.evaluate())
        self.history.epochs.append(rec)
        self._emit("epoch", rec)
        if snap:
            self._snapshot(ph)

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def embed_all(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(z, q) for the whole data: (n, d) embedding and (n, k) soft assignments (or None
        before the clustering head exists), in eval mode, cached until the next step."""
        if self._embed_cache is not None and self._embed_cache[0] == self.step:
            return self._embed_cache[1], self._embed_cache[2]
        zs, qs = [], []
        step = eval_chunk(self.device)
        with eval_mode(self.method._nets()):
            for lo in range(0, self.n, step):
                z, q = self.method._embed(self, self.X[lo:lo + step])
                zs.append(z)
                if q is not None:
                    qs.append(q)
        z = torch.cat(zs)
        q = torch.cat(qs) if qs else None
        self._embed_cache = (self.step, z, q)
        return z, q

    @torch.no_grad()
    def evaluate(self) -> dict[str, Any]:
        """Cluster sizes, and ACC/NMI/ARI/NE against the true labels when they are known."""
        from clusterkit import metrics

        _, q = self.embed_all()
        if q is None:
            return {}
        pred = q.argmax(1).cpu().numpy()
        k = int(q.shape[1])
        rec: dict[str, Any] = {"sizes": np.bincount(pred, minlength=k).tolist(),
                               "ne": metrics.ne(pred, n_clusters=k)}
        if self.y is not None:
            rec.update(metrics.evaluate(self.y, pred, n_clusters=k))
        if self.constraints is not None and len(self.constraints):
            rec["satisfied"] = float(self.constraints.satisfied(pred).mean())
        rec.update(self.method._evaluation_extras(self, q))
        return rec

    def _pick_snapshot_points(self) -> None:
        m = min(self.snapshot_size, self.n)
        rng = np.random.default_rng(self.seed)
        idx = np.sort(rng.choice(self.n, size=m, replace=False)).astype(np.int64)
        self.history.snapshot_index = idx
        self.history.snapshot_y = None if self.y is None else self.y[idx]

    def _want_evaluation(self, ph: Phase, snapshot: bool) -> bool:
        e = self.phase_epoch
        return (snapshot or e >= ph.epochs or self._finish_phase
                or (self.eval_every > 0 and e % self.eval_every == 0))

    def _want_snapshot(self, ph: Phase) -> bool:
        e, sched = self.phase_epoch, self.snapshot_epochs
        if sched is None:
            return False
        if sched == "auto":
            every = max(1, round(ph.epochs / 10))
            return e % every == 0 or e == ph.epochs
        return e in set(sched)

    @torch.no_grad()
    def _snapshot(self, ph: Phase) -> None:
        z, q = self.embed_all()
        idx = torch.as_tensor(self.history.snapshot_index, device=z.device)
        zz = z[idx].float().cpu().numpy()
        qq = None if q is None else q[idx].float().cpu().numpy()
        labels = (np.zeros(len(idx), np.int64) if qq is None else qq.argmax(1).astype(np.int64))
        centers = self.method._centers(self)
        last = self.history.epochs[-1] if self.history.epochs else {}
        mets = {k: last[k] for k in ("acc", "nmi", "ari", "ne") if k in last}
        if ph.snapshots and self.phase_epoch == 0 and self.y is not None and q is not None:
            mets = {k: v for k, v in self.evaluate().items() if k in ("acc", "nmi", "ari", "ne")}
        snap = Snapshot(epoch=self.phase_epoch, phase=ph.name, step=self.step, embedding=zz,
                        labels=labels,
                        centers=None if centers is None else centers.float().cpu().numpy(),
                        q=qq, metrics=mets,
                        extras=self.method._snapshot_extras(self, idx))
        self.history.snapshots.append(snap)
        self._emit("snapshot", snap)

    def _phase_name(self) -> str:
        return self.phases[self.phase_idx].name if self.phase_idx < len(self.phases) else "done"

    def _emit(self, event: str, payload: Any) -> None:
        for cb in self.callbacks:
            cb(event, self, payload)

    # ------------------------------------------------------------------ checkpoints
    def save(self, path: str | Path) -> Path:
        """Write a checkpoint: model, optimizer, centres, method state, knobs, history, RNG.

        Safe to call between steps (from a callback, or while paused/stopped). Loads with
        ``torch.load(..., weights_only=True)``: no pickled code.
        """
        if self.running and self.state == "running":
            raise RuntimeError("pause() or stop() the run before saving it")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        m = self.method
        # a finished run never rebuilds its optimizer (``fit()`` only finalises it): its
        # state (twice the weights, for Adam) would only take space
        finished = self.phase_idx >= len(self.phases)
        state = {
            "format": "clusterkit-run/1",
            "method_class": f"{type(m).__module__}.{type(m).__qualname__}",
            "method_params": _plain_params(m),
            "method_state": m._state_dict(self),
            "phases": [ph.name for ph in self.phases],
            "optimizer": (None if self.optimizer is None or finished
                          else self.optimizer.state_dict()),
            "knobs": dict(self.knobs),
            "counters": {"step": self.step, "epoch": self.epoch, "phase_idx": self.phase_idx,
                         "phase_epoch": self.phase_epoch, "batch_pos": self._batch_pos,
                         "phase_started": self._phase_started, "seconds": self.seconds,
                         "seed": self.seed, "finish_phase": self._finish_phase,
                         "n": self.n},
            "perm": None if self._perm is None else self._perm.cpu(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "history": self.history.to_state(),
            "constraints": None if self.constraints is None else self.constraints.to_state(),
            "snapshot_epochs": self.snapshot_epochs,
            "snapshot_size": self.snapshot_size,
            "eval_every": self.eval_every,
        }
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(state, tmp)
        tmp.replace(path)
        return path

    @classmethod
    def load(
        cls,
        path: str | Path,
        X: np.ndarray | torch.Tensor,
        y: np.ndarray | None = None,
        *,
        method: DeepClusteringMethod | None = None,
        device: str | torch.device = "auto",
        progress: bool = True,
    ) -> Run:
        """Rebuild a run from ``save()``'s checkpoint and the same data; ``fit()`` or
        ``start()`` continues it. ``method`` defaults to a new instance of the saved class
        with the saved hyperparameters (only classes inside ``clusterkit`` are accepted);
        a method built with ``pretrained=`` (a model, which a checkpoint does not hold)
        must be passed again, built the same way. To keep callbacks, or a method's other
        ``prepare`` arguments, use :meth:`restore` on a run made by ``prepare``."""
        from clusterkit.constraints import Constraints

        state = _read_checkpoint(path)
        if method is None:
            modname, _, clsname = state["method_class"].rpartition(".")
            if not modname.startswith("clusterkit."):
                raise ValueError(f"refusing to load method class {state['method_class']!r}")
            method = getattr(importlib.import_module(modname), clsname)(**state["method_params"])
        X = method._check_X(X)
        c = state["counters"]
        _check_rows(path, len(X), c["n"])
        cs = state["constraints"]
        cons = None if cs is None else Constraints.from_state(cs)
        run = cls(method, X, y, cons, device=device, seed=c["seed"],
                  snapshot_epochs=state["snapshot_epochs"], snapshot_size=state["snapshot_size"],
                  eval_every=state.get("eval_every", 1),
                  progress=progress)
        run._restore_state(state, path)
        return run

    def restore(self, path: str | Path) -> Run:
        """Continue, in this run, the run that ``save()`` wrote to ``path``; returns self.

        This run must come from ``prepare`` of a method built as the saved one was (the
        same class, hyperparameters and ``pretrained``), on the same data, and must not have
        trained yet; its callbacks, device and progress bar stay. Model, optimizer, knobs,
        counters, history, constraints and random state come from the checkpoint, so the
        continued run ends where an uninterrupted one ends (on the CPU)."""
        if self.running or self.state != "ready" or self.step:
            raise RuntimeError(f"restore() needs a run that has not trained yet (this one is "
                               f"{self.state}, at step {self.step}); make one with prepare()")
        state = _read_checkpoint(path)
        want = f"{type(self.method).__module__}.{type(self.method).__qualname__}"
        if state["method_class"] != want:
            raise ValueError(f"{path} holds a run of {state['method_class']}, not of {want}: "
                             f"restore it into a run of the same method")
        _check_rows(path, self.n, state["counters"]["n"])
        self._restore_state(state, path)
        return self

    def _restore_state(self, state: dict, path: str | Path) -> None:
        from clusterkit.constraints import Constraints

        saved = state.get("phases")  # absent in checkpoints written before it was recorded
        mine = [ph.name for ph in self.phases]
        if saved is not None and list(saved) != mine:
            raise ValueError(
                f"{path} was saved by a run with the phases {list(saved)}, but this "
                f"{type(self.method).__name__} has {mine}: build the method as the saved run "
                f"was (a method given pretrained=... skips its pretraining, and a checkpoint "
                f"does not hold the pretrained model: pass it, e.g. Run.load(path, X, "
                f"method={type(self.method).__name__}(..., pretrained=pre)))")
        c = state["counters"]
        cs = state["constraints"]
        if cs is not None:
            self.constraints = Constraints.from_state(cs)
        self.seed = int(c["seed"])
        self.eval_every = int(state.get("eval_every", self.eval_every))
        self.knobs.update(state["knobs"])
        self._requested.update(state["knobs"])
        self.method._load_state_dict(self, state["method_state"])
        self.step, self.epoch = c["step"], c["epoch"]
        self.phase_idx, self.phase_epoch = c["phase_idx"], c["phase_epoch"]
        self._batch_pos, self._phase_started = c["batch_pos"], c["phase_started"]
        self._finish_phase = c.get("finish_phase", False)
        self.seconds = c["seconds"]
        self._perm = None if state["perm"] is None else state["perm"].to(self.device)
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.history = History.from_state(state["history"])
        self.method.history_ = self.history
        if self._phase_started and self.phase_idx < len(self.phases):
            self.optimizer = self.phases[self.phase_idx].optimizer(self)
            if state["optimizer"] is not None:
                self.optimizer.load_state_dict(state["optimizer"])
        self.state = "stopped"


def _read_checkpoint(path: str | Path) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != "clusterkit-run/1":
        raise ValueError(f"{path} is not a clusterkit checkpoint")
    return state


def _check_rows(path: str | Path, n: int, saved: int) -> None:
    if n != saved:
        raise ValueError(f"the data differs in size from the checkpoint's: {n} rows, the run "
                         f"in {path} was trained on {saved}; pass the same X")


class eval_mode:
    """Context manager: the given modules in eval mode, their modes restored afterwards."""

    def __init__(self, nets: list[torch.nn.Module]):
        self.nets = list(nets)

    def __enter__(self) -> None:
        self.was = [n.training for n in self.nets]
        for n in self.nets:
            n.eval()

    def __exit__(self, *exc) -> None:
        for n, w in zip(self.nets, self.was, strict=True):
            n.train(w)


def _plain_params(method: Any) -> dict:
    """The method's constructor arguments that a weights-only checkpoint can hold."""
    ok = (int, float, str, bool, type(None))
    out = {}
    for k, v in method.get_params(deep=False).items():
        seq = isinstance(v, (list, tuple)) and all(isinstance(x, ok) for x in v)
        if isinstance(v, ok) or seq:
            out[k] = v
    return out
