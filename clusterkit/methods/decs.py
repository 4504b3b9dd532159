"""DECS: deep embedding clustering driven by sample stability (Cheng et al.; seed 003).

A convolutional autoencoder is pretrained on randomly shifted and rotated images; k-means on
its embedding gives the centres of a Student-t head (eq 5). Clustering then trains the
encoder and the centres to make every sample *stable*: each soft assignment q_ij (the
"co-association" of sample i with centre j) is mapped to a **determinacy** f_ij (eq 6),
which is 0 at a threshold t (Otsu's threshold of the batch's q, without gradient) and 1 at
q = 0 or 1; a sample's **stability** is s_i = mean_j f_ij - λ var_j f_ij (eq 7); the loss is
L_c = 1 - mean_i s_i (eq 8). No pseudo target P: the loss pulls each sample to the centre it
is already closest to and away from the others.

``variant`` picks between the paper's text and the authors' public code (TensorFlow):

============================  ============================  ===============================
                              ``"paper"``                   ``"code"``
============================  ============================  ===============================
determinacy (eq 6)            squared ``(q - t)²/t²``       linear ``|q - t|/t``
λ (eq 7)                      0.8                           0.4
loss (eq 8)                   ``1 - mean s``                ``1 - (mean s + var s)``
Student-t degree ``a`` (eq 5)  1                             0.5
clustering optimizer          SGD, momentum 0.9             Adam
decoder loss while clustering kept (eq 1)                   dropped
============================  ============================  ===============================

The paper's eq (1) adds the reconstruction loss while its Fig. 1 drops the decoder; the code
drops it. ``use_reconstruction`` (a knob) chooses. The paper variant follows eq (1): on
``mnist-5k`` after the demo's pretraining, keeping the decoder helped it in three runs of four
(seeds 0 / 1 / 2 at 1 thread: .765 / .755 / .776 against .735 / .703 / .784; notebook 04 at
2 threads: .793 against .699; benchmarks/README.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from clusterkit import losses
from clusterkit.engine import Phase, Run
from clusterkit.knobs import Knob, switch
from clusterkit.methods import parts
from clusterkit.methods.base import PROFILES, AutoencoderMethod, start_autoencoder
from clusterkit.models import ConvAutoencoder, MLPAutoencoder, StudentTHead

#: what ``variant`` sets, unless given explicitly
VARIANTS: dict[str, dict[str, Any]] = {
    "paper": dict(lam=0.8, alpha=1.0, determinacy="squared", stability_variance=False,
                  optimizer="sgd", use_reconstruction=True),
    "code": dict(lam=0.4, alpha=0.5, determinacy="linear", stability_variance=True,
                 optimizer="adam", use_reconstruction=False),
}
THRESHOLDS = ("otsu", "fixed")
#: bins over [0, 1] of the per-epoch histogram of the batches' q (``q_hist`` in each
#: clustering epoch's record: what the threshold saw; the dashboard draws it)
Q_HIST_BINS = 50


class DECS(AutoencoderMethod):
    """Deep Embedding Clustering driven by Sample stability.

    Parameters left at ``None`` come from ``profile`` and then from ``variant`` (λ, ``alpha``,
    determinacy, the variance term of the loss, the clustering optimizer, the reconstruction
    loss while clustering):

    - ``smoke``: a few epochs of a narrow network, to check that everything runs;
    - ``demo``: ``mnist-5k`` on 2 CPU cores in a few minutes: the paper's architecture with
      a quarter of its channels (8-16-32-64 instead of 32-64-128-256; the full width costs
      about 6× more per step on a CPU), 40 pretraining epochs of batch 64, 20 clustering
      epochs of batch 256, augmentation in both phases as in the authors' code; Adam at
      1e-4 while clustering (at the code's 1e-3, small clusters die on this short
      pretraining);
    - ``paper``: 32-64-128-256, 500 pretraining epochs (Adam 1e-3, batch 256), then 10 000
      clustering iterations of batch 256 (37 epochs of MNIST's 70 000: set
      ``cluster_epochs`` for other sizes); the clustering learning rate of SGD (0.01) is
      ours, the paper gives none.

    ``channels``: the four convolution widths (images); ``dims``: the MLP's hidden sizes and
    embedding (vectors, or images when ``channels`` is ``"mlp"``). ``lr``: pretraining;
    ``cluster_lr``: clustering (default: the profile's rate for the variant's optimizer).
    ``threshold``: ``"otsu"`` (per batch) or ``"fixed"`` (then ``t`` is used).
    ``pretrained``: a fitted DECS (its ``autoencoder_``) or an autoencoder module; the
    pretraining phase is then skipped. ``y`` given to ``fit`` is only reported.

    Fitted: ``labels_`` (n,), ``cluster_centers_`` (k, d), ``embedding_`` (n, d),
    ``stability_`` (n,) per-sample stability at the end, ``threshold_`` the final threshold.
    Each clustering epoch's record in ``history_.epochs`` holds ``t`` (the mean threshold of
    its steps), ``t_last`` and ``q_hist``: counts of all the q values its batches gave, in
    ``Q_HIST_BINS`` equal bins over [0, 1] (the dashboard draws it with t); each evaluated
    epoch's also holds ``mean_stability``, the mean s_i of all n samples in eval mode.
    """

    PROFILES: dict[str, dict[str, Any]] = {
        "smoke": dict(pretrain_epochs=2, cluster_epochs=2, channels=(4, 8, 16, 32),
                      pretrain_batch_size=128, kmeans_init=10),
        "demo": dict(pretrain_epochs=40, cluster_epochs=20, channels=(8, 16, 32, 64),
                     pretrain_batch_size=64, kmeans_init=20, adam_cluster_lr=1e-4),
        "paper": dict(pretrain_epochs=500, cluster_epochs=37, channels=(32, 64, 128, 256),
                      pretrain_batch_size=256, kmeans_init=20),
    }
    #: settings every profile shares (``adam_cluster_lr`` / ``sgd_cluster_lr``: the
    #: clustering learning rate for each optimizer, unless ``cluster_lr`` is given)
    COMMON: dict[str, Any] = dict(lr=1e-3, cluster_lr=None, adam_cluster_lr=1e-3,
                                  sgd_cluster_lr=0.01, augment=True, batch_size=256,
                                  dims=(500, 500, 2000, 10), embed_dim=10, threshold="otsu",
                                  t=0.5, bins=1000, use_reconstruction=False)
    _NOT_SETTINGS = AutoencoderMethod._NOT_SETTINGS | {"variant"}

    def __init__(self, n_clusters: int = 10, *, variant: str = "code", profile: str = "demo",
                 pretrain_epochs: int | None = None, cluster_epochs: int | None = None,
                 lr: float | None = None, cluster_lr: float | None = None,
                 lam: float | None = None, alpha: float | None = None,
                 determinacy: str | None = None, stability_variance: bool | None = None,
                 optimizer: str | None = None, threshold: str | None = None,
                 t: float | None = None, bins: int | None = None,
                 use_reconstruction: bool | None = None, augment: bool | None = None,
                 batch_size: int | None = None, pretrain_batch_size: int | None = None,
                 channels: Any = None,
                 dims: tuple[int, ...] | None = None, embed_dim: int | None = None,
                 kmeans_init: int | None = None, pretrained: Any = None, seed: int = 0,
                 device: str = "auto", verbose: bool = True, snapshot_epochs: Any = "auto",
                 snapshot_size: int = 2000,
                 eval_every: int = 1):
        self.n_clusters = n_clusters
        self.variant = variant
        self.profile = profile
        self.pretrain_epochs = pretrain_epochs
        self.cluster_epochs = cluster_epochs
        self.lr = lr
        self.cluster_lr = cluster_lr
        self.lam = lam
        self.alpha = alpha
        self.determinacy = determinacy
        self.stability_variance = stability_variance
        self.optimizer = optimizer
        self.threshold = threshold
        self.t = t
        self.bins = bins
        self.use_reconstruction = use_reconstruction
        self.augment = augment
        self.batch_size = batch_size
        self.pretrain_batch_size = pretrain_batch_size
        self.channels = channels
        self.dims = dims
        self.embed_dim = embed_dim
        self.kmeans_init = kmeans_init
        self.pretrained = pretrained
        self.seed = seed
        self.device = device
        self.verbose = verbose
        self.snapshot_epochs = snapshot_epochs
        self.snapshot_size = snapshot_size
        self.eval_every = eval_every

    # ------------------------------------------------------------------ settings
    def settings(self) -> dict[str, Any]:
        """The profile's settings, then the variant's, then the explicit arguments."""
        if self.profile not in PROFILES:
            raise ValueError(f"profile must be one of {PROFILES}; got {self.profile!r}")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {list(VARIANTS)}; got {self.variant!r}")
        out = {**self.COMMON, **self.PROFILES[self.profile], **VARIANTS[self.variant]}
        for k, v in self.get_params(deep=False).items():
            if k not in self._NOT_SETTINGS and v is not None:
                out[k] = v
        if out["cluster_lr"] is None:
            out["cluster_lr"] = out[f"{out['optimizer']}_cluster_lr"]
        _check_settings(out)
        return out

    def knob_specs(self) -> list[Knob]:
        s = self.settings()
        return [
            *parts.common_knobs(s),
            Knob("lam", float(s["lam"]), "float", 0.0, 2.0,
                 help="λ: weight of the variance of a sample's determinacies (eq 7)"),
            Knob("alpha", float(s["alpha"]), "log", 0.05, 20.0,
                 help="Student-t degree a of the soft assignment q (eq 5)"),
            Knob("threshold", s["threshold"], "choice", options=THRESHOLDS,
                 help="t from Otsu's method on each batch's q, or the fixed t below",
                 group="threshold"),
            Knob("t", float(s["t"]), "float", 0.01, 0.99,
                 help="the fixed threshold t (used when threshold = 'fixed')", group="threshold"),
            Knob("determinacy", s["determinacy"], "choice", options=("squared", "linear"),
                 help="eq 6 as printed (squared) or as in the authors' code (linear)",
                 group="terms"),
            switch("stability_variance", bool(s["stability_variance"]),
                   help="add the variance of the batch's stabilities to the loss (the code)"),
            switch("use_reconstruction", bool(s["use_reconstruction"]),
                   help="keep the decoder's reconstruction loss while clustering (eq 1)"),
        ]

    def _on_knob_change(self, run: Run, name: str, old: Any, new: Any) -> None:
        if name == "alpha" and getattr(self, "head_", None) is not None:
            self.head_.alpha = float(new)
            run._embed_cache = None

    # ------------------------------------------------------------------ engine hooks
    def _check_X(self, X, fitting: bool = True) -> np.ndarray:
        X = super()._check_X(X, fitting)
        if fitting and len(X) < 2:
            raise ValueError(f"DECS needs at least 2 samples; got {len(X)}")
        return X

    def _build(self, run: Run) -> None:
        s = self.settings_
        shape = tuple(run.X.shape[1:])

        def build() -> torch.nn.Module:
            if len(shape) == 3 and s["channels"] != "mlp" and min(shape[1:]) >= 8:
                return ConvAutoencoder(shape, s["embed_dim"], tuple(s["channels"]))
            return MLPAutoencoder([int(np.prod(shape)), *s["dims"]], shape)

        self.autoencoder_ = start_autoencoder(self, run, build)
        self.head_ = None
        self.threshold_ = float("nan")
        self._epoch_t: list[torch.Tensor] = []
        self._epoch_hist: torch.Tensor | None = None  # counts of the epoch's batch q values

    def _phases(self, run: Run) -> list[Phase]:
        s = self.settings_
        phases = []
        if self.pretrained is None and s["pretrain_epochs"] > 0:
            phases.append(parts.pretrain_phase("autoencoder_", s["pretrain_epochs"],
                                               s["pretrain_batch_size"]))
        phases.append(Phase("cluster", s["cluster_epochs"], self._cluster_step,
                            self._cluster_optimizer, start=self._cluster_start,
                            end_epoch=self._cluster_epoch_end, batch_size=s["batch_size"],
                            snapshots=True))
        return phases

    def _cluster_start(self, run: Run) -> None:
        z, _ = run.embed_all()  # eval mode, un-augmented: as the authors' code
        centers, _ = parts.kmeans_centers(z, self.n_clusters, self.seed,
                                          n_init=int(self.settings_["kmeans_init"]))
        self.head_ = StudentTHead(centers, float(run.knobs["alpha"])).to(run.device)
        run._embed_cache = None
        self._epoch_t = []
        self._epoch_hist = None
        # the clustering phase has its own learning rate; the engine applies the lr knob
        # to the optimizer built next, and later moves of the knob act on it
        lr = float(self.settings_["cluster_lr"])
        run.knobs["lr"] = lr
        run._requested["lr"] = lr

    def _cluster_optimizer(self, run: Run) -> torch.optim.Optimizer:
        s = self.settings_
        params = list(self.autoencoder_.parameters()) + list(self.head_.parameters())
        lr = float(s["cluster_lr"])
        if s["optimizer"] == "sgd":
            opt = parts.sgd(params, lr=lr, momentum=0.9)
        else:
            opt = parts.adam(params, lr=lr)
        return opt

    def _threshold(self, run: Run, q: torch.Tensor) -> torch.Tensor:
        k = run.knobs
        if k["threshold"] == "fixed":
            return torch.tensor(float(k["t"]), device=q.device)
        return losses.otsu_threshold(q, bins=int(self.settings_["bins"]))

    def _stability(self, run: Run, q: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        k = run.knobs
        f = losses.determinacy(q, t, squared=k["determinacy"] == "squared")
        return losses.stability(f, float(k["lam"]))

    def _cluster_step(self, run: Run, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        k = run.knobs
        x = parts.batch(run, idx)
        z = self.autoencoder_.encode(x)
        q = self.head_(z)
        t = self._threshold(run, q)
        s = self._stability(run, q, t)
        lc = losses.stability_loss(s, variance_term=bool(k["stability_variance"]))
        out: dict[str, torch.Tensor] = {"stability_loss": lc}
        loss = lc
        if k["use_reconstruction"]:
            rec = losses.reconstruction(self.autoencoder_.decode(z), x)
            out["rec"] = rec
            loss = loss + rec
        out["loss"] = loss
        out["t"] = t.detach()
        out["stability"] = s.detach().mean()
        self._epoch_t.append(t.detach())
        # the q values each threshold was computed from, for the dashboard's histogram
        h = torch.histc(q.detach().float(), bins=Q_HIST_BINS, min=0.0, max=1.0)
        self._epoch_hist = h if self._epoch_hist is None else self._epoch_hist + h
        return out

    def _cluster_epoch_end(self, run: Run) -> dict:
        if not self._epoch_t:
            return {}
        ts = torch.stack(self._epoch_t).float()
        self._epoch_t = []
        self.threshold_ = float(ts[-1])
        rec: dict[str, Any] = {"t": float(ts.mean()), "t_last": float(ts[-1])}
        if self._epoch_hist is not None:
            rec["q_hist"] = [int(v) for v in self._epoch_hist.round().tolist()]
        self._epoch_hist = None
        return rec

    @torch.no_grad()
    def stability_of(self, run: Run, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample stability (m,) of soft assignments q (m, k) under the run's current
        knobs, with the threshold taken from q itself (Otsu) or the fixed t; and t."""
        t = self._threshold(run, q)
        return self._stability(run, q, t), t

    def _evaluation_extras(self, run: Run, q: torch.Tensor) -> dict[str, Any]:
        # the objective on the whole data (eval mode): 1 - L_c of eq (8) without the code's
        # variance term; it rises while ACC may fall (benchmarks/README.md, session 11)
        s, _ = self.stability_of(run, q)
        return {"mean_stability": float(s.float().mean())}

    def _snapshot_extras(self, run: Run, idx: torch.Tensor) -> dict[str, np.ndarray]:
        _, q = run.embed_all()
        if q is None:
            return {}
        s, _ = self.stability_of(run, q[idx])
        return {"stability": s.float().cpu().numpy()}

    def _state_dict(self, run: Run) -> dict:
        return {"ae": self.autoencoder_.state_dict(), "head": parts.module_state(self.head_),
                "alpha": float(run.knobs["alpha"]), "threshold": float(self.threshold_),
                "epoch_t": [float(v) for v in self._epoch_t],
                "epoch_hist": (None if self._epoch_hist is None
                               else self._epoch_hist.cpu().tolist())}

    def _load_state_dict(self, run: Run, state: dict) -> None:
        self.autoencoder_.load_state_dict(state["ae"])
        if state["head"] is not None:
            self.head_ = StudentTHead(state["head"]["centers"], state["alpha"]).to(run.device)
        self.threshold_ = state["threshold"]
        self._epoch_t = [torch.tensor(v, device=run.device) for v in state["epoch_t"]]
        hist = state.get("epoch_hist")  # absent from checkpoints written before it existed
        self._epoch_hist = None if hist is None else torch.tensor(hist, device=run.device)

    @torch.no_grad()
    def _finalize(self, run: Run) -> None:
        super()._finalize(run)
        _, q = run.embed_all()
        if q is not None:
            s, t = self.stability_of(run, q)
            self.stability_ = s.float().cpu().numpy()
            self.threshold_ = float(t)


def _check_settings(s: dict[str, Any]) -> None:
    """Refuse impossible settings with a message that says how to fix them."""
    if s["threshold"] not in THRESHOLDS:
        raise ValueError(f"threshold must be one of {THRESHOLDS}; got {s['threshold']!r}")
    if not 0.0 < float(s["t"]) < 1.0:
        raise ValueError(f"the fixed threshold t must lie strictly between 0 and 1; got {s['t']}")
    if s["determinacy"] not in ("squared", "linear"):
        raise ValueError(f"determinacy must be 'squared' (paper) or 'linear' (code); "
                         f"got {s['determinacy']!r}")
    if s["optimizer"] not in ("sgd", "adam"):
        raise ValueError(f"optimizer must be 'sgd' or 'adam'; got {s['optimizer']!r}")
    if float(s["lam"]) < 0:
        raise ValueError(f"lam (λ) must be >= 0; got {s['lam']}")
    if float(s["alpha"]) <= 0:
        raise ValueError(f"alpha (the Student-t degree a) must be > 0; got {s['alpha']}")
    if int(s["bins"]) < 2:
        raise ValueError(f"bins must be at least 2; got {s['bins']}")
    for key in ("pretrain_epochs", "cluster_epochs"):
        if int(s[key]) < 0:
            raise ValueError(f"{key} must be >= 0; got {s[key]}")
    for key in ("batch_size", "pretrain_batch_size"):
        if int(s[key]) < 2:
            raise ValueError(f"{key} must be at least 2 (the threshold and the variances "
                             f"need a batch); got {s[key]}")
    ch = s["channels"]
    if ch != "mlp" and (len(tuple(ch)) != 4 or min(int(c) for c in ch) < 1):
        raise ValueError(f"channels must be four positive widths like (32, 64, 128, 256), "
                         f"or 'mlp'; got {ch!r}")
