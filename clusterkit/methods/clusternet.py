"""ClusterNet (Shukla, Cheema & Anand, 2018; seed 001): semi-supervised clustering from a few
labeled points per class.

A convolutional autoencoder (§5.1) is pretrained on reconstruction. The centres start at the
mean embedding of each class's labeled points (eq 9, constrained k-means). Then, epoch after
epoch, unlabeled points take their nearest centre (eq 10) while labeled points keep their
class (eq 11); the network learns from

    L = L_pair^l + L_cluster^l + λ (L_pair^u + L_cluster^u) + L_recon          (eq 3)

with a pairwise symmetric KL for similar pairs and a KL hinge with margin ``m`` for
dissimilar pairs (eqs 6-7) over the assignment probabilities softmax(-d²) (eq 16), the
k-means loss (eqs 4-5) and the reconstruction (eq 8); λ is annealed from 0 to 1 between
epochs T1 and T2 (eq 17). The centres follow the embeddings by per-point steps
``mu_k -= (mu_k - z) / N_k`` (eqs 12-13). A new point goes to its nearest centre: centre k
*is* class k, so ClusterNet also classifies unseen data (the paper's Tables 4-5).

How the labels reach training: ``fit(X, y_partial)`` with ``y_partial`` (n,) int, the class
of each labeled point and -1 for every unlabeled one (scikit-learn's semi-supervised
convention; ``(indices, labels)`` works too). :func:`partial_labels` draws a stratified,
seeded fraction of each class from full labels. The labels of unlabeled points never reach
training; ``fit(..., y=y)`` only reports metrics. ``fit(..., label_pool=y)`` hands over
labels that a person could still give: the ``label_fraction`` knob then labels more (or
fewer) points of each class while training runs, revealing pool labels one class-ordered
prefix at a time (:func:`label_order`, :func:`labels_at_fraction`).

Readings where the paper is ambiguous (PAPERS.md §2):

- unlabeled pairs (eq 15 is garbled in print): all pairs of unlabeled points of a batch,
  similar when they share a predicted cluster, dissimilar otherwise;
- "fixing p and computing the divergence of q from p and vice versa" (eq 2): the fixed side
  of each KL is detached (as in Hsu & Kira's KCL); pairs are every ordered pair of the batch;
- every step also draws ``labeled_batch`` labeled points, so the labeled terms of eq 3 see
  labeled data at every step (with 2 % labels a random batch holds about five);
- predicted clusters are refreshed once per epoch on the whole data (Alg. 2 step II), and
  N_k of eqs 12-13 counts the points of cluster k in that epoch's assignment (labeled: its
  labeled points), so each epoch moves a centre about 63 % of the way to its points' mean;
  the per-point steps of one batch are summed (all from the batch's starting centre), each
  point contributing once per epoch;
- the margin ``m`` is not given: we use 2 (KCL's), and expose it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from clusterkit import losses, metrics
from clusterkit.engine import Phase, Run, eval_chunk, eval_mode
from clusterkit.knobs import Knob, switch
from clusterkit.methods import parts
from clusterkit.methods.base import DeepClusteringMethod, start_autoencoder
from clusterkit.models import ClusterNetAE, MLPAutoencoder, softmax_distance

UNLABELED = -1


# --------------------------------------------------------------------------- labels


def partial_labels(y: Any, fraction: float, seed: int = 0) -> np.ndarray:
    """Keep a stratified, seeded ``fraction`` of each class's labels; hide the rest.

    y: (n,) int true labels. Class c keeps ``round(fraction * n_c)`` labels (at least one is
    required). Returns y_partial: (n,) int64, the class for labeled points and -1 for the
    others. Raises ValueError when the fraction leaves a class without a labeled point.
    """
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must be a 1-d integer array of class labels; got shape {y.shape}, "
                         f"dtype {y.dtype}")
    if (y < 0).any():
        raise ValueError("y holds negative labels; pass the full true labels (0 .. k-1)")
    fraction = float(fraction)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1]; got {fraction}")
    classes, counts = np.unique(y, return_counts=True)
    take = np.floor(fraction * counts + 0.5).astype(np.int64)
    if (take == 0).any():
        c = classes[take == 0]
        need = float((0.5 / counts[take == 0]).max())
        raise ValueError(f"fraction={fraction:g} is too small: it labels no point of class(es) "
                         f"{c.tolist()} (smallest has {counts[take == 0].min()} points); use "
                         f"fraction >= {need:.4g} so every class keeps a labeled point")
    rng = np.random.default_rng(seed)
    out = np.full(len(y), UNLABELED, dtype=np.int64)
    for c, k in zip(classes, take, strict=True):  # one draw per class, not per point
        pick = rng.choice(np.flatnonzero(y == c), int(k), replace=False)
        out[pick] = c
    return out


def check_partial_labels(labels: Any, n: int, n_clusters: int) -> np.ndarray:
    """Validate partial labels for n points and return them as y_partial (n,) int64.

    labels: (n,) ints with -1 for unlabeled, or a pair ``(indices, classes)``. Every class
    0 .. n_clusters-1 needs at least one labeled point (it seeds that class's centre).
    """
    if labels is None:
        raise ValueError("ClusterNet is semi-supervised: pass the partial labels, "
                         "fit(X, y_partial) with -1 for unlabeled points; "
                         "clusterkit.methods.clusternet.partial_labels(y, 0.02) draws 2 % "
                         "of each class")
    if isinstance(labels, tuple):
        if len(labels) != 2:
            raise ValueError("labeled=(indices, classes) needs exactly two arrays")
        idx, lab = (np.asarray(a) for a in labels)
        if idx.ndim != 1 or lab.shape != idx.shape:
            raise ValueError(f"indices {idx.shape} and classes {lab.shape} must be 1-d arrays "
                             f"of the same length")
        if idx.size and not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"indices must be integers; got dtype {idx.dtype}")
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            bad = idx[(idx < 0) | (idx >= n)]
            raise ValueError(f"labeled indices out of range: {bad[:5].tolist()} (X has {n} "
                             f"rows: use 0 .. {n - 1})")
        if len(np.unique(idx)) != len(idx):
            raise ValueError("labeled indices repeat; give each labeled point once")
        if lab.size and (lab < 0).any():
            raise ValueError("labeled classes must be >= 0 (use the pair form only for "
                             "labeled points)")
        y_partial = np.full(n, UNLABELED, dtype=np.int64)
        y_partial[idx.astype(np.int64)] = lab
        lab_check = lab
    else:
        y_partial = np.asarray(labels)
        if y_partial.shape != (n,):
            raise ValueError(f"y_partial has shape {y_partial.shape}; it needs one entry per "
                             f"row of X, shape ({n},), with -1 for unlabeled points")
        lab_check = y_partial
    if lab_check.size and not np.issubdtype(np.asarray(lab_check).dtype, np.integer):
        a = np.asarray(lab_check, dtype=float)
        if not np.isfinite(a).all() or (a != np.round(a)).any():
            raise ValueError("partial labels must be whole numbers (class ids, -1 = unlabeled)")
    y_partial = np.asarray(y_partial).astype(np.int64)
    if (y_partial < UNLABELED).any():
        raise ValueError(f"partial labels below -1 ({y_partial.min()}); mark unlabeled points "
                         f"with -1")
    if (y_partial >= n_clusters).any():
        raise ValueError(f"a labeled class {y_partial.max()} is >= n_clusters={n_clusters}; "
                         f"classes must be 0 .. {n_clusters - 1}")
    have = np.bincount(y_partial[y_partial >= 0], minlength=n_clusters)
    if (have == 0).any():
        raise ValueError(f"class(es) {np.flatnonzero(have == 0).tolist()} have no labeled "
                         f"point; ClusterNet seeds each centre from its class's labeled points "
                         f"(eq 9): label at least one point per class, or raise the fraction")
    return y_partial


def label_order(y_partial: np.ndarray, label_pool: np.ndarray, seed: int = 0) -> np.ndarray:
    """The order in which points of each class become labeled as a labeled fraction grows.

    y_partial: (n,) int, -1 = unlabeled; label_pool: (n,) int, the class of every point that
    a person could label (e.g. the true labels). Per class, the points labeled in
    ``y_partial`` come first (seeded order), then the pool's other points of that class
    (seeded order). Returns rank (n,) int64: the position of each point in its class's order.
    """
    rng = np.random.default_rng(seed)
    rank = np.zeros(len(label_pool), dtype=np.int64)
    for c in np.unique(label_pool):  # one permutation per class, not per point
        given = rng.permutation(np.flatnonzero((label_pool == c) & (y_partial >= 0)))
        rest = rng.permutation(np.flatnonzero((label_pool == c) & (y_partial < 0)))
        rank[np.concatenate([given, rest])] = np.arange(len(given) + len(rest))
    return rank


def labels_at_fraction(label_pool: np.ndarray, rank: np.ndarray, fraction: float) -> np.ndarray:
    """y_partial (n,) int64 with ``max(1, round(fraction * n_c))`` labeled points of each
    class c of the pool: the first ones of the class's order ``rank``
    (:func:`label_order`), so a smaller fraction labels a subset of a larger one."""
    classes, counts = np.unique(label_pool, return_counts=True)
    take = np.maximum(1, np.floor(float(fraction) * counts + 0.5)).astype(np.int64)
    keep = rank < take[np.searchsorted(classes, label_pool)]
    return np.where(keep, label_pool, UNLABELED).astype(np.int64)


# --------------------------------------------------------------------------- Alg. 1


def constrained_kmeans(X: Any, y_partial: Any, n_clusters: int | None = None,
                       max_iter: int = 100) -> tuple[np.ndarray, np.ndarray, int]:
    """Constrained k-means (Basu et al. 2002; ClusterNet Alg. 1) on vectors.

    X: (n, d) float (images are flattened); y_partial: (n,) int, -1 for unlabeled. Centres
    start at the labeled means of each class; labeled points keep their class; unlabeled
    points move to their nearest centre until no assignment changes. Returns
    ``(labels (n,) int64, centers (k, d) float32, iterations)``.
    """
    x = torch.as_tensor(np.asarray(X, dtype=np.float32).reshape(len(X), -1))
    k = int(n_clusters) if n_clusters is not None else int(np.max(y_partial)) + 1
    yp = torch.as_tensor(check_partial_labels(y_partial, len(x), k))
    lab = yp >= 0
    assign = yp.clone()
    centers = _means(x[lab], yp[lab], k)  # Alg. 1 step 2
    it = 0
    for it in range(1, max_iter + 1):  # iterations of Alg. 1, not a loop over points
        d2 = torch.cdist(x, centers).pow(2)
        new = torch.where(lab, yp, d2.argmin(1))  # labeled fixed, unlabeled nearest
        done = it > 1 and bool((new == assign).all())
        assign = new
        centers = _means(x, assign, k, fallback=centers)
        if done:
            break
    return assign.numpy(), centers.numpy(), it


def _means(x: torch.Tensor, a: torch.Tensor, k: int,
           fallback: torch.Tensor | None = None) -> torch.Tensor:
    s = torch.zeros(k, x.shape[1], dtype=x.dtype, device=x.device).index_add_(0, a, x)
    c = torch.bincount(a, minlength=k).to(x.dtype)
    m = s / c.clamp_min(1)[:, None]
    if fallback is not None:
        m = torch.where(c[:, None] > 0, m, fallback)
    return m


# --------------------------------------------------------------------------- eqs 12-13


@torch.no_grad()
def update_centers(centers: torch.Tensor, z: torch.Tensor, assign: torch.Tensor,
                   counts: torch.Tensor) -> torch.Tensor:
    """ClusterNet eqs 12-13: every point i of cluster k moves its centre by
    ``mu_k <- mu_k - (mu_k - z_i) / N_k``, summed over the batch, in place.

    centers: (k, d); z: (B, d); assign: (B,) int; counts: (k,) N_k. All steps start from
    the batch's centre; a cluster with more points in the batch than N_k (possible when
    assignments change within an epoch) moves at most to their mean. Returns centers.
    """
    k = centers.shape[0]
    m = torch.bincount(assign, minlength=k).to(centers.dtype)
    s = torch.zeros_like(centers).index_add_(0, assign, z.to(centers.dtype))
    n = torch.maximum(counts.to(centers.dtype), m).clamp_min(1.0)
    centers -= (m[:, None] * centers - s) / n[:, None]  # eqs (12)-(13), summed over points
    return centers


# --------------------------------------------------------------------------- method


class ClusterNet(DeepClusteringMethod):
    """ClusterNet: a few labels per class, a pairwise KL loss and a k-means loss.

    ``fit(X, y_partial, *, y=None, eval_set=None)``: X (n, c, h, w) images (the conv
    autoencoder of §5.1) or (n, d) vectors (an MLP autoencoder ``d-500-500-2000-latent``);
    ``y_partial`` (n,) int with -1 for unlabeled points, or ``(indices, classes)``; ``y`` the
    true labels, only reported; ``eval_set=(X_test, y_test)`` adds held-out metrics
    (``test_acc``...) to every epoch of the history.

    Fitted: ``labels_`` (labeled points keep their class, eq 11; others their nearest
    centre), ``cluster_centers_`` (k, latent) with centre k = class k, ``embedding_``,
    ``y_partial_``; ``predict`` / ``predict_proba`` (softmax(-d²), eq 16) / ``transform``
    on new data; ``decode_centers()`` draws the centres through the decoder (Fig. 3).

    Profiles (arguments left at ``None``):

    - ``smoke``: 2 + 2 epochs, to check that everything runs;
    - ``demo``: ``mnist-5k`` on 2 CPU cores in a few minutes, lr 1e-3, T1, T2 scaled to the
      shorter schedule, 20 + 30 epochs on randomly shifted and rotated digits (held-out
      ACC with 2 % labels, 1 thread, before the fused Adam: 0.800 without augmentation at
      20 epochs, 0.838 with it, 0.896 with it at 30 epochs); λ annealed to ``lam`` = 0.5,
      not eq 17's 1: held-out ACC over seeds 0 / 1 / 2 at 2 threads .888 / .864 / .862
      against .894 / .874 / .828 with λ -> 1 (``benchmarks/seed_spread.py clusternet``),
      at 1 thread .898 / .878 / .894 against .846 / .808 / .816: at full weight the
      unlabeled terms drift this short schedule's embedding in its last epochs; the k-means
      terms (eqs 4-5) are computed and drawn but weighted 0 (``kmeans_weight``): held-out
      ACC over seeds 0-4 at 1 thread .912 / .920 / .944 / .842 / .936 (mean .911) at weight
      0, .886 / .866 / .930 / .852 / .866 (mean .880) at 0.1, .898 / .878 / .894 / .772 /
      .682 (mean .825) at eq 3's 1; on seed 4 the k-means terms alone take the labeled
      means' .722 to .508 (one cluster grows to a quarter of the data) while the pair loss
      alone reaches .846 (``benchmarks/README.md``). These figures were drawn with
      ``torch.nn.Dropout``'s masks; with the autoencoder's cheaper ``models.Dropout``
      (session 18) weight 0 gives .932 / .944 / .918 / .950 / .920 (mean .933);
    - ``paper``: §5.1: pretraining 100 epochs, fine-tuning 60, Adam 1e-4, T1 = 5, T2 = 40.

    Knobs: ``lr``, ``augment``, ``margin``, ``T1``, ``T2``, ``anneal`` (λ from 0 to ``lam``
    between T1 and T2; off: λ = ``lam``), ``lam``, ``kmeans_weight`` (the weight of both
    k-means terms; eq 3 has 1), and the loss switches ``use_pair``,
    ``use_kmeans``, ``use_reconstruction``.
    ``label_fraction``: the labeled share of each class, live when ``fit``/``prepare`` got a
    ``label_pool``; new labeled points join their class at once (eq 11) and pull its centre
    (eq 12); the centres start (eq 9) from the labels in place when fine-tuning begins.
    """

    PROFILES: dict[str, dict[str, Any]] = {
        "smoke": dict(pretrain_epochs=2, cluster_epochs=2, lr=1e-3, batch_size=256,
                      labeled_batch=64, margin=2.0, T1=0, T2=1, anneal=True, lam=1.0,
                      augment=False, latent=32, dropout=0.1, rec_weight=1.0, kmeans_weight=1.0),
        "demo": dict(pretrain_epochs=20, cluster_epochs=30, lr=1e-3, batch_size=256,
                     labeled_batch=64, margin=2.0, T1=2, T2=12, anneal=True, lam=0.5,
                     augment=True, latent=32, dropout=0.1, rec_weight=1.0, kmeans_weight=0.0),
        "paper": dict(pretrain_epochs=100, cluster_epochs=60, lr=1e-4, batch_size=256,
                      labeled_batch=64, margin=2.0, T1=5, T2=40, anneal=True, lam=1.0,
                      augment=False, latent=32, dropout=0.1, rec_weight=1.0, kmeans_weight=1.0),
    }

    def __init__(self, n_clusters: int = 10, *, profile: str = "demo",
                 pretrain_epochs: int | None = None, cluster_epochs: int | None = None,
                 lr: float | None = None, batch_size: int | None = None,
                 labeled_batch: int | None = None, margin: float | None = None,
                 T1: int | None = None, T2: int | None = None,  # noqa: N803 - the paper's names
                 anneal: bool | None = None, lam: float | None = None,
                 augment: bool | None = None, latent: int | None = None,
                 dropout: float | None = None, rec_weight: float | None = None,
                 kmeans_weight: float | None = None,
                 use_pair: bool = True, use_kmeans: bool = True, use_reconstruction: bool = True,
                 pretrained: Any = None, seed: int = 0, device: str = "auto",
                 verbose: bool = True, snapshot_epochs: Any = "auto", snapshot_size: int = 2000,
                 eval_every: int = 1):
        self.n_clusters = n_clusters
        self.profile = profile
        self.pretrain_epochs = pretrain_epochs
        self.cluster_epochs = cluster_epochs
        self.lr = lr
        self.batch_size = batch_size
        self.labeled_batch = labeled_batch
        self.margin = margin
        self.T1 = T1
        self.T2 = T2
        self.anneal = anneal
        self.lam = lam
        self.augment = augment
        self.latent = latent
        self.dropout = dropout
        self.rec_weight = rec_weight
        self.kmeans_weight = kmeans_weight
        self.use_pair = use_pair
        self.use_kmeans = use_kmeans
        self.use_reconstruction = use_reconstruction
        self.pretrained = pretrained
        self.seed = seed
        self.device = device
        self.verbose = verbose
        self.snapshot_epochs = snapshot_epochs
        self.snapshot_size = snapshot_size
        self.eval_every = eval_every

    # ------------------------------------------------------------------ API
    def prepare(self, X: Any, y_partial: Any = None, *, y: np.ndarray | None = None,
                eval_set: tuple[Any, Any] | None = None, label_pool: Any = None,
                callbacks: list | None = None) -> Run:
        """A run on X with partial labels ``y_partial`` ((n,) int, -1 = unlabeled, or
        ``(indices, classes)``); ``y`` and ``eval_set`` are only reported.

        ``label_pool`` (n,) int: the labels a person could still give (e.g. the true labels,
        as a simulated annotator). With it, the ``label_fraction`` knob labels more points
        of each class, or fewer, while training runs (:func:`labels_at_fraction`); only the
        labeled points' pool labels ever reach training. It must agree with ``y_partial``.
        """
        Xc = self._check_X(X)
        s = self.settings()
        if int(s["T2"]) <= int(s["T1"]):
            raise ValueError(f"annealing needs T1 < T2; got T1={s['T1']}, T2={s['T2']}")
        self.y_partial_ = check_partial_labels(y_partial, len(Xc), int(self.n_clusters))
        self.label_pool_, self._label_rank = None, None
        if label_pool is not None:
            pool = check_partial_labels(label_pool, len(Xc), int(self.n_clusters))
            if (pool < 0).any():
                raise ValueError("label_pool needs a class for every point (no -1): it holds "
                                 "the labels the label_fraction knob may reveal")
            lab = self.y_partial_ >= 0
            bad = np.flatnonzero(lab & (pool != self.y_partial_))
            if bad.size:
                raise ValueError(f"label_pool contradicts y_partial at {bad.size} labeled "
                                 f"point(s), e.g. index {bad[0]}: y_partial says "
                                 f"{self.y_partial_[bad[0]]}, label_pool {pool[bad[0]]}; pass "
                                 f"the same labels for the labeled points")
            self.label_pool_ = pool
            self._label_rank = label_order(self.y_partial_, pool, self.seed)
        self.eval_set_ = None
        if eval_set is not None:
            if not (isinstance(eval_set, (tuple, list)) and len(eval_set) == 2):
                raise ValueError("eval_set must be a pair (X_test, y_test)")
            Xt = self._check_X(eval_set[0], fitting=False)
            yt = np.asarray(eval_set[1])
            if yt.shape != (len(Xt),):
                raise ValueError(f"eval_set labels have shape {yt.shape}; need ({len(Xt)},)")
            if Xt.shape[1:] != Xc.shape[1:]:
                raise ValueError(f"eval_set images {Xt.shape[1:]} differ from X's "
                                 f"{Xc.shape[1:]}")
            self.eval_set_ = (Xt, yt.astype(np.int64))
        return super().prepare(Xc, None, y=y, callbacks=callbacks)

    def fit(self, X: Any, y_partial: Any = None, *, y: np.ndarray | None = None,
            eval_set: tuple[Any, Any] | None = None, label_pool: Any = None) -> ClusterNet:
        """Train on X with partial labels (see :meth:`prepare`). Returns self."""
        self.prepare(X, y_partial, y=y, eval_set=eval_set, label_pool=label_pool).fit()
        return self

    def fit_predict(self, X, y_partial=None, *, y=None, **kw) -> np.ndarray:  # noqa: D102
        return self.fit(X, y_partial, y=y, **kw).labels_

    @torch.no_grad()
    def predict_proba(self, X: Any) -> np.ndarray:
        """Assignment probabilities softmax(-d²) (eq 16) of new points: (n, k) float32."""
        return super().predict_proba(X)

    @torch.no_grad()
    def decode_centers(self) -> np.ndarray:
        """The cluster centres drawn by the decoder (Fig. 3): (k, *input shape) float32."""
        if getattr(self, "cluster_centers_", None) is None:
            raise RuntimeError("fit the model first")
        c = torch.as_tensor(self.cluster_centers_, device=self.device_)
        with eval_mode([self.autoencoder_]):
            return self.autoencoder_.decode(c).float().cpu().numpy()

    # ------------------------------------------------------------------ knobs
    def knob_specs(self) -> list[Knob]:
        s = self.settings()
        return [
            *parts.common_knobs(s),
            Knob("margin", float(s["margin"]), "float", 0.0, 20.0,
                 help="margin m of the dissimilar-pair hinge (eqs 6-7)"),
            Knob("T1", int(s["T1"]), "int", 0, 1000, group="schedule",
                 help="epoch where λ starts to grow from 0 (eq 17)"),
            Knob("T2", int(s["T2"]), "int", 1, 1000, group="schedule",
                 help="epoch where λ reaches lam (eq 17, where lam = 1)"),
            Knob("anneal", bool(s["anneal"]), "bool", group="schedule",
                 help="anneal λ from 0 to lam between T1 and T2 (eq 17); off: λ = lam"),
            Knob("lam", float(s["lam"]), "float", 0.0, 10.0, group="schedule",
                 help="λ, the weight of the unlabeled terms: the end of the annealing "
                      "(eq 17 has 1), or the fixed weight when annealing is off"),
            Knob("kmeans_weight", float(s["kmeans_weight"]), "float", 0.0, 10.0,
                 help="weight of both k-means terms (eqs 4-5); eq 3 has 1"),
            Knob("label_fraction", self._label_fraction(), "log", 0.001, 1.0,
                 group="constraints",
                 help="labeled share of each class (at least one point a class); moving it "
                      "needs fit(..., label_pool=labels)"),
            switch("use_pair", bool(self.use_pair), help="pairwise KL loss (eqs 6-7)"),
            switch("use_kmeans", bool(self.use_kmeans), help="k-means loss (eqs 4-5)"),
            switch("use_reconstruction", bool(self.use_reconstruction),
                   help="reconstruction loss (eq 8)"),
        ]

    def _label_fraction(self) -> float:
        """The labeled share of the points now (0.001, the knob's low end, before prepare)."""
        yp = getattr(self, "y_partial_", None)
        share = 0.0 if yp is None or len(yp) == 0 else round(float((yp >= 0).mean()), 4)
        return min(1.0, max(0.001, share))

    def _validate_knob(self, run: Run, name: str, value: Any) -> None:
        if name == "label_fraction" and getattr(self, "label_pool_", None) is None:
            raise ValueError("the label_fraction knob needs the labels it may reveal: "
                             "prepare(X, y_partial, label_pool=y) (or fit(...)); this run "
                             "has only its partial labels")
        if name == "T1" and value >= run.requested("T2"):
            raise ValueError(f"T1 must stay below T2 (now {run.requested('T2')}); raise T2 first")
        if name == "T2" and value <= run.requested("T1"):
            raise ValueError(f"T2 must stay above T1 (now {run.requested('T1')}); lower T1 "
                             f"first")

    def _on_knob_change(self, run: Run, name: str, old: Any, new: Any) -> None:
        if name != "label_fraction":
            return
        yp = labels_at_fraction(self.label_pool_, self._label_rank, float(new))
        self._set_labels(run, yp)
        if self.assign_ is not None:  # eq (11) from the next step on; N_k^u recounted
            self._set_assign(torch.where(self._is_lab, self._yp, self.assign_))

    def lambda_at(self, epoch: int, knobs: dict | None = None) -> float:
        """λ of eq 3 at a (0-based) fine-tuning epoch under the given knobs (default: the
        settings)."""
        k = knobs if knobs is not None else {**self.settings()}
        if not k["anneal"]:
            return float(k["lam"])
        return float(k["lam"]) * losses.anneal_lambda(epoch, int(k["T1"]), int(k["T2"]))  # eq 17

    # ------------------------------------------------------------------ engine hooks
    def _build(self, run: Run) -> None:
        s = self.settings_
        shape = tuple(run.X.shape[1:])

        def build() -> torch.nn.Module:
            if len(shape) == 3:
                return ClusterNetAE(shape, latent=int(s["latent"]), dropout=float(s["dropout"]))
            return MLPAutoencoder([shape[0], 500, 500, 2000, int(s["latent"])], shape)

        self.autoencoder_ = start_autoencoder(self, run, build)
        self.centers_ = None
        self.assign_ = None
        self.counts_ = None
        yp = getattr(self, "y_partial_", None)
        if yp is not None and len(yp) == run.n:
            self._set_labels(run, yp)
        else:  # Run.load: the labels (and any label pool) come with the checkpoint
            self.y_partial_ = None
            self.label_pool_, self._label_rank = None, None

    def _set_labels(self, run: Run, yp: np.ndarray) -> None:
        self.y_partial_ = np.asarray(yp, dtype=np.int64)
        self._yp = torch.as_tensor(self.y_partial_, device=run.device)
        self._is_lab = self._yp >= 0
        self._lab_idx = torch.nonzero(self._is_lab).flatten()
        self._lab_counts = torch.bincount(self._yp[self._is_lab],
                                          minlength=self.n_clusters).float()

    def _phases(self, run: Run) -> list[Phase]:
        s = self.settings_
        phases = []
        if self.pretrained is None and s["pretrain_epochs"] > 0:
            phases.append(parts.pretrain_phase("autoencoder_", s["pretrain_epochs"],
                                               s["batch_size"]))
        phases.append(Phase("cluster", s["cluster_epochs"], self._cluster_step,
                            self._cluster_optimizer, start=self._cluster_start,
                            after_step=self._after_step, end_epoch=self._cluster_epoch_end,
                            batch_size=s["batch_size"], snapshots=True))
        return phases

    @torch.no_grad()
    def _init_centers(self, run: Run) -> torch.Tensor:
        z, _ = self._embed_all_plain(run)
        return _means(z[self._lab_idx], self._yp[self._lab_idx], self.n_clusters)  # eq (9)

    @torch.no_grad()
    def _embed_all_plain(self, run: Run) -> tuple[torch.Tensor, None]:
        zs = []
        with eval_mode([self.autoencoder_]):
            step = eval_chunk(run.device)
            for lo in range(0, run.n, step):
                zs.append(self.autoencoder_.encode(run.X[lo:lo + step]))
        return torch.cat(zs), None

    def _cluster_start(self, run: Run) -> None:
        self.centers_ = self._init_centers(run)
        run._embed_cache = None
        self._refresh_assign(run)

    @torch.no_grad()
    def _refresh_assign(self, run: Run) -> float:
        """Alg. 2 step II: unlabeled points to their nearest centre (eq 10), labeled points
        to their class (eq 11); N_k^u of eq 13 = the unlabeled points of cluster k."""
        z, q = run.embed_all()
        new = torch.where(self._is_lab, self._yp, q.argmax(1))
        changed = 1.0 if self.assign_ is None else float(
            (new != self.assign_)[~self._is_lab].float().mean())
        self._set_assign(new)
        return changed

    def _set_assign(self, assign: torch.Tensor) -> None:
        """The hard assignment (n,) and N_k^u of eq 13, the unlabeled points of cluster k."""
        self.assign_ = assign
        self.counts_ = torch.bincount(assign[~self._is_lab], minlength=self.n_clusters).float()

    def _cluster_optimizer(self, run: Run) -> torch.optim.Optimizer:
        return parts.adam(self.autoencoder_.parameters(), lr=run.knobs["lr"])

    def _cluster_step(self, run: Run, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        k, s = run.knobs, self.settings_
        nl = len(self._lab_idx)
        extra = self._lab_idx[torch.randperm(nl, generator=run.generator,
                                             device=run.device)[:int(s["labeled_batch"])]]
        all_idx = torch.cat([idx, extra])
        x = parts.batch(run, all_idx)
        z = self.autoencoder_.encode(x)
        c = self.centers_
        a = self.assign_[all_idx]
        lab = self._is_lab[all_idx]
        lam = self.lambda_at(run.phase_epoch, k)
        out: dict[str, torch.Tensor] = {"lambda": z.new_tensor(lam)}
        loss = z.new_zeros(())
        if k["use_pair"]:
            log_p = softmax_distance(z, c)  # eq (16)
            sim_l, dis_l = losses.pair_loss(log_p, a, k["margin"], lab)  # eq (6)
            sim_u, dis_u = losses.pair_loss(log_p, a, k["margin"], ~lab)  # eq (7)
            out.update(pair_l=sim_l + dis_l, pair_u=sim_u + dis_u)
            loss = loss + out["pair_l"] + lam * out["pair_u"]  # eq (3)
        if k["use_kmeans"]:
            out["kmeans_l"] = losses.kmeans_loss(z[lab], c, a[lab])  # eq (5)
            out["kmeans_u"] = losses.kmeans_loss(z[~lab], c, a[~lab])  # eq (4)
            w = float(k["kmeans_weight"])  # eq 3 has 1
            loss = loss + w * (out["kmeans_l"] + lam * out["kmeans_u"])  # eq (3)
        if k["use_reconstruction"]:
            rec = losses.reconstruction(self.autoencoder_.decode(z), x)  # eq (8)
            out["rec"] = rec
            loss = loss + float(s["rec_weight"]) * rec
        out["loss"] = loss
        return out

    @torch.no_grad()
    def _after_step(self, run: Run, idx: torch.Tensor, out: dict) -> None:
        # the centres follow the clean embedding (eval mode, no augmentation): shifted and
        # rotated views land far from it, and predictions are made on clean inputs
        with eval_mode([self.autoencoder_]):
            z = self.autoencoder_.encode(run.X[idx])
        lab = self._is_lab[idx]
        if lab.any():  # eq (12): labeled points pull their class's centre
            update_centers(self.centers_, z[lab], self._yp[idx][lab], self._lab_counts)
        if (~lab).any():  # eq (13): unlabeled points pull their predicted cluster's centre
            update_centers(self.centers_, z[~lab], self.assign_[idx][~lab], self.counts_)

    def _cluster_epoch_end(self, run: Run) -> dict:
        rec: dict[str, Any] = {"lambda": self.lambda_at(run.phase_epoch - 1, run.knobs),
                               "changed": self._refresh_assign(run)}
        if self.eval_set_ is not None:
            Xt, yt = self.eval_set_
            pred = self._predict_tensor(torch.as_tensor(Xt, device=run.device))
            rec.update({f"test_{k}": v for k, v in
                        metrics.evaluate(yt, pred, n_clusters=self.n_clusters).items()})
        return rec

    @torch.no_grad()
    def _predict_tensor(self, X: torch.Tensor) -> np.ndarray:
        out = []
        with eval_mode([self.autoencoder_]):
            step = eval_chunk(X.device)
            for lo in range(0, len(X), step):
                z = self.autoencoder_.encode(X[lo:lo + step])
                out.append(softmax_distance(z, self.centers_).argmax(1))
        return torch.cat(out).cpu().numpy().astype(np.int64)

    def _nets(self):
        return [m for m in (getattr(self, "autoencoder_", None),) if m is not None]

    def _embed(self, run: Run, x: torch.Tensor):
        z = self.autoencoder_.encode(x)
        if self.centers_ is None:
            return z, None
        return z, softmax_distance(z, self.centers_).exp()  # eq (16)

    def _centers(self, run: Run):
        return self.centers_

    def _snapshot_extras(self, run: Run, idx: torch.Tensor) -> dict[str, np.ndarray]:
        return {"labeled": self._is_lab[idx].cpu().numpy().astype(np.int64)}

    def _state_dict(self, run: Run) -> dict:
        def t(v):
            return None if v is None else v.detach().cpu()

        def arr(a):
            return None if a is None else torch.as_tensor(a)
        return {"ae": self.autoencoder_.state_dict(), "centers": t(self.centers_),
                "assign": t(self.assign_), "counts": t(self.counts_),
                "y_partial": torch.as_tensor(self.y_partial_),
                "label_pool": arr(getattr(self, "label_pool_", None)),
                "label_rank": arr(getattr(self, "_label_rank", None))}

    def _load_state_dict(self, run: Run, state: dict) -> None:
        self.autoencoder_.load_state_dict(state["ae"])
        self._set_labels(run, state["y_partial"].numpy())
        pool, rank = state.get("label_pool"), state.get("label_rank")
        self.label_pool_ = None if pool is None else pool.numpy()
        self._label_rank = None if rank is None else rank.numpy()

        def t(v):
            return None if v is None else v.to(run.device)
        self.centers_, self.assign_, self.counts_ = (t(state["centers"]), t(state["assign"]),
                                                     t(state["counts"]))
        self.eval_set_ = getattr(self, "eval_set_", None)

    @torch.no_grad()
    def _finalize(self, run: Run) -> None:
        if self.centers_ is None:  # stopped before fine-tuning: the labeled means (eq 9)
            self.centers_ = self._init_centers(run)
            run._embed_cache = None
        z, q = run.embed_all()
        self.embedding_ = z.float().cpu().numpy()
        labels = torch.where(self._is_lab, self._yp, q.argmax(1))  # eqs (10)-(11)
        self.labels_ = labels.cpu().numpy().astype(np.int64)
        self.cluster_centers_ = self.centers_.detach().float().cpu().numpy()
