"""Does the engine slow training? Each method's step through ``fit`` vs a plain PyTorch loop.

For each case the script builds the method as the notebooks do (``prepare`` on ``mnist-5k``,
the ``demo`` profile) with the engine's machinery on: knobs read at every step, the
per-step loss record in ``history``, a callback that sees every event (as a dashboard's
listener does), the per-epoch evaluation and t-SNE snapshots at the notebooks' density
(about ten per phase). Against it runs a **plain loop** written here by hand: the same
model (a copy of the same initial weights), the same losses, batch size and optimizer (the
fused Adam of ``parts.adam``), the data as one tensor and mini-batches as index slices of a
``randperm``, plus whatever the algorithm itself needs (the target refresh of DEC/IDEC/DCCF,
the multipliers' dual ascent). The plain loop runs twice, as two arms from the same state:
**bare** (nothing else: no metrics, no snapshots, no history) and **with the same
evaluation** the engine does every ``--eval-every`` epochs (a ``no_grad`` eval-mode pass over
the whole data, shared with the algorithm's own full pass where it has one, the sizes, NE,
ACC/NMI/ARI, and constraint satisfaction or DECS's mean stability), as a researcher's own loop
does (the authors' DECS code predicts the whole data every 30 steps and prints ACC/NMI/ARI).

The arms live in one process and take turns, one window of ``--window`` epochs each
(20 steps per epoch on mnist-5k), in the order A B C C B A ... so that a drift of the
machine's load cancels out, after a warm-up window of each. The engine trains in its
background thread (as under the dashboard) and is paused at the window's last step with
``Run.pause``; its window includes the epoch's end (evaluation, snapshot). Printed: steps/s
of each arm, the ratio engine / plain with the same evaluation ("doing the same
computation": target >= 0.9, i.e. the engine, knobs, callbacks and snapshots cost at most
10 %), the ratio engine / bare plain, and the share of the engine's time that its
evaluation takes. Before a clustering head exists (pretraining, ADC's Siamese phase) there is
nothing to evaluate and the two plain arms do the same work.

Cases (``--cases``): ``idec-pretrain`` (the autoencoder step every MLP method pretrains
with), ``idec`` and ``dec`` (clustering step), ``balanced`` (BalancedSemiSupervised's joint
step, paper variant, 20 % constraints, 256 sampled pairs per step), ``dccf`` (contractive
penalty on 64 rows + KL + focal), ``decs`` (code variant, the demo's conv autoencoder,
Otsu threshold per step), ``clusternet`` (fine-tuning with 2 % labels: pairwise KL and
k-means losses on the batch plus 64 labeled points, reconstruction, the centres following
the clean embedding after every step, assignments refreshed each epoch) and ``adc``
(ActiveDeepClustering's Siamese step on 1000 answered pairs with their transitive
closure: 64 pairs a step, the contrastive loss over every implied pair among their ends).

Usage::

    .venv/bin/python benchmarks/bench_engine.py                  # all cases, ~4 min
    .venv/bin/python benchmarks/bench_engine.py --cases idec,idec-pretrain --pairs 5

Augmentation is off in both arms (``--augment`` turns it on in both): it is the same work
on either side and would only dilute the difference being measured.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clusterkit import datasets, losses, metrics  # noqa: E402
from clusterkit.augment import random_affine  # noqa: E402
from clusterkit.constraints import Constraints  # noqa: E402
from clusterkit.engine import Run, eval_chunk, eval_mode  # noqa: E402
from clusterkit.methods import (  # noqa: E402
    DCCF,
    DEC,
    DECS,
    IDEC,
    ActiveDeepClustering,
    BalancedSemiSupervised,
    ClusterNet,
    parts,
)
from clusterkit.methods.clusternet import partial_labels, update_centers  # noqa: E402
from clusterkit.methods.parts import kmeans_centers  # noqa: E402
from clusterkit.models import (  # noqa: E402
    ClusterNetAE,
    ConvAutoencoder,
    MLPAutoencoder,
    SiameseCNN,
    StudentTHead,
    softmax_distance,
)

CASES = ("idec-pretrain", "idec", "dec", "balanced", "dccf", "decs", "clusternet", "adc")


# ---------------------------------------------------------------------- the engine arm
class EngineArm:
    """A prepared run driven window by window: ``advance(steps)`` trains exactly that many
    more steps in the run's background thread and returns when it has parked again."""

    def __init__(self, run: Run):
        self.run = run
        self.target: int | None = None
        self.events = 0
        run.callbacks.append(self._listener)

    def _listener(self, event: str, run: Run, payload: object) -> None:
        self.events += 1  # what a dashboard's listener costs at the least
        if event == "step" and self.target is not None and run.step >= self.target:
            run.pause()

    def advance(self, steps: int) -> float:
        """Train ``steps`` more steps; returns the wall time they took (with epoch ends)."""
        run = self.run
        self.target = run.step + steps
        run._parked.clear()  # set again when the loop waits at the next step boundary
        t0 = time.perf_counter()
        if run.state == "ready":
            run.start()
        else:
            run.resume()
        while not run._parked.wait(0.5):
            if not run.running:
                run.join()  # re-raises a training error
                raise RuntimeError(f"the run ended early ({run.state}) at step {run.step}")
        return time.perf_counter() - t0

    def close(self) -> None:
        self.run.stop()
        self.run.join()


# ---------------------------------------------------------------------- plain loops
class PlainLoop:
    """A hand-written training loop over ``X`` held as one tensor: ``epoch()`` runs one pass
    of index-sliced mini-batches of a fresh ``randperm``.

    With ``eval_every`` > 0 it also evaluates as a researcher's loop does (the authors' DECS
    and DEC code predict the whole data every update interval and print ACC/NMI/ARI): every
    ``eval_every`` epochs a ``no_grad`` eval-mode pass over all of ``X`` (shared with the
    algorithm's own full pass when there was one at that step), the labels' sizes, NE,
    ACC/NMI/ARI against ``y``, and what the method's record adds (constraint satisfaction,
    DECS's mean stability): the computation the engine's per-epoch evaluation does."""

    def __init__(self, X: torch.Tensor, batch_size: int, seed: int, augment: bool):
        self.X = X
        self.n = len(X)
        self.bs = batch_size
        self.augment = augment
        self.gen = torch.Generator().manual_seed(seed + 1)
        self.step = 0
        self.epochs_done = 0
        self.eval_every = 0  # set by with_evaluation()
        self.y: np.ndarray | None = None
        self.records: list[dict] = []
        self._q_cache: tuple[int, torch.Tensor | None] | None = None

    def with_evaluation(self, y: np.ndarray, every: int) -> PlainLoop:
        """A twin of this loop (same weights, optimizer state and random stream) that
        evaluates every ``every`` epochs."""
        twin = copy.deepcopy(self)
        twin.gen = torch.Generator().set_state(self.gen.get_state())
        twin.y, twin.eval_every = y, every
        return twin

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.n / self.bs)

    def batch(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.X[idx]
        if self.augment:
            x = random_affine(x, max_shift=0.1, max_degrees=10.0, generator=self.gen)
        return x

    def epoch(self) -> None:
        perm = torch.randperm(self.n, generator=self.gen)
        for lo in range(0, self.n, self.bs):
            self.train_step(perm[lo:lo + self.bs])
            self.step += 1
            self.after_step()
        self.end_epoch()
        self.epochs_done += 1
        if self.eval_every and self.epochs_done % self.eval_every == 0:
            self.evaluate()

    def train_step(self, idx: torch.Tensor) -> None:
        raise NotImplementedError

    def after_step(self) -> None:
        pass

    def end_epoch(self) -> None:
        pass

    def full_q(self) -> torch.Tensor | None:
        """(n, k) soft assignments of the whole data in eval mode: the Student-t ``head`` on
        the autoencoder's embedding, for the loops that have one (None: no clustering head)."""
        head = getattr(self, "head", None)
        return None if head is None else embed_q(self.ae, head, self.X)

    def q_now(self) -> torch.Tensor | None:
        """:meth:`full_q` at the current step, computed once per step."""
        if self._q_cache is None or self._q_cache[0] != self.step:
            self._q_cache = (self.step, self.full_q())
        return self._q_cache[1]

    def eval_extras(self, q: torch.Tensor, pred: np.ndarray) -> dict:
        return {}

    @torch.no_grad()
    def evaluate(self) -> None:
        q = self.q_now()
        if q is None:
            return
        pred = q.argmax(1).cpu().numpy()
        k = int(q.shape[1])
        rec = {"sizes": np.bincount(pred, minlength=k).tolist(),
               "ne": metrics.ne(pred, n_clusters=k)}
        rec.update(metrics.evaluate(self.y, pred, n_clusters=k))
        rec.update(self.eval_extras(q, pred))
        self.records.append(rec)


@torch.no_grad()
def embed_q(ae: torch.nn.Module, head: StudentTHead, X: torch.Tensor) -> torch.Tensor:
    """Soft assignments of the whole data in eval mode, in the engine's chunks."""
    with eval_mode([ae, head]):
        step = eval_chunk(X.device)
        return torch.cat([head(ae.encode(X[lo:lo + step])) for lo in range(0, len(X), step)])


def sharpen(q: torch.Tensor) -> torch.Tensor:
    """DEC's target p_ij ∝ q_ij² / Σ_i q_ij, rows normalised."""
    w = q.pow(2) / q.sum(0, keepdim=True)
    return w / w.sum(1, keepdim=True)


class PlainPretrain(PlainLoop):
    """Autoencoder pretraining: MSE reconstruction, Adam."""

    def __init__(self, X, ae, lr, **kw):
        super().__init__(X, **kw)
        self.ae = ae
        self.opt = parts.adam(ae.parameters(), lr=lr)

    def train_step(self, idx):
        x = self.batch(idx)
        _, x_hat = self.ae(x)
        loss = F.mse_loss(x_hat, x)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()


class PlainIDEC(PlainLoop):
    """IDEC (DEC with ``gamma`` = 1 and no reconstruction): rec + γ KL(P||Q), P refreshed on
    the whole data every ``interval`` steps."""

    def __init__(self, X, ae, head, lr, gamma, use_rec, interval, **kw):
        super().__init__(X, **kw)
        self.ae, self.head, self.gamma, self.use_rec = ae, head, gamma, use_rec
        self.interval = interval
        self.opt = parts.adam([*ae.parameters(), *head.parameters()], lr=lr)
        self.p = sharpen(embed_q(ae, head, X))

    def train_step(self, idx):
        x = self.batch(idx)
        z = self.ae.encode(x)
        q = self.head(z)
        loss = self.gamma * F.kl_div(torch.log(q + 1e-10), self.p[idx], reduction="batchmean")
        if self.use_rec:
            loss = loss + F.mse_loss(self.ae.decode(z), x)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def after_step(self):
        if self.step % self.interval == 0:
            self.p = sharpen(self.q_now())


class PlainBalanced(PlainLoop):
    """BalancedSemiSupervised, paper variant, ``pairs`` random constraints per step: rec +
    α ||Y||_h + β mean(μ · violation), Y the sharpened q; then dual ascent (eq 17)."""

    def __init__(self, X, ae, head, lr, pairs, is_ml, n_sample, alpha, beta, gamma, cap, **kw):
        super().__init__(X, **kw)
        self.ae, self.head = ae, head
        self.pairs, self.is_ml, self.m = pairs, is_ml, n_sample
        self.alpha, self.beta, self.gamma, self.cap = alpha, beta, gamma, cap
        self.mult = torch.ones(len(pairs))
        self.opt = parts.adam([*ae.parameters(), *head.parameters()], lr=lr)

    def train_step(self, idx):
        B = len(idx)
        which = torch.randperm(len(self.pairs), generator=self.gen)[:self.m]
        pi, pj, ml = self.pairs[which, 0], self.pairs[which, 1], self.is_ml[which]
        ends, inv = torch.unique(torch.cat([pi, pj]), return_inverse=True)
        x = self.batch(torch.cat([idx, ends]))
        z = self.ae.encode(x)
        q = self.head(z)
        yb, yc = sharpen(q[:B]), sharpen(q[B:])  # Y of eq 4 (with gradient): batch, pair ends
        rec = F.mse_loss(self.ae.decode(z[:B]), x[:B])
        bal = (yb.pow(2).sum(0) + 1e-8).reciprocal().sum()
        yi, yj = yc[inv[:len(which)]], yc[inv[len(which):]]
        inner = (yi * yj).sum(1)
        viol = torch.where(ml, 1.0 - inner, inner)
        semi = (self.mult[which] * viol).sum() / len(which)
        loss = rec + self.alpha * bal + self.beta * semi
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        with torch.no_grad():
            self.mult[which] = (self.mult[which] + self.gamma * viol.detach()).clamp(0, self.cap)

    def eval_extras(self, q, pred):
        lab = torch.as_tensor(pred)
        same = lab[self.pairs[:, 0]] == lab[self.pairs[:, 1]]
        return {"satisfied": float((same == self.is_ml).float().mean())}


class PlainDCCF(PlainLoop):
    """DCCF: rec + λ ||J||² (on the first ``m`` rows) + β (KL(T||S) + focal); T refreshed
    at every epoch's end."""

    def __init__(self, X, ae, head, lr, lam, beta, gamma, m, **kw):
        super().__init__(X, **kw)
        self.ae, self.head, self.lam, self.beta, self.gamma, self.m = ae, head, lam, beta, gamma, m
        self.opt = parts.adam([*ae.parameters(), *head.parameters()], lr=lr)
        self.t = sharpen(embed_q(ae, head, X))

    def train_step(self, idx):
        x = self.batch(idx)
        za, jac2 = losses.contractive_penalty(self.ae.encoder, x[:self.m])
        z = torch.cat([za, self.ae.encode(x[self.m:])])
        l_crl = F.mse_loss(self.ae.decode(z), x) + self.lam * jac2.mean()
        q, t = self.head(z), self.t[idx]
        kl = F.kl_div(torch.log(q + 1e-10), t, reduction="batchmean")
        focal = losses.focal_loss(q, t, self.gamma)
        loss = l_crl + self.beta * (kl + focal)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def end_epoch(self):
        self.t = sharpen(self.q_now())


class PlainDECS(PlainLoop):
    """DECS, code variant: 1 - (mean s + var s), linear determinacy around the batch's Otsu
    threshold, λ = 0.4, Student-t a = 0.5; Adam."""

    def __init__(self, X, ae, head, lr, lam, **kw):
        super().__init__(X, **kw)
        self.ae, self.head, self.lam = ae, head, lam
        self.opt = parts.adam([*ae.parameters(), *head.parameters()], lr=lr)

    def train_step(self, idx):
        q = self.head(self.ae.encode(self.batch(idx)))
        t = losses.otsu_threshold(q, bins=1000)
        s = losses.stability(losses.determinacy(q, t, squared=False), self.lam)
        loss = losses.stability_loss(s, variance_term=True)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def eval_extras(self, q, pred):
        t = losses.otsu_threshold(q, bins=1000)
        s = losses.stability(losses.determinacy(q, t, squared=False), self.lam)
        return {"mean_stability": float(s.mean())}


class PlainClusterNet(PlainLoop):
    """ClusterNet fine-tuning, λ = 1 (the engine's annealed demo λ weighs the same terms, so
    the work is the same): each step the batch plus ``labeled_batch`` random
    labeled points; pair KL + hinge (eqs 6-7) and k-means losses (eqs 4-5), labeled and
    unlabeled, plus reconstruction; then every centre follows its points' clean embedding
    (eqs 12-13); at each epoch's end the unlabeled points take their nearest centre."""

    def __init__(self, X, ae, y_partial, lr, margin, labeled_batch, rec_weight,
                 kmeans_weight=1.0, **kw):
        super().__init__(X, **kw)
        self.ae, self.margin, self.lb, self.rec_weight = ae, margin, labeled_batch, rec_weight
        self.kmeans_weight = kmeans_weight
        self.yp = torch.as_tensor(y_partial)
        self.is_lab = self.yp >= 0
        self.lab_idx = torch.nonzero(self.is_lab).flatten()
        k = int(self.yp.max()) + 1
        self.lab_counts = torch.bincount(self.yp[self.is_lab], minlength=k).float()
        z = self.embed()
        lab = self.lab_idx
        self.c = torch.stack([z[lab][self.yp[lab] == j].mean(0) for j in range(k)])  # eq 9
        self.opt = parts.adam(ae.parameters(), lr=lr)
        self.end_epoch()

    @torch.no_grad()
    def embed(self) -> torch.Tensor:
        step = eval_chunk(self.X.device)
        with eval_mode([self.ae]):
            return torch.cat([self.ae.encode(self.X[lo:lo + step])
                              for lo in range(0, self.n, step)])

    def train_step(self, idx):
        extra = self.lab_idx[torch.randperm(len(self.lab_idx), generator=self.gen)[:self.lb]]
        all_idx = torch.cat([idx, extra])
        x = self.batch(all_idx)
        z = self.ae.encode(x)
        a, lab = self.assign[all_idx], self.is_lab[all_idx]
        log_p = softmax_distance(z, self.c)
        sim_l, dis_l = losses.pair_loss(log_p, a, self.margin, lab)
        sim_u, dis_u = losses.pair_loss(log_p, a, self.margin, ~lab)
        loss = (sim_l + dis_l + sim_u + dis_u
                + self.kmeans_weight * (losses.kmeans_loss(z[lab], self.c, a[lab])
                                        + losses.kmeans_loss(z[~lab], self.c, a[~lab]))
                + self.rec_weight * F.mse_loss(self.ae.decode(z), x))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        with torch.no_grad(), eval_mode([self.ae]):
            zc = self.ae.encode(self.X[idx])
            lb = self.is_lab[idx]
            update_centers(self.c, zc[lb], self.yp[idx][lb], self.lab_counts)
            update_centers(self.c, zc[~lb], self.assign[idx][~lb], self.counts)

    def full_q(self):
        return softmax_distance(self.embed(), self.c).exp()  # as ClusterNet's eq (16)

    def end_epoch(self):
        log_p = self.q_now().log()
        self.assign = torch.where(self.is_lab, self.yp, log_p.argmax(1))
        self.counts = torch.bincount(self.assign[~self.is_lab],
                                     minlength=self.c.shape[0]).float()


class PlainADC(PlainLoop):
    """ADC's Siamese step with the closure: ``pair_batch`` random answered pairs, their 2B
    ends through the CNN, the contrastive loss (eq 2) over every pair of ends that the
    answers imply (same must-link component, or components with a cannot-link)."""

    def __init__(self, X, net, pairs, comp, clmat, lr, margin, pair_batch, **kw):
        super().__init__(X, **kw)
        self.net, self.pairs, self.comp, self.clmat = net, pairs, comp, clmat
        self.margin, self.pb = margin, pair_batch
        self.opt = parts.adam(net.parameters(), lr=lr)

    def train_step(self, idx):
        sel = torch.randperm(len(self.pairs), generator=self.gen)[:self.pb]
        pr = self.pairs[sel]
        nodes = torch.cat([pr[:, 0], pr[:, 1]])
        z = self.net(self.batch(nodes))
        cid = self.comp[nodes]
        a, b = torch.triu_indices(len(nodes), len(nodes), 1)
        ml = (cid[a] == cid[b]) & (nodes[a] != nodes[b])
        keep = ml | self.clmat[cid[a], cid[b]]
        a, b, same = a[keep], b[keep], ml[keep]
        loss = losses.contrastive(losses.rows(z, a), losses.rows(z, b), same, self.margin)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()


# ---------------------------------------------------------------------- the cases
@dataclass
class Case:
    """One comparison: the engine's run and its plain twin, both ready to train."""

    name: str
    what: str
    engine: EngineArm
    plain: PlainLoop
    plain_eval: PlainLoop | None = None  # the plain loop's twin that also evaluates


EVAL_EVERY = 1  # set from --eval-every


def snapshot_schedule(demo_epochs: int, total: int) -> list[int]:
    """The notebooks' density: about ten snapshots over the demo profile's phase (or one
    every ``--eval-every`` epochs when that is sparser: a snapshot implies an evaluation)."""
    every = max(1, round(demo_epochs / 10), EVAL_EVERY)
    return list(range(0, total + 1, every))


def build_case(name: str, X: np.ndarray, y: np.ndarray, epochs: int, seed: int,
               augment: bool) -> Case:
    """The engine run (prepared, not started) and the plain loop of one case."""
    torch.manual_seed(seed)
    Xt = torch.as_tensor(X)
    d = int(np.prod(X.shape[1:]))
    common = dict(profile="demo", seed=seed, device="cpu", verbose=False, augment=augment,
                  eval_every=EVAL_EVERY)
    kw = dict(batch_size=256, seed=seed, augment=augment)

    def mlp(dims: tuple[int, ...]) -> MLPAutoencoder:
        return MLPAutoencoder([d, *dims], tuple(X.shape[1:]))

    if name == "idec-pretrain":
        ae = mlp((500, 500, 2000, 10))
        m = IDEC(10, pretrained=None, pretrain_epochs=epochs, cluster_epochs=0, **common)
        run = m.prepare(X, y=y)
        m.autoencoder_.load_state_dict(ae.state_dict())
        plain = PlainPretrain(Xt, copy.deepcopy(ae), 1e-3, **kw)
        return Case(name, "AE d-500-500-2000-10 pretraining step (MSE, Adam)",
                    EngineArm(run), plain)

    if name in ("idec", "dec", "balanced", "dccf"):
        dims = (500, 500, 1000, 10) if name == "dccf" else (500, 500, 2000, 10)
        ae = mlp(dims)
        if name in ("idec", "dec"):
            cls = IDEC if name == "idec" else DEC
            m = cls(10, pretrained=ae, cluster_epochs=epochs,
                    snapshot_epochs=snapshot_schedule(60, epochs), **common)
            run = m.prepare(X, y=y)
        elif name == "balanced":
            cons = BalancedSemiSupervised.make_constraints(y, fraction=0.2, seed=seed)
            m = BalancedSemiSupervised(10, variant="paper", pretrained=ae, cluster_epochs=epochs,
                                       snapshot_epochs=snapshot_schedule(10, epochs), **common)
            run = m.prepare(X, cons, y=y)
        else:
            m = DCCF(10, pretrained=ae, cluster_epochs=epochs,
                     snapshot_epochs=snapshot_schedule(30, epochs), **common)
            run = m.prepare(X, y=y)
        arm = EngineArm(run)
        # the plain twin starts from the same weights and the same k-means centres
        with torch.no_grad():
            z = ae.encode(Xt)
        centers, _ = kmeans_centers(z, 10, seed, n_init=3)
        head = StudentTHead(centers)
        ae2 = copy.deepcopy(ae)
        s = m.settings()
        if name in ("idec", "dec"):
            plain = PlainIDEC(Xt, ae2, head, s["lr"], s["gamma"], name == "idec",
                              int(s["update_interval"]), **kw)
            what = (f"{name.upper()} clustering step ("
                    + ("MSE + " if name == "idec" else "") + "γ KL(P||Q), P every "
                    f"{s['update_interval']} steps)")
        elif name == "balanced":
            pairs, is_ml = cons.torch_pairs("cpu")
            plain = PlainBalanced(Xt, ae2, head, s["lr"], pairs, is_ml, int(s["pairs_per_step"]),
                                  s["alpha"], s["beta"], s["gamma"], s["cap"], **kw)
            what = (f"balanced joint step, paper variant ({len(cons)} constraints, "
                    f"{s['pairs_per_step']} per step, dual ascent)")
        else:
            plain = PlainDCCF(Xt, ae2, head, s["lr"], s["lam"], s["beta"], s["gamma"],
                              int(s["contractive_samples"]), **kw)
            what = (f"DCCF clustering step (contractive on {s['contractive_samples']} rows, "
                    "KL + focal, T every epoch)")
        return Case(name, what, arm, plain)

    if name == "decs":
        s = DECS(10, variant="code", profile="demo").settings()
        ae = ConvAutoencoder(tuple(X.shape[1:]), 10, tuple(s["channels"]))
        m = DECS(10, variant="code", pretrained=ae, cluster_epochs=epochs,
                 snapshot_epochs=snapshot_schedule(20, epochs), snapshot_size=1000, **common)
        run = m.prepare(X, y=y)
        with torch.no_grad(), eval_mode([ae]):
            z = torch.cat([ae.encode(Xt[lo:lo + 1024]) for lo in range(0, len(Xt), 1024)])
        centers, _ = kmeans_centers(z, 10, seed, n_init=3)
        plain = PlainDECS(Xt, copy.deepcopy(ae).train(), StudentTHead(centers, s["alpha"]),
                          s["cluster_lr"], s["lam"], **kw)
        return Case(name, f"DECS clustering step, code variant (conv AE {s['channels']}, "
                          "Otsu per batch)", EngineArm(run), plain)
    if name == "clusternet":
        yp = partial_labels(y, 0.02, seed)
        ae = ClusterNetAE(tuple(X.shape[1:]))
        m = ClusterNet(10, pretrained=ae, cluster_epochs=epochs,
                       snapshot_epochs=snapshot_schedule(30, epochs), **common)
        run = m.prepare(X, yp, y=y)
        s = m.settings()
        plain = PlainClusterNet(Xt, copy.deepcopy(ae).train(), yp, s["lr"], s["margin"],
                                int(s["labeled_batch"]), s["rec_weight"],
                                float(s["kmeans_weight"]), **kw)
        return Case(name, f"ClusterNet fine-tuning step (2 % labels, batch 256 + "
                          f"{s['labeled_batch']} labeled, pair KL + k-means + rec, centre "
                          "updates)", EngineArm(run), plain)

    if name == "adc":
        s = ActiveDeepClustering(10, profile="demo").settings()
        net = SiameseCNN(int(X.shape[1]), tuple(s["widths"]), int(s["dim"]))
        cons = Constraints.from_labels(y, n_pairs=len(X) // 5, ml_ratio=0.3, seed=seed)
        m = ActiveDeepClustering(10, pretrained=net, siamese_epochs=10 * epochs, dec_epochs=1,
                                 **common)
        run = m.prepare(X, cons, y=y)
        bs = run.phases[0].batch_size  # the siamese phase: as many steps as pair batches
        pairs, _ = cons.torch_pairs("cpu")
        plain = PlainADC(Xt, copy.deepcopy(net), pairs, m.comp_t_, m.clmat_t_, s["lr"],
                         s["margin"], int(s["pair_batch"]), **{**kw, "batch_size": bs})
        return Case(name, f"ADC Siamese step ({len(cons)} answered pairs with their closure, "
                          f"{s['pair_batch']} a step, CNN {s['widths']})", EngineArm(run), plain)
    raise ValueError(f"unknown case {name!r}; choose from {', '.join(CASES)}")


# ---------------------------------------------------------------------- measuring
def measure(case: Case, pairs: int, window: int) -> dict[str, float]:
    """Warm the arms up for one window each, then ``pairs`` rounds of one window per arm in
    alternating order (A B C, C B A, ...)."""
    spe = case.plain.steps_per_epoch
    steps = window * spe
    run = case.engine.run
    if case.plain_eval is None:
        case.plain_eval = case.plain.with_evaluation(run.y, EVAL_EVERY)

    def window_of(loop: PlainLoop) -> Callable[[], float]:
        def go() -> float:
            t0 = time.perf_counter()
            for _ in range(window):
                loop.epoch()
            return time.perf_counter() - t0
        return go

    arms: dict[str, Callable[[], float]] = {"engine": lambda: case.engine.advance(steps),
                                            "plain": window_of(case.plain),
                                            "plain_eval": window_of(case.plain_eval)}
    for go in arms.values():  # warm-up (the clustering phase's k-means happens here)
        go()
    times: dict[str, list[float]] = {a: [] for a in arms}
    order = list(arms)
    for i in range(pairs):
        for arm in (order if i % 2 == 0 else order[::-1]):
            times[arm].append(arms[arm]())
    # what the per-epoch evaluation costs (embedding of the whole data and the metrics)
    t_eval = 0.0
    if any("acc" in r for r in run.history.epochs):
        run._embed_cache = None
        t0 = time.perf_counter()
        run.evaluate()
        t_eval = time.perf_counter() - t0
    case.engine.close()
    eng = steps * pairs / sum(times["engine"])
    pla = steps * pairs / sum(times["plain"])
    pev = steps * pairs / sum(times["plain_eval"])
    per_round = [p / e for e, p in zip(times["engine"], times["plain_eval"], strict=True)]
    n_evals = sum(1 for e in range(1, window + 1) if e % EVAL_EVERY == 0) or 1
    eval_share = t_eval * n_evals / (sum(times["engine"]) / pairs)
    evaluated = bool(case.plain_eval.records)
    return {"engine": eng, "plain": pla, "plain_eval": pev,
            "ratio": eng / pev if evaluated else eng / pla, "ratio_bare": eng / pla,
            "median_round": statistics.median(per_round), "eval_share": eval_share,
            "evaluated": evaluated, "steps": steps * pairs}


def one_malloc_arena() -> str:
    """Ask glibc's malloc to serve all threads from its main arena (M_ARENA_MAX = 1) before
    the engine's thread exists. With per-thread arenas, the engine's thread allocates from a
    second arena whose heaps are capped at 64 MiB; alternating with the plain loops of the
    main thread, its conv steps then ran about 40 % slower (35.6 against 25.4 ms a step) than
    the same steps called from the main thread, while a whole run in a background thread is
    as fast as in the foreground (``bench_background.py``): a cost of this harness, not of
    the engine."""
    import ctypes
    import ctypes.util
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "default (not glibc)"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(-8, 1)  # M_ARENA_MAX
    except (OSError, AttributeError):
        return "default (mallopt unavailable)"
    return "one (M_ARENA_MAX = 1)" if ok == 1 else "default (mallopt refused)"


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=",".join(CASES),
                    help=f"comma-separated cases to run, from {', '.join(CASES)} "
                         "(default: all)")
    ap.add_argument("--pairs", type=int, default=3,
                    help="measured engine/plain window pairs per case (default 3)")
    ap.add_argument("--window", type=int, default=1,
                    help="epochs per window (one epoch of mnist-5k = 20 steps; default 1)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: steady on a machine shared with "
                         "other jobs)")
    ap.add_argument("--augment", action="store_true",
                    help="random shifts/rotations of the inputs in both arms")
    ap.add_argument("--subset", type=int, default=None,
                    help="use a stratified subset of mnist-5k of this size (for a quick check)")
    ap.add_argument("--eval-every", type=int, default=1,
                    help="the engine's eval_every: epochs between evaluations (default 1, as "
                         "in the notebooks; snapshots are then taken no more often either). "
                         "Use with --window of the same size")
    ap.add_argument("--seed", type=int, default=0, help="seed of both arms")
    ap.add_argument("--malloc-arenas", choices=("one", "default"), default="one",
                    help="'one' (default): glibc's malloc serves every thread from its main "
                         "arena (mallopt M_ARENA_MAX = 1), so that the engine's thread and the "
                         "plain loops in the main thread allocate alike; 'default': per-thread "
                         "arenas, where alternating the arms in one process slows the "
                         "engine's conv steps (benchmarks/README.md, session 12)")
    args = ap.parse_args(argv)
    arenas = one_malloc_arena() if args.malloc_arenas == "one" else "default"
    global EVAL_EVERY
    EVAL_EVERY = args.eval_every
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    bad = [c for c in cases if c not in CASES]
    if bad or not cases:
        ap.error(f"unknown case(s) {bad}; choose from {', '.join(CASES)}")
    if args.pairs < 1 or args.window < 1 or args.threads < 1 or args.eval_every < 1:
        ap.error("--pairs, --window, --threads and --eval-every must be >= 1")
    torch.set_num_threads(args.threads)

    ds = datasets.load("mnist-5k", subset=args.subset, seed=args.seed)
    epochs = args.window * (1 + args.pairs) + 1  # +1: the loop parks at the next epoch
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"mnist-5k ({len(ds)} images), torch {torch.__version__}, {torch.get_num_threads()} "
          f"thread(s), windows of {args.window} epoch(s) ({math.ceil(len(ds) / 256)} steps "
          f"each), {args.pairs} pair(s) after a warm-up, evaluation every {args.eval_every} "
          f"epoch(s); malloc arenas: {arenas}; load average {load:.2f}")
    results: dict[str, dict[str, float]] = {}
    t_all = time.perf_counter()
    for name in cases:
        t0 = time.perf_counter()
        case = build_case(name, ds.X, ds.y, epochs, args.seed, args.augment)
        r = measure(case, args.pairs, args.window)
        results[name] = r
        ev = (f"plain + evaluation {r['plain_eval']:6.2f} steps/s, " if r["evaluated"]
              else "(no clustering head yet: nothing to evaluate), ")
        print(f"{name:>14}: engine {r['engine']:6.2f} steps/s, plain {r['plain']:6.2f} "
              f"steps/s, {ev}ratio {r['ratio']:.3f} (median round {r['median_round']:.3f}; "
              f"engine / bare plain {r['ratio_bare']:.3f}; evaluation "
              f"{100 * r['eval_share']:.1f} % of the engine's time) "
              f"[{time.perf_counter() - t0:.0f} s]  {case.what}", flush=True)
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\n{'case':>14}  {'engine':>8}  {'plain':>8}  {'+eval':>8}  {'ratio':>6}  "
          f"{'bare':>6}  (steps/s; ratio = engine / plain with the same evaluation, "
          "target >= 0.9; bare = engine / plain without it)")
    for name, r in results.items():
        flag = "" if r["ratio"] >= 0.9 else "  < 0.9"
        pev = f"{r['plain_eval']:8.2f}" if r["evaluated"] else f"{'-':>8}"
        print(f"{name:>14}  {r['engine']:8.2f}  {r['plain']:8.2f}  {pev}  {r['ratio']:6.3f}  "
              f"{r['ratio_bare']:6.3f}{flag}")
    print(f"total {time.perf_counter() - t_all:.0f} s; load average at the end {load_end:.2f}")
    return results


if __name__ == "__main__":
    main()
