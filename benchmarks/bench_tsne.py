"""Time and coherence of ``clusterkit.tsne.tsne_frames`` against fitting every frame afresh.

A realistic snapshot sequence: scikit-learn's digits (1797, upsampled with jitter to 2000
points), "trained" over 10 frames by interpolating each point from a random 10-d projection
to a good embedding (LDA + 1 PCA axis) with noise; predicted clusters and centres by k-means
on each frame. Every method runs in the same process on the same snapshots:

* naive: ``openTSNE.TSNE(n_jobs=1, random_state=seed).fit`` on each frame (openTSNE's
  defaults otherwise: 250 early-exaggeration + 500 iterations, Annoy neighbours);
* independent / procrustes / chain: ``tsne_frames(method=...)``.

Columns: seconds (wall and CPU; CPU is what contention does not inflate), speed-up over
naive (wall), median / mean / worst over consecutive frame pairs of the median distance a
point moves with frames scaled to unit RMS radius (a mirrored frame shows as ~1.4),
leave-one-out 5-NN accuracy of the true classes in the last frame, 10-NN preservation
(share of each point's 10 nearest neighbours in the embedding kept in 2-D, averaged over
frames), and centre error (distance from each cluster centre to its cluster's median in
2-D, in units of the cluster's RMS radius; median).

    python benchmarks/bench_tsne.py [--quick] [--points 2000] [--frames 10] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clusterkit.history import Snapshot  # noqa: E402
from clusterkit.tsne import (  # noqa: E402
    _threads,
    knn_accuracy,
    median_displacement,
    save_gif,
    small_multiples,
    tsne_frames,
)


def _acc(y: np.ndarray, pred: np.ndarray) -> float:
    from scipy.optimize import linear_sum_assignment

    k = int(max(y.max(), pred.max())) + 1
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (pred, y), 1)
    r, c = linear_sum_assignment(-cm)
    return float(cm[r, c].sum() / len(y))


def make_snapshots(m: int = 2000, n_frames: int = 10, d: int = 10,
                   seed: int = 0) -> tuple[list[Snapshot], np.ndarray]:
    """A simulated training run on digits: (n_frames snapshots of (m, d), (m,) classes)."""
    from sklearn.cluster import KMeans
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.metrics import normalized_mutual_info_score

    rng = np.random.default_rng(seed)
    x, y = load_digits(return_X_y=True)
    idx = rng.choice(len(x), m, replace=m > len(x))
    x = x[idx] + (rng.normal(0, 0.5, (m, x.shape[1])) if m > len(x) else 0.0)
    y = y[idx].astype(np.int64)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    start = x @ rng.normal(0, 1 / np.sqrt(x.shape[1]), (x.shape[1], d))
    good = np.hstack([LinearDiscriminantAnalysis(n_components=9).fit_transform(x, y),
                      0.3 * PCA(d - 9, random_state=seed).fit_transform(x)])
    start, good = start / start.std(), good / good.std()
    snaps = []
    for t in range(n_frames):
        a = (t / (n_frames - 1)) ** 0.7
        e = ((1 - a) * start + a * good + rng.normal(0, 0.05, (m, d))).astype(np.float32)
        km = KMeans(10, n_init=1, random_state=seed).fit(e)
        pred = km.labels_.astype(np.int64)
        snaps.append(Snapshot(
            epoch=[0, 5, 10, 15, 20, 25, 50, 75, 100, 150][t] if n_frames == 10 else 5 * t,
            phase="cluster", step=t, embedding=e, labels=pred,
            centers=km.cluster_centers_.astype(np.float32),
            metrics={"acc": _acc(y, pred), "nmi": normalized_mutual_info_score(y, pred)}))
    return snaps, y


def preservation(snaps: list[Snapshot], coords: np.ndarray, k: int = 10) -> float:
    """Mean share of each point's k nearest neighbours in the embedding kept in 2-D."""
    from sklearn.neighbors import NearestNeighbors

    out = []
    for s, c in zip(snaps, coords, strict=True):
        a = NearestNeighbors(n_neighbors=k + 1).fit(s.embedding).kneighbors()[1][:, :k]
        b = NearestNeighbors(n_neighbors=k + 1).fit(c).kneighbors()[1][:, :k]
        out.append(np.mean([len(np.intersect1d(p, q)) / k for p, q in zip(a, b, strict=True)]))
    return float(np.mean(out))


def centre_error(frames, snaps: list[Snapshot]) -> float:
    """Median over frames and clusters of |centre - cluster median| / cluster RMS radius."""
    errs = []
    for i, s in enumerate(snaps):
        xy = frames.coords[i]
        for j, c in enumerate(frames.centers[i]):
            pts = xy[s.labels == j]
            if len(pts) > 1:
                med = np.median(pts, 0)
                errs.append(np.linalg.norm(c - med) / np.sqrt(((pts - med) ** 2).sum(1).mean()))
    return float(np.median(errs))


def pair_displacements(coords: np.ndarray) -> np.ndarray:
    return np.array([median_displacement(coords[i:i + 2]) for i in range(len(coords) - 1)])


def naive(snaps: list[Snapshot], n_jobs: int, seed: int) -> np.ndarray:
    """Every frame fitted afresh with openTSNE's defaults (n_jobs=1 unless told)."""
    import openTSNE

    return np.stack([np.asarray(openTSNE.TSNE(n_jobs=n_jobs, random_state=seed).fit(
        s.embedding.astype(np.float64))) for s in snaps]).astype(np.float32)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="800 points x 5 frames")
    ap.add_argument("--points", type=int, default=None)
    ap.add_argument("--frames", type=int, default=None)
    ap.add_argument("--n-jobs", type=int, default=-1,
                    help="threads of tsne_frames (-1: the idle cores)")
    ap.add_argument("--naive-jobs", type=int, default=1, help="threads of the naive fits "
                    "(openTSNE's default: 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="write panels (PNG) and a GIF here")
    args = ap.parse_args(argv)
    m = args.points or (800 if args.quick else 2000)
    n_frames = args.frames or (5 if args.quick else 10)

    snaps, y = make_snapshots(m, n_frames, seed=args.seed)
    print(f"{n_frames} frames x {m} points x {snaps[0].embedding.shape[1]}-d; threads: "
          f"naive {args.naive_jobs}, tsne_frames {_threads(args.n_jobs)}; "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")

    rows = []

    def timed(name, fn):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        rows.append((name, time.perf_counter() - w, time.process_time() - c, out))
        print(f"  {name}: {rows[-1][1]:.1f} s", flush=True)

    if not args.skip_naive:
        timed("naive", lambda: naive(snaps, args.naive_jobs, args.seed))
    for method in ("independent", "procrustes", "chain"):
        timed(method, lambda method=method: tsne_frames(
            snaps, y=y, method=method, n_jobs=args.n_jobs, seed=args.seed, progress=False))

    base = rows[0][1] if not args.skip_naive else None
    head = (f"{'method':12s} {'wall s':>7s} {'cpu s':>7s} {'speedup':>7s} {'disp med':>8s} "
            f"{'disp mean':>9s} {'disp max':>8s} {'5NN acc':>7s} {'10NN kept':>9s} "
            f"{'centre err':>10s}")
    print("\n" + head + "\n" + "-" * len(head))
    for name, wall, cpu, out in rows:
        coords = out if isinstance(out, np.ndarray) else out.coords
        d = pair_displacements(coords)
        cen = "" if isinstance(out, np.ndarray) else f"{centre_error(out, snaps):10.2f}"
        speed = f"{base / wall:6.1f}x" if base else "      -"
        print(f"{name:12s} {wall:7.1f} {cpu:7.1f} {speed:>7s} {np.median(d):8.3f} "
              f"{d.mean():9.3f} {d.max():8.3f} {knn_accuracy(coords[-1], y):7.3f} "
              f"{preservation(snaps, coords):9.3f} {cen}")
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end (timings inflated when > cores); "
          f"target: chain <= 30 s for 10 x 2000 on an idle 2-core machine")

    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        for name, _, _, out in rows:
            if not isinstance(out, np.ndarray):
                small_multiples(out, ncols=5, index=range(0, len(out), max(1, len(out) // 5)),
                                color_by="true").savefig(args.out / f"tsne_{name}.png", dpi=80)
        save_gif(rows[-1][3], args.out / "tsne_chain.gif", fps=2)
        print(f"wrote panels and tsne_chain.gif to {args.out}")


if __name__ == "__main__":
    main()
