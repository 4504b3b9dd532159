"""t-SNE animations of the embedding across training: one call, coherent frames, fast.

``tsne_frames(history)`` turns the snapshots a run recorded into 2-D frames that move
smoothly from one epoch to the next; ``plot_frame``, ``small_multiples``, ``to_html`` and
``save_gif`` draw them (``widgets.TSNEPlayer`` plays them in JupyterLab).

Coherence strategies (``method``):

* ``"chain"`` (default): the first frame is a standard openTSNE fit (PCA initialisation,
  early exaggeration); every later frame starts from the previous frame's layout, rescaled
  to std 1e-4 as openTSNE advises for given initialisations, and runs only ``n_iter``
  (default 100) plain iterations without early exaggeration. Points keep their place unless
  the embedding moved them, so nothing jumps or mirrors, and later frames cost 7x less
  than a fresh fit.
* ``"procrustes"``: every frame is an independent, shortened openTSNE fit, rotated (with
  reflection) onto the previous frame by orthogonal Procrustes.
* ``"independent"``: independent fits, no alignment (the baseline the others beat).

Measured by ``benchmarks/bench_tsne.py`` (10 frames of 2000 points, 1 thread, CPU seconds):
chain 10.0 s, Procrustes 20.6 s, independent 21.3 s, openTSNE defaults per frame 46.7 s;
median point displacement between frames 0.17 (chain) vs 0.30 / 0.38 / 0.29 (Procrustes /
independent / openTSNE defaults), worst pair 0.35 vs 0.65 / 1.81 / 1.79 (a mirrored frame);
last-frame 5-NN accuracy 0.98 for all, 10-NN preservation 0.524 vs 0.529. The chain is the
most coherent at half the cost of the next best.

openTSNE, matplotlib and tqdm load lazily, so ``import clusterkit`` stays light.
"""

from __future__ import annotations

import io
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from clusterkit.history import History, Snapshot

METHODS = ("chain", "procrustes", "independent")
COLOR_MODES = ("true", "pred")


@dataclass
class Frames:
    """2-D t-SNE frames of one run's snapshots, ready to draw.

    coords: (F, m, 2) float32, each frame centred with unit RMS radius and aligned with the
    previous one; centers: (F, k, 2) float32 cluster centres placed in each frame (NaN rows
    where a snapshot had no centres), or None when no snapshot had any; epochs: (F,) int64;
    phases: F phase names; labels: (F, m) int64 predicted clusters; y: (m,) int64 true
    classes or None; metrics / extras: one dict per frame (extras hold (m,) arrays);
    method: the coherence strategy; lims: (xmin, xmax, ymin, ymax) shared by all frames;
    seconds: wall time of ``tsne_frames``.
    """

    coords: np.ndarray
    centers: np.ndarray | None
    epochs: np.ndarray
    labels: np.ndarray
    y: np.ndarray | None
    metrics: list[dict[str, float]]
    extras: list[dict[str, np.ndarray]]
    method: str
    lims: tuple[float, float, float, float]
    phases: list[str] = field(default_factory=list)
    seconds: float = 0.0
    _pred: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.coords)

    @property
    def color_modes(self) -> list[str]:
        """The ``color_by`` values this run supports: "true" (if y), "pred", "extra:<name>"."""
        modes = (["true"] if self.y is not None else []) + ["pred"]
        names = sorted(set().union(*(e.keys() for e in self.extras))) if self.extras else []
        return modes + [f"extra:{n}" for n in names]

    def title(self, i: int) -> str:
        """'epoch E — ACC a.aaa NMI n.nnn' (phase named when the run has several)."""
        head = f"epoch {int(self.epochs[i])}"
        if len(set(self.phases)) > 1:
            head = f"{self.phases[i]} {head}"
        parts = [f"{k.upper()} {self.metrics[i][k]:.3f}" for k in ("acc", "nmi")
                 if k in self.metrics[i]]
        return " — ".join([head, " ".join(parts)]) if parts else head


# --------------------------------------------------------------------------- validation


def _snapshots(obj: History | Sequence[Snapshot]) -> list[Snapshot]:
    snaps = getattr(obj, "snapshots", obj)
    if isinstance(snaps, (str, bytes, np.ndarray)) or not hasattr(snaps, "__iter__"):
        snaps = [None]
    snaps = list(snaps)
    if not all(hasattr(s, "embedding") and hasattr(s, "labels") for s in snaps):
        raise ValueError(f"expected a History or a sequence of Snapshots, got "
                         f"{type(obj).__name__} of {type(snaps[0]).__name__ if snaps else '?'}")
    return snaps


def _check(snaps: list[Snapshot], y: np.ndarray | None, method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if len(snaps) < 2:
        raise ValueError(f"an animation needs at least 2 snapshots, got {len(snaps)}")
    shape0 = np.shape(snaps[0].embedding)
    if len(shape0) != 2:
        raise ValueError(f"snapshot 0: embedding must be (m, d), got shape {shape0}")
    m, d = shape0
    if m < 5:
        raise ValueError(f"t-SNE needs at least 5 points per snapshot, got {m}")
    for i, s in enumerate(snaps):
        e = np.asarray(s.embedding)
        where = f"snapshot {i} (epoch {s.epoch})"
        if e.shape != shape0:
            what = "number of points m" if e.ndim == 2 and e.shape[1] == d else "shape"
            raise ValueError(
                f"{where}: embedding has shape {e.shape} but snapshot 0 has {shape0}; "
                f"all snapshots must show the same points in the same space ({what} differs)"
            )
        bad = int(np.size(e) - np.isfinite(e).sum())
        if bad:
            raise ValueError(f"{where}: embedding has {bad} NaN or inf entries; "
                             "t-SNE needs finite values (did training diverge?)")
        if np.shape(s.labels) != (m,):
            raise ValueError(f"{where}: labels must have shape ({m},), got {np.shape(s.labels)}")
        if s.centers is not None:
            c = np.asarray(s.centers)
            if c.ndim != 2 or c.shape[1] != d:
                raise ValueError(f"{where}: centers must be (k, {d}), got shape {c.shape}")
            if not np.isfinite(c).all():
                raise ValueError(f"{where}: centers have NaN or inf entries")
        for name, v in s.extras.items():
            if len(np.asarray(v)) != m:
                raise ValueError(f"{where}: extra {name!r} has length {len(v)}, expected {m}")
    if y is not None and np.shape(y) != (m,):
        raise ValueError(f"y must have shape ({m},) like the snapshots, got {np.shape(y)}")


# --------------------------------------------------------------------------- t-SNE


def _normalise(c: np.ndarray) -> np.ndarray:
    """Centre an (m, 2) layout and scale it to unit RMS radius."""
    c = c - c.mean(0)
    return c / max(float(np.sqrt((c**2).sum(1).mean())), 1e-12)


def _procrustes(ref: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation/reflection R (2, 2) taking centred ``c`` onto centred ``ref``; returns (c R, R)."""
    from scipy.linalg import orthogonal_procrustes

    r, _ = orthogonal_procrustes(c, ref)
    return c @ r, r


def _knn_mean(x: np.ndarray, emb: np.ndarray, coords: np.ndarray, k: int = 10) -> np.ndarray:
    """Fallback placement: distance-weighted mean of the 2-D coords of the k nearest
    neighbours of each row of ``x`` (q, d) among ``emb`` (m, d) -> (q, 2)."""
    d2 = ((x[:, None, :] - emb[None, :, :]) ** 2).sum(-1)
    idx = np.argsort(d2, axis=1)[:, :k]
    w = 1.0 / (np.sqrt(np.take_along_axis(d2, idx, 1)) + 1e-12)
    return (coords[idx] * w[..., None]).sum(1) / w.sum(1, keepdims=True)


def _threads(n_jobs: int) -> int:
    """Threads for openTSNE: ``n_jobs`` if positive, else the cores not already busy.

    openTSNE's OpenMP runtime (libgomp, shared with scikit-learn's, so its wait policy is
    fixed before we could set it) busy-waits between parallel regions. When another process
    holds a core, 2 threads on 2 cores run 3-4.5x slower than 1 thread (35 s vs 10 s for
    10 frames of 2000 points at load 2.3; 182 s vs 41 s at load 10), while on an idle
    machine they are 1.7x faster. So ``-1`` means ``os.cpu_count()`` minus the 1-minute load
    average, rounded, at least 1: all cores when idle, one when in doubt.
    """
    if n_jobs > 0:
        return int(n_jobs)
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except OSError:  # pragma: no cover - no load average (Windows)
        busy = 0.0
    return max(1, min(cores, int(cores - busy + 0.5)))


class _Fitter:
    """Thin wrapper around openTSNE's advanced API with settings tuned for small m."""

    def __init__(self, m: int, perplexity: float, n_jobs: int, seed: int, verbose: bool):
        import openTSNE

        self.ot = openTSNE
        self.perplexity = float(min(perplexity, max((m - 1) / 3.0, 1.0)))
        self.n_jobs, self.seed, self.verbose = n_jobs, seed, verbose
        # exact k-NN is faster than Annoy below ~10k points (0.08 s vs 0.5 s for 2000 x 10)
        self.neighbors = "exact" if m <= 10_000 else "auto"

    def embedding(self, x: np.ndarray, init: np.ndarray | None) -> Any:
        ot = self.ot
        aff = ot.affinity.PerplexityBasedNN(
            x, perplexity=self.perplexity, method=self.neighbors, n_jobs=self.n_jobs,
            random_state=self.seed, verbose=self.verbose)
        if init is None:
            with warnings.catch_warnings():  # a collapsed embedding has no principal axes
                warnings.simplefilter("ignore", RuntimeWarning)
                init = ot.initialization.pca(x, random_state=self.seed)
            if not np.isfinite(init).all() or init[:, 0].std() == 0:
                init = ot.initialization.random(len(x), 2, random_state=self.seed)
        else:
            init = ot.initialization.rescale(np.asarray(init, dtype=np.float64))
        # "auto" picks Barnes-Hut below 10k points: 3x faster than FFT at m = 2000
        return ot.TSNEEmbedding(init, aff, negative_gradient_method="auto", n_jobs=self.n_jobs,
                                random_state=self.seed, verbose=self.verbose)

    def fit(self, x: np.ndarray, init: np.ndarray | None, ee_iter: int, n_iter: int) -> Any:
        z = self.embedding(x, init)
        if ee_iter:
            z = z.optimize(ee_iter, exaggeration=12, momentum=0.8, inplace=True)
        return z.optimize(n_iter, momentum=0.8, inplace=True)

    def place(self, z: Any, x: np.ndarray, centers: np.ndarray) -> np.ndarray:
        """Centres (k, d) into the fitted embedding ``z`` with openTSNE's ``transform``."""
        try:
            out = np.asarray(z.transform(centers.astype(np.float64), n_iter=100))
            if np.isfinite(out).all():
                return out
        except Exception:  # noqa: BLE001 - any openTSNE failure falls back to the k-NN mean
            pass
        return _knn_mean(centers, x, np.asarray(z))


def tsne_frames(
    snapshots_or_history: History | Sequence[Snapshot],
    *,
    y: np.ndarray | None = None,
    method: str = "chain",
    perplexity: float = 30,
    n_jobs: int = -1,
    seed: int = 0,
    n_iter: int | None = None,
    fit_iter: tuple[int, int] | None = None,
    centers: bool = True,
    progress: bool = True,
    verbose: bool = False,
) -> Frames:
    """t-SNE every snapshot into coherent 2-D frames.

    - snapshots_or_history: a ``History`` (its ``snapshots`` and ``snapshot_y``) or a list
      of ``Snapshot`` whose (m, d) embeddings show the same m points in the same order.
    - y: (m,) true classes; default the history's ``snapshot_y`` (None for a plain list).
    - method: "chain" (default), "procrustes" or "independent" (see the module docstring).
    - perplexity: openTSNE's, clipped to (m - 1) / 3 for tiny m.
    - n_jobs: threads; -1 = the cores other processes leave idle (see ``_threads``).
    - seed: random state of the PCA initialisation.
    - n_iter: plain iterations of each chained frame after the first (default 100).
    - fit_iter: (early exaggeration, plain) iterations of a fresh fit, i.e. the chain's
      first frame (default (250, 500), openTSNE's defaults) and every frame of the other
      methods (default (125, 250)).
    - centers: place each snapshot's (k, d) cluster centres into its frame.
    - progress: a ``tqdm.auto`` bar over frames; verbose: openTSNE's own logging.

    Returns :class:`Frames`; raises ``ValueError`` on unusable input (fewer than 2
    snapshots, differing shapes, NaN/inf, y of the wrong length, unknown method).
    """
    t0 = time.perf_counter()
    snaps = _snapshots(snapshots_or_history)
    if y is None:
        y = getattr(snapshots_or_history, "snapshot_y", None)
    _check(snaps, y, method)
    m = len(snaps[0].embedding)
    n_jobs = _threads(n_jobs)
    n_iter = 100 if n_iter is None else int(n_iter)
    if fit_iter is None:
        fit_iter = (250, 500) if method == "chain" else (125, 250)
    fitter = _Fitter(m, perplexity, n_jobs, seed, verbose)

    from tqdm.auto import tqdm

    coords, placed, prev = [], [], None
    for i, s in enumerate(tqdm(snaps, desc="t-SNE frames", unit="frame", disable=not progress)):
        x = np.asarray(s.embedding, dtype=np.float64)
        if method == "chain" and i > 0:
            z = fitter.fit(x, prev, 0, n_iter)
        else:
            z = fitter.fit(x, None, *fit_iter)
        c = np.asarray(z, dtype=np.float64).copy()
        cen = None
        if centers and s.centers is not None and len(s.centers):
            cen = fitter.place(z, x, np.asarray(s.centers, dtype=np.float64))
            cen = cen + (c.mean(0) - np.asarray(z).mean(0))  # transform re-centres z
        prev = c
        # scale alike, then rotate onto the previous frame (the chain barely needs it)
        mu, rms = c.mean(0), np.sqrt(((c - c.mean(0)) ** 2).sum(1).mean())
        c = (c - mu) / rms
        r = np.eye(2)
        if coords and method != "independent":
            c, r = _procrustes(coords[-1], c)
        coords.append(c)
        placed.append(None if cen is None else (cen - mu) / rms @ r)

    coords_a = np.stack(coords).astype(np.float32)
    centers_a = None
    if any(p is not None for p in placed):
        k = max(len(p) for p in placed if p is not None)
        centers_a = np.full((len(snaps), k, 2), np.nan, dtype=np.float32)
        for i, p in enumerate(placed):
            if p is not None:
                centers_a[i, : len(p)] = p
    lo, hi = coords_a.reshape(-1, 2).min(0), coords_a.reshape(-1, 2).max(0)
    pad = 0.04 * (hi - lo).max()
    return Frames(
        coords=coords_a,
        centers=centers_a,
        epochs=np.array([s.epoch for s in snaps], dtype=np.int64),
        labels=np.stack([np.asarray(s.labels, dtype=np.int64) for s in snaps]),
        y=None if y is None else np.asarray(y, dtype=np.int64),
        metrics=[dict(s.metrics) for s in snaps],
        extras=[{k: np.asarray(v) for k, v in s.extras.items()} for s in snaps],
        method=method,
        lims=(float(lo[0] - pad), float(hi[0] + pad), float(lo[1] - pad), float(hi[1] + pad)),
        phases=[s.phase for s in snaps],
        seconds=time.perf_counter() - t0,
    )


# --------------------------------------------------------------------------- quality


def median_displacement(coords: np.ndarray) -> float:
    """Median over consecutive frame pairs of the median distance a point moves, with every
    frame centred and scaled to unit RMS radius (rotation left as is). coords: (F, m, 2)."""
    c = [_normalise(np.asarray(f, dtype=np.float64)) for f in coords]
    return float(np.median([np.median(np.linalg.norm(a - b, axis=1))
                            for a, b in zip(c[:-1], c[1:], strict=True)]))


def knn_accuracy(coords: np.ndarray, y: np.ndarray, k: int = 5) -> float:
    """Leave-one-out k-NN accuracy of classes ``y`` (m,) from 2-D ``coords`` (m, 2)."""
    from sklearn.neighbors import NearestNeighbors

    y = np.asarray(y)
    idx = NearestNeighbors(n_neighbors=k + 1).fit(coords).kneighbors(coords)[1][:, 1:]
    votes = np.apply_along_axis(np.bincount, 1, y[idx], minlength=int(y.max()) + 1)
    return float((votes.argmax(1) == y).mean())


# --------------------------------------------------------------------------- drawing


def _colors(frames: Frames, i: int, color_by: str) -> tuple[np.ndarray, Any, str | None]:
    """Per-point colour spec for frame i: (values, cmap, colorbar label or None)."""
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap

    if color_by.startswith("extra:"):
        name = color_by[6:]
        if not any(name in e for e in frames.extras):
            raise ValueError(f"no frame has the extra {name!r}; color_by can be one of "
                             f"{frames.color_modes}")
        m = frames.coords.shape[1]  # frames without it are drawn grey
        v = np.asarray(frames.extras[i].get(name, np.full(m, np.nan)), dtype=np.float64)
        return v, colormaps["viridis"].with_extremes(bad="lightgrey"), name
    if color_by == "true":
        if frames.y is None:
            raise ValueError("color_by='true' needs true labels: pass y= to tsne_frames")
        v = frames.y
    elif color_by == "pred":
        v = _matched(frames)[i]
    else:
        raise ValueError(f"unknown color_by {color_by!r}; choose one of {frames.color_modes}")
    # one palette for every frame and both modes, so a class and its cluster share a colour
    n = int(max(_matched(frames).max(), -1 if frames.y is None else frames.y.max())) + 1
    base = colormaps["tab10" if n <= 10 else "tab20"]
    cmap = ListedColormap([base(j % base.N) for j in range(max(n, 2))])
    return v.astype(np.float64), cmap.with_extremes(under="lightgrey"), None  # -1: unassigned


def _matched(frames: Frames) -> np.ndarray:
    """Predicted labels (F, m) renumbered once (Hungarian on the last frame vs y) so that a
    cluster gets its class's colour; the same renumbering for every frame keeps colours
    stable across the animation."""
    if frames._pred is not None:
        return frames._pred
    lab = frames.labels
    if frames.y is not None and lab.min() >= 0:
        from scipy.optimize import linear_sum_assignment

        k = int(max(lab.max(), frames.y.max())) + 1
        cm = np.zeros((k, k), dtype=np.int64)
        np.add.at(cm, (lab[-1], frames.y), 1)
        rows, cols = linear_sum_assignment(-cm)
        perm = np.empty(k, dtype=np.int64)
        perm[rows] = cols
        lab = perm[lab]
    frames._pred = lab
    return lab


def _vrange(frames: Frames, color_by: str) -> tuple[float, float] | None:
    if not color_by.startswith("extra:"):
        return None
    vals = np.concatenate([np.asarray(e[color_by[6:]], dtype=np.float64).ravel()
                           for e in frames.extras if color_by[6:] in e] + [np.zeros(0)])
    vals = vals[np.isfinite(vals)]
    lo, hi = (float(vals.min()), float(vals.max())) if len(vals) else (0.0, 1.0)
    return lo, hi if hi > lo else lo + 1.0


def plot_frame(
    frames: Frames,
    i: int,
    color_by: str = "true",
    ax: Axes | None = None,
    extra: str | None = None,
    *,
    colorbar: bool = True,
    s: float | None = None,
    center_size: float = 100,
) -> Axes:
    """Scatter of frame ``i`` coloured by true class ("true"), predicted cluster ("pred",
    renumbered to match the classes) or a per-point extra ("extra:<name>", with a colorbar);
    cluster centres as black crosses; ``extra`` names a boolean extra (e.g. "hard") whose
    points get a black ring. Axes limits are the same for every frame. s / center_size:
    marker areas (default s from m). Returns the Axes (a new headless Figure's when ``ax``
    is None)."""
    from matplotlib.patheffects import withStroke

    if ax is None:
        ax = _figure(_size(frames, extra_width=_cbar(color_by)), layout="constrained").add_subplot()
    vals, cmap, cbar = _colors(frames, i, color_by)
    xy = frames.coords[i]
    size = s if s is not None else float(np.clip(6000 / len(xy), 2, 25))
    if cbar is None:
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=vals, cmap=cmap, vmin=-0.5,
                        vmax=cmap.N - 0.5, s=size, linewidths=0)
    else:
        lo, hi = _vrange(frames, color_by)
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=vals, cmap=cmap, vmin=lo, vmax=hi, s=size,
                        linewidths=0)
        if colorbar:
            ax.figure.colorbar(sc, ax=ax, label=cbar, shrink=0.8)
    if extra is not None:
        mark = np.asarray(frames.extras[i].get(extra, np.zeros(len(xy))), dtype=bool)
        ax.scatter(xy[mark, 0], xy[mark, 1], s=size * 4, facecolors="none",
                   edgecolors="black", linewidths=0.6, label=extra)
    if frames.centers is not None:
        cen = frames.centers[i]
        cen = cen[np.isfinite(cen).all(1)]
        ax.scatter(cen[:, 0], cen[:, 1], marker="x", s=center_size, c="black",
                   linewidths=2.2, path_effects=[withStroke(linewidth=4, foreground="white")])
    x0, x1, y0, y1 = frames.lims
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(frames.title(i), fontsize=9)
    return ax


def _figure(figsize: tuple[float, float], dpi: float = 100, layout: str | None = None) -> Figure:
    """A headless Figure with an Agg canvas (no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _size(frames: Frames, width: float = 4.5, extra_width: float = 0.0) -> tuple[float, float]:
    """A figure size whose plot area has the frames' aspect ratio (plus a title line)."""
    x0, x1, y0, y1 = frames.lims
    return width + extra_width, float(np.clip(width * (y1 - y0) / (x1 - x0), 2.5, 7.0)) + 0.35


def _pick(frames: Frames, epochs: Sequence[int] | None, index: Sequence[int] | None,
          most: int = 6) -> list[int]:
    if index is not None:
        return [int(j) % len(frames) for j in index]
    if epochs is None:
        if len(frames) <= most:
            return list(range(len(frames)))
        return sorted(set(np.linspace(0, len(frames) - 1, most).round().astype(int).tolist()))
    out = []
    for e in epochs:  # the latest frame with the nearest epoch (the clustering phase)
        gap = np.abs(frames.epochs - e)
        out.append(int(np.flatnonzero(gap == gap.min())[-1]))
    return out


def small_multiples(
    frames: Frames,
    epochs: Sequence[int] | None = None,
    color_by: str = "true",
    ncols: int = 3,
    *,
    index: Sequence[int] | None = None,
    extra: str | None = None,
    panel: float = 3.0,
) -> Figure:
    """Panels of chosen frames side by side (like DCCF Fig. 6 at epochs 0, 5, 10, 25, 50, 100).

    epochs: epoch numbers to show (nearest frame each; default: up to 6 evenly spaced
    frames); index: frame indices instead. Returns a headless Figure with one Axes per
    panel (plus one per colorbar when colouring by an extra).
    """
    idx = _pick(frames, epochs, index)
    ncols = max(1, min(ncols, len(idx)))
    nrows = -(-len(idx) // ncols)
    fig = _figure((panel * ncols, panel * nrows + 0.3), layout="constrained")
    for n, i in enumerate(idx):
        plot_frame(frames, i, color_by, fig.add_subplot(nrows, ncols, n + 1), extra,
                   colorbar=False, center_size=50)
    if color_by.startswith("extra:"):
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        lo, hi = _vrange(frames, color_by)
        fig.colorbar(ScalarMappable(Normalize(lo, hi), "viridis"), ax=fig.axes,
                     label=color_by[6:], shrink=0.8)
    fig.suptitle(f"t-SNE across training ({frames.method})", fontsize=10)
    return fig


def render_png(frames: Frames, i: int, color_by: str = "true", *, extra: str | None = None,
               figsize: tuple[float, float] | None = None, dpi: float = 80) -> bytes:
    """Frame ``i`` as PNG bytes (what ``widgets.TSNEPlayer`` swaps in while playing)."""
    fig = _figure(figsize or _size(frames, extra_width=_cbar(color_by)), dpi, "constrained")
    plot_frame(frames, i, color_by, fig.add_subplot(), extra)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _cbar(color_by: str) -> float:
    return 1.0 if color_by.startswith("extra:") else 0.0


def _animation(frames: Frames, color_by: str, interval: int, extra: str | None,
               figsize: tuple[float, float] | None, dpi: float) -> Any:
    from matplotlib.animation import FuncAnimation

    fig = _figure(figsize or _size(frames, extra_width=_cbar(color_by)), dpi, "constrained")
    ax = fig.add_subplot()
    plot_frame(frames, 0, color_by, ax, extra)  # draws the colorbar once

    def draw(i: int) -> list:
        ax.clear()
        plot_frame(frames, i, color_by, ax, extra, colorbar=False)
        return []

    return FuncAnimation(fig, draw, frames=len(frames), interval=interval, blit=False,
                         repeat=True)


def to_html(frames: Frames, color_by: str = "true", interval: int = 400, *,
            extra: str | None = None, figsize: tuple[float, float] | None = None,
            dpi: float = 72, embed_limit_mb: float = 40.0) -> str:
    """A self-contained HTML/JS player (matplotlib's ``to_jshtml``) of all frames, for
    ``IPython.display.HTML``; ~55 kB per frame of 2000 points at the default size."""
    from matplotlib import rc_context

    anim = _animation(frames, color_by, interval, extra, figsize, dpi)
    with rc_context({"animation.embed_limit": embed_limit_mb}):
        return anim.to_jshtml(default_mode="loop")


def save_gif(frames: Frames, path: str | os.PathLike, color_by: str = "true", fps: float = 2,
             *, extra: str | None = None, figsize: tuple[float, float] | None = None,
             dpi: float = 80) -> str:
    """Write an animated GIF with one image per frame (Pillow, no ffmpeg); returns the path."""
    from matplotlib.animation import PillowWriter

    anim = _animation(frames, color_by, int(1000 / fps), extra, figsize, dpi)
    anim.save(os.fspath(path), writer=PillowWriter(fps=fps), dpi=dpi)
    return os.fspath(path)


__all__ = ["Frames", "tsne_frames", "plot_frame", "small_multiples", "to_html", "save_gif",
           "render_png", "median_displacement", "knn_accuracy", "METHODS"]
