"""Active Deep Clustering (ADC; Sun, Zhou, Du & Li, Knowledge-Based Systems 2022).

A Siamese CNN f (3×3 convs + ReLU, three 2×2 max-pools, a final average pool, FC to 10-d)
learns from pairwise answers with the contrastive loss (eq 2): must-link pairs are pulled
together, cannot-link pairs pushed at least δ apart. A DEC clustering layer on f (eqs 3-5,
k-means initialised) gives the soft assignments q. Alg. 2 repeats T rounds:

    select k pairs (round 1: random; later: Alg. 1 on q, see clusterkit.active)
    -> ask (a person, or a simulated LabelOracle) -> train f on all answers so far
    -> k-means + DEC fine-tune -> new q.  Final labels: argmax_j q_ij.

In clusterkit each round is one :class:`~clusterkit.engine.Run` with two phases,
``"siamese"`` (contrastive loss on the answered pairs) and ``"dec"`` (KL(P||Q) over the data,
plus, by default, the contrastive loss so that the answers are not forgotten). The method
keeps its network between rounds: ``prepare(X, constraints)`` makes the next round's run
(the dashboard and ``widgets.PairLabeler`` drive it), ``fit(X, y=y, oracle=...)`` runs all
T rounds headless with a simulated oracle.

Deviations from the paper in the ``demo`` profile (CPU, minutes), all switchable:
a few epochs per round instead of 100; Adam instead of RMSProp/SGD; the contrastive term is
kept during the DEC fine-tune (``pair_weight``; 0 = the paper); the answers' transitive
closure (``closure``: pairs implied by must-link chains and cannot-links between them)
feeds the contrastive loss; random shifts/rotations of the inputs (``augment``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from clusterkit import losses
from clusterkit.constraints import Constraints
from clusterkit.engine import Phase, Run, resolve_device
from clusterkit.history import History, Snapshot
from clusterkit.knobs import Knob, switch, weight
from clusterkit.methods import parts
from clusterkit.methods.base import DeepClusteringMethod, copy_module
from clusterkit.models import SiameseCNN, StudentTHead, _mlp


class ActiveDeepClustering(DeepClusteringMethod):
    """ADC: Siamese CNN + contrastive loss (margin δ) + DEC layer, trained over T rounds of
    actively chosen pairwise questions.

    Parameters left at ``None`` come from ``profile``:

    - ``smoke``: 2 rounds of a couple of epochs, to check that everything runs;
    - ``demo``: ``mnist-5k`` on 2 CPU cores: T = 5 rounds of k = n/25 pairs (n/5 in all),
      30 siamese and 3 DEC epochs per round, with the deviations listed in the module
      docstring (final ACC, 1 thread, seeds 0 / 1 / 2: .912 / .941 / .945 with 20 siamese
      epochs, .958 / .961 / .958 with 30);
    - ``paper``: the paper's settings (section 3.4): T = 5, k = n/25, δ = 1, contrastive
      training RMSProp lr 1e-3, batch 64 pairs, 100 epochs per round; DEC fine-tune SGD
      lr 1e-3; no closure, no contrastive term during DEC, no augmentation.

    rounds: T; budget: pairs per round k (None: round(n / 25)); strategy: ``"adc"``,
    ``"random"`` (ADC-random) or ``"uncertain"`` (ADC-Uncertain), used by ``fit``;
    siamese_epochs / dec_epochs: epochs per round of each phase (a siamese epoch is one
    pass over the answered pairs, a DEC epoch one pass over the data); margin: δ of eq 2;
    dec_weight: weight of KL(P||Q) in the DEC phase; pair_weight: weight of the
    contrastive loss during the DEC phase; closure: train on the pairs the answers imply;
    widths: channels of the CNN's three stages (vectors get an MLP ``d-256-256-dim``).
    """

    PROFILES: dict[str, dict[str, Any]] = {
        "smoke": dict(rounds=2, budget=None, strategy="adc", pretrain_epochs=1, knn=5,
                      siamese_epochs=2, dec_epochs=1,
                      lr=1e-3, margin=1.0, dec_weight=1.0, pair_weight=1.0, closure=True,
                      augment=False, pair_batch=64, batch_size=256, update_interval=20,
                      widths=(8, 16, 32), dim=10, optimizer="adam"),
        "demo": dict(rounds=5, budget=None, strategy="adc", pretrain_epochs=8, knn=5,
                     siamese_epochs=30, dec_epochs=3,
                     lr=1e-3, margin=1.0, dec_weight=1.0, pair_weight=1.0, closure=True,
                     augment=True, pair_batch=64, batch_size=256, update_interval=20,
                     widths=(16, 32, 64), dim=10, optimizer="adam"),
        "paper": dict(rounds=5, budget=None, strategy="adc", pretrain_epochs=0, knn=5,
                      siamese_epochs=100,
                      dec_epochs=20, lr=1e-3, margin=1.0, dec_weight=1.0, pair_weight=0.0,
                      closure=False, augment=False, pair_batch=64, batch_size=256,
                      update_interval=140, widths=(32, 64, 128), dim=10, optimizer="paper"),
    }

    def __init__(self, n_clusters: int = 10, *, profile: str = "demo",
                 rounds: int | None = None, budget: int | None = None,
                 strategy: str | None = None, pretrain_epochs: int | None = None,
                 knn: int | None = None, siamese_epochs: int | None = None,
                 dec_epochs: int | None = None, lr: float | None = None,
                 margin: float | None = None, dec_weight: float | None = None,
                 pair_weight: float | None = None, closure: bool | None = None,
                 augment: bool | None = None, pair_batch: int | None = None,
                 batch_size: int | None = None, update_interval: int | None = None,
                 widths: tuple[int, ...] | None = None, dim: int | None = None,
                 optimizer: str | None = None, alpha: float = 1.0, pretrained: Any = None,
                 seed: int = 0,
                 device: str = "auto", verbose: bool = False, snapshot_epochs: Any = "end",
                 snapshot_size: int = 2000,
                 eval_every: int = 1):
        self.n_clusters = n_clusters
        self.profile = profile
        self.rounds = rounds
        self.budget = budget
        self.strategy = strategy
        self.pretrain_epochs = pretrain_epochs
        self.knn = knn
        self.siamese_epochs = siamese_epochs
        self.dec_epochs = dec_epochs
        self.lr = lr
        self.margin = margin
        self.dec_weight = dec_weight
        self.pair_weight = pair_weight
        self.closure = closure
        self.augment = augment
        self.pair_batch = pair_batch
        self.batch_size = batch_size
        self.update_interval = update_interval
        self.widths = widths
        self.dim = dim
        self.optimizer = optimizer
        self.alpha = alpha
        self.pretrained = pretrained
        self.seed = seed
        self.device = device
        self.verbose = verbose
        self.snapshot_epochs = snapshot_epochs
        self.snapshot_size = snapshot_size
        self.eval_every = eval_every

    # ------------------------------------------------------------------ settings / knobs
    def settings(self) -> dict[str, Any]:
        s = super().settings()
        for k in ("rounds", "pretrain_epochs", "knn", "siamese_epochs", "dec_epochs",
                  "pair_batch", "batch_size", "update_interval"):
            if int(s[k]) < (0 if k.endswith("epochs") else 1):
                raise ValueError(f"{k} must be a {'non-negative' if 'epochs' in k else 'positive'}"
                                 f" integer; got {s[k]!r}")
        if s["strategy"] not in ("adc", "random", "uncertain"):
            raise ValueError(f"strategy must be 'adc', 'random' or 'uncertain'; got "
                             f"{s['strategy']!r}")
        if not float(s["margin"]) > 0:
            raise ValueError(f"margin δ must be positive; got {s['margin']!r}")
        if s["optimizer"] not in ("adam", "paper"):
            raise ValueError(f"optimizer is 'adam' or 'paper' (RMSProp, then SGD); got "
                             f"{s['optimizer']!r}")
        return s

    def knob_specs(self) -> list[Knob]:
        s = {**self.settings(), **getattr(self, "knob_state_", {})}
        return [
            *parts.common_knobs(s),
            Knob("margin", float(s["margin"]), "float", 0.05, 10.0,
                 help="margin δ of the contrastive loss (eq 2)", group="weights"),
            weight("dec_weight", s["dec_weight"], 0.0, 10.0,
                   help="weight of the DEC clustering loss KL(P||Q)"),
            weight("pair_weight", s["pair_weight"], 0.0, 10.0,
                   help="weight of the contrastive loss during the DEC phase (0 = paper)"),
            switch("closure", bool(s["closure"]),
                   help="also train on the pairs the answers imply (must-link chains)"),
            Knob("siamese_epochs", int(s["siamese_epochs"]), "int", 0, 1000,
                 help="epochs over the answered pairs per round", group="schedule"),
            Knob("dec_epochs", int(s["dec_epochs"]), "int", 0, 1000,
                 help="DEC fine-tuning epochs per round", group="schedule"),
            Knob("update_interval", int(s["update_interval"]), "int", 1, 10_000,
                 help="steps between refreshes of the target P", group="schedule"),
        ]

    def _on_knob_change(self, run: Run, name: str, old: Any, new: Any) -> None:
        self.knob_state_ = {**getattr(self, "knob_state_", {}), name: new}
        for ph in run.phases:
            if (name, ph.name) in (("siamese_epochs", "siamese"), ("dec_epochs", "dec")):
                ph.epochs = int(new)
        if name == "dec_epochs" and isinstance(run.snapshot_epochs, list):
            run.snapshot_epochs = [int(new)]
        if name == "closure":
            self._prepare_pairs(run)

    # ------------------------------------------------------------------ public API
    def reset(self) -> ActiveDeepClustering:
        """Forget the network and the rounds: the next ``prepare``/``fit`` starts afresh."""
        for a in ("net_", "head_", "target_", "prev_labels_", "q_", "labels_", "embedding_",
                  "cluster_centers_", "run_", "history_", "knob_state_", "pretrained_net_"):
            if hasattr(self, a):
                delattr(self, a)
        self.round_ = 0
        self.rounds_: list[dict] = []
        self.histories_: list[History] = []
        self.seconds_ = 0.0
        return self

    def prepare(self, X: Any, constraints: Any = None, *, y: Any = None,
                callbacks: list | None = None) -> Run:
        """The run of the **next round**: train on ``constraints`` (all answers so far),
        starting from the current network when this method already trained on data of the
        same size (otherwise from scratch). ``fit()`` on the run trains it; ``record_round``
        (called by ``fit_round``) files its metrics."""
        X = self._check_X(X)
        if y is not None:
            y = np.asarray(y)
            if y.shape != (len(X),):
                raise ValueError(f"y has shape {y.shape}; it needs one label per row of X, "
                                 f"shape ({len(X)},)")
        if constraints is not None:
            if not isinstance(constraints, Constraints):
                raise ValueError("constraints must be a clusterkit Constraints object (e.g. "
                                 "strategy.constraints or Constraints.from_pairs(n, ml, cl))")
            if constraints.n != len(X):
                raise ValueError(f"the constraints index {constraints.n} samples but X has "
                                 f"{len(X)} rows; build them for this X")
        warm = (getattr(self, "net_", None) is not None
                and getattr(self, "input_shape_", None) == tuple(X.shape[1:])
                and getattr(self, "n_", None) == len(X))
        if not warm:
            self.reset()
        s = self.settings()
        snaps = self.snapshot_epochs
        if snaps == "end":
            snaps = [int({**s, **getattr(self, "knob_state_", {})}["dec_epochs"])]
        return Run(self, X, y, constraints, device=resolve_device(self.device), seed=self.seed,
                   snapshot_epochs=snaps, snapshot_size=self.snapshot_size,
                   eval_every=self.eval_every, progress=self.verbose, callbacks=callbacks)

    def fit_round(self, X: Any, constraints: Any = None, *, y: Any = None) -> dict:
        """Train one round on ``constraints`` (foreground) and return its record."""
        run = self.prepare(X, constraints, y=y)
        run.fit()
        return self.record_round(run)

    def record_round(self, run: Run) -> dict:
        """File a finished round's run: metrics, pairs, seconds -> ``rounds_`` (returned)."""
        if run in getattr(self, "_recorded", []):
            return self.rounds_[-1]
        self._recorded = [*getattr(self, "_recorded", []), run][-2:]
        self.round_ = getattr(self, "round_", 0) + 1
        self.seconds_ = getattr(self, "seconds_", 0.0) + run.seconds
        c = run.constraints
        rec: dict[str, Any] = {"round": self.round_, "pairs": 0 if c is None else len(c),
                               "ml": 0 if c is None else c.n_ml,
                               "cl": 0 if c is None else c.n_cl,
                               "seconds": round(self.seconds_, 2)}
        rec.update({k: v for k, v in run.evaluate().items() if k != "sizes"})
        self.rounds_.append(rec)
        self.histories_.append(run.history)
        return rec

    def fit(self, X: Any, constraints: Any = None, *, y: Any = None,
            oracle: Callable[[np.ndarray], np.ndarray] | None = None,
            strategy: Any = None,
            callback: Callable[[dict], None] | None = None) -> ActiveDeepClustering:
        """Alg. 2 headless: T rounds of select -> ask ``oracle`` -> train.

        X: (n, c, h, w) images or (n, d) vectors, float32. oracle: a callable answering
        (m, 2) pairs with (m,) bool "same?" (e.g. ``LabelOracle(y, error_rate)``); without
        one, ``constraints`` must be given and one round is trained on them (no queries).
        strategy: a :class:`~clusterkit.active.QueryStrategy` (default: the ``strategy``
        setting over n samples, T rounds); constraints: answers known before round 1.
        y: (n,) true labels, only reported (``rounds_``). callback(record) after each round.
        """
        from clusterkit.active import QueryStrategy, make_strategy

        X = self._check_X(X)
        n = len(X)
        self.reset()
        s = self.settings()
        if oracle is None:
            if constraints is None:
                raise ValueError("ActiveDeepClustering learns from answers: pass oracle="
                                 "LabelOracle(y) to simulate a person, or constraints= to "
                                 "train one round on pairs you already have")
            rec = self.fit_round(X, constraints, y=y)
            if callback is not None:
                callback(rec)
            return self
        if not callable(oracle):
            raise ValueError("oracle must be callable: pairs (m, 2) -> (m,) bool answers")
        k = self.budget_for(n)
        if strategy is None:
            strategy = make_strategy(s["strategy"], n, rounds=int(s["rounds"]), seed=self.seed,
                                     constraints=constraints)
        elif not isinstance(strategy, QueryStrategy) or strategy.n != n:
            raise ValueError("strategy must be a clusterkit.active strategy over the n rows of X")
        self.strategy_ = strategy
        for _ in range(int(s["rounds"])):
            pairs = strategy.propose(k)
            strategy.tell(pairs, oracle(pairs), source="oracle")
            rec = self.fit_round(X, strategy.constraints, y=y)
            rec["conflicts"] = len(strategy.conflicts_)
            strategy.next_round(self.q_, self.embedding_)
            if callback is not None:
                callback(rec)
        return self

    def budget_for(self, n: int) -> int:
        """Pairs per round: the ``budget`` setting, or round(n / 25) (the paper's k)."""
        b = self.settings()["budget"]
        k = max(1, round(n / 25)) if b is None else int(b)
        if k < 1:
            raise ValueError(f"budget must be a positive number of pairs; got {b!r}")
        return k

    def round_snapshots(self) -> list[Snapshot]:
        """The embedding snapshot at the end of each round (Fig. 5), preceded by the one
        taken after round 1's contrastive training, before its DEC fine-tune."""
        out = []
        for r, h in enumerate(getattr(self, "histories_", []), start=1):
            if not h.snapshots:
                continue
            if r == 1 and len(h.snapshots) > 1:
                out.append(_relabel(h.snapshots[0], "round 1 (before DEC)", 0))
            out.append(_relabel(h.snapshots[-1], f"round {r}", r))
        return out

    def round_history(self) -> History:
        """All rounds' snapshots in one History (for ``clusterkit.tsne.tsne_frames``)."""
        h = History()
        if self.histories_:
            h.snapshot_index = self.histories_[0].snapshot_index
            h.snapshot_y = self.histories_[0].snapshot_y
        h.snapshots = self.round_snapshots()
        for r, hh in enumerate(self.histories_, start=1):
            h.epochs += [{**e, "round": r} for e in hh.epochs]
        return h

    # ------------------------------------------------------------------ engine hooks
    def _build(self, run: Run) -> None:
        s = self.settings_
        x0 = run.X[0]
        self.fresh_ = getattr(self, "net_", None) is None
        if self.fresh_:
            torch.manual_seed(self.seed)
            if self.pretrained is not None:
                self.net_ = copy_module(self.pretrained, "pretrained_net_")
            elif x0.dim() == 3:
                self.net_ = SiameseCNN(int(x0.shape[0]), tuple(s["widths"]), int(s["dim"]))
            else:
                self.net_ = _mlp([int(x0.numel()), 256, 256, int(s["dim"])])
            self.net_ = self.net_.to(run.device)
            no_pretraining = int(self.settings_["pretrain_epochs"]) <= 0
            if self.pretrained is not None or no_pretraining:
                # the starting network that later methods may share (pretrained=this one);
                # with no pretraining phase it is the seeded initialisation (paper profile)
                self.pretrained_net_ = copy_module(self.net_)
            self.head_ = None
            self.input_shape_ = tuple(x0.shape)
            self.n_ = run.n
            self.round_ = 0
            self.rounds_, self.histories_ = [], []
            self.seconds_ = 0.0
        r = getattr(self, "round_", 0)
        run.generator.manual_seed(self.seed * 7919 + r)
        torch.manual_seed(self.seed * 7919 + r)
        self.target_ = None
        self.prev_labels_ = None
        run.knobs.update(getattr(self, "knob_state_", {}))
        run._requested.update(getattr(self, "knob_state_", {}))
        self._prepare_pairs(run)

    def _prepare_pairs(self, run: Run) -> None:
        """Pairs on the device for the contrastive loss; with ``closure``, the component id
        of every constrained sample and the component-level cannot-link matrix."""
        c = run.constraints
        dev = run.device
        if c is None or len(c) == 0:
            self.pairs_t_ = torch.empty((0, 2), dtype=torch.long, device=dev)
            self.is_ml_t_ = torch.empty(0, dtype=torch.bool, device=dev)
            self.comp_t_ = self.clmat_t_ = None
            return
        self.pairs_t_, self.is_ml_t_ = c.torch_pairs(dev)
        if run.knobs.get("closure", False):
            comp = c._components()
            nodes = np.unique(c.pairs())
            ids = np.full(c.n, -1, np.int64)
            uniq, inv = np.unique(comp[nodes], return_inverse=True)
            ids[nodes] = inv
            m = len(uniq)
            clmat = np.zeros((m, m), bool)
            if c.n_cl:
                a, b = ids[c.cl[:, 0]], ids[c.cl[:, 1]]
                clmat[a, b] = True
                clmat[b, a] = True
            self.comp_t_ = torch.as_tensor(ids, device=dev)
            self.clmat_t_ = torch.as_tensor(clmat, device=dev)
        else:
            self.comp_t_ = self.clmat_t_ = None

    def _phases(self, run: Run) -> list[Phase]:
        s = {**self.settings_, **getattr(self, "knob_state_", {})}
        phases = []
        if self.fresh_ and self.pretrained is None and int(s["pretrain_epochs"]) > 0:
            phases.append(Phase("pretrain", int(s["pretrain_epochs"]), self._pretrain_step,
                                self._siamese_optimizer, start=self._pretrain_start,
                                end_epoch=self._pretrain_end, batch_size=128, evaluate=False))
        n_pairs = int(self.pairs_t_.shape[0])
        if n_pairs:
            per_epoch = max(1, math.ceil(n_pairs / int(s["pair_batch"])))
            bs = max(1, math.ceil(run.n / per_epoch))
            phases.append(Phase("siamese", int(s["siamese_epochs"]), self._siamese_step,
                                self._siamese_optimizer, batch_size=bs, evaluate=False))
        phases.append(Phase("dec", int(s["dec_epochs"]), self._dec_step, self._dec_optimizer,
                            start=self._dec_start,
                            after_step=lambda r, i, o: parts.SelfTraining.after_step(r),
                            batch_size=int(s["batch_size"]), snapshots=True))
        return phases

    # -- pretraining on pseudo-pairs (not in the paper) --------------------------------
    @torch.no_grad()
    def _pretrain_start(self, run: Run) -> None:
        self.neighbors_ = knn_graph(run.X, int(self.settings_["knn"]))

    def _pretrain_step(self, run: Run, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """Contrastive loss (eq 2) on pseudo-pairs: each sample and one of its nearest
        neighbours in input space as "same", the other samples of the batch as "different"
        (SpectralNet's Siamese recipe; about 90 % of such pairs are right on MNIST)."""
        B = idx.numel()
        pick = torch.randint(self.neighbors_.shape[1], (B,), generator=run.generator,
                             device=run.device)
        nb = self.neighbors_[idx, pick]
        z = self.net_(parts.batch(run, torch.cat([idx, nb])))
        za, zn = z[:B], z[B:]
        a, b = torch.triu_indices(B, B, 1, device=run.device)
        margin = float(run.knobs["margin"])
        ml = losses.contrastive(za, zn, torch.ones(B, dtype=torch.bool, device=run.device),
                                margin)
        cl = losses.contrastive(losses.rows(za, a), losses.rows(za, b),
                                torch.zeros(len(a), dtype=torch.bool, device=run.device), margin)
        return {"loss": ml + cl, "pseudo_ml": ml, "pseudo_cl": cl}

    def _pretrain_end(self, run: Run) -> dict:
        if run.phase_epoch >= run.phases[run.phase_idx].epochs:
            self.pretrained_net_ = copy_module(self.net_)
        return {}

    # -- the contrastive part (eq 2) -------------------------------------------------
    def _pair_loss(self, run: Run) -> torch.Tensor:
        """Contrastive loss (eq 2) on a random batch of answered pairs (and, with the
        closure knob, on every implied pair among the batch's samples)."""
        P = int(self.pairs_t_.shape[0])
        B = min(int(self.settings_["pair_batch"]), P)
        sel = torch.randperm(P, generator=run.generator, device=run.device)[:B]
        pr = self.pairs_t_[sel]
        nodes = torch.cat([pr[:, 0], pr[:, 1]])
        z = self.net_(parts.batch(run, nodes))
        margin = float(run.knobs["margin"])
        if run.knobs.get("closure", False) and self.comp_t_ is not None:
            cid = self.comp_t_[nodes]
            a, b = torch.triu_indices(len(nodes), len(nodes), 1, device=run.device)
            ca, cb = cid[a], cid[b]
            ml = (ca == cb) & (nodes[a] != nodes[b])
            cl = self.clmat_t_[ca, cb]
            keep = ml | cl
            a, b, same = a[keep], b[keep], ml[keep]
            return losses.contrastive(losses.rows(z, a), losses.rows(z, b), same, margin)
        return losses.contrastive(z[:B], z[B:], self.is_ml_t_[sel], margin)

    def _siamese_step(self, run: Run, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        con = self._pair_loss(run)
        return {"loss": con, "contrastive": con}

    def _make_opt(self, run: Run, params: list, phase: str) -> torch.optim.Optimizer:
        lr = float(run.knobs["lr"])
        if self.settings_["optimizer"] == "paper":
            if phase == "siamese":
                return torch.optim.RMSprop(params, lr=lr)
            return parts.sgd(params, lr=lr, momentum=0.9)
        return parts.adam(params, lr=lr)

    def _siamese_optimizer(self, run: Run) -> torch.optim.Optimizer:
        return self._make_opt(run, list(self.net_.parameters()), "siamese")

    # -- the clustering part (eqs 3-5) -------------------------------------------------
    def _dec_start(self, run: Run) -> None:
        z, _ = run.embed_all()
        centers, _ = parts.kmeans_centers(z, self.n_clusters, self.seed, n_init=10)
        self.head_ = StudentTHead(centers, self.alpha).to(run.device)
        run._embed_cache = None
        parts.SelfTraining.refresh(run)

    def _dec_optimizer(self, run: Run) -> torch.optim.Optimizer:
        params = list(self.net_.parameters()) + list(self.head_.parameters())
        return self._make_opt(run, params, "dec")

    def _dec_step(self, run: Run, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        k = run.knobs
        out: dict[str, torch.Tensor] = {}
        x = parts.batch(run, idx)
        q = self.head_(self.net_(x))  # eq (3)
        kl = losses.kl_clustering(q, self.target_[idx])  # eq (5), target P of eq (4)
        out["kl"] = kl
        loss = float(k["dec_weight"]) * kl
        if float(k["pair_weight"]) > 0 and self.pairs_t_.shape[0]:
            con = self._pair_loss(run)
            out["contrastive"] = con
            loss = loss + float(k["pair_weight"]) * con
        out["loss"] = loss
        return out

    # -- engine plumbing ----------------------------------------------------------------
    def _nets(self) -> list[nn.Module]:
        return [m for m in (getattr(self, "net_", None), getattr(self, "head_", None))
                if m is not None]

    def _embed(self, run: Run, x: torch.Tensor):
        z = self.net_(x)  # x comes in the engine's chunks (engine.eval_chunk)
        return z, (None if self.head_ is None else self.head_(z))

    def _centers(self, run: Run):
        return None if self.head_ is None else self.head_.centers.detach()

    def _state_dict(self, run: Run) -> dict:
        return {"net": self.net_.state_dict(), "head": parts.module_state(self.head_),
                "target": self.target_, "prev_labels": self.prev_labels_,
                "round": int(getattr(self, "round_", 0))}

    def _load_state_dict(self, run: Run, state: dict) -> None:
        self.net_.load_state_dict(state["net"])
        if state["head"] is not None:
            self.head_ = StudentTHead(state["head"]["centers"], self.alpha).to(run.device)
        self.target_ = None if state["target"] is None else state["target"].to(run.device)
        self.prev_labels_ = (None if state["prev_labels"] is None
                             else state["prev_labels"].to(run.device))
        self.round_ = int(state.get("round", 0))

    @torch.no_grad()
    def _finalize(self, run: Run) -> None:
        super()._finalize(run)
        _, q = run.embed_all()
        self.q_ = None if q is None else q.float().cpu().numpy()


def _relabel(s: Snapshot, phase: str, epoch: int) -> Snapshot:
    import dataclasses

    return dataclasses.replace(s, phase=phase, epoch=epoch)


@torch.no_grad()
def knn_graph(X: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """The k nearest neighbours of every row of X (excluding itself) by Euclidean distance
    on the flattened inputs, computed in chunks on X's device. (n, ...) -> (n, k) int64."""
    flat = X.reshape(X.shape[0], -1).float()
    sq = flat.pow(2).sum(1)
    out = []
    for lo in range(0, len(flat), chunk):
        d = sq[lo:lo + chunk, None] - 2 * flat[lo:lo + chunk] @ flat.T + sq[None]
        rows = torch.arange(lo, min(lo + chunk, len(flat)), device=X.device)
        d[torch.arange(len(rows), device=X.device), rows] = float("inf")
        out.append(d.topk(k, dim=1, largest=False).indices)
    return torch.cat(out)
