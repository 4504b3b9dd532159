"""DEC (Xie et al., 2016) and IDEC (Guo et al., 2017): the common ancestor of the five papers.

An autoencoder ``d-500-500-2000-10`` is pretrained on reconstruction; k-means on its
embedding gives the centres of a Student-t head (DEC eq 1); then the encoder and centres
are trained on KL(P || Q) against the sharpened target P (DEC eqs 2-3), refreshed every
``update_interval`` steps. IDEC keeps the decoder and adds the reconstruction loss so the
embedding does not collapse: L = L_r + γ L_c (IDEC eq 7).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from clusterkit import losses
from clusterkit.engine import Phase, Run
from clusterkit.knobs import Knob, switch, weight
from clusterkit.methods import parts
from clusterkit.methods.base import AutoencoderMethod, start_autoencoder
from clusterkit.models import MLPAutoencoder, StudentTHead


class IDEC(AutoencoderMethod):
    """Improved Deep Embedded Clustering: reconstruction + γ · KL(P || Q).

    Parameters left at ``None`` come from ``profile``:

    - ``smoke``: a few epochs, to check that everything runs;
    - ``demo``: ``mnist-5k`` on 2 CPU cores in about 3 minutes: 100 pretraining + 60
      clustering epochs with random shifts and rotations of the inputs (DEC-DA's recipe);
    - ``paper``: the IDEC paper's settings: 200 pretraining epochs, Adam 1e-3, batch 256,
      γ = 0.1, target refreshed every 140 steps, stop when < 0.1 % of labels change.

    ``update_interval``: steps between refreshes of the target P on the whole data (the DEC
    and IDEC papers' practice); ``0`` computes P from each mini-batch's own q instead, with
    no full-data pass (what ClustPy's DEC and IDEC do; ``benchmarks/bench_clustpy.py``), and
    the stop rule ``tol`` is then checked once per epoch.

    ``pretrained``: a fitted method (its ``autoencoder_``) or an autoencoder module to start
    from; the pretraining phase is then skipped. ``y`` given to ``fit`` is only reported.
    """

    PROFILES: dict[str, dict[str, Any]] = {
        "smoke": dict(pretrain_epochs=2, cluster_epochs=2, lr=1e-3, gamma=0.1, augment=False,
                      update_interval=5, tol=0.0, batch_size=256, dims=(500, 500, 2000, 10)),
        "demo": dict(pretrain_epochs=100, cluster_epochs=60, lr=1e-3, gamma=0.1, augment=True,
                     update_interval=20, tol=0.0, batch_size=256, dims=(500, 500, 2000, 10)),
        "paper": dict(pretrain_epochs=200, cluster_epochs=200, lr=1e-3, gamma=0.1,
                      augment=False, update_interval=140, tol=0.001, batch_size=256,
                      dims=(500, 500, 2000, 10)),
    }
    use_reconstruction_default = True

    def __init__(self, n_clusters: int = 10, *, profile: str = "demo",
                 pretrain_epochs: int | None = None, cluster_epochs: int | None = None,
                 lr: float | None = None, gamma: float | None = None,
                 augment: bool | None = None, update_interval: int | None = None,
                 tol: float | None = None, batch_size: int | None = None,
                 dims: tuple[int, ...] | None = None, alpha: float = 1.0,
                 pretrained: Any = None, seed: int = 0, device: str = "auto",
                 verbose: bool = True, snapshot_epochs: Any = "auto", snapshot_size: int = 2000,
                 eval_every: int = 1):
        self.n_clusters = n_clusters
        self.profile = profile
        self.pretrain_epochs = pretrain_epochs
        self.cluster_epochs = cluster_epochs
        self.lr = lr
        self.gamma = gamma
        self.augment = augment
        self.update_interval = update_interval
        self.tol = tol
        self.batch_size = batch_size
        self.dims = dims
        self.alpha = alpha
        self.pretrained = pretrained
        self.seed = seed
        self.device = device
        self.verbose = verbose
        self.snapshot_epochs = snapshot_epochs
        self.snapshot_size = snapshot_size
        self.eval_every = eval_every

    # ------------------------------------------------------------------ knobs
    def knob_specs(self) -> list[Knob]:
        s = self.settings()
        return [
            *parts.common_knobs(s),
            weight("gamma", s["gamma"], 0.0, 10.0, help="weight γ of the clustering loss"),
            switch("use_reconstruction", self.use_reconstruction_default,
                   help="keep the decoder's reconstruction loss (IDEC) or drop it (DEC)"),
            switch("use_clustering", True, help="the KL(P||Q) clustering loss"),
            Knob("update_interval", int(s["update_interval"]), "int", 0, 10_000,
                 help="steps between refreshes of the target P on the whole data (0: P from "
                      "each batch's own q)", group="schedule"),
            Knob("tol", float(s["tol"]), "float", 0.0, 0.5,
                 help="stop when fewer than this fraction of labels change", group="schedule"),
        ]

    def settings(self) -> dict[str, Any]:
        out = super().settings()
        ui, tol = out["update_interval"], out["tol"]
        if isinstance(ui, bool) or not isinstance(ui, (int, np.integer)) or ui < 0:
            raise ValueError(f"update_interval must be an int >= 0 (steps between refreshes "
                             f"of the target P; 0: each batch's own q); got {ui!r}")
        if not 0.0 <= float(tol) < 1.0:
            raise ValueError(f"tol must be in [0, 1) (the fraction of labels that may still "
                             f"change when training stops; 0: never stop early); got {tol!r}")
        return out

    # ------------------------------------------------------------------ engine hooks
    def _build(self, run: Run) -> None:
        s, x0 = self.settings_, run.X[0]
        self.autoencoder_ = start_autoencoder(self, run, lambda: MLPAutoencoder(
            [int(x0.numel()), *s["dims"]], tuple(x0.shape)))
        self.head_ = None
        self.target_ = None
        self.prev_labels_ = None

    def _phases(self, run: Run) -> list[Phase]:
        s = self.settings_
        phases = []
        if self.pretrained is None and s["pretrain_epochs"] > 0:
            phases.append(parts.pretrain_phase("autoencoder_", s["pretrain_epochs"],
                                               s["batch_size"]))
        phases.append(Phase("cluster", s["cluster_epochs"], self._cluster_step,
                            self._cluster_optimizer, start=self._cluster_start,
                            after_step=lambda r, i, o: parts.SelfTraining.after_step(r),
                            end_epoch=self._cluster_epoch_end, batch_size=s["batch_size"],
                            snapshots=True))
        return phases

    def _cluster_start(self, run: Run) -> None:
        z, _ = run.embed_all()
        centers, _ = parts.kmeans_centers(z, self.n_clusters, self.seed)
        self.head_ = StudentTHead(centers, self.alpha).to(run.device)
        run._embed_cache = None
        parts.SelfTraining.refresh(run)

    def _cluster_optimizer(self, run: Run) -> torch.optim.Optimizer:
        params = list(self.autoencoder_.parameters()) + list(self.head_.parameters())
        return parts.adam(params, lr=run.knobs["lr"])

    def _cluster_step(self, run: Run, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        k = run.knobs
        x = parts.batch(run, idx)
        z = self.autoencoder_.encode(x)
        out: dict[str, torch.Tensor] = {}
        loss = z.new_zeros(())
        if k["use_clustering"]:
            q = self.head_(z)
            # DEC eq 3 on the whole data, refreshed every update_interval steps; or on the batch
            p = (losses.target_distribution(q.detach()) if int(k["update_interval"]) == 0
                 else self.target_[idx])
            kl = losses.kl_clustering(q, p)
            out["kl"] = kl
            loss = loss + k["gamma"] * kl
        if k["use_reconstruction"]:
            rec = losses.reconstruction(self.autoencoder_.decode(z), x)
            out["rec"] = rec
            loss = loss + rec
        out["loss"] = loss
        return out

    def _cluster_epoch_end(self, run: Run) -> dict:
        # per-batch targets: the labels' change once an epoch, for the stop rule, or for the
        # record when the epoch's evaluation makes that pass over the data anyway
        if int(run.knobs["update_interval"]) != 0:
            return {"changed": float(getattr(self, "delta_", float("nan")))}
        if not (float(run.knobs["tol"]) > 0 or run.eval_every == 1):
            return {"changed": float("nan")}
        return {"changed": parts.SelfTraining.refresh_and_check(run)}

    def _state_dict(self, run: Run) -> dict:
        return {"ae": self.autoencoder_.state_dict(),
                "head": parts.module_state(self.head_),
                "target": self.target_, "prev_labels": self.prev_labels_,
                "delta": float(getattr(self, "delta_", float("nan")))}

    def _load_state_dict(self, run: Run, state: dict) -> None:
        self.autoencoder_.load_state_dict(state["ae"])
        if state["head"] is not None:
            c = state["head"]["centers"]
            self.head_ = StudentTHead(c, self.alpha).to(run.device)
        self.target_ = None if state["target"] is None else state["target"].to(run.device)
        self.prev_labels_ = (None if state["prev_labels"] is None
                             else state["prev_labels"].to(run.device))
        self.delta_ = state["delta"]


class DEC(IDEC):
    """Deep Embedded Clustering: the decoder is dropped after pretraining and only
    KL(P || Q) trains the encoder (γ = 1). The ``paper`` profile follows the DEC paper's
    target refresh and stop rule, with Adam in place of its SGD."""

    PROFILES = {
        name: {**p, "gamma": 1.0} for name, p in IDEC.PROFILES.items()
    }
    use_reconstruction_default = False
