"""How much does a notebook's main figure move with the seed and the thread count?

Runs the main training of a notebook's ``demo`` profile through the same library calls as
the notebook, for several seeds, and prints one JSON line per seed with the final ACC (and
the per-round or per-epoch curve), so that a demo target can be judged against its spread
rather than one draw.

    python benchmarks/seed_spread.py adc --seeds 0,1,2 --threads 1
    python benchmarks/seed_spread.py adc --seeds 0 --strategy random
    python benchmarks/seed_spread.py clusternet --seeds 0,1,2 --threads 2
    python benchmarks/seed_spread.py clusternet --seeds 0 --set '{"lr": 0.0003}'
    python benchmarks/seed_spread.py clusternet --seeds 0 --fraction 0.005
    python benchmarks/seed_spread.py decs --seeds 0 --pre '{"pretrain_epochs": 80}'
    python benchmarks/seed_spread.py idec --seeds 0 --set '{"pretrain_epochs": 120}'
    python benchmarks/seed_spread.py balanced-ablation --seeds 0,1,2,3,4
    python benchmarks/seed_spread.py dccf-ablation --seeds 0,1,2,3,4

``adc``: notebook 03's pseudo-pair pretraining, then ``ActiveDeepClustering.fit`` with a
``LabelOracle`` (T rounds, n/25 pairs each); ``clusternet``: notebook 02's 10 % held-out
split, 2 % labels per class, 20 augmented pretraining epochs, then the fine-tuning run with
``eval_set`` (held-out ACC per epoch); ``decs``: notebook 04's pretraining (``DECS`` with
``cluster_epochs=0``), then the code variant from it (ACC and the mean stability of all
points per epoch; ``--set '{"variant": "paper"}'`` for the other); ``idec``: notebook
04's IDEC baseline (40 pretraining and 20 clustering epochs unless ``--set``);
``balanced-ablation`` and ``dccf-ablation``: notebook 01's and 05's ablations (Table IV,
Table 5): one pretraining, then the full model and each ablation arm from it, with the
notebook's constraints; per seed the ACC of every arm, and over the seeds the mean and
standard deviation of "full minus arm", the comparison the notebooks' demo tests make on one
draw. ``--set`` passes
settings to the main method, ``--pre`` to the pretraining run, ``--subset`` a smaller
stratified sample of mnist-5k for a quick check.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from reproduce import BALANCED_ARMS, DCCF_ARMS  # noqa: E402  (the ablation arms, one list)

from clusterkit import datasets, metrics  # noqa: E402
from clusterkit.active import LabelOracle  # noqa: E402
from clusterkit.methods import (  # noqa: E402
    DCCF,
    DECS,
    IDEC,
    ActiveDeepClustering,
    BalancedSemiSupervised,
    ClusterNet,
)
from clusterkit.methods.clusternet import partial_labels  # noqa: E402


def adc(seed: int, subset: int | None, strategy: str, kw: dict, pre_kw: dict) -> dict:
    ds = datasets.load("mnist-5k", subset=subset, seed=seed)
    t0 = time.perf_counter()
    pre = ActiveDeepClustering(10, dec_epochs=0, seed=seed, device="cpu", **pre_kw)
    pre.fit_round(ds.X, None, y=ds.y)
    m = ActiveDeepClustering(10, strategy=strategy, pretrained=pre, seed=seed, device="cpu",
                             **kw)
    m.fit(ds.X, y=ds.y, oracle=LabelOracle(ds.y, seed=seed))
    return {"pretrain_acc": round(pre.rounds_[0]["acc"], 4),
            "curve": [round(r["acc"], 4) for r in m.rounds_],
            "acc": round(m.rounds_[-1]["acc"], 4), "seconds": round(time.perf_counter() - t0)}


def clusternet(seed: int, subset: int | None, strategy: str, kw: dict,
               pre_kw: dict, fraction: float = 0.02) -> dict:
    ds = datasets.load("mnist-5k", subset=subset, seed=seed)
    train, test = ds.split(0.1, seed)
    yp = partial_labels(train.y, fraction, seed)
    t0 = time.perf_counter()
    pre = ClusterNet(10, **{"pretrain_epochs": 20, "augment": True, **pre_kw},
                     cluster_epochs=0, seed=seed, device="cpu",
                     verbose=False).fit(train.X, yp, y=train.y)
    m = ClusterNet(10, pretrained=pre, seed=seed, device="cpu", verbose=False,
                   snapshot_epochs=None, **kw)
    m.fit(train.X, yp, y=train.y, eval_set=(test.X, test.y))
    return {"pretrain_acc": round(metrics.acc(test.y, pre.predict(test.X)), 4),
            "curve": [round(r["test_acc"], 3) for r in m.history_.epochs if "test_acc" in r],
            "acc": round(metrics.acc(test.y, m.predict(test.X)), 4),
            "seconds": round(time.perf_counter() - t0)}


def decs(seed: int, subset: int | None, strategy: str, kw: dict, pre_kw: dict) -> dict:
    ds = datasets.load("mnist-5k", subset=subset, seed=seed)
    t0 = time.perf_counter()
    pre = DECS(10, cluster_epochs=0, seed=seed, device="cpu", verbose=False,
               snapshot_epochs=None, **pre_kw).fit(ds.X, y=ds.y)
    t_pre = time.perf_counter() - t0
    m = DECS(10, pretrained=pre, seed=seed, device="cpu", verbose=False,
             snapshot_epochs=None, **{"variant": "code", **kw}).fit(ds.X, y=ds.y)
    return {"pretrain_acc": round(metrics.acc(ds.y, pre.labels_), 4),
            "curve": [round(v, 3) for v in m.history_.curve("acc")[1]],
            "stability_curve": [round(v, 3) for v in m.history_.curve("mean_stability")[1]],
            "acc": round(metrics.acc(ds.y, m.labels_), 4),
            "pretrain_seconds": round(t_pre), "seconds": round(time.perf_counter() - t0)}


def idec(seed: int, subset: int | None, strategy: str, kw: dict, pre_kw: dict) -> dict:
    ds = datasets.load("mnist-5k", subset=subset, seed=seed)
    t0 = time.perf_counter()
    m = IDEC(10, **{"pretrain_epochs": 40, "cluster_epochs": 20, **kw}, seed=seed,
             device="cpu", verbose=False, snapshot_epochs=None).fit(ds.X, y=ds.y)
    return {"curve": [round(v, 3) for v in m.history_.curve("acc")[1]],
            "acc": round(metrics.acc(ds.y, m.labels_), 4),
            "seconds": round(time.perf_counter() - t0)}


def _ablation(seed: int, subset: int | None, setup, arms: dict[str, dict]) -> dict:
    """``setup(ds)`` pretrains once and returns ``(pre, fit_arm)``; ``fit_arm(kw)`` trains one
    arm from it and returns its labels. The full model is the arm without settings.
    Returns the ACC of each arm, and full minus each ablation."""
    ds = datasets.load("mnist-5k", subset=subset, seed=seed)
    t0 = time.perf_counter()
    pre, fit_arm = setup(ds)
    t1 = time.perf_counter()
    acc = {name: round(metrics.acc(ds.y, fit_arm(kw)), 4) for name, kw in arms.items()}
    full = next(name for name, kw in arms.items() if not kw)
    return {"pretrain_acc": round(metrics.acc(ds.y, pre.labels_), 4), "acc": acc[full],
            "arms": acc,
            "full_minus": {n: round(acc[full] - a, 4) for n, a in acc.items() if n != full},
            "arm_seconds": round(time.perf_counter() - t1),
            "seconds": round(time.perf_counter() - t0)}


def balanced_ablation(seed: int, subset: int | None, strategy: str, kw: dict,
                      pre_kw: dict) -> dict:
    def setup(ds):
        pre = IDEC(10, cluster_epochs=0, seed=seed, device="cpu", verbose=False,
                   snapshot_epochs=None, **pre_kw).fit(ds.X, y=ds.y)
        cons = BalancedSemiSupervised.make_constraints(ds.y, fraction=0.2, ml_ratio=0.5,
                                                       seed=seed)
        return pre, lambda off: BalancedSemiSupervised(
            10, pretrained=pre, seed=seed, device="cpu", verbose=False,
            snapshot_epochs=None, **{"variant": "paper", **kw, **off}).fit(ds.X, cons,
                                                                           y=ds.y).labels_

    return _ablation(seed, subset, setup, BALANCED_ARMS)


def dccf_ablation(seed: int, subset: int | None, strategy: str, kw: dict,
                  pre_kw: dict) -> dict:
    def setup(ds):
        pre = DCCF(10, cluster_epochs=0, seed=seed, device="cpu", verbose=False,
                   snapshot_epochs=None, **pre_kw).fit(ds.X, y=ds.y)
        return pre, lambda off: DCCF(10, pretrained=pre, seed=seed, device="cpu",
                                     verbose=False, snapshot_epochs=None, **kw,
                                     **off).fit(ds.X, y=ds.y).labels_

    return _ablation(seed, subset, setup, DCCF_ARMS)


RUNS = {"adc": adc, "clusternet": clusternet, "decs": decs, "idec": idec,
        "balanced-ablation": balanced_ablation, "dccf-ablation": dccf_ablation}


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("method", choices=sorted(RUNS))
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--strategy", default="adc", choices=("adc", "random", "uncertain"),
                    help="adc only: the query strategy")
    ap.add_argument("--set", default="{}", help="JSON settings for the main method")
    ap.add_argument("--pre", default="{}", help="JSON settings for the pretraining run")
    ap.add_argument("--subset", type=int, default=None, help="a smaller sample of mnist-5k")
    ap.add_argument("--fraction", type=float, default=None,
                    help="clusternet only: labeled fraction per class (default 0.02)")
    args = ap.parse_args(argv)
    try:
        kw = json.loads(args.set)
        pre_kw = json.loads(args.pre)
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError as e:
        ap.error(f"--set and --pre must be JSON objects and --seeds integers: {e}")
    if not isinstance(kw, dict) or not isinstance(pre_kw, dict) or not seeds or args.threads < 1:
        ap.error("--set and --pre must be JSON objects, --seeds non-empty, --threads >= 1")
    if pre_kw and args.method == "idec":
        ap.error("--pre does not apply to idec (its pretraining is part of the same fit): "
                 "pass pretrain_epochs and the like with --set")
    extra = {}
    if args.fraction is not None:
        if args.method != "clusternet":
            ap.error("--fraction applies to clusternet only")
        extra["fraction"] = args.fraction
    torch.set_num_threads(args.threads)
    out = []
    for seed in seeds:
        rec = {"method": args.method, "seed": seed, "threads": args.threads, "set": kw,
               **({"pre": pre_kw} if pre_kw else {}),
               **({"strategy": args.strategy} if args.method == "adc" else {}), **extra,
               **RUNS[args.method](seed, args.subset, args.strategy, kw, pre_kw, **extra)}
        print(json.dumps(rec), flush=True)
        out.append(rec)
    accs = [r["acc"] for r in out]
    print(f"ACC over seeds {seeds}: min {min(accs):.4f}, mean {sum(accs) / len(accs):.4f}, "
          f"max {max(accs):.4f}")
    if "full_minus" in out[0]:
        for arm in out[0]["full_minus"]:
            d = np.array([r["full_minus"][arm] for r in out])
            sd = d.std(ddof=1) if len(d) > 1 else float("nan")
            print(f"full - {arm}: mean {d.mean():+.4f} ± {sd:.4f} (sd), ahead in "
                  f"{int((d > 0).sum())} of {len(d)} seeds")
    return out


if __name__ == "__main__":
    main()
