"""The balanced method (notebook 01, ``variant="paper"``) on one dataset at one profile: one
IDEC warm-up, then one run per named arm from it, each with its own settings.

Made to find where the paper profile loses points on USPS (session 16, benchmarks/README.md):

    python benchmarks/balanced_arms.py --dataset usps --pre-threads 2 base='{}' \\
        pps256='{"pairs_per_step": 256}' \\
        no_bal='{"pairs_per_step": 256, "use_balance": false}'

The warm-up is saved to ``--cache`` (default
``/tmp/clusterkit_balanced_arms_<dataset>_<seed>.pt``) and reused when it is there, so arms
can be added later, or run side by side in two processes. Prints one JSON line per arm:
ACC/NMI/ARI/NE, the share of constraints satisfied, the ACC of each clustering epoch, the
cluster sizes and the time. ``CLUSTERKIT_DATA`` must point at the datasets
(``../shared/data`` on the project's machines).
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

from clusterkit import datasets, metrics  # noqa: E402
from clusterkit.methods import IDEC, BalancedSemiSupervised  # noqa: E402


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("arms", nargs="+", help="name=JSON settings for BalancedSemiSupervised")
    ap.add_argument("--dataset", default="usps")
    ap.add_argument("--profile", default="paper", choices=("smoke", "demo", "paper"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the arms")
    ap.add_argument("--pre-threads", type=int, default=1, help="torch threads for the warm-up")
    ap.add_argument("--cache", type=Path, default=None, help="where the warm-up is kept")
    args = ap.parse_args(argv)
    arms = {}
    for a in args.arms:
        name, sep, js = a.partition("=")
        try:
            kw = json.loads(js) if sep else None
        except ValueError as e:
            ap.error(f"arm {a!r}: the settings after '=' must be JSON: {e}")
        if not name or not isinstance(kw, dict):
            ap.error(f"each arm is name=JSON-object, e.g. base='{{}}'; got {a!r}")
        arms[name] = kw
    cache = args.cache or Path(f"/tmp/clusterkit_balanced_arms_{args.dataset}_{args.seed}.pt")

    ds = datasets.load(args.dataset)
    k = ds.n_clusters
    cons = BalancedSemiSupervised.make_constraints(ds.y, fraction=0.2, ml_ratio=0.5,
                                                   seed=args.seed)
    if cache.exists():
        ae = torch.load(cache, weights_only=False)
    else:
        torch.set_num_threads(args.pre_threads)
        t0 = time.perf_counter()
        pre = IDEC(k, cluster_epochs=0, profile=args.profile, seed=args.seed, device="cpu",
                   verbose=False, snapshot_epochs=None).fit(ds.X, y=ds.y)
        ae = pre.autoencoder_
        torch.save(ae, cache)
        print(json.dumps({"warm-up": metrics.evaluate(ds.y, pre.labels_, n_clusters=k),
                          "seconds": round(time.perf_counter() - t0)}), flush=True)
    torch.set_num_threads(args.threads)
    out = []
    for name, kw in arms.items():
        t1 = time.perf_counter()
        m = BalancedSemiSupervised(k, variant="paper", profile=args.profile, pretrained=ae,
                                   seed=args.seed, device="cpu", verbose=False,
                                   snapshot_epochs=None, **kw).fit(ds.X, cons, y=ds.y)
        rec = {"arm": name, "set": kw, **metrics.evaluate(ds.y, m.labels_, n_clusters=k),
               "satisfied": float(cons.satisfied(m.labels_).mean()),
               "curve": [round(float(v), 4) for v in m.history_.curve("acc", "cluster")[1]],
               "sizes": np.bincount(m.labels_, minlength=k).tolist(),
               "seconds": round(time.perf_counter() - t1)}
        print(json.dumps(rec), flush=True)
        out.append(rec)
    return out


if __name__ == "__main__":
    main()
