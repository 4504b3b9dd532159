"""t-SNE animation frames: coherence and quality measured, centres placed, bad input refused,
rendering and the ipywidgets player smoke-tested. Small m and few iterations keep it fast."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import ortho_group

from clusterkit.history import History, Snapshot
from clusterkit.tsne import (
    Frames,
    knn_accuracy,
    median_displacement,
    plot_frame,
    render_png,
    save_gif,
    small_multiples,
    to_html,
    tsne_frames,
)

ROOT = Path(__file__).resolve().parents[1]
M, K, D = 300, 4, 8
FAST = dict(n_iter=60, fit_iter=(100, 150), n_jobs=1, progress=False)


def _blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(M, D) well-separated Gaussian blobs, their (M,) classes and (K, D) means."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 6, (K, D))
    y = np.repeat(np.arange(K), M // K)
    return means[y] + rng.normal(0, 1, (M, D)), y, means


def _snapshots(n: int = 6, seed: int = 0) -> tuple[list[Snapshot], np.ndarray]:
    """Training simulated: noise that turns into blobs over n epochs."""
    x, y, means = _blobs(seed)
    rng = np.random.default_rng(seed + 1)
    noise = rng.normal(0, 6, (M, D))
    snaps = []
    for t in range(n):
        a = t / (n - 1)
        e = ((1 - a) * noise + a * x).astype(np.float32)
        centers = np.stack([e[y == j].mean(0) for j in range(K)]).astype(np.float32)
        wrong = rng.random(M) < 0.1 + 0.6 * (1 - a)  # predicted clusters: errors shrink
        labels = np.where(wrong, rng.integers(0, K, M), y)
        snaps.append(Snapshot(
            epoch=5 * t, phase="cluster", step=10 * t, embedding=e, labels=labels,
            centers=centers, metrics={"acc": 0.25 + 0.1 * t, "nmi": 0.1 * t},
            extras={"stability": np.linspace(0, 1, M).astype(np.float32),
                    "hard": np.arange(M) % 7 == 0}))
    return snaps, y


@pytest.fixture(scope="module")
def run() -> tuple[list[Snapshot], np.ndarray]:
    return _snapshots()


@pytest.fixture(scope="module")
def frames(run) -> Frames:
    snaps, y = run
    return tsne_frames(snaps, y=y, **FAST)


# --------------------------------------------------------------------------- frames


def test_frames_shapes_and_fixed_axes(frames, run):
    snaps, y = run
    f = len(snaps)
    assert frames.coords.shape == (f, M, 2) and frames.coords.dtype == np.float32
    assert frames.centers.shape == (f, K, 2) and frames.centers.dtype == np.float32
    assert frames.labels.shape == (f, M) and list(frames.epochs) == [0, 5, 10, 15, 20, 25]
    assert np.array_equal(frames.y, y) and len(frames.metrics) == len(frames.extras) == f
    x0, x1, y0, y1 = frames.lims
    assert (frames.coords[..., 0] >= x0).all() and (frames.coords[..., 0] <= x1).all()
    assert (frames.coords[..., 1] >= y0).all() and (frames.coords[..., 1] <= y1).all()
    assert frames.method == "chain" and frames.title(1) == "epoch 5 — ACC 0.350 NMI 0.100"


def test_history_input_takes_snapshot_y(run):
    snaps, y = run
    h = History(snapshots=snaps[:2], snapshot_y=y)
    fr = tsne_frames(h, **FAST, centers=False)
    assert np.array_equal(fr.y, y) and fr.centers is None and len(fr) == 2


def test_chain_never_mirrors_a_rotated_embedding():
    """Isometric copies of one embedding should give (nearly) the same frame each time:
    the chain keeps it; independent fits flip and rotate with the PCA initialisation."""
    x, y, _ = _blobs()
    snaps = [Snapshot(epoch=i, phase="c", step=i, labels=y,
                      embedding=(x @ ortho_group.rvs(D, random_state=i)).astype(np.float32))
             for i in range(4)]
    chain = median_displacement(tsne_frames(snaps, **FAST).coords)
    indep = median_displacement(tsne_frames(snaps, method="independent", **FAST).coords)
    proc = median_displacement(tsne_frames(snaps, method="procrustes", **FAST).coords)
    assert chain < 0.1, chain
    assert indep > 0.5, indep
    assert chain < proc, (chain, proc)


def test_chain_moves_points_less_than_independent_fits(frames, run):
    snaps, y = run
    indep = tsne_frames(snaps, y=y, method="independent", **FAST)
    proc = tsne_frames(snaps, y=y, method="procrustes", **FAST)
    d_chain, d_indep = median_displacement(frames.coords), median_displacement(indep.coords)
    # seeds 0-4 measured: chain / independent = 0.36-0.57, and chain < procrustes each time
    assert d_chain < 0.65 * d_indep, (d_chain, d_indep)
    assert d_chain < median_displacement(proc.coords)


def test_knn_accuracy_high_on_clusters_and_chance_on_noise(frames):
    assert knn_accuracy(frames.coords[-1], frames.y) > 0.95
    rng = np.random.default_rng(3)
    snaps = [Snapshot(epoch=i, phase="c", step=i, labels=np.zeros(M, dtype=np.int64),
                      embedding=rng.normal(size=(M, D)).astype(np.float32)) for i in range(2)]
    y = rng.integers(0, K, M)
    fr = tsne_frames(snaps, y=y, **FAST)
    assert knn_accuracy(fr.coords[-1], y) < 0.4  # chance is 0.25


def test_centres_land_in_their_clusters(frames):
    xy, cen, y = frames.coords[-1], frames.centers[-1], frames.y
    med = np.stack([np.median(xy[y == j], 0) for j in range(K)])
    spread = np.array([np.sqrt(((xy[y == j] - med[j]) ** 2).sum(1).mean()) for j in range(K)])
    dist = np.linalg.norm(cen[:, None] - med[None], axis=2)
    assert (dist.argmin(1) == np.arange(K)).all()
    assert (dist[np.arange(K), np.arange(K)] < spread).all()


def test_knn_mean_fallback_places_centres_too():
    from clusterkit.tsne import _knn_mean

    x, y, means = _blobs()
    xy = np.random.default_rng(0).normal(0, 0.1, (M, 2)) + np.array([[0, 0], [5, 0], [0, 5],
                                                                     [5, 5]])[y]
    out = _knn_mean(means, x, xy)
    assert np.allclose(out, [[0, 0], [5, 0], [0, 5], [5, 5]], atol=0.3)


def test_missing_centres_are_nan_rows(run):
    snaps, y = run
    snaps = [snaps[0].__class__(**{**vars(snaps[0]), "centers": None}), snaps[1]]
    fr = tsne_frames(snaps, y=y, **FAST)
    assert np.isnan(fr.centers[0]).all() and np.isfinite(fr.centers[1]).all()


def test_threads_default_to_idle_cores():
    from clusterkit.tsne import _threads

    assert _threads(3) == 3 and 1 <= _threads(-1) <= (os.cpu_count() or 1)


def test_colours_are_stable_across_frames(frames):
    """A frame lacking the top cluster id keeps the same palette as the others."""
    from clusterkit.tsne import _colors

    fr = Frames(**{**{k: getattr(frames, k) for k in ("coords", "centers", "epochs", "y",
                                                      "metrics", "extras", "method", "lims")},
                   "labels": np.where(frames.labels == K - 1, 0, frames.labels)})
    fr.labels[-1] = frames.labels[-1]
    assert _colors(fr, 0, "pred")[1].N == _colors(fr, len(fr) - 1, "pred")[1].N == K


def test_collapsed_embedding_still_gives_finite_frames():
    snaps = [_snap(), _snap()]
    snaps[0].embedding[:] = 1.0  # e.g. an encoder that collapsed at epoch 0
    fr = tsne_frames(snaps, **FAST)
    assert np.isfinite(fr.coords).all()


# --------------------------------------------------------------------------- bad input


def _snap(m: int = M, d: int = D, fill: float | None = None) -> Snapshot:
    e = np.random.default_rng(0).normal(size=(m, d)).astype(np.float32)
    if fill is not None:
        e[3, 1] = fill
    return Snapshot(epoch=0, phase="c", step=0, embedding=e, labels=np.zeros(m, np.int64))


@pytest.mark.parametrize("snaps, kw, match", [
    ([_snap()], {}, "at least 2 snapshots"),
    ([_snap(), _snap(m=M - 1)], {}, "number of points m"),
    ([_snap(), _snap(d=D + 1)], {}, r"shape \(300, 9\)"),
    ([_snap(), _snap(fill=np.nan)], {}, "NaN or inf"),
    ([_snap(), _snap(fill=np.inf)], {}, "NaN or inf"),
    ([_snap(), _snap()], {"y": np.zeros(M + 1)}, r"y must have shape \(300,\)"),
    ([_snap(), _snap()], {"method": "umap"}, "unknown method 'umap'"),
    ("not snapshots", {}, "History or a sequence of Snapshots"),
    ([np.zeros((M, D))] * 2, {}, "History or a sequence of Snapshots"),
])
def test_bad_input_is_refused_with_a_clear_message(snaps, kw, match):
    with pytest.raises(ValueError, match=match):
        tsne_frames(snaps, **kw, progress=False)


# --------------------------------------------------------------------------- drawing


def test_plot_frame_titles_and_crosses(frames):
    ax = plot_frame(frames, 2, "pred", extra="hard")
    assert ax.get_title().startswith("epoch 10 — ACC 0.450")
    assert (ax.get_xlim(), ax.get_ylim()) == (frames.lims[:2], frames.lims[2:])
    assert len(ax.collections) == 3  # points, rings of hard samples, centres
    with pytest.raises(ValueError, match="unknown color_by"):
        plot_frame(frames, 0, "size")
    with pytest.raises(ValueError, match="no frame has the extra 'size'"):
        plot_frame(frames, 0, "extra:size")


def test_small_multiples_has_one_axes_per_panel(frames):
    fig = small_multiples(frames, epochs=[0, 5, 15], ncols=2)
    assert len(fig.axes) == 3
    assert [a.get_title().split(" —")[0] for a in fig.axes] == ["epoch 0", "epoch 5", "epoch 15"]
    fig = small_multiples(frames, color_by="extra:stability")
    assert len(fig.axes) == len(frames) + 1  # + the shared colorbar


def test_save_gif_writes_one_image_per_frame(frames, tmp_path):
    from PIL import Image

    path = save_gif(frames, tmp_path / "run.gif", fps=4, dpi=40)
    with Image.open(path) as im:
        assert im.format == "GIF" and im.n_frames == len(frames)


def test_to_html_is_a_js_player(frames):
    html = to_html(frames, color_by="pred", dpi=40)
    assert "<script" in html and 100 < len(html) < 2_000_000


def test_render_png_is_a_png(frames):
    assert render_png(frames, 0, "extra:stability", dpi=40)[:8] == b"\x89PNG\r\n\x1a\n"


def test_import_tsne_stays_light():
    code = ("import sys, clusterkit.tsne;"
            "print(','.join(m for m in ('ipywidgets', 'openTSNE', 'matplotlib', 'tqdm')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip() == ""


# --------------------------------------------------------------------------- player


def test_player_slider_and_colour_toggle_change_the_image(frames):
    from widgets import TSNEPlayer

    p = TSNEPlayer(frames, dpi=40)
    first = p.image.value
    assert first[:4] == b"\x89PNG" and p.slider.max == len(frames) - 1
    p.slider.value = 3
    assert p.image.value != first and p.caption.value.startswith("4/6")
    p.color_by.value = "pred"
    assert p.image.value == p.png(3, "pred") != p.png(3, "true")
    p.show(0)
    assert p.slider.value == 0 and p.image.value == p.png(0, "pred")
    p.show(-1)
    assert p.slider.value == len(frames) - 1
    assert [o[1] for o in p.color_by.options] == ["true", "pred", "extra:hard",
                                                  "extra:stability"]


def test_player_renders_each_frame_once(frames, monkeypatch):
    import widgets.player as player

    calls = []
    real = player.render_png
    monkeypatch.setattr(player, "render_png", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    p = player.TSNEPlayer(frames, dpi=30)
    p.prerender()
    for i in [1, 2, 1, 0, 3]:
        p.show(i)
    assert sorted(calls) == list(range(len(frames)))
    assert "VBox" in type(p.widget).__name__
    p._ipython_display_()  # outside a notebook IPython prints the repr
