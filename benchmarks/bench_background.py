"""Does training in the background cost anything? A whole DECS run in the foreground vs in a
background thread.

The dashboard trains in a background thread (``Run.start``) so that the notebook stays
responsive; ``fit`` trains in the foreground. This script times the same run both ways on
``mnist-5k`` (DECS, code variant, the ``demo`` profile's conv autoencoder with a shortened
pretraining and clustering, evaluation and snapshots as in the notebooks), alternating
foreground / background / background / foreground ..., each from a fresh method with the same
seed, and prints the times, their ratio (background / foreground steps per second) and
checks that both ways end at the same ACC (a CPU run repeats exactly).

Nothing else runs in the process while a run trains, unlike ``bench_engine.py``, whose
plain loops alternate with the engine's thread in one process (see ``--malloc-arenas``
there).

Usage::

    .venv/bin/python benchmarks/bench_background.py                # ~1 min
    .venv/bin/python benchmarks/bench_background.py --reps 3 --threads 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clusterkit import datasets  # noqa: E402
from clusterkit.methods import DECS  # noqa: E402


def one_run(X, y, background: bool, pretrain_epochs: int, cluster_epochs: int,
            seed: int) -> tuple[float, float]:
    """(seconds, final ACC) of one DECS run, trained in the foreground or a thread."""
    m = DECS(10, profile="demo", pretrain_epochs=pretrain_epochs, cluster_epochs=cluster_epochs,
             seed=seed, verbose=False)
    run = m.prepare(X, y=y)
    t0 = time.perf_counter()
    if background:
        run.start()
        run.join()
    else:
        run.fit()
    return time.perf_counter() - t0, float(run.history.epochs[-1]["acc"])


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=2, help="runs of each way (default 2)")
    ap.add_argument("--pretrain-epochs", type=int, default=4)
    ap.add_argument("--cluster-epochs", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if min(args.reps, args.pretrain_epochs, args.threads) < 1 or args.cluster_epochs < 1:
        ap.error("--reps, --pretrain-epochs, --cluster-epochs and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    ds = datasets.load("mnist-5k", seed=args.seed)
    times: dict[str, list[float]] = {"foreground": [], "background": []}
    accs: dict[str, set[float]] = {"foreground": set(), "background": set()}
    for i in range(args.reps):
        for way in (("foreground", "background") if i % 2 == 0
                    else ("background", "foreground")):
            sec, acc = one_run(ds.X, ds.y, way == "background", args.pretrain_epochs,
                               args.cluster_epochs, args.seed)
            times[way].append(sec)
            accs[way].add(round(acc, 6))
            print(f"{way:>10}: {sec:6.1f} s  ACC {acc:.4f}", flush=True)
    fg, bg = statistics.mean(times["foreground"]), statistics.mean(times["background"])
    same = accs["foreground"] == accs["background"] and len(accs["foreground"]) == 1
    print(f"\nDECS demo, {args.pretrain_epochs} + {args.cluster_epochs} epochs, "
          f"{torch.get_num_threads()} thread(s): foreground {fg:.1f} s, background {bg:.1f} s; "
          f"background / foreground speed {fg / bg:.3f}; same ACC both ways: {same}")
    return {"foreground": fg, "background": bg, "ratio": fg / bg, "same_acc": float(same)}


if __name__ == "__main__":
    main()
