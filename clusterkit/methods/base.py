"""What every clusterkit method shares: scikit-learn conventions on top of the engine.

A method's constructor stores hyperparameters (``None`` = take it from the ``profile``:
``smoke``, ``demo`` or ``paper``); ``fit(X, constraints=None, *, y=None)`` trains through a
:class:`~clusterkit.engine.Run`; fitted state ends in ``_`` (``labels_``,
``cluster_centers_``, ``history_``, ``run_``); ``predict`` and ``transform`` work on new data.

Subclasses implement the hooks the engine calls: ``knob_specs``, ``_build``, ``_phases``,
``_embed``, ``_centers``, ``_nets``, ``_state_dict`` / ``_load_state_dict`` and optionally
``_validate_knob``, ``_on_knob_change``, ``_snapshot_extras``, ``_finalize``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClusterMixin
from torch import nn

from clusterkit.engine import Phase, Run, eval_chunk, eval_mode, resolve_device
from clusterkit.knobs import Knob

PROFILES = ("smoke", "demo", "paper")


class DeepClusteringMethod(ClusterMixin, BaseEstimator):
    """Base class; see the module docstring."""

    #: settings per profile; constructor arguments that are not None override them
    PROFILES: dict[str, dict[str, Any]] = {}
    #: constructor arguments that are not training settings
    _NOT_SETTINGS = frozenset({"profile", "device", "seed", "verbose", "pretrained",
                               "snapshot_epochs", "snapshot_size", "eval_every"})

    # ------------------------------------------------------------------ settings
    def settings(self) -> dict[str, Any]:
        """The effective hyperparameters: the profile's, overridden by explicit arguments."""
        if self.profile not in PROFILES:
            raise ValueError(f"profile must be one of {PROFILES}; got {self.profile!r}")
        out = dict(self.PROFILES.get(self.profile, {}))
        for k, v in self.get_params(deep=False).items():
            if k not in self._NOT_SETTINGS and v is not None:
                out[k] = v
        return out

    def knob_specs(self) -> list[Knob]:
        """The knobs a person may turn while this method trains."""
        return []

    # ------------------------------------------------------------------ sklearn API
    def prepare(
        self,
        X: np.ndarray | torch.Tensor,
        constraints: Any = None,
        *,
        y: np.ndarray | None = None,
        callbacks: list | None = None,
    ) -> Run:
        """A run of this method on X, ready to ``fit()`` (foreground) or ``start()``
        (background thread). ``y``: true labels, used only to report metrics."""
        X = self._check_X(X)
        if y is not None:
            y = np.asarray(y)
            if y.shape != (len(X),):
                raise ValueError(f"y has shape {y.shape}; it needs one label per row of X, "
                                 f"shape ({len(X)},)")
        if constraints is not None and getattr(constraints, "n", len(X)) != len(X):
            raise ValueError(f"the constraints index {constraints.n} samples but X has "
                             f"{len(X)} rows; build them for this X")
        return Run(self, X, y, constraints, device=resolve_device(self.device), seed=self.seed,
                   snapshot_epochs=self.snapshot_epochs, snapshot_size=self.snapshot_size,
                   eval_every=getattr(self, "eval_every", 1),
                   progress=self.verbose, callbacks=callbacks)

    def fit(self, X: np.ndarray | torch.Tensor, constraints: Any = None, *,
            y: np.ndarray | None = None) -> DeepClusteringMethod:
        """Train on X ((n, d) vectors or (n, c, h, w) images, float32 in [0, 1]).
        ``y`` (n,) is only used to report metrics during training."""
        self.prepare(X, constraints, y=y).fit()
        return self

    def fit_predict(self, X, y=None, constraints=None, **kw) -> np.ndarray:  # noqa: D102
        return self.fit(X, constraints, y=y).labels_

    @torch.no_grad()
    def transform(self, X: np.ndarray | torch.Tensor) -> np.ndarray:
        """The embedding of X: (n, d) float32."""
        z, _ = self._embed_array(X)
        return z

    @torch.no_grad()
    def predict(self, X: np.ndarray | torch.Tensor) -> np.ndarray:
        """Cluster of each row of X: (n,) int64."""
        z, q = self._embed_array(X)
        if q is not None:
            return q.argmax(1).astype(np.int64)
        if getattr(self, "cluster_centers_", None) is None:
            raise RuntimeError("this model has no clustering layer yet; fit it first")
        # stopped before its clustering phase: the nearest k-means centre
        d = ((z[:, None, :] - self.cluster_centers_[None]) ** 2).sum(-1)
        return d.argmin(1).astype(np.int64)

    def predict_proba(self, X: np.ndarray | torch.Tensor) -> np.ndarray:
        """Soft assignments of X: (n, k) float32."""
        _, q = self._embed_array(X)
        return q

    def _embed_array(self, X) -> tuple[np.ndarray, np.ndarray | None]:
        if not hasattr(self, "run_"):
            raise RuntimeError(f"this {type(self).__name__} is not fitted yet; call fit(X) first")
        X = torch.as_tensor(self._check_X(X, fitting=False)).to(self.device_)
        zs, qs = [], []
        with eval_mode(self._nets()):
            step = eval_chunk(X.device)
            for lo in range(0, len(X), step):
                z, q = self._embed(self.run_, X[lo:lo + step])
                zs.append(z.float().cpu())
                if q is not None:
                    qs.append(q.float().cpu())
        return torch.cat(zs).numpy(), (torch.cat(qs).numpy() if qs else None)

    # ------------------------------------------------------------------ validation
    def _check_X(self, X, fitting: bool = True) -> np.ndarray:
        if isinstance(X, torch.Tensor):
            X = X.detach().cpu().numpy()
        X = np.asarray(X)
        if X.dtype == object or not np.issubdtype(X.dtype, np.number):
            raise ValueError(f"X must be numeric; got dtype {X.dtype}")
        if X.ndim == 3:  # (n, h, w) grey images
            X = X[:, None]
        if X.ndim not in (2, 4):
            raise ValueError(f"X has shape {X.shape}; pass vectors (n, d) or images (n, c, h, w)")
        X = X.astype(np.float32, copy=False)
        if not np.isfinite(X).all():
            bad = np.argwhere(~np.isfinite(X.reshape(len(X), -1)).all(1)).ravel()
            raise ValueError(f"X has NaN or infinite values in {len(bad)} rows (first: "
                             f"{bad[:5].tolist()}); drop or impute them first")
        if len(X) == 0:
            raise ValueError(f"X has no samples (shape {X.shape}); pass at least one row per "
                             "cluster")
        k = getattr(self, "n_clusters", None)
        if k is not None and fitting:
            if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
                raise ValueError(f"n_clusters must be an integer; got {k!r} "
                                 f"({type(k).__name__})")
            if int(k) < 1:
                raise ValueError(f"n_clusters must be at least 1; got {k}")
            if int(k) > len(X):
                raise ValueError(f"n_clusters={k} is larger than the number of samples "
                                 f"({len(X)}); use n_clusters <= {len(X)} or more data")
        return X

    # ------------------------------------------------------------------ engine hooks
    def _build(self, run: Run) -> None:
        raise NotImplementedError

    def _phases(self, run: Run) -> list[Phase]:
        raise NotImplementedError

    def _nets(self) -> list[nn.Module]:
        """The modules to switch to eval mode when embedding."""
        return []

    def _embed(self, run: Run, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(z, q) for a batch x: embedding (B, d) and soft assignment (B, k) or None."""
        raise NotImplementedError

    def _centers(self, run: Run) -> torch.Tensor | None:
        return None

    def _state_dict(self, run: Run) -> dict:
        raise NotImplementedError

    def _load_state_dict(self, run: Run, state: dict) -> None:
        raise NotImplementedError

    def _validate_knob(self, run: Run, name: str, value: Any) -> None:
        """Raise ValueError for a value this run cannot take (beyond the knob's range)."""

    def _on_knob_change(self, run: Run, name: str, old: Any, new: Any) -> None:
        """React to a change that needs more than reading ``run.knobs`` at the next step."""

    def _snapshot_extras(self, run: Run, idx: torch.Tensor) -> dict[str, np.ndarray]:
        return {}

    def _evaluation_extras(self, run: Run, q: torch.Tensor) -> dict[str, Any]:
        """More entries for an evaluated epoch's record, from the whole data's soft
        assignments q (n, k) (the evaluation's own pass: no extra forward)."""
        return {}

    @torch.no_grad()
    def _finalize(self, run: Run) -> None:
        """Set the fitted attributes from the run's current state."""
        z, q = run.embed_all()
        self.embedding_ = z.float().cpu().numpy()
        if q is not None:
            self.labels_ = q.argmax(1).cpu().numpy().astype(np.int64)
        else:  # stopped before the clustering phase: k-means on the embedding
            from sklearn.cluster import KMeans
            km = KMeans(self.n_clusters, n_init=10, random_state=self.seed).fit(self.embedding_)
            self.labels_ = km.labels_.astype(np.int64)
            self.cluster_centers_ = km.cluster_centers_.astype(np.float32)  # for predict
        c = self._centers(run)
        if c is not None:
            self.cluster_centers_ = c.detach().float().cpu().numpy()


class AutoencoderMethod(DeepClusteringMethod):
    """A method whose embedding is ``autoencoder_.encode(x)`` and whose clustering layer is
    a Student-t ``head_`` (None until the clustering phase starts): DEC's family."""

    def _nets(self) -> list[nn.Module]:
        return [m for m in (getattr(self, "autoencoder_", None), getattr(self, "head_", None))
                if m is not None]

    def _embed(self, run: Run, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        z = self.autoencoder_.encode(x)
        return z, (None if self.head_ is None else self.head_(z))

    def _centers(self, run: Run) -> torch.Tensor | None:
        return None if self.head_ is None else self.head_.centers.detach()


def copy_module(src: Any, attr: str = "autoencoder_") -> nn.Module:
    """A deep copy of a fitted method's module (``pretrained=`` arguments) or of a module,
    in training mode: a module its owner left in eval mode (to look at reconstructions, say)
    would otherwise train with dropout off and BatchNorm frozen. The source is not touched."""
    mod = getattr(src, attr, src)
    if not isinstance(mod, nn.Module):
        raise ValueError(f"pretrained must be a fitted clusterkit method or a torch module; "
                         f"got {type(src).__name__}")
    return copy.deepcopy(mod).train()


def start_autoencoder(method: Any, run: Run, build: Callable[[], nn.Module]) -> nn.Module:
    """The autoencoder a method trains, on the run's device: a copy of ``method.pretrained``
    (see :func:`copy_module`) when it has one, checked against the shape of X's samples,
    otherwise ``build()``, a new module."""
    shape = tuple(run.X.shape[1:])
    if method.pretrained is None:
        return build().to(run.device)
    ae = copy_module(method.pretrained).to(run.device)
    have = tuple(getattr(ae, "input_shape", ()))
    if have and math.prod(have) != math.prod(shape):
        raise ValueError(f"the pretrained autoencoder takes inputs of shape {have} "
                         f"({math.prod(have)} values) but X has samples of shape {shape} "
                         f"({math.prod(shape)} values): pretrain on data like X, or leave "
                         f"pretrained=None")
    return ae
