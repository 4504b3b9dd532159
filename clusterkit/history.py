"""What a training run records: per-step losses, per-epoch metrics, knob changes, snapshots.

The engine appends to a ``History`` from its training thread; readers (the dashboard, the
t-SNE animation) take copies of the lists, which is safe under the GIL.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class Snapshot:
    """The embedding of a fixed subsample of the data at one moment of training.

    epoch: completed epochs of ``phase`` when taken (0 = at the phase's start, e.g. right
    after the k-means initialisation of the clustering phase).
    embedding: (m, d) float32; labels: (m,) int64 predicted clusters;
    centers: (k, d) float32 cluster centres in the same space, or None;
    q: (m, k) float32 soft assignments, or None; metrics: on the whole data (acc, nmi, ...);
    extras: per-point arrays of length m (e.g. ``"stability"``, ``"hard"``).
    """

    epoch: int
    phase: str
    step: int
    embedding: np.ndarray
    labels: np.ndarray
    centers: np.ndarray | None = None
    q: np.ndarray | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    def to_state(self) -> dict:
        arr = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in self.extras.items()}
        return {
            "epoch": self.epoch,
            "phase": self.phase,
            "step": self.step,
            "embedding": torch.from_numpy(self.embedding),
            "labels": torch.from_numpy(self.labels),
            "centers": None if self.centers is None else torch.from_numpy(self.centers),
            "q": None if self.q is None else torch.from_numpy(self.q),
            "metrics": dict(self.metrics),
            "extras": arr,
        }

    @classmethod
    def from_state(cls, s: dict) -> Snapshot:
        def np_(t):
            return None if t is None else t.numpy()

        return cls(
            epoch=s["epoch"],
            phase=s["phase"],
            step=s["step"],
            embedding=s["embedding"].numpy(),
            labels=s["labels"].numpy(),
            centers=np_(s["centers"]),
            q=np_(s["q"]),
            metrics=dict(s["metrics"]),
            extras={k: v.numpy() for k, v in s["extras"].items()},
        )


@dataclass
class History:
    """Everything a run recorded.

    steps: one dict per optimizer step: ``step``, ``epoch`` (global), ``phase``, ``loss`` and
    one float per loss term. epochs: one dict per finished epoch: ``epoch``, ``phase``,
    ``phase_epoch``, ``step``, ``seconds`` and, when labels are known, ``acc``, ``nmi``,
    ``ari``, ``ne``, plus whatever the method adds (``sizes``, ``changed``,
    ``satisfied``...). changes: one dict per knob change: ``step``, ``epoch``, ``knob``,
    ``old``, ``new``. snapshots: see :class:`Snapshot`; ``snapshot_index`` (m,) int64 are
    the rows of X they show, ``snapshot_y`` (m,) int64 their true labels (or None).
    """

    steps: list[dict] = field(default_factory=list)
    epochs: list[dict] = field(default_factory=list)
    changes: list[dict] = field(default_factory=list)
    snapshots: list[Snapshot] = field(default_factory=list)
    snapshot_index: np.ndarray | None = None
    snapshot_y: np.ndarray | None = None

    def curve(self, key: str, phase: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(epochs, values) of an epoch-level metric, skipping epochs that lack it."""
        rows = [r for r in list(self.epochs) if key in r and (phase is None or r["phase"] == phase)]
        return (
            np.array([r["epoch"] for r in rows], dtype=np.int64),
            np.array([r[key] for r in rows], dtype=np.float64),
        )

    def loss_curve(self, key: str = "loss") -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of a step-level loss term."""
        rows = [r for r in list(self.steps) if key in r]
        return (
            np.array([r["step"] for r in rows], dtype=np.int64),
            np.array([r[key] for r in rows], dtype=np.float64),
        )

    def last(self, key: str, default=None):
        """The latest epoch-level value of ``key``."""
        for r in reversed(list(self.epochs)):
            if key in r:
                return r[key]
        return default

    def to_state(self) -> dict:
        return {
            "steps": list(self.steps),
            "epochs": list(self.epochs),
            "changes": list(self.changes),
            "snapshots": [s.to_state() for s in self.snapshots],
            "snapshot_index": None
            if self.snapshot_index is None
            else torch.from_numpy(self.snapshot_index),
            "snapshot_y": None if self.snapshot_y is None else torch.from_numpy(self.snapshot_y),
        }

    @classmethod
    def from_state(cls, s: dict) -> History:
        return cls(
            steps=list(s["steps"]),
            epochs=list(s["epochs"]),
            changes=list(s["changes"]),
            snapshots=[Snapshot.from_state(x) for x in s["snapshots"]],
            snapshot_index=None if s["snapshot_index"] is None else s["snapshot_index"].numpy(),
            snapshot_y=None if s["snapshot_y"] is None else s["snapshot_y"].numpy(),
        )
