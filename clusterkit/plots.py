"""Figures the notebooks share: image grids, clusters as images, curves over epochs, sizes,
where each class went.

Every function returns a ``matplotlib.figure.Figure`` built without pyplot's global state
(a notebook displays it; a script saves it with ``fig.savefig``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from clusterkit import metrics
from clusterkit.history import History


def _as_images(X: np.ndarray, image_shape: tuple[int, ...] | None) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim == 4:
        return X[:, 0] if X.shape[1] == 1 else X.transpose(0, 2, 3, 1)
    if image_shape is not None:
        c, h, w = image_shape
        return X.reshape(len(X), h, w) if c == 1 else X.reshape(len(X), c, h, w).transpose(0, 2,
                                                                                          3, 1)
    side = int(round(np.sqrt(X.shape[1])))
    if side * side != X.shape[1]:
        raise ValueError("vectors that are not square images need image_shape=(c, h, w)")
    return X.reshape(len(X), side, side)


def image_grid(X: np.ndarray, labels: np.ndarray, *, per_row: int = 10, seed: int = 0,
               image_shape: tuple[int, ...] | None = None, title: str | None = None,
               row_names: Sequence[str] | None = None) -> Figure:
    """One row per label value, ``per_row`` random images of it (n, ...) -> Figure.

    With predicted clusters as ``labels`` this shows what each cluster holds.
    """
    imgs = _as_images(X, image_shape)
    labels = np.asarray(labels)
    groups = np.unique(labels)
    rng = np.random.default_rng(seed)
    fig = Figure(figsize=(per_row * 0.6 + 0.8, len(groups) * 0.6 + 0.4))
    axes = fig.subplots(len(groups), per_row, squeeze=False)
    for r, g in enumerate(groups):
        members = np.flatnonzero(labels == g)
        pick = rng.choice(members, size=min(per_row, len(members)), replace=False)
        for c in range(per_row):
            ax = axes[r, c]
            ax.set_axis_off()
            if c < len(pick):
                ax.imshow(imgs[pick[c]], cmap="gray_r", interpolation="nearest")
        name = row_names[r] if row_names is not None else f"{g}  (n={len(members)})"
        axes[r, 0].text(-0.15, 0.5, name, transform=axes[r, 0].transAxes, ha="right",
                        va="center", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.subplots_adjust(left=0.12, right=0.99, top=0.93 if title else 0.99, bottom=0.01,
                        wspace=0.05, hspace=0.05)
    return fig


#: panel titles of epoch-level keys whose upper-cased name would not read well
_TITLES = {"mean_stability": "mean stability (all points)", "t": "threshold t"}


def curves(histories: Mapping[str, History], keys: Sequence[str] = ("acc", "nmi"),
           phase: str | None = "cluster") -> Figure:
    """Epoch-level metrics of one or more runs, one panel per key."""
    fig = Figure(figsize=(4.2 * len(keys), 3.2))
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    for ax, key in zip(axes, keys, strict=True):
        for name, h in histories.items():
            e, v = h.curve(key, phase)
            if len(e):
                ax.plot(e - e[0] + 1, v, label=name, marker="." if len(e) < 30 else None)
        ax.set_xlabel("epoch")
        ax.set_title(_TITLES.get(key, key.upper()))
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    return fig


def loss_curves(history: History, terms: Sequence[str] | None = None) -> Figure:
    """Per-step loss terms (log scale), with the run's knob changes marked."""
    fig = Figure(figsize=(7, 3.2))
    ax = fig.subplots()
    steps = list(history.steps)
    names = terms or sorted({k for r in steps for k in r} - {"step", "epoch", "phase"})
    for k in names:
        s, v = history.loss_curve(k)
        if len(s):
            ax.plot(s, np.maximum(v, 1e-12), label=k, lw=1)
    for ch in history.changes:
        ax.axvline(ch["step"], color="k", ls=":", lw=0.8)
        ax.text(ch["step"], 1, f" {ch['knob']}", transform=ax.get_xaxis_transform(), fontsize=7,
                va="top", rotation=90)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def cluster_sizes(results: Mapping[str, np.ndarray], n_clusters: int | None = None) -> Figure:
    """Bar charts of cluster sizes, largest first, one group of bars per method."""
    fig = Figure(figsize=(7, 3))
    ax = fig.subplots()
    k = n_clusters or max(int(np.max(v)) + 1 for v in results.values())
    width = 0.8 / len(results)
    for i, (name, labels) in enumerate(results.items()):
        sizes = np.sort(np.bincount(np.asarray(labels), minlength=k))[::-1]
        ax.bar(np.arange(k) + i * width, sizes, width, label=name)
    n = len(next(iter(results.values())))
    ax.axhline(n / k, color="k", ls="--", lw=0.8, label="balanced")
    ax.set_xlabel("cluster (largest first)")
    ax.set_ylabel("size")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def size_curves(histories: Mapping[str, History], phase: str | None = "cluster") -> Figure:
    """Cluster sizes over training, one panel per run: at each evaluated epoch the sizes are
    sorted, and line r follows the r-th largest cluster. Clusters that die show as the
    lowest lines falling to 0; the dashed line is the balanced size n / k."""
    fig = Figure(figsize=(4.2 * len(histories), 3.2))
    axes = fig.subplots(1, len(histories), squeeze=False, sharey=True)[0]
    for ax, (name, h) in zip(axes, histories.items(), strict=True):
        rows = [r for r in list(h.epochs)
                if "sizes" in r and (phase is None or r["phase"] == phase)]
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if not rows:
            ax.text(0.5, 0.5, "no cluster sizes recorded", ha="center", transform=ax.transAxes)
            continue
        e = np.array([r["epoch"] for r in rows])
        sizes = np.sort(np.array([r["sizes"] for r in rows]), axis=1)[:, ::-1]  # (epochs, k)
        k = sizes.shape[1]
        colors = [(r / max(1, k - 1), 0.3, 1 - r / max(1, k - 1)) for r in range(k)]
        for r in range(k):
            ax.plot(e - e[0] + 1, sizes[:, r], color=colors[r], lw=1.2,
                    label="largest" if r == 0 else "smallest" if r == k - 1 else None)
        ax.axhline(sizes[0].sum() / k, color="k", ls="--", lw=0.8)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("cluster size (sorted)")
    fig.tight_layout()
    return fig


def confusion(y_true: np.ndarray, preds: Mapping[str, np.ndarray], *, match: bool = True,
              annotate: bool | None = None) -> Figure:
    """Where each class's samples went: one heatmap per run, rows the true classes, columns
    the predicted clusters, each row's counts coloured as a share of the class.

    y_true: (n,) int; preds: {name: (n,) int predicted clusters}. ``match=True`` orders the
    columns by the Hungarian matching that :func:`clusterkit.metrics.acc` uses, so the
    diagonal holds what ACC counts and a merge shows as one column lit in two rows; clusters
    left without a class come last. ``match=False`` keeps cluster ``j`` in column ``j``, for
    methods whose cluster ``j`` *is* class ``j`` (ClusterNet's labeled centres): the diagonal
    is then the share classified right. The title gives the diagonal's share. Counts are
    written in the cells when there are at most 12 columns (``annotate`` overrides).
    """
    y = np.asarray(y_true)
    fig = Figure(figsize=(3.9 * len(preds) + 0.4, 3.7))
    axes = fig.subplots(1, len(preds), squeeze=False)[0]
    for ax, (name, pred) in zip(axes, preds.items(), strict=True):
        m, rows, cols = _confusion_matrix(y, np.asarray(pred), match)
        share = m / np.maximum(m.sum(1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1, aspect="auto")
        # matched: the pairs sit on the diagonal; else column of value c is class c's own
        diag = int(np.trace(m)) if match else sum(int(m[r, cols.index(c)])
                                                  for r, c in enumerate(rows))
        ax.set_title(f"{name}: {diag / max(1, int(m.sum())):.3f} on the diagonal", fontsize=9)
        ax.set_xticks(range(len(cols)), [str(c) for c in cols], fontsize=7)
        ax.set_yticks(range(len(rows)), [str(c) for c in rows], fontsize=7)
        ax.set_xlabel("predicted cluster" + (" (matched order)" if match else ""))
        if annotate if annotate is not None else len(cols) <= 12:
            for r, c in zip(*np.nonzero(m), strict=True):
                ax.text(c, r, str(m[r, c]), ha="center", va="center", fontsize=6,
                        color="white" if share[r, c] > 0.5 else "black")
    axes[0].set_ylabel("true class")
    fig.tight_layout()
    return fig


def _confusion_matrix(y: np.ndarray, pred: np.ndarray,
                      match: bool) -> tuple[np.ndarray, list[int], list[int]]:
    """(classes, clusters) counts with the row and column labels that :func:`confusion`
    draws; with ``match`` the matched pairs come first, on the diagonal."""
    cm, clusters, classes = metrics.contingency(y, pred)  # (k, c); validates both
    clusters, classes = [int(c) for c in clusters], [int(c) for c in classes]
    if match:
        to_class = metrics.match_clusters(y, pred, fill_unmatched=False)
        pairs = sorted((classes.index(v), clusters.index(c)) for c, v in to_class.items())
        matched_rows = [r for r, _ in pairs]
        row_order = matched_rows + [r for r in range(len(classes)) if r not in matched_rows]
        col_order = [a for _, a in pairs] + [a for a in range(len(clusters))
                                             if clusters[a] not in to_class]
        return (cm[col_order][:, row_order].T, [classes[r] for r in row_order],
                [clusters[a] for a in col_order])
    cols = sorted(set(classes) | set(clusters))
    m = np.zeros((len(classes), len(cols)), dtype=np.int64)
    m[:, [cols.index(c) for c in clusters]] = cm.T
    return m, classes, cols


def metrics_table(rows: Mapping[str, Mapping[str, float]],
                  keys: Sequence[str] = ("acc", "nmi", "ari", "ne")) -> str:
    """Plain-text table of results, one row per method; columns at least two spaces apart
    however long a method's name or a key is."""
    name_w = max([22, *(len(str(n)) + 2 for n in rows)])
    widths = [max(8, len(k) + 2) for k in keys]
    cols = list(zip(keys, widths, strict=True))
    head = f"{'method':<{name_w}}" + "".join(f"{k.upper():>{w}}" for k, w in cols)
    lines = [head, "-" * len(head)]
    for name, r in rows.items():
        lines.append(f"{str(name):<{name_w}}" + "".join(
            f"{r[k]:{w}.3f}" if isinstance(r.get(k), (int, float)) else " " * w
            for k, w in cols))
    return "\n".join(lines)
