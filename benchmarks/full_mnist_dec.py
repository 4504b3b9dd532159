"""IDEC, DEC, AE + k-means and k-means on full MNIST (70 000) with the tour's demo settings.

The tour notebook runs these on ``mnist-5k``; this script asks how the same recipe does on
the whole set (found through ``CLUSTERKIT_DATA``). The demo profile refreshes the target P
every 20 steps, which on ``mnist-5k`` (5000 / 256 → 20 steps) is once per epoch; on 70 000
samples that would be 14 full passes per epoch, so ``--update-interval`` defaults to one
epoch here too (274 steps).

    CLUSTERKIT_DATA=../shared/data python benchmarks/full_mnist_dec.py --threads 1

Prints a table and writes ``benchmarks/results/full_mnist_dec.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from sklearn.cluster import KMeans

from clusterkit import datasets, metrics, plots
from clusterkit.methods import DEC, IDEC


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--update-interval", type=int, default=None,
                    help="steps between target refreshes (default: one epoch)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default="benchmarks/results/full_mnist_dec.json")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)

    ds = datasets.load(a.dataset, seed=a.seed)
    interval = a.update_interval or math.ceil(len(ds) / 256)
    results: dict[str, dict] = {}

    t0 = time.perf_counter()
    km = KMeans(ds.n_clusters, n_init=10, random_state=a.seed).fit(ds.flat())
    results["k-means (pixels)"] = {**metrics.evaluate(ds.y, km.labels_),
                                   "seconds": time.perf_counter() - t0}
    print(plots.metrics_table(results), flush=True)

    common = dict(profile=a.profile, seed=a.seed, device=a.device, snapshot_epochs=None)
    pre = IDEC(ds.n_clusters, cluster_epochs=0, **common).fit(ds.X, y=ds.y)
    results["AE + k-means"] = {**metrics.evaluate(ds.y, pre.labels_),
                               "seconds": pre.run_.seconds}
    print(plots.metrics_table(results), flush=True)
    for name, cls in (("IDEC", IDEC), ("DEC", DEC)):
        m = cls(ds.n_clusters, pretrained=pre, update_interval=interval, **common)
        m.fit(ds.X, y=ds.y)
        results[name] = {**metrics.evaluate(ds.y, m.labels_),
                         "seconds": pre.run_.seconds + m.run_.seconds}
        print(plots.metrics_table(results), flush=True)

    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"dataset": ds.name, "n": len(ds), "profile": a.profile,
                               "update_interval": interval, "threads": torch.get_num_threads(),
                               "device": str(pre.run_.device), "results": results},
                              indent=2, default=float))
    print("wrote", out)


if __name__ == "__main__":
    main()
