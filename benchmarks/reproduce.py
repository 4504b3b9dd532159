"""Reproduce the five papers' tables: every method with its notebook's ``paper`` profile.

Each experiment makes the same library calls as its notebook's main cells (nothing from
Jupyter, ipywidgets or papermill: core dependencies only), on the full datasets found
through ``CLUSTERKIT_DATA`` (``make`` points it at ``../shared/data`` when that exists), for
several seeds, and writes a Markdown table: per paper and dataset, the number the paper
reports beside ours (mean ± std over the seeds) and the time taken, with the device's name
and the date.

    experiment   notebook                      calls
    tour         00_tour (DEC, IDEC)           IDEC(cluster_epochs=0).fit
                                               -> IDEC / DEC(pretrained=pre)
    balanced     01_balanced_semisupervised    make_constraints(fraction=.2) -> IDEC pretraining
                                               -> BalancedSemiSupervised(variant="paper").fit
    clusternet   02_clusternet                 split(0.1) -> partial_labels -> ClusterNet
                                               pretraining (augment) -> ClusterNet; held-out
    adc          03_active_clustering          ActiveDeepClustering(dec_epochs=0).fit_round
                                               -> ActiveDeepClustering.fit(oracle=LabelOracle)
    decs         04_sample_stability           DECS(cluster_epochs=0).fit -> DECS code / paper
    dccf         05_contractive_focal          DCCF(cluster_epochs=0).fit -> DCCF(pretrained)
    balanced-ablation (table4)                 the balanced setup, then the full model and
                 01, section 10                one model without each term (Table IV)
    dccf-ablation (table5)                     DCCF pretraining, then both terms, one or
                 05, the ablation grid         neither (Table 5)

The ablations answer what the notebooks' demo runs cannot: whether each term helps by more
than the spread between seeds, at the papers' scale (on mnist-5k in the demo profile, 5
seeds, the gaps of L_r in 01 and of either term in 05 are smaller than that spread:
``benchmarks/seed_spread.py balanced-ablation`` / ``dccf-ablation``).

Deviations from the notebooks, none of which changes a result: no t-SNE snapshots
(``snapshot_epochs=None``), no progress bars of the methods (``--verbose`` shows them).
DECS's paper profile is 10 000 clustering iterations of batch 256: ``cluster_epochs`` is
set from each dataset's size, as the DECS docstring asks.

Without a GPU it refuses to start unless ``--cpu`` is given, and prints an estimate of the
full CPU run's duration: a short probe of each experiment (its paper-profile models on 512
samples for one epoch of each phase) extrapolated by the number of steps the paper
settings need. ``--tiny`` is a smoke-sized run (the notebooks' ``smoke`` profile and data
sizes, on subsets of ``mnist-5k``, one seed) that checks every path and the table in a few
minutes on a CPU; its rows are not comparable with the papers' numbers.

    make reproduce                                   # GPU: everything, 3 seeds
    make reproduce ARGS="--cpu --tiny"               # CPU: the tiny setting (minutes)
    .venv/bin/python benchmarks/reproduce.py --only tour,dccf --seeds 5
    .venv/bin/python benchmarks/reproduce.py --estimate   # only the CPU estimate
    .venv/bin/python benchmarks/reproduce.py --budget 6   # what fits in 6 minutes, then stop

Piecewise: every finished run (experiment, dataset, seed) goes into a JSON record
(``--results``, default the table's path with ``.json``) at once, and the table is written
from the whole record; runs already recorded are skipped (``--redo`` repeats them). Runs go
breadth first (seed 0 of every experiment on MNIST first), and ``--budget`` starts only
those expected to end in time. With ``--checkpoints DIR`` a run longer than a call is done
over several: each of its fits (a pretraining, each arm) is kept in DIR as it ends, the run
is cut at the budget at a step boundary and saved, and the next call continues it before
anything else (after the runs that fit, one run that does not is started in the time left).
On the CPU a run done in pieces gives exactly the numbers of an uninterrupted one
(``tests/test_reproduce.py``). So GPU sessions of a few minutes each add up to the tables:
``benchmarks/gpu_session.sh`` is the one call such a session makes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clusterkit import datasets, metrics  # noqa: E402
from clusterkit.datasets import Dataset  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_OUT = RESULTS / "paper_tables.md"
TINY_OUT = RESULTS / "paper_tables_tiny.md"
CPU_OUT = RESULTS / "paper_tables_cpu.md"
PROBE_N = 512
Rows = dict[str, dict[str, float]]


# ---------------------------------------------------------------------- experiments
@dataclass
class Experiment:
    """One paper's runs. ``run(ds, seed, cfg)`` returns ``{row: {metric: value}}``;
    ``reported[dataset][row]``: the paper's numbers (fractions); ``steps(n, cfg)``: the
    training steps (weighted by their relative cost) the settings ``cfg`` need on n samples;
    ``tiny_n``: the notebook's smoke-profile data size; ``stop_rule``: when the method
    may end before its last epoch (its estimate is then an upper bound); ``splittable``:
    every fit goes through :func:`fit_stage`, so the run can be cut and continued
    (``--checkpoints``)."""

    key: str
    title: str
    source: str
    datasets: tuple[str, ...]
    reported: dict[str, dict[str, dict[str, float]]]
    run: Callable[[Dataset, int, dict], Rows]
    steps: Callable[[int, dict], float]
    tiny_n: int
    probe: dict[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    stop_rule: str = ""
    splittable: bool = True


# ---------------------------------------------------------------------- runs in pieces
class OutOfTime(Exception):
    """This call's time ran out inside a run; what the run had done is saved for the next."""


@dataclass
class Pieces:
    """Where a run's stages are kept (``--checkpoints``) and when this call must stop.

    Every fit a run makes (a pretraining, each arm of an ablation) is a *stage*, saved as
    ``<root>/<job>/<stage>.done.pt`` when it ends; a later call loads it instead of training
    it again. A stage still training at ``deadline`` (``time.monotonic()``) is stopped at a
    step boundary and saved as ``<stage>.part.pt``, and the next call continues it from
    there: on the CPU, a run done in pieces ends exactly where an uninterrupted run ends
    (``Run.save`` / ``Run.restore``). So a run longer than one call (a GPU session lends a few
    minutes) is done over several."""

    root: Path
    job: str
    deadline: float | None = None

    @property
    def folder(self) -> Path:
        return self.root / job_folder(self.job)

    def out_of_time(self, run: Any = None) -> bool:
        """Whether to stop (``run``: the run in training, None before a stage starts)."""
        return self.deadline is not None and time.monotonic() >= self.deadline


def job_folder(key: str) -> str:
    return key.replace("|", "_")


def fit_stage(cfg: dict, stage: str, method: Any, X: np.ndarray, arg: Any = None, *,
              y: np.ndarray | None = None) -> Any:
    """``method.fit(X, arg, y=y)``; with ``cfg["pieces"]`` (a :class:`Pieces`), kept on disk
    and cut at the deadline as that class says (raising :class:`OutOfTime` once saved)."""
    pc: Pieces | None = cfg.get("pieces")
    if pc is None:
        return method.fit(X, arg, y=y)
    pc.folder.mkdir(parents=True, exist_ok=True)
    done, part = pc.folder / f"{stage}.done.pt", pc.folder / f"{stage}.part.pt"

    def cut(event: str, run: Any, payload: Any) -> None:
        if event == "step" and pc.out_of_time(run):
            run.stop()

    if not done.exists() and pc.out_of_time():
        raise OutOfTime(f"{pc.job}: no time left to start stage {stage!r}")
    run = method.prepare(X, arg, y=y, callbacks=[cut])
    if done.exists():
        run.restore(done).fit()  # finished in an earlier call: only its fitted attributes
        return method
    if part.exists():
        run.restore(part)
    run.fit()
    if run.state == "stopped":
        run.save(part)
        raise OutOfTime(f"{pc.job}: stage {stage!r} saved at step {run.step}")
    run.save(done)
    part.unlink(missing_ok=True)
    return method


def _common(seed: int, cfg: dict) -> dict[str, Any]:
    return dict(profile=cfg["profile"], seed=seed, device=cfg["device"],
                verbose=cfg["verbose"], snapshot_epochs=None)


def _eval(y: np.ndarray, labels: np.ndarray, k: int) -> dict[str, float]:
    return metrics.evaluate(y, labels, n_clusters=k)


def run_tour(ds: Dataset, seed: int, cfg: dict) -> Rows:
    """00_tour: an IDEC-pretrained autoencoder, then IDEC and DEC from it."""
    from clusterkit.methods import DEC, IDEC

    c, k, ov = _common(seed, cfg), ds.n_clusters, cfg["override"]
    pre = fit_stage(cfg, "pre", IDEC(k, cluster_epochs=0, **{**c, **ov.get("pre", {})}),
                    ds.X, y=ds.y)
    idec = fit_stage(cfg, "IDEC", IDEC(k, pretrained=pre, **{**c, **ov.get("cluster", {})}),
                     ds.X, y=ds.y)
    dec = fit_stage(cfg, "DEC", DEC(k, pretrained=pre, **{**c, **ov.get("cluster", {})}),
                    ds.X, y=ds.y)
    return {"IDEC": _eval(ds.y, idec.labels_, k), "DEC": _eval(ds.y, dec.labels_, k)}


def steps_tour(n: int, e: dict) -> float:
    spe = math.ceil(n / 256)
    return spe * (e.get("pretrain_epochs", 200) + 2 * e.get("cluster_epochs", 200))


def run_balanced(ds: Dataset, seed: int, cfg: dict) -> Rows:
    """01: constraints on 20 % of n (half must-link), IDEC pretraining, the paper variant."""
    from clusterkit.methods import IDEC, BalancedSemiSupervised

    c, k, ov = _common(seed, cfg), ds.n_clusters, cfg["override"]
    cons = BalancedSemiSupervised.make_constraints(ds.y, fraction=0.2, ml_ratio=0.5, seed=seed)
    pre = fit_stage(cfg, "pre", IDEC(k, cluster_epochs=0, **{**c, **ov.get("pre", {})}),
                    ds.X, y=ds.y)
    bal = fit_stage(cfg, "balanced", BalancedSemiSupervised(
        k, variant="paper", pretrained=pre, **{**c, **ov.get("cluster", {})}), ds.X, cons,
        y=ds.y)
    rec = _eval(ds.y, bal.labels_, k)
    rec["satisfied"] = float(cons.satisfied(bal.labels_).mean())
    return {"balanced (paper variant)": rec}


BALANCED_ARMS = {"all three": {}, "no L_r": {"use_reconstruction": False},
                 "no L_bal": {"use_balance": False}, "no L_semi": {"use_semi": False}}


def run_balanced_ablation(ds: Dataset, seed: int, cfg: dict) -> Rows:
    """01, Table IV: one pretraining and one constraint set, then the full model and each
    model without one of its three terms (notebook 01's section 10)."""
    from clusterkit.methods import IDEC, BalancedSemiSupervised

    c, k, ov = _common(seed, cfg), ds.n_clusters, cfg["override"]
    cons = BalancedSemiSupervised.make_constraints(ds.y, fraction=0.2, ml_ratio=0.5, seed=seed)
    pre = fit_stage(cfg, "pre", IDEC(k, cluster_epochs=0, **{**c, **ov.get("pre", {})}),
                    ds.X, y=ds.y)
    out: Rows = {}
    for i, (row, off) in enumerate(BALANCED_ARMS.items()):
        m = BalancedSemiSupervised(k, variant="paper", pretrained=pre,
                                   **{**c, **ov.get("cluster", {}), **off})
        out[row] = _eval(ds.y, fit_stage(cfg, f"arm{i}", m, ds.X, cons, y=ds.y).labels_, k)
    return out


def steps_balanced_ablation(n: int, e: dict) -> float:
    joint = steps_balanced(n, {**e, "pretrain_epochs": 0})
    return steps_balanced(n, e) + (len(BALANCED_ARMS) - 1) * joint


def steps_balanced(n: int, e: dict) -> float:
    """The paper profile penalises every constraint at every step: a step embeds the batch
    and the unique ends of 0.2 n pairs, about n (1 - e^-0.4) rows."""
    spe = math.ceil(n / 256)
    rows = 256 + n * (1 - math.exp(-0.4))
    return spe * (e.get("pretrain_epochs", 200) + e.get("cluster_epochs", 50) * rows / 256)


CLUSTERNET_FRACTION = {"mnist": 0.005, "usps": 0.02}  # Table 3's label fractions


def run_clusternet(ds: Dataset, seed: int, cfg: dict) -> Rows:
    """02: 10 % held out; a labeled fraction per class; pretraining with augmentation, then
    ClusterNet; scored on the held-out split, as Table 3."""
    from clusterkit.methods import ClusterNet
    from clusterkit.methods.clusternet import partial_labels

    c, k, ov = _common(seed, cfg), ds.n_clusters, cfg["override"]
    tiny = cfg["profile"] == "smoke"
    frac = ov.get("fraction") or (0.02 if tiny else CLUSTERNET_FRACTION.get(ds.name, 0.005))
    ep = dict(pretrain=2, cluster=2) if tiny else dict(pretrain=100, cluster=60)
    train, test = ds.split(0.1, seed)
    yp = partial_labels(train.y, frac, seed)
    pre = fit_stage(cfg, "pre", ClusterNet(k, **{**c, "pretrain_epochs": ep["pretrain"],
                                                 "cluster_epochs": 0, "augment": True,
                                                 **ov.get("pre", {})}), train.X, yp, y=train.y)
    cn = fit_stage(cfg, "ClusterNet", ClusterNet(k, pretrained=pre, **{
        **c, "cluster_epochs": ep["cluster"], **ov.get("cluster", {})}), train.X, yp, y=train.y)
    rec = _eval(test.y, cn.predict(test.X), k)
    rec["labels"] = frac
    return {"ClusterNet (held out)": rec}


def steps_clusternet(n: int, e: dict) -> float:
    spe = math.ceil(0.9 * n / 256)
    return spe * (e.get("pretrain_epochs", 100) + e.get("cluster_epochs", 60))


def run_adc(ds: Dataset, seed: int, cfg: dict) -> Rows:
    """03: pseudo-pair pretraining round, then T rounds of ADC selection with a simulated
    oracle (no answer errors)."""
    from clusterkit.active import LabelOracle
    from clusterkit.methods import ActiveDeepClustering

    c, k, ov = _common(seed, cfg), ds.n_clusters, cfg["override"]
    c.pop("snapshot_epochs")
    pre = ActiveDeepClustering(k, dec_epochs=0, **{**c, **ov.get("pre", {})})
    pre.fit_round(ds.X, None, y=ds.y)
    # the paper profile has no pretraining (pretrain_epochs=0): then the fitted pre round
    # holds no pretrained_net_ and ``pretrained=pre`` raises (a clusterkit bug, reported);
    # a fresh net from the same seed is the same starting point
    start = pre if getattr(pre, "pretrained_net_", None) is not None else None
    adc = ActiveDeepClustering(k, strategy="adc", pretrained=start,
                               **{**c, **ov.get("cluster", {})})
    adc.fit(ds.X, y=ds.y, oracle=LabelOracle(ds.y, error_rate=0.0, seed=seed))
    rec = _eval(ds.y, adc.labels_, k)
    rec["pairs"] = float(adc.rounds_[-1]["pairs"])
    return {"ADC": rec}


def steps_adc(n: int, e: dict) -> float:
    """T rounds; round r trains the Siamese net on r·n/25 pairs (batch 64) and DEC on the
    data (batch 256)."""
    rounds, sia, dec = e.get("rounds", 5), e.get("siamese_epochs", 100), e.get("dec_epochs", 20)
    pairs = max(1, round(n / 25))
    s = sum(sia * math.ceil(r * pairs / 64) for r in range(1, rounds + 1))
    return s + rounds * dec * math.ceil(n / 256)


def decs_cluster_epochs(n: int) -> int:
    """The paper's 10 000 iterations of batch 256 as epochs of n samples."""
    return max(1, round(10_000 * 256 / n))


def run_decs(ds: Dataset, seed: int, cfg: dict) -> Rows:
    """04: conv autoencoder pretraining, then both variants (code, paper) from it."""
    from clusterkit.methods import DECS

    c, k, ov = _common(seed, cfg), ds.n_clusters, cfg["override"]
    ce = {} if cfg["profile"] == "smoke" else {"cluster_epochs": decs_cluster_epochs(len(ds))}
    pre = fit_stage(cfg, "pre", DECS(k, cluster_epochs=0, **{**c, **ov.get("pre", {})}),
                    ds.X, y=ds.y)
    out: Rows = {}
    for variant in ("code", "paper"):
        m = DECS(k, variant=variant, pretrained=pre, **{**c, **ce, **ov.get("cluster", {})})
        fit_stage(cfg, variant, m, ds.X, y=ds.y)
        out[f"DECS ({variant} variant)"] = _eval(ds.y, m.labels_, k)
    return out


def steps_decs(n: int, e: dict) -> float:
    spe = math.ceil(n / 256)
    return spe * (e.get("pretrain_epochs", 500) + 2 * e.get("cluster_epochs",
                                                            decs_cluster_epochs(n)))


def run_dccf(ds: Dataset, seed: int, cfg: dict) -> Rows:
    """05: reconstruction pretraining, then DCCF (contractive + KL + focal)."""
    from clusterkit.methods import DCCF

    c, k, ov = _common(seed, cfg), ds.n_clusters, cfg["override"]
    pre = fit_stage(cfg, "pre", DCCF(k, cluster_epochs=0, **{**c, **ov.get("pre", {})}),
                    ds.X, y=ds.y)
    m = fit_stage(cfg, "DCCF", DCCF(k, pretrained=pre, **{**c, **ov.get("cluster", {})}),
                  ds.X, y=ds.y)
    return {"DCCF": _eval(ds.y, m.labels_, k)}


def steps_dccf(n: int, e: dict) -> float:
    """The paper profile takes the contractive penalty on the whole batch: about 3x a
    plain step (benchmarks/bench_contractive.py)."""
    spe = math.ceil(n / 256)
    return spe * (e.get("pretrain_epochs", 100) + 3 * e.get("cluster_epochs", 200))


DCCF_ARMS = {"neither term": {"use_contractive": False, "use_focal": False},
             "contractive only": {"use_focal": False},
             "focal only": {"use_contractive": False}, "DCCF (both)": {}}


def run_dccf_ablation(ds: Dataset, seed: int, cfg: dict) -> Rows:
    """05, Table 5: one pretraining, then DCCF with both, one or neither of its terms
    (notebook 05's ablation grid)."""
    from clusterkit.methods import DCCF

    c, k, ov = _common(seed, cfg), ds.n_clusters, cfg["override"]
    pre = fit_stage(cfg, "pre", DCCF(k, cluster_epochs=0, **{**c, **ov.get("pre", {})}),
                    ds.X, y=ds.y)
    return {row: _eval(ds.y, fit_stage(cfg, f"arm{i}", DCCF(
        k, pretrained=pre, **{**c, **ov.get("cluster", {}), **off}), ds.X, y=ds.y).labels_, k)
            for i, (row, off) in enumerate(DCCF_ARMS.items())}


def steps_dccf_ablation(n: int, e: dict) -> float:
    """Two arms pay the contractive penalty (about 3x a plain step), two do not."""
    spe = math.ceil(n / 256)
    return spe * (e.get("pretrain_epochs", 100) + (2 * 3 + 2) * e.get("cluster_epochs", 200))


_ONE = {"pre": {"pretrain_epochs": 1}, "cluster": {"cluster_epochs": 1}}
#: the paper profiles' stop rules: the clustering phase may end before its last epoch, so the
#: estimate is an upper bound (DCCF on USPS: estimated 29 min, measured 3 min on the 2-core
#: CPU, benchmarks/results/paper_tables_cpu.md)
LABEL_STOP = "when fewer than 0.1 % of the labels change"
LOSS_STOP = "when the epoch's loss changes by less than 1e-4"
EXPERIMENTS: list[Experiment] = [
    Experiment(
        "tour", "DEC and IDEC (00_tour)", "IDEC and DEC as quoted in the DECS paper, Table 2 "
        "(ACC/NMI; the DECS authors' runs of IDEC on MNIST and USPS)",
        ("mnist", "usps", "fashion-mnist"),
        {"mnist": {"IDEC": {"acc": .881, "nmi": .867}, "DEC": {"acc": .863, "nmi": .834}},
         "usps": {"IDEC": {"acc": .761, "nmi": .785}, "DEC": {"acc": .762, "nmi": .767}},
         "fashion-mnist": {"IDEC": {"acc": .529, "nmi": .557},
                           "DEC": {"acc": .518, "nmi": .546}}},
        run_tour, steps_tour, 1000, _ONE, aliases=("dec", "idec"), stop_rule=LABEL_STOP),
    Experiment(
        "balanced", "Balanced semi-supervised deep clustering (01)",
        "Table II (ACC/NMI/ARI/NE)", ("mnist", "usps"),
        {"mnist": {"balanced (paper variant)": {"acc": .9808, "nmi": .9452, "ari": .9580,
                                                "ne": .9999}},
         "usps": {"balanced (paper variant)": {"acc": .8759, "nmi": .8593, "ari": .8576,
                                               "ne": .9779}}},
        run_balanced, steps_balanced, 600, _ONE, stop_rule=LOSS_STOP),
    Experiment(
        "clusternet", "ClusterNet (02)", "Table 3 (ACC, average; MNIST 0.5 % labels, USPS "
        "2 %); ours on a 10 % held-out split", ("mnist", "usps"),
        {"mnist": {"ClusterNet (held out)": {"acc": .9684}},
         "usps": {"ClusterNet (held out)": {"acc": .9651}}},
        run_clusternet, steps_clusternet, 1000,
        {"pre": {"pretrain_epochs": 1}, "cluster": {"cluster_epochs": 1}, "fraction": 0.05}),
    Experiment(
        "adc", "Active Deep Clustering (03)", "Table 2 (ACC/NMI/ARI)",
        ("mnist", "usps", "fashion-mnist"),
        {"mnist": {"ADC": {"acc": .996, "nmi": .987, "ari": .993}},
         "usps": {"ADC": {"acc": .988, "nmi": .965, "ari": .984}},
         "fashion-mnist": {"ADC": {"acc": .880, "nmi": .820, "ari": .785}}},
        run_adc, steps_adc, 200,
        {"cluster": {"rounds": 1, "siamese_epochs": 1, "dec_epochs": 1}},
        splittable=False),  # its rounds are several runs of two networks: whole or not
    Experiment(
        "decs", "DECS, sample stability (04)", "Table 2 (ACC/NMI)",
        ("mnist", "usps", "fashion-mnist"),
        {d: {"DECS (code variant)": v, "DECS (paper variant)": v} for d, v in
         {"mnist": {"acc": .990, "nmi": .973}, "usps": {"acc": .992, "nmi": .976},
          "fashion-mnist": {"acc": .642, "nmi": .716}}.items()},
        run_decs, steps_decs, 600, _ONE),
    Experiment(
        "dccf", "DCCF, contractive + focal (05)", "Tables 2-3 (ACC/NMI)",
        ("mnist", "fashion-mnist", "usps"),
        {"mnist": {"DCCF": {"acc": .9741, "nmi": .9332}},
         "fashion-mnist": {"DCCF": {"acc": .6212, "nmi": .6458}},
         "usps": {"DCCF": {"acc": .8553, "nmi": .8251}}},
        run_dccf, steps_dccf, 1000, _ONE, stop_rule=LABEL_STOP),
    Experiment(
        "balanced-ablation", "Balanced semi-supervised clustering: ablation (01)",
        "Table IV (ACC/NMI/ARI/NE; mean over the authors' runs)", ("mnist", "usps"),
        {"mnist": {"all three": {"acc": .9808, "nmi": .9452, "ari": .9580, "ne": .9994},
                   "no L_r": {"acc": .9753, "nmi": .9325, "ari": .9462, "ne": .9940},
                   "no L_bal": {"acc": .8834, "nmi": .9086, "ari": .8603, "ne": .9411},
                   "no L_semi": {"acc": .8400, "nmi": .7991, "ari": .7456, "ne": .9995}},
         "usps": {"all three": {"acc": .8759, "nmi": .8593, "ari": .8576, "ne": .9779},
                  "no L_r": {"acc": .8614, "nmi": .8499, "ari": .8389, "ne": .9566},
                  "no L_bal": {"acc": .6561, "nmi": .6826, "ari": .6304, "ne": .9582},
                  "no L_semi": {"acc": .7396, "nmi": .7419, "ari": .6683, "ne": .9959}}},
        run_balanced_ablation, steps_balanced_ablation, 600, _ONE, aliases=("table4",),
        stop_rule=LOSS_STOP),
    Experiment(
        "dccf-ablation", "DCCF: ablation (05)", "Table 5 (ACC/NMI)", ("mnist", "usps"),
        {"mnist": {"neither term": {"acc": .8479, "nmi": .8230},
                   "contractive only": {"acc": .9430, "nmi": .8865},
                   "focal only": {"acc": .9159, "nmi": .8782},
                   "DCCF (both)": {"acc": .9741, "nmi": .9332}},
         "usps": {"neither term": {"acc": .7716, "nmi": .7929},
                  "contractive only": {"acc": .7733, "nmi": .7967},
                  "focal only": {"acc": .8044, "nmi": .8075},
                  "DCCF (both)": {"acc": .8553, "nmi": .8251}}},
        run_dccf_ablation, steps_dccf_ablation, 1000, _ONE, aliases=("table5",),
        stop_rule=LABEL_STOP),
]
BY_KEY = {e.key: e for e in EXPERIMENTS}
#: the order runs start in within a seed and dataset: first the papers whose notebook issues
#: wait for these numbers (01, 05, 02, 04, then the two ablations), the cheaper first; then
#: the tour and ADC, whose demo targets are met
PRIORITY = ("balanced", "dccf", "clusternet", "decs", "dccf-ablation", "balanced-ablation",
            "tour", "adc")
assert sorted(PRIORITY) == sorted(BY_KEY), "PRIORITY must list every experiment once"
ALIASES = {a: e.key for e in EXPERIMENTS for a in (e.key, *e.aliases)}
FULL_N = {"mnist": 70_000, "fashion-mnist": 70_000, "usps": 9_298}


# ---------------------------------------------------------------------- estimate
def _probe_settings(exp: Experiment, factor: int) -> dict[str, Any]:
    """The experiment's probe overrides with every epoch count (and ADC's rounds) times
    ``factor``."""
    def scale(d: dict) -> dict:
        return {k: v * factor if isinstance(v, int) and (k.endswith("epochs") or k == "rounds")
                else v for k, v in d.items()}
    return {k: scale(v) if isinstance(v, dict) else v for k, v in exp.probe.items()}


def probe_seconds(exp: Experiment, device: str, factor: int = 1) -> tuple[float, float]:
    """Wall time of ``exp`` with its paper-profile models on ``PROBE_N`` samples of
    mnist-5k, ``factor`` epochs of each phase (ADC: rounds), and the weighted steps that
    took (``exp.steps`` of those settings)."""
    ds = datasets.load("mnist-5k", subset=PROBE_N, seed=0)
    probe = _probe_settings(exp, factor)
    cfg = {"profile": "paper", "device": device, "verbose": False, "override": probe}
    t0 = time.perf_counter()
    exp.run(ds, 0, cfg)
    flat = {k: v for d in probe.values() if isinstance(d, dict) for k, v in d.items()}
    return time.perf_counter() - t0, exp.steps(PROBE_N, flat)


def probe_rate(exp: Experiment, device: str) -> tuple[float, float]:
    """(seconds per weighted step, fixed seconds) of ``exp`` on ``device``, from two probes
    (one and two epochs of each phase): the difference removes what does not grow with the
    steps (model building, k-means, CUDA's start), which on a GPU is most of a short probe."""
    t1, s1 = probe_seconds(exp, device, 1)
    t2, s2 = probe_seconds(exp, device, 2)
    rate = (t2 - t1) / (s2 - s1) if t2 > t1 and s2 > s1 else t2 / s2
    return rate, max(0.0, t1 - rate * s1)


def estimate(exps: list[Experiment], seeds: int, device: str) -> tuple[float, list[str]]:
    """Seconds the full run of ``exps`` would take on ``device`` (extrapolated from probes
    of each) and one line per experiment."""
    total, lines = 0.0, []
    for exp in exps:
        rate, fixed = probe_rate(exp, device)
        per_ds = {d: fixed + rate * exp.steps(FULL_N[d], {}) for d in exp.datasets}
        s = seeds * sum(per_ds.values())
        total += s
        bound = f"; at most: clustering stops {exp.stop_rule}" if exp.stop_rule else ""
        lines.append(f"  {exp.key:<17} {_hours(s):>9}  ({1e3 * rate:.2f} ms a step; per "
                     f"seed: " + ", ".join(f"{d} {_hours(v)}" for d, v in per_ds.items())
                     + bound + ")")
    return total, lines


def _hours(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 2 * 3600:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


# ---------------------------------------------------------------------- the table
def _fmt(vals: list[float]) -> str:
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{100 * vals[0] + 0.0:.2f}"
    return f"{100 * statistics.mean(vals):.2f} ± {100 * statistics.stdev(vals):.2f}"


def write_table(path: Path, records: list[dict], tiny: bool) -> None:
    """The Markdown table of the recorded runs: per paper, dataset and row, the paper's number
    beside ours (%, mean ± std over the seeds recorded) and the time."""
    results = records_to_results(records)

    def uniq(key: str) -> list[str]:
        return sorted({str(r.get(key, "?")) for r in records})

    dates = uniq("date")
    seeds = sorted({int(r["seed"]) for r in records})
    total = sum(float(r["seconds"]) for r in records)
    lines = [f"# The papers' tables, reproduced{' (TINY SETTING)' if tiny else ''}",
             "",
             f"- device: {', '.join(f'**{d}**' for d in uniq('device'))}; torch "
             f"{', '.join(uniq('torch'))}; Python {platform.python_version()}; "
             f"{', '.join(uniq('threads'))}",
             f"- {len(records)} run(s), {dates[0]}" + (f" to {dates[-1]}" if len(dates) > 1
                                                        else "")
             + f"; seeds: {', '.join(map(str, seeds))}; profile: "
             f"`{', '.join(uniq('profile'))}`; time of all runs {_hours(total)}; commit "
             f"{', '.join(uniq('commit'))}",
             *(f"- command: `{c}`" for c in uniq("command")),
             "- numbers in %: the paper's, then ours as mean ± std over the seeds recorded "
             "(column n); time: wall seconds per seed (mean), all runs of the experiment on "
             "that dataset", ""]
    if tiny:
        lines += ["> Tiny setting: the notebooks' `smoke` profile on small subsets of "
                  "mnist-5k, one seed. It checks that every path runs; its numbers are "
                  "**not** comparable with the papers' (shown for the layout only).", ""]
    for exp in EXPERIMENTS:
        if exp.key not in results:
            continue
        lines += [f"## {exp.title}", "", f"Paper: {exp.source}.", "",
                  "| dataset | method | metric | paper | ours | time (s) | n |",
                  "|---|---|---|---|---|---|---|"]
        for dname, rows in results[exp.key].items():
            ref_ds = "mnist" if tiny else dname
            for row, r in rows["rows"].items():
                ref = exp.reported.get(ref_ds, {}).get(row, {})
                keys = list(ref) or ["acc", "nmi"]
                for j, key in enumerate(keys):
                    ours = [v[key] for v in r if key in v]
                    paper = f"{100 * ref[key]:.2f}" if key in ref else "–"
                    t = f"{statistics.mean(rows['seconds']):.0f}" if j == 0 else ""
                    n = str(len(ours)) if j == 0 else ""
                    lines.append(f"| {dname if j == 0 else ''} | {row if j == 0 else ''} | "
                                 f"{key.upper()} | {paper} | {_fmt(ours)} | {t} | {n} |")
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


# ---------------------------------------------------------------------- runs on disk
def job_key(exp_key: str, dataset: str, seed: int, profile: str) -> str:
    return f"{exp_key}|{dataset}|{seed}|{profile}"


def load_records(path: Path) -> list[dict]:
    """The runs recorded so far in ``path`` (a JSON list; none when it does not exist)."""
    if not path.exists():
        return []
    try:
        recs = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise SystemExit(f"reproduce: {path} is not valid JSON ({e}); move it away or pass "
                         f"another --results") from e
    if not isinstance(recs, list) or not all(isinstance(r, dict) and "key" in r for r in recs):
        raise SystemExit(f"reproduce: {path} does not hold a list of runs; move it away or "
                         f"pass another --results")
    return recs


def save_records(path: Path, recs: list[dict]) -> None:
    """Write the runs atomically (a run killed mid-write leaves the previous file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(recs, indent=1, default=float) + "\n")
    os.replace(tmp, path)


def records_to_results(recs: list[dict]) -> dict[str, dict[str, dict]]:
    """``{experiment: {dataset: {"rows": {row: [metrics per seed]}, "seconds": [...]}}}``."""
    results: dict[str, dict[str, dict]] = {}
    for r in sorted(recs, key=lambda r: r["seed"]):
        slot = results.setdefault(r["experiment"], {}).setdefault(
            r["dataset"], {"rows": {}, "seconds": []})
        slot["seconds"].append(r["seconds"])
        for row, rec in r["rows"].items():
            slot["rows"].setdefault(row, []).append(rec)
    return results


def git_commit() -> str:
    if os.environ.get("CLUSTERKIT_COMMIT"):
        return os.environ["CLUSTERKIT_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                             capture_output=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def job_order(exps: list[Experiment], seeds: int, tiny: bool,
              keep: set[str] | None) -> list[tuple[Experiment, str, int]]:
    """Every (experiment, dataset, seed), breadth first: seed 0 of every experiment on its
    first dataset (MNIST), then on its second, ..., then seed 1, so that a run cut short by
    ``--budget`` has one number for each paper rather than many seeds of one; within that,
    experiments in ``PRIORITY`` order."""
    exps = sorted(exps, key=lambda e: PRIORITY.index(e.key))
    names = {e.key: (["mnist-5k"] if tiny else
                     [d for d in e.datasets if keep is None or d in keep]) for e in exps}
    width = max((len(v) for v in names.values()), default=0)
    return [(e, names[e.key][i], s) for s in range(seeds) for i in range(width)
            for e in exps if i < len(names[e.key])]


# ---------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Experiments (--only): " + ", ".join(
            f"{e.key}{' (' + '/'.join(e.aliases) + ')' if e.aliases else ''} on "
            f"{'/'.join(e.datasets)}" for e in EXPERIMENTS))
    ap.add_argument("--cpu", action="store_true",
                    help="allow running without a GPU (the full CPU run takes days; see the "
                         "estimate it prints without this flag)")
    ap.add_argument("--tiny", action="store_true",
                    help="smoke-sized run: the notebooks' smoke profile on subsets of "
                         "mnist-5k, 1 seed; minutes on a CPU; not comparable with the papers")
    ap.add_argument("--only", default=None,
                    help="comma-separated experiments to run (default: all): "
                         + ", ".join(ALIASES))
    ap.add_argument("--datasets", default=None,
                    help="comma-separated datasets to keep (mnist, usps, fashion-mnist); "
                         "ignored with --tiny")
    ap.add_argument("--seeds", type=int, default=None,
                    help="number of seeds 0..N-1 (default 3; 1 with --tiny)")
    ap.add_argument("--out", type=Path, default=None,
                    help=f"table to write (default {DEFAULT_OUT.relative_to(ROOT)} on a GPU, "
                         f"{CPU_OUT.name} for a full CPU run, {TINY_OUT.name} with --tiny)")
    ap.add_argument("--estimate", action="store_true",
                    help="only print the estimated duration of the full run on this machine")
    ap.add_argument("--device", default="auto", help="auto (a GPU when there is one), cuda, cpu")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default 1 on a CPU run: steadier on a shared "
                         "machine; torch's choice on a GPU run)")
    ap.add_argument("--verbose", action="store_true", help="the methods' own progress bars")
    ap.add_argument("--results", type=Path, default=None,
                    help="JSON record of every finished run (default: the table's path with "
                         ".json). Runs recorded there are not run again (see --redo) and the "
                         "table is written from all of them, so a reproduction can be done "
                         "piecewise, one GPU session at a time")
    ap.add_argument("--redo", action="store_true",
                    help="run again the runs that --results already holds (replacing them)")
    ap.add_argument("--budget", type=float, default=None,
                    help="minutes: start only the runs that the probe's estimate says will "
                         "end within this time (the others are listed as left to do); the "
                         "record and the table are written after every run")
    ap.add_argument("--checkpoints", type=Path, default=None,
                    help="folder where each run keeps its stages (a pretraining, each arm) as "
                         "they end; with --budget, a run is cut at the budget and saved there, "
                         "and the next call with the same folder continues it (first, before "
                         "new runs); after the runs that fit, a run that does not is started "
                         "in the time left, to be continued. A run's folder is removed once "
                         "it is recorded")
    a = ap.parse_args(argv)
    keys = []
    for name in (a.only.split(",") if a.only else list(BY_KEY)):
        name = name.strip().lower()
        if name not in ALIASES:
            ap.error(f"--only: unknown experiment {name!r}; choose from {', '.join(ALIASES)}")
        if ALIASES[name] not in keys:
            keys.append(ALIASES[name])
    a.experiments = [BY_KEY[k] for k in keys]
    if a.datasets:
        a.keep = {d.strip() for d in a.datasets.split(",") if d.strip()}
        unknown = a.keep - set(FULL_N)
        if unknown:
            ap.error(f"--datasets: unknown {sorted(unknown)}; choose from {', '.join(FULL_N)}")
    else:
        a.keep = None
    if a.seeds is None:
        a.seeds = 1 if a.tiny else 3
    if a.seeds < 1:
        ap.error("--seeds must be >= 1")
    if a.budget is not None and not a.budget > 0:
        ap.error(f"--budget must be a positive number of minutes; got {a.budget}")
    if a.threads is not None and a.threads < 1:
        ap.error("--threads must be >= 1")
    if a.device not in ("auto", "cpu", "cuda") and not a.device.startswith("cuda:"):
        ap.error(f"--device must be auto, cpu or cuda[:i]; got {a.device!r}")
    return a


#: the least time left for which a run that cannot end in it is started to be continued
MIN_PIECE_S = 60.0


def admit(need: float | None, left: float, *, resumed: bool, splittable: bool,
          pieces: bool) -> str:
    """What a call with ``left`` seconds does with a run estimated at ``need`` seconds:
    ``"run"`` it now, ``"skip"`` it (a later call), or keep it as a ``"piece"``: started after
    the runs that fit, in the time then left, cut and saved at the budget (``--checkpoints``).
    A run begun in an earlier call (``resumed``) runs first, for as long as there is time."""
    if left <= 0:
        return "skip"
    if resumed or need is None or 1.25 * need <= left:
        return "run"
    return "piece" if pieces and splittable else "skip"


def _add_seconds(folder: Path, secs: float) -> float:
    """Add ``secs`` to the time a run spent in earlier calls (kept beside its stages)."""
    f = folder / "seconds.json"
    total = (json.loads(f.read_text())["seconds"] if f.exists() else 0.0) + secs
    folder.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps({"seconds": round(total, 2)}))
    return total


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    gpu = torch.cuda.is_available() and a.device != "cpu"
    device = ("cuda" if gpu else "cpu") if a.device == "auto" else a.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("reproduce: --device cuda asked for, but torch sees no GPU", file=sys.stderr)
        return 2
    if not gpu or a.threads:
        torch.set_num_threads(a.threads or 1)

    if a.estimate or (not gpu and not a.cpu):
        seeds = a.seeds if not a.tiny else 3
        if not gpu and not a.estimate:
            print("reproduce: no GPU is visible to torch. The paper settings are meant for a "
                  "GPU; pass --cpu to run on the CPU anyway, or --cpu --tiny for the "
                  "smoke-sized check.", file=sys.stderr)
        print(f"Estimating the full run ({len(a.experiments)} experiment(s), {seeds} seed(s)) "
              f"on this machine's {device.upper()} from a short probe of each "
              f"({torch.get_num_threads()} thread(s))...", file=sys.stderr, flush=True)
        total, lines = estimate(a.experiments, seeds, device)
        print(f"Estimate (extrapolated from measured probes, rough): the full {device.upper()} "
              f"run would take about {_hours(total)}:", file=sys.stderr)
        print("\n".join(lines), file=sys.stderr)
        return 0 if a.estimate else 2

    out = a.out or (TINY_OUT if a.tiny else DEFAULT_OUT if gpu else CPU_OUT)
    if a.tiny and out.resolve() == DEFAULT_OUT.resolve():
        print(f"reproduce: refusing to write a --tiny table over {DEFAULT_OUT}", file=sys.stderr)
        return 2
    store = a.results or out.with_suffix(".json")
    if a.tiny and store.resolve() == DEFAULT_OUT.with_suffix(".json").resolve():
        print(f"reproduce: refusing to record --tiny runs in {store}", file=sys.stderr)
        return 2
    from tqdm.auto import tqdm

    profile = "smoke" if a.tiny else "paper"
    cfg = {"profile": profile, "device": device, "verbose": a.verbose, "override": {}}
    jobs = job_order(a.experiments, a.seeds, a.tiny, a.keep)
    if not jobs:
        print("reproduce: nothing to run (check --only and --datasets)", file=sys.stderr)
        return 2
    # a --tiny run is a check of the code: it starts afresh unless given a --results to go on
    records = [] if a.tiny and a.results is None else load_records(store)
    done = {r["key"] for r in records}
    if a.redo:
        redo = {job_key(e.key, d, s, profile) for e, d, s in jobs}
        records = [r for r in records if r["key"] not in redo]
        done -= redo
    todo = [j for j in jobs if job_key(j[0].key, j[1], j[2], profile) not in done]
    if len(todo) < len(jobs):
        print(f"reproduce: {len(jobs) - len(todo)} of {len(jobs)} run(s) are already in "
              f"{store} and are kept (--redo runs them again)", file=sys.stderr)
    dev_name = torch.cuda.get_device_name() if device.startswith("cuda") else (
        f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)")
    threads = (f"{torch.get_num_threads()} CPU thread(s)" if not device.startswith("cuda")
               else "CUDA")
    t_all = time.perf_counter()
    # the budget counts from here: the probes below take part of it
    deadline = None if a.budget is None else time.monotonic() + 60 * a.budget
    guess: dict[tuple[str, str], float] = {}
    if a.budget is not None and not a.tiny and todo:
        print(f"reproduce: probing {len(a.experiments)} experiment(s) on {device} for the "
              f"budget of {a.budget:g} min...", file=sys.stderr, flush=True)
        timed: dict[tuple[str, str], list[float]] = {}
        for r in records:  # an earlier run on this device is the best guess
            if r["device"] == dev_name and r["profile"] == profile:
                timed.setdefault((r["experiment"], r["dataset"]), []).append(r["seconds"])
        for exp in {j[0].key: j[0] for j in todo}.values():
            if all((exp.key, d) in timed for e, d, _ in todo if e is exp):
                continue
            rate, fixed = probe_rate(exp, device)
            for d in exp.datasets:
                guess[exp.key, d] = fixed + rate * exp.steps(FULL_N[d], {})
        guess.update({k: statistics.mean(v) for k, v in timed.items()})
    commit = git_commit()
    command = "python benchmarks/reproduce.py " + " ".join(argv if argv is not None
                                                         else sys.argv[1:])
    loaded: dict[tuple[str, int | None], Dataset] = {}
    skipped: list[str] = []
    cut: list[str] = []
    root = a.checkpoints

    def resumed(job: tuple[Experiment, str, int]) -> bool:
        return root is not None and (root / job_folder(
            job_key(job[0].key, job[1], job[2], profile))).is_dir()

    # runs begun in an earlier call first, then the breadth-first order
    todo.sort(key=lambda j: not resumed(j))

    def run_job(exp: Experiment, dname: str, seed: int) -> None:
        what = f"{exp.key} {dname} seed {seed}"
        key = job_key(exp.key, dname, seed, profile)
        bar.set_postfix_str(what)
        sub = exp.tiny_n if a.tiny else None
        if (dname, sub) not in loaded:
            loaded[dname, sub] = datasets.load(dname, subset=sub, seed=0)
        ds = loaded[dname, sub]
        pieces = None if root is None else Pieces(root, key, deadline)
        t0 = time.perf_counter()
        try:
            rows = exp.run(ds, seed, {**cfg, "pieces": pieces})
        except OutOfTime as e:
            spent = _add_seconds(pieces.folder, time.perf_counter() - t0)
            cut.append(f"{what} ({e}; {_hours(spent)} so far)")
            tqdm.write(f"{exp.key:<17} {dname:<14} seed {seed}: cut at the budget and saved in "
                       f"{pieces.folder} ({_hours(spent)} so far); the next call continues it")
            return
        secs = time.perf_counter() - t0
        if pieces is not None and pieces.folder.is_dir():
            secs = _add_seconds(pieces.folder, secs)
        label = f"{dname} [{len(ds)}]" if a.tiny else dname
        records.append({"key": key, "experiment": exp.key,
                        "dataset": label, "seed": seed, "profile": profile,
                        "rows": rows, "seconds": round(secs, 2), "device": dev_name,
                        "threads": threads, "torch": torch.__version__, "commit": commit,
                        "date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
                        "command": command})
        save_records(store, records)
        write_table(out, [r for r in records if r["profile"] == profile], a.tiny)
        if pieces is not None:
            shutil.rmtree(pieces.folder, ignore_errors=True)
        tqdm.write(f"{exp.key:<17} {dname:<14} seed {seed}: " + "; ".join(
            f"{row} ACC {rec['acc']:.4f} NMI {rec['nmi']:.4f}" for row, rec in rows.items())
            + f"  ({secs:.0f} s)")

    def leave(exp: Experiment, dname: str, seed: int) -> None:
        need = guess.get((exp.key, dname))
        skipped.append(f"{exp.key} {dname} seed {seed}"
                       + ("" if need is None else f" (about {_hours(need)})"))

    bar = tqdm(todo, desc="reproduce", unit="run")
    piece: tuple[Experiment, str, int] | None = None
    for exp, dname, seed in bar:
        if a.budget is not None:
            todo_now = admit(guess.get((exp.key, dname)), deadline - time.monotonic(),
                             resumed=resumed((exp, dname, seed)),
                             splittable=exp.splittable, pieces=root is not None)
            if todo_now == "piece" and piece is None:
                piece = (exp, dname, seed)
                continue
            if todo_now != "run":
                leave(exp, dname, seed)
                continue
        run_job(exp, dname, seed)
    if piece is not None:
        if deadline - time.monotonic() >= MIN_PIECE_S:
            run_job(*piece)
        else:
            leave(*piece)
    bar.close()
    mine = [r for r in records if r["profile"] == profile]
    if mine:
        write_table(out, mine, a.tiny)
    if skipped:
        print(f"reproduce: {len(skipped)} run(s) left for a later call (they would not end "
              f"within --budget {a.budget:g} min): " + "; ".join(skipped), file=sys.stderr)
    if cut:
        print(f"reproduce: {len(cut)} run(s) cut at the budget and saved in {root}, to be "
              f"continued by the next call with --checkpoints {root}: " + "; ".join(cut),
              file=sys.stderr)
    took = _hours(time.perf_counter() - t_all)
    if mine:
        print(f"wrote {out} and {store} ({len(records)} run(s) recorded; this call {took})")
    else:
        print(f"no run recorded yet, so no table was written (this call {took})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
