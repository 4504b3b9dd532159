"""Balanced semi-supervised deep clustering with Lagrangian pairwise constraints.

Duan et al., "Deep semisupervised balanced clustering", IEEE TNNLS 2024 (seed ``000_``;
PAPERS.md section 1). An MLP autoencoder ``d-500-500-2000-10`` is pretrained on
reconstruction (warm-up); k-means on its embedding gives the centres of a Student-t head;
then the encoder, decoder and centres are trained jointly on (eq 12)

    L = L_r + α L_bal + β L_semi

with ``L_bal = Σ_j (Σ_i y_ij²)^-1`` (eq 7, minimal for balanced clusters: Theorem 1) and
``L_semi`` the multiplier-weighted violations of the must-link / cannot-link pairs (eqs
13-14). One Lagrange multiplier per constraint lives on the method (``multipliers_``, in the
order of ``constraints.pairs()``: ML rows, then CL rows); after each network step it takes
a dual-ascent step under ``no_grad`` (eq 17, clipped to ``[0, cap]``; eq 18 as an option).

Two variants:

- ``variant="paper"`` (the text): ``Y`` is the sharpened target of ``q`` (eqs 3-4) with
  gradients flowing through it; multipliers clipped to ``[0, 10]``; the penalty covers the
  constraints themselves, not only those that fall inside a mini-batch: each step embeds the
  endpoints of ``pairs_per_step`` constraints drawn at random (all of them with
  ``pairs_per_step=0``) next to the batch (``scope="sample"``).
- ``variant="code"`` (the authors' public code, DuannYu/BalancedSemi-TNNLS): ``Y = q`` in both
  terms; the penalty is a plain sum over the pairs of the step; their code draws 10 % of the
  batch size of each type per (unshuffled) batch, so every constraint is visited once per
  epoch: we emulate it with ``scope="chunk"`` (step s takes the s-th slice of a fixed
  shuffle of the constraints, P / n_batches pairs); an update that would lift a multiplier
  above 2 is skipped; α = 0.1, β = 0.01 (the published MNIST values); fine-tuning stops when
  fewer than 0.1 % of labels change in an epoch (``paper`` profile).

``scope="batch"`` (either variant) uses only the constraints whose two ends are in the batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from clusterkit import losses
from clusterkit.constraints import Constraints
from clusterkit.engine import Phase, Run
from clusterkit.knobs import Knob, switch, weight
from clusterkit.methods import parts
from clusterkit.methods.base import AutoencoderMethod, start_autoencoder
from clusterkit.models import MLPAutoencoder, StudentTHead

VARIANTS = ("paper", "code")
SCOPES = ("sample", "chunk", "batch")
DUAL_RULES = ("eq17", "eq18")

_DIMS = (500, 500, 2000, 10)
_PROFILES: dict[str, dict[str, Any]] = {
    "smoke": dict(pretrain_epochs=2, cluster_epochs=2, lr=1e-3, alpha=1.0, beta=1.0,
                  gamma=1.0, cap=10.0, augment=False, batch_size=256, dims=_DIMS,
                  pairs_per_step=256, tol=0.0, rec_weight=1.0),
    "demo": dict(pretrain_epochs=100, cluster_epochs=10, lr=1e-3, alpha=1.0, beta=1.0,
                 gamma=1.0, cap=10.0, augment=True, batch_size=256, dims=_DIMS,
                 pairs_per_step=256, tol=0.0, rec_weight=1.0),
    # the paper's settings: warm-up as IDEC, γ = 1, multipliers in [0, 10], Adam 1e-3, batch
    # 256, 50 iterations, stop at Δloss < 1e-4. Its α = 0.1, β = 0.01 (MNIST) weigh an
    # unnormalised ||X - X̂||_F² and sum; with our per-element MSE and the mean over the
    # step's pairs, α = β = 1 is the measured equivalent (demo: ACC 0.97 vs 0.88 at α = 0.1)
    "paper": dict(pretrain_epochs=200, cluster_epochs=50, lr=1e-3, alpha=1.0, beta=1.0,
                  gamma=1.0, cap=10.0, augment=False, batch_size=256, dims=_DIMS,
                  pairs_per_step=0, tol=1e-4, rec_weight=1.0),
}
#: what variant="code" changes (the authors' public code, PAPERS.md section 1)
_CODE = dict(scope="chunk", assignment="q", reduction="sum", cap=2.0, skip_above=True,
             stop="labels", tol=0.001, kmeans_n_init=20, pretrain_epochs=50, alpha=0.1,
             beta=0.01)
_PAPER = dict(scope="sample", assignment="target", reduction="mean", skip_above=False,
              stop="objective", kmeans_n_init=20)


class BalancedSemiSupervised(AutoencoderMethod):
    """Deep semi-supervised balanced clustering: ``L_r + α L_bal + β L_semi`` (eq 12).

    Parameters left at ``None`` come from ``profile`` and ``variant``:

    - ``smoke``: a few epochs, to check that everything runs;
    - ``demo``: ``mnist-5k`` on 2 CPU cores: 100 augmented pretraining epochs (or
      ``pretrained=``), 10 joint epochs, 256 constraints per step, α = β = 1;
    - ``paper``: the paper's settings (Sec. IV-A) for a GPU.

    ``variant``: ``"paper"`` (the text) or ``"code"`` (the authors' code); see the module
    docstring. ``constraints`` given to ``fit`` are a :class:`~clusterkit.constraints.
    Constraints` (e.g. :meth:`make_constraints`: 20 % of n, half must-link); without them
    the semi-supervised term is off. ``pretrained``: a fitted method (its ``autoencoder_``)
    or an autoencoder module; the warm-up is then skipped. ``y`` given to ``fit`` is only
    reported. ``rec_weight``: the weight of ``L_r`` (1 in eq 12; our ``L_r`` is a mean over
    pixels, the paper's a sum, so raising it restores the paper's balance between the terms).

    Fitted attributes: ``labels_`` (n,), ``cluster_centers_`` (k, 10), ``embedding_``
    (n, 10), ``multipliers_`` (P,) float32 in the order of ``constraints.pairs()``,
    ``multiplier_history_`` (list of ``(epoch, (P,) float32)``), ``history_``, ``run_``.
    """

    PROFILES = _PROFILES

    def __init__(self, n_clusters: int = 10, *, profile: str = "demo", variant: str = "paper",
                 pretrain_epochs: int | None = None, cluster_epochs: int | None = None,
                 lr: float | None = None, alpha: float | None = None,
                 beta: float | None = None, gamma: float | None = None,
                 cap: float | None = None, dual_rule: str = "eq17",
                 scope: str | None = None, pairs_per_step: int | None = None,
                 augment: bool | None = None, tol: float | None = None,
                 batch_size: int | None = None, dims: tuple[int, ...] | None = None,
                 rec_weight: float | None = None,
                 use_reconstruction: bool = True, use_balance: bool = True,
                 use_semi: bool = True, student_alpha: float = 1.0,
                 pretrained: Any = None, seed: int = 0, device: str = "auto",
                 verbose: bool = True, snapshot_epochs: Any = "auto", snapshot_size: int = 2000,
                 eval_every: int = 1):
        self.n_clusters = n_clusters
        self.profile = profile
        self.variant = variant
        self.pretrain_epochs = pretrain_epochs
        self.cluster_epochs = cluster_epochs
        self.lr = lr
        self.alpha = alpha
        self.beta = beta
        self.gamma = gamma
        self.cap = cap
        self.dual_rule = dual_rule
        self.scope = scope
        self.pairs_per_step = pairs_per_step
        self.augment = augment
        self.tol = tol
        self.batch_size = batch_size
        self.dims = dims
        self.rec_weight = rec_weight
        self.use_reconstruction = use_reconstruction
        self.use_balance = use_balance
        self.use_semi = use_semi
        self.student_alpha = student_alpha
        self.pretrained = pretrained
        self.seed = seed
        self.device = device
        self.verbose = verbose
        self.snapshot_epochs = snapshot_epochs
        self.snapshot_size = snapshot_size
        self.eval_every = eval_every

    _NOT_SETTINGS = AutoencoderMethod._NOT_SETTINGS | {"variant"}

    # ------------------------------------------------------------------ settings
    def settings(self) -> dict[str, Any]:
        """Profile, then the variant's choices, then explicit arguments (not None)."""
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}; got {self.variant!r}")
        if self.dual_rule not in DUAL_RULES:
            raise ValueError(f"dual_rule must be one of {DUAL_RULES}; got {self.dual_rule!r}")
        if self.scope is not None and self.scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}; got {self.scope!r}")
        if self.profile not in self.PROFILES:
            raise ValueError(f"profile must be one of {tuple(self.PROFILES)}; "
                             f"got {self.profile!r}")
        out = dict(self.PROFILES[self.profile])
        var = dict(_CODE if self.variant == "code" else _PAPER)
        if self.variant == "code" and self.profile == "smoke":
            var.pop("pretrain_epochs")
        if self.variant == "code" and self.profile != "paper":
            var.pop("tol")  # the demo and smoke runs keep their fixed number of epochs
        out.update(var)
        for k, v in self.get_params(deep=False).items():
            if k not in self._NOT_SETTINGS and v is not None:
                out[k] = v
        for k in ("alpha", "beta", "gamma", "cap", "lr", "rec_weight"):
            if not (isinstance(out[k], (int, float)) and np.isfinite(out[k]) and out[k] >= 0):
                raise ValueError(f"{k} must be a finite number >= 0; got {out[k]!r}")
        if int(out["pairs_per_step"]) < 0:
            raise ValueError(f"pairs_per_step must be >= 0 (0 = all constraints at every "
                             f"step); got {out['pairs_per_step']!r}")
        return out

    @staticmethod
    def make_constraints(y: Any, fraction: float = 0.2, ml_ratio: float = 0.5,
                         seed: int = 0, n_pairs: int | None = None) -> Constraints:
        """Pairs drawn from labels as in the paper: ``fraction`` × n of them (20 %), a share
        ``ml_ratio`` must-link. A simulated oracle: pass the result to ``fit``."""
        if n_pairs is not None:
            return Constraints.from_labels(y, n_pairs=n_pairs, ml_ratio=ml_ratio, seed=seed)
        return Constraints.from_labels(y, fraction=fraction, ml_ratio=ml_ratio, seed=seed)

    # ------------------------------------------------------------------ sklearn API
    def prepare(self, X, constraints: Constraints | None = None, *, y=None,
                callbacks: list | None = None) -> Run:
        """As the base class; ``constraints`` must be a :class:`Constraints` or None."""
        if constraints is not None and not isinstance(constraints, Constraints):
            raise ValueError(f"constraints must be a clusterkit Constraints (e.g. "
                             f"BalancedSemiSupervised.make_constraints(y)); got "
                             f"{type(constraints).__name__}")
        self._constraints_in = constraints
        return super().prepare(X, constraints, y=y, callbacks=callbacks)

    # ------------------------------------------------------------------ knobs
    def knob_specs(self) -> list[Knob]:
        s = self.settings()
        cons = getattr(self, "_constraints_in", None)
        n = cons.n if cons is not None else 0
        src = cons.source if cons is not None else None
        n_pairs = len(cons) if cons is not None else 0
        ratio = float(src["ml_ratio"]) if src is not None else (
            cons.n_ml / len(cons) if cons is not None and len(cons) else 0.5)
        high = max(n_pairs, min(n * (n - 1) // 2, 4 * n)) if n else max(n_pairs, 1)
        return [
            *parts.common_knobs(s),
            weight("rec_weight", s["rec_weight"], 0.0, 100.0,
                   help="weight of the reconstruction term L_r (eq 12 has 1)"),
            weight("alpha", s["alpha"], 0.0, 10.0, help="weight α of the balance loss (eq 7)"),
            weight("beta", s["beta"], 0.0, 100.0,
                   help="weight β of the constraint penalty (eq 13)"),
            Knob("gamma", float(s["gamma"]), "float", 0.0, 10.0, group="multipliers",
                 help="dual-ascent step γ of the Lagrange multipliers (eq 17)"),
            Knob("cap", float(s["cap"]), "float", 0.0, 100.0, group="multipliers",
                 help="upper bound of every multiplier"),
            Knob("dual_rule", self.dual_rule, "choice", options=DUAL_RULES,
                 group="multipliers", help="eq17: additive step; eq18: multiplicative"),
            Knob("n_pairs", int(n_pairs), "int", 0, int(high), group="constraints",
                 help="constraint budget (label-drawn constraints grow or shrink as a prefix)"),
            Knob("ml_ratio", ratio, "float", 0.0, 1.0, group="constraints",
                 help="share of must-link pairs in the budget"),
            switch("use_reconstruction", self.use_reconstruction, help="the L_r term"),
            switch("use_balance", self.use_balance, help="the balance term α L_bal (eq 7)"),
            switch("use_semi", self.use_semi, help="the constraint term β L_semi (eq 13)"),
        ]

    def _validate_knob(self, run: Run, name: str, value: Any) -> None:
        if name not in ("n_pairs", "ml_ratio"):
            return
        cons = run.constraints
        src = None if cons is None else cons.source
        if src is None:
            raise ValueError(f"the {name} knob needs constraints drawn from labels "
                             "(Constraints.from_labels or make_constraints); this run has "
                             + ("none" if cons is None else "explicit pairs"))
        n_pairs = int(value) if name == "n_pairs" else int(src["n_pairs"])
        ratio = float(value) if name == "ml_ratio" else float(src["ml_ratio"])
        max_ml, max_cl = Constraints.max_pairs(src["y"])
        n_ml = int(np.floor(n_pairs * ratio + 0.5))
        n_cl = n_pairs - n_ml
        if n_ml > max_ml or n_cl > max_cl:
            raise ValueError(
                f"{n_pairs} pairs at ml_ratio={ratio:g} need {n_ml} must-link and {n_cl} "
                f"cannot-link pairs, but these labels allow at most {max_ml} must-link and "
                f"{max_cl} cannot-link pairs (Constraints.max_pairs(y)); choose a smaller "
                "budget or another ratio")

    def _on_knob_change(self, run: Run, name: str, old: Any, new: Any) -> None:
        if name == "n_pairs":
            self._set_constraints(run, run.constraints.with_budget(n_pairs=int(new)))
        elif name == "ml_ratio":
            self._set_constraints(run, run.constraints.with_budget(ml_ratio=float(new)))

    def _set_constraints(self, run: Run, new: Constraints) -> None:
        """Swap the run's constraints, carrying each surviving pair's multiplier over by
        identity (type, i, j), never by position: ML rows precede CL rows in pairs()."""
        old = run.constraints
        mult = torch.ones(len(new), device=run.device)
        if old is not None and len(old) and len(new) and self.multipliers_ is not None:
            _, ia, ib = np.intersect1d(_pair_codes(old), _pair_codes(new), assume_unique=True,
                                       return_indices=True)
            mult[torch.as_tensor(ib, device=run.device)] = \
                self.multipliers_[torch.as_tensor(ia, device=run.device)]
        run.constraints = new
        self._constraints_in = new
        self.multipliers_ = mult
        self._chunk_perm = None
        self._pending = None

    # ------------------------------------------------------------------ engine hooks
    def _build(self, run: Run) -> None:
        s, x0 = self.settings_, run.X[0]
        self.autoencoder_ = start_autoencoder(self, run, lambda: MLPAutoencoder(
            [int(x0.numel()), *s["dims"]], tuple(x0.shape)))
        self.head_ = None
        cons = run.constraints
        if getattr(self, "_constraints_in", None) is not cons:  # a run built without prepare()
            self._constraints_in = cons  # (Run.load): size the budget knob's range for it
            for kn in self.knob_specs():
                if kn.name in ("n_pairs", "ml_ratio"):
                    run.knob_specs[kn.name] = kn
        self.multipliers_ = torch.ones(0 if cons is None else len(cons), device=run.device)
        self.multiplier_history_: list[tuple[int, np.ndarray]] = []
        self._chunk_perm = None
        self._pending = None
        self.prev_labels_ = None
        self._epoch_loss: list[float] = []
        self._last_loss: float | None = None

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

    def _cluster_start(self, run: Run) -> None:
        z, _ = run.embed_all()
        centers, _ = parts.kmeans_centers(z, self.n_clusters, self.seed,
                                          n_init=self.settings_["kmeans_n_init"])
        self.head_ = StudentTHead(centers, self.student_alpha).to(run.device)
        run._embed_cache = None
        self._record_multipliers(run)

    def _cluster_optimizer(self, run: Run) -> torch.optim.Optimizer:
        params = list(self.autoencoder_.parameters()) + list(self.head_.parameters())
        return parts.adam(params, lr=run.knobs["lr"])

    def _assign(self, q: torch.Tensor) -> torch.Tensor:
        """Y of the paper (eq 4: the sharpened target, with gradient) or q (the code)."""
        if self.settings_["assignment"] == "q":
            return q
        return losses.target_distribution(q)  # eq (4)

    def _step_pairs(self, run: Run, idx: torch.Tensor):
        """The constraints this step penalises: (which (m,), i (m,), j (m,), is_ml (m,)),
        sample indices on the device; None when there are none."""
        cons = run.constraints
        if cons is None or len(cons) == 0:
            return None
        s = self.settings_
        pairs, is_ml = cons.torch_pairs(run.device)
        P = len(cons)
        if s["scope"] == "batch":
            a, b, ml, which = cons.in_batch(idx)
            return (which, idx[a], idx[b], ml) if len(which) else None
        if s["scope"] == "chunk":  # the authors' code: each constraint once per epoch
            if self._chunk_perm is None or run._batch_pos == 0:
                self._chunk_perm = torch.randperm(P, generator=run.generator,
                                                  device=run.device)
            nb = run._n_batches(run.phases[run.phase_idx])
            lo, hi = run._batch_pos * P // nb, (run._batch_pos + 1) * P // nb
            which = self._chunk_perm[lo:hi]
        else:  # "sample": m constraints at random, all of them when pairs_per_step = 0
            m = int(s["pairs_per_step"])
            if m == 0 or m >= P:
                which = torch.arange(P, device=run.device)
            else:
                which = torch.randperm(P, generator=run.generator, device=run.device)[:m]
        if len(which) == 0:
            return None
        return which, pairs[which, 0], pairs[which, 1], is_ml[which]

    def _cluster_step(self, run: Run, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        k, s = run.knobs, self.settings_
        B = len(idx)
        use_semi = bool(k["use_semi"]) and k["beta"] > 0
        step_pairs = self._step_pairs(run, idx) if use_semi else None
        batch_scope = s["scope"] == "batch"
        if step_pairs is not None and not batch_scope:
            which, pi, pj, is_ml = step_pairs
            ends, inv = torch.unique(torch.cat([pi, pj]), return_inverse=True)
            rows = torch.cat([idx, ends])
        else:
            rows = idx
        x = parts.batch(run, rows)
        z = self.autoencoder_.encode(x)
        q = self.head_(z)
        yb = self._assign(q[:B])
        out: dict[str, torch.Tensor] = {}
        loss = z.new_zeros(())
        if k["use_reconstruction"]:
            rec = losses.reconstruction(self.autoencoder_.decode(z[:B]), x[:B])
            out["rec"] = rec
            loss = loss + k["rec_weight"] * rec
        if k["use_balance"] and k["alpha"] > 0:
            bal = losses.balance_loss(yb)
            out["bal"] = bal
            loss = loss + k["alpha"] * bal
        self._pending = None
        if step_pairs is not None:
            which, pi, pj, is_ml = step_pairs
            if batch_scope:
                pos = torch.full((run.n,), -1, dtype=torch.long, device=run.device)
                pos[idx] = torch.arange(B, device=run.device)
                yi, yj = losses.rows(yb, pos[pi]), losses.rows(yb, pos[pj])
            else:
                yc = self._assign(q[B:])
                m = len(which)
                yi, yj = losses.rows(yc, inv[:m]), losses.rows(yc, inv[m:])
            mult = self.multipliers_[which]
            semi = losses.semi_loss(yi, yj, is_ml, mult, reduction=s["reduction"])
            out["semi"] = semi
            loss = loss + k["beta"] * semi
            self._pending = (which, losses.pair_violation(yi, yj, is_ml).detach())
        out["loss"] = loss
        return out

    def _after_step(self, run: Run, idx: torch.Tensor, out: dict) -> None:
        """Dual ascent on the multipliers of this step's constraints (eq 17 or 18)."""
        self._epoch_loss.append(float(out["loss"].detach()))
        if self._pending is None:
            return
        which, viol = self._pending
        self._pending = None
        k = run.knobs
        self.multipliers_[which] = losses.dual_ascent(
            self.multipliers_[which], viol, float(k["gamma"]), float(k["cap"]),
            rule=k["dual_rule"], skip_above=bool(self.settings_["skip_above"]))

    def _record_multipliers(self, run: Run) -> dict:
        mu = self.multipliers_.detach().float().cpu().numpy().copy()
        self.multiplier_history_.append((run.phase_epoch, mu))
        if len(mu) == 0:
            return {}
        cap = float(run.knobs["cap"])
        return {"mult_mean": float(mu.mean()), "mult_median": float(np.median(mu)),
                "mult_max": float(mu.max()), "at_cap": float((mu >= cap - 1e-6).mean())}

    def _cluster_epoch_end(self, run: Run) -> dict:
        rec = self._record_multipliers(run)
        s = self.settings_
        tol = float(s.get("tol", 0.0) or 0.0)
        loss = float(np.mean(self._epoch_loss)) if self._epoch_loss else float("nan")
        self._epoch_loss = []
        _, q = run.embed_all()
        labels = q.argmax(1)
        changed = 1.0 if self.prev_labels_ is None else float(
            (labels != self.prev_labels_).float().mean())
        self.prev_labels_ = labels
        rec["changed"] = changed
        if tol > 0 and run.phase_epoch > 1:
            if s["stop"] == "labels" and changed < tol:
                run.finish_phase()
            elif s["stop"] == "objective" and self._last_loss is not None \
                    and abs(loss - self._last_loss) < tol:
                run.finish_phase()
        self._last_loss = loss
        return rec

    def _snapshot_extras(self, run: Run, idx: torch.Tensor) -> dict[str, np.ndarray]:
        """Per shown point: the largest multiplier among its constraints (0 if it has none)."""
        cons = run.constraints
        if cons is None or len(cons) == 0 or len(self.multipliers_) != len(cons):
            return {}
        pairs, _ = cons.torch_pairs(run.device)
        per_point = torch.zeros(run.n, device=run.device)
        m = self.multipliers_.float()
        per_point.scatter_reduce_(0, pairs[:, 0], m, reduce="amax")
        per_point.scatter_reduce_(0, pairs[:, 1], m, reduce="amax")
        return {"multiplier": per_point[idx].cpu().numpy()}

    def _state_dict(self, run: Run) -> dict:
        return {"ae": self.autoencoder_.state_dict(),
                "head": parts.module_state(self.head_),
                "multipliers": self.multipliers_.detach().cpu(),
                "multiplier_history": [(int(e), torch.from_numpy(m))
                                       for e, m in self.multiplier_history_],
                "prev_labels": self.prev_labels_,
                "last_loss": self._last_loss}

    def _load_state_dict(self, run: Run, state: dict) -> None:
        self.autoencoder_.load_state_dict(state["ae"])
        if state["head"] is not None:
            self.head_ = StudentTHead(state["head"]["centers"], self.student_alpha).to(
                run.device)
        self.multipliers_ = state["multipliers"].to(run.device)
        self.multiplier_history_ = [(e, m.numpy()) for e, m in state["multiplier_history"]]
        self.prev_labels_ = (None if state["prev_labels"] is None
                             else state["prev_labels"].to(run.device))
        self._last_loss = state["last_loss"]

    @torch.no_grad()
    def _finalize(self, run: Run) -> None:
        super()._finalize(run)
        self.constraints_ = run.constraints


def _pair_codes(c: Constraints) -> np.ndarray:
    """(P,) int64 identity of each row of c.pairs(): type, i, j in one number."""
    p = c.pairs()
    return (p[:, 0] * c.n + p[:, 1]) * 2 + (~c.is_ml()).astype(np.int64)
