"""DCCF (Cai et al., Pattern Recognition 2022): deep clustering with a contractive
representation and focal loss.

An MLP autoencoder ``d-500-500-1000-k`` (the embedding has as many dimensions as there are
clusters) learns the representation with reconstruction plus a contractive penalty, the
squared Frobenius norm of the encoder's Jacobian (eqs 6-7); a Student-t clustering layer
(eq 9) learns from the sharpened target T (eq 10) through KL(T || S) plus a focal loss that
treats T as labels (eqs 12-13). The total is L = L_crl + β L_c (eq 14); T is refreshed every
O epochs and training stops when fewer than 0.1 % of the labels change between refreshes.

Choices where the paper is open (see PAPERS.md §5):

- focal loss: eq 11's p_t = y_pred * y_true with T as y_true, summed over the clusters, i.e.
  Σ_j t_ij (1 - s_ij)^γ (-log s_ij) (``focal_target="soft"``, the default: the reading
  under which the focal term shows in the demo's ablation, benchmarks/README.md);
  ``focal_target="hard"`` takes p_t = s_ic at c = argmax_j t_ij;
- the penalty is exact per sample (the ReLU Jacobian through the activation masks) on
  ``contractive_samples`` random rows of each batch (all rows when None): an unbiased
  estimate of the batch mean at a fraction of the cost (``benchmarks/bench_contractive.py``);
- our reconstruction is a mean over pixels, so λ is on that scale; the paper's λ = 1e-7 on
  a pixel-summed error is in effect zero, and the profiles use a λ that the penalty can feel;
- pretraining is plain reconstruction (Sec. 3.4 "pre-train a stacked auto-encoder");
  ``pretrain_contractive=True`` adds the penalty there too.
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

FOCAL_TARGETS = ("hard", "soft")


class DCCF(AutoencoderMethod):
    """Deep clustering with contractive representation learning and focal loss.

    Parameters left at ``None`` come from ``profile``:

    - ``smoke``: a few epochs, to check that everything runs;
    - ``demo``: ``mnist-5k`` on 2 CPU cores in minutes, with random shifts and rotations;
    - ``paper``: the paper's settings (Sec. 3.4): 100 pretraining and 200 clustering
      epochs, lr 1e-3, γ = 2, β = 0.1, stop when < 0.1 % of labels change.

    lam: weight λ of the contractive penalty (eq 7); gamma: focusing parameter γ (eq 12);
    beta: weight β of the clustering loss (eq 14); update_interval: O, epochs between
    refreshes of the target T; tol: the stop rule's fraction of changed labels;
    use_contractive / use_focal / use_kl: the terms (Table 5's ablation switches two);
    focal_target: ``"soft"`` (T as soft labels, eq 11 summed over clusters) or ``"hard"``
    (p_t at T's top class);
    dims: hidden sizes, the embedding size ``n_clusters`` is appended.
    ``pretrained``: a fitted method (its ``autoencoder_``) or an ``MLPAutoencoder`` to start
    from, skipping pretraining. ``y`` given to ``fit`` is only reported.
    """

    PROFILES: dict[str, dict[str, Any]] = {
        "smoke": dict(pretrain_epochs=2, cluster_epochs=2, lr=1e-3, lam=1e-3, gamma=2.0,
                      beta=0.1, update_interval=1, tol=0.0, batch_size=256, augment=False,
                      dims=(500, 500, 1000), contractive_samples=64),
        "demo": dict(pretrain_epochs=100, cluster_epochs=30, lr=1e-3, lam=1e-3, gamma=2.0,
                     beta=0.1, update_interval=1, tol=0.0, batch_size=256, augment=True,
                     dims=(500, 500, 1000), contractive_samples=64),
        "paper": dict(pretrain_epochs=100, cluster_epochs=200, lr=1e-3, lam=1e-3, gamma=2.0,
                      beta=0.1, update_interval=1, tol=0.001, batch_size=256, augment=False,
                      dims=(500, 500, 1000), contractive_samples=None),
    }

    def __init__(self, n_clusters: int = 10, *, profile: str = "demo",
                 pretrain_epochs: int | None = None, cluster_epochs: int | None = None,
                 lr: float | None = None, lam: float | None = None, gamma: float | None = None,
                 beta: float | None = None, update_interval: int | None = None,
                 tol: float | None = None, batch_size: int | None = None,
                 augment: bool | None = None, dims: tuple[int, ...] | None = None,
                 contractive_samples: int | None = None, use_contractive: bool = True,
                 use_focal: bool = True, use_kl: bool = True, focal_target: str = "soft",
                 pretrain_contractive: bool = False, alpha: float = 1.0,
                 pretrained: Any = None, seed: int = 0, device: str = "auto",
                 verbose: bool = True, snapshot_epochs: Any = "auto", snapshot_size: int = 2000,
                 eval_every: int = 1):
        self.n_clusters = n_clusters
        self.profile = profile
        self.pretrain_epochs = pretrain_epochs
        self.cluster_epochs = cluster_epochs
        self.lr = lr
        self.lam = lam
        self.gamma = gamma
        self.beta = beta
        self.update_interval = update_interval
        self.tol = tol
        self.batch_size = batch_size
        self.augment = augment
        self.dims = dims
        self.contractive_samples = contractive_samples
        self.use_contractive = use_contractive
        self.use_focal = use_focal
        self.use_kl = use_kl
        self.focal_target = focal_target
        self.pretrain_contractive = pretrain_contractive
        self.alpha = alpha
        self.pretrained = pretrained
        self.seed = seed
        self.device = device
        self.verbose = verbose
        self.snapshot_epochs = snapshot_epochs
        self.snapshot_size = snapshot_size
        self.eval_every = eval_every

    # ------------------------------------------------------------------ settings
    def settings(self) -> dict[str, Any]:
        s = super().settings()
        if s["focal_target"] not in FOCAL_TARGETS:
            raise ValueError(f"focal_target must be one of {FOCAL_TARGETS}; "
                             f"got {s['focal_target']!r}")
        for name in ("pretrain_epochs", "cluster_epochs"):
            if int(s[name]) < 0:
                raise ValueError(f"{name} must be >= 0; got {s[name]}")
        if int(s["update_interval"]) < 1:
            raise ValueError(f"update_interval is O, in epochs, and must be >= 1; "
                             f"got {s['update_interval']}")
        cs = s.get("contractive_samples")
        if cs is not None and int(cs) < 1:
            raise ValueError(f"contractive_samples must be >= 1 (or None for the whole batch); "
                             f"got {cs}")
        for name in ("lam", "gamma", "beta"):
            if float(s[name]) < 0:
                raise ValueError(f"{name} must be >= 0; got {s[name]}")
        return s

    # ------------------------------------------------------------------ knobs
    def knob_specs(self) -> list[Knob]:
        s = self.settings()
        return [
            *parts.common_knobs(s),
            weight("lam", s["lam"], 0.0, 1.0, help="weight λ of the contractive penalty (eq 7)"),
            Knob("gamma", float(s["gamma"]), "float", 0.0, 5.0,
                 help="focal loss focusing parameter γ (eq 12); 0 = cross-entropy"),
            weight("beta", s["beta"], 0.0, 10.0, help="weight β of the clustering loss (eq 14)"),
            switch("use_contractive", bool(s["use_contractive"]),
                   help="the contractive penalty ||J_f(x)||² (eq 7)"),
            switch("use_focal", bool(s["use_focal"]), help="the focal loss term (eq 12)"),
            switch("use_kl", bool(s["use_kl"]), help="the KL(T||S) term (eq 8)"),
            Knob("update_interval", int(s["update_interval"]), "int", 1, 1000,
                 help="O: epochs between refreshes of the target T", group="schedule"),
            Knob("tol", float(s["tol"]), "float", 0.0, 0.5,
                 help="stop when fewer than this fraction of labels change", group="schedule"),
        ]

    # ------------------------------------------------------------------ engine hooks
    def _build(self, run: Run) -> None:
        s, x0 = self.settings_, run.X[0]
        self.autoencoder_ = start_autoencoder(self, run, lambda: MLPAutoencoder(
            [int(x0.numel()), *s["dims"], int(self.n_clusters)], tuple(x0.shape)))
        self.head_ = None
        self.target_ = None
        self.prev_labels_ = None
        self.delta_ = float("nan")

    def _phases(self, run: Run) -> list[Phase]:
        s = self.settings_
        phases = []
        if self.pretrained is None and s["pretrain_epochs"] > 0:
            phases.append(Phase("pretrain", s["pretrain_epochs"], self._pretrain_step,
                                self._pretrain_optimizer, batch_size=s["batch_size"],
                                evaluate=False))
        phases.append(Phase("cluster", s["cluster_epochs"], self._cluster_step,
                            self._cluster_optimizer, start=self._cluster_start,
                            end_epoch=self._cluster_epoch_end, batch_size=s["batch_size"],
                            snapshots=True))
        return phases

    # ------------------------------------------------------------------ representation
    def _represent(self, run: Run, x: torch.Tensor, contractive: bool,
                   out: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Embedding z (B, k) and L_crl (eq 7) = reconstruction + λ ||J_f(x)||_F² for a batch;
        the penalty on the first ``contractive_samples`` rows (the batch is shuffled)."""
        ae = self.autoencoder_
        lam = float(run.knobs["lam"])
        if contractive and lam > 0:
            m = self.settings_.get("contractive_samples") or len(x)
            za, jac2 = losses.contractive_penalty(ae.encoder, x[:m])  # eq (6)
            z = za if m >= len(x) else torch.cat([za, ae.encode(x[m:])])
            out["jac"] = jac2.mean()
        else:
            z = ae.encode(x)
        rec = losses.reconstruction(ae.decode(z), x)
        out["rec"] = rec
        l_crl = rec + lam * out["jac"] if "jac" in out else rec  # eq (7)
        return z, l_crl

    def _pretrain_step(self, run: Run, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        on = bool(self.pretrain_contractive and run.knobs["use_contractive"])
        _, l_crl = self._represent(run, parts.batch(run, idx), on, out)
        return {"loss": l_crl, **out}

    def _pretrain_optimizer(self, run: Run) -> torch.optim.Optimizer:
        return parts.adam(self.autoencoder_.parameters(), lr=run.knobs["lr"])

    # ------------------------------------------------------------------ clustering
    def _cluster_start(self, run: Run) -> None:
        z, _ = run.embed_all()
        centers, _ = parts.kmeans_centers(z, self.n_clusters, self.seed)
        self.head_ = StudentTHead(centers, self.alpha).to(run.device)
        run._embed_cache = None
        parts.SelfTraining.refresh(run)  # T from S, eqs (9)-(10), and the labels C (eq 18)

    def _cluster_optimizer(self, run: Run) -> torch.optim.Optimizer:
        params = list(self.autoencoder_.parameters()) + list(self.head_.parameters())
        return parts.adam(params, lr=run.knobs["lr"])

    def _cluster_step(self, run: Run, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        k = run.knobs
        out: dict[str, torch.Tensor] = {}
        z, l_crl = self._represent(run, parts.batch(run, idx), bool(k["use_contractive"]), out)
        q, t = self.head_(z), self.target_[idx]
        l_c = z.new_zeros(())
        if k["use_kl"]:
            out["kl"] = losses.kl_clustering(q, t)  # eq (8)
            l_c = l_c + out["kl"]
        if k["use_focal"]:
            out["focal"] = losses.focal_loss(q, t, float(k["gamma"]),  # eq (12)
                                             soft=self.settings_["focal_target"] == "soft")
            l_c = l_c + out["focal"]  # eq (13)
        out["loss"] = l_crl + float(k["beta"]) * l_c  # eq (14)
        return out

    def _cluster_epoch_end(self, run: Run) -> dict:
        """Algorithm 1, lines 3-7: every O epochs refresh T and the labels; stop when fewer
        than ``tol`` of them changed."""
        rec: dict[str, Any] = {"refreshed": False}
        if run.phase_epoch % int(run.knobs["update_interval"]) == 0:
            parts.SelfTraining.refresh_and_check(run)
            rec["refreshed"] = True
        rec["changed"] = float(self.delta_)
        return rec

    # ------------------------------------------------------------------ views
    @torch.no_grad()
    def _snapshot_extras(self, run: Run, idx: torch.Tensor) -> dict[str, np.ndarray]:
        """p_t (the probability S gives the target's class) and ``hard`` (p_t < 0.5): the
        samples the focal loss weighs most, for the t-SNE frames."""
        _, q = run.embed_all()
        if q is None or self.target_ is None:
            return {}
        c = self.target_[idx].argmax(1, keepdim=True)
        p_t = q[idx].gather(1, c).squeeze(1).float().cpu().numpy()
        return {"p_t": p_t, "hard": p_t < 0.5}

    def focal_weights(self, X: np.ndarray | torch.Tensor | None = None) -> np.ndarray:
        """(n,) float32 focal weights (1 - p_t)^γ of the fitted model on its training data
        (X None) or on X, with the current target's classes (X None) or S's argmax."""
        gamma = float(self.run_.knobs["gamma"]) if hasattr(self, "run_") else 2.0
        if X is None:
            _, q = self.run_.embed_all()
            c = (self.target_ if self.target_ is not None else q).argmax(1, keepdim=True)
            p_t = q.gather(1, c).squeeze(1)
        else:
            q = torch.as_tensor(self.predict_proba(X))
            p_t = q.max(1).values
        return losses.focal_weight(p_t, gamma).float().cpu().numpy()

    # ------------------------------------------------------------------ checkpoints
    def _state_dict(self, run: Run) -> dict:
        return {"ae": self.autoencoder_.state_dict(),
                "head": parts.module_state(self.head_),
                "target": self.target_, "prev_labels": self.prev_labels_,
                "delta": float(self.delta_)}

    def _load_state_dict(self, run: Run, state: dict) -> None:
        self.autoencoder_.load_state_dict(state["ae"])
        if state["head"] is not None:
            self.head_ = StudentTHead(state["head"]["centers"], self.alpha).to(run.device)
        self.target_ = None if state["target"] is None else state["target"].to(run.device)
        self.prev_labels_ = (None if state["prev_labels"] is None
                             else state["prev_labels"].to(run.device))
        self.delta_ = state["delta"]
