"""DEC and IDEC in clusterkit vs the same algorithms in ClustPy: time, ACC and NMI.

Both libraries get the same data (``mnist-5k``: the 5000 MNIST digits, flattened to 784
values in [0, 1]), the same autoencoder ``784-500-500-2000-10`` (ReLU, linear embedding; ClustPy's
default is LeakyReLU, so ReLU is passed to it),
the same epochs, batch size 256, Adam at the same learning rate in both phases,
k-means with ``n_init=20`` for the initial centres, DEC's Student-t head (a = 1) and IDEC's
weight 0.1 on the clustering loss. As in the tour notebook, one pretrained autoencoder per
library is shared by its DEC and IDEC runs (each run starts from a copy):

1. pretraining (``--pretrain-epochs``): clusterkit ``IDEC(cluster_epochs=0).fit(X)``;
   ClustPy ``DEC(clustering_epochs=0).fit(X)`` (its pretraining + k-means);
2. IDEC and DEC clustering (``--cluster-epochs``) from an autoencoder:
   ``IDEC(pretrained=pre)`` / ``clustpy.deep.IDEC(neural_network=copy)``, same for DEC.
   With ``--start shared`` (the default) both libraries start from clusterkit's pretrained
   weights (copied into ClustPy's ``FeedforwardAutoencoder``, ReLU), so that k-means (the
   same scikit-learn call with the same seed) finds the same centres and the comparison of
   the clustering phase is paired: what differs is the library. ``--start own``: each
   library clusters from its own pretraining, as a user of each would (then the two
   pretrained autoencoders differ, and so do their starting points).

Timed: each ``fit`` call (wall clock, one process, arms in the order A B B A so that a
drift of the machine's load cancels out). Scored: ACC (Hungarian) and NMI of the DEC/IDEC
assignments (clusterkit ``labels_``, ClustPy ``dec_labels_``: argmax q; ClustPy's
``labels_`` is a k-means re-clustering of the final embedding, not used).

The target P: ClustPy computes it from each mini-batch's own q
(``_dec_compression_value``); so does clusterkit by default here (``--update-interval 0``,
``IDEC(update_interval=0)``), which makes both the same algorithm. ``--update-interval N``
runs clusterkit with DEC's recipe instead, P from the whole data every N steps (the
notebooks' default; 20 = one epoch here), for comparison. clusterkit runs with its defaults
otherwise: per-epoch evaluation (a pass over the data that ClustPy does not make) and t-SNE
snapshots on (``--lean`` turns both off: then clusterkit does ClustPy's work), no early stop
(tol 0, so both run every epoch).

ClustPy is not a dependency of clusterkit. Install it into the project's environment with::

    .venv/bin/pip install --no-deps clustpy pandas

(``--no-deps`` keeps pip from replacing the CPU torch with a CUDA build.) ClustPy imports
torchvision at module level, only for image augmentation and ResNet autoencoders that this
benchmark does not use; when torchvision is missing or unusable (a CUDA wheel beside a CPU
torch), the script puts a stub in its place and says so.

Usage::

    .venv/bin/python benchmarks/bench_clustpy.py              # 20 + 10 epochs, 3 seeds, ~5 min
    .venv/bin/python benchmarks/bench_clustpy.py --seeds 0    # one seed, ~1.5 min
    .venv/bin/python benchmarks/bench_clustpy.py --pretrain-epochs 200 --cluster-epochs 100
    .venv/bin/python benchmarks/bench_clustpy.py --update-interval 20   # DEC's own schedule
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import io
import os
import sys
import time
import types
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")  # ClustPy's progress bars

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clusterkit import datasets, metrics  # noqa: E402
from clusterkit.methods import DEC, IDEC  # noqa: E402

INSTALL = ".venv/bin/pip install --no-deps clustpy pandas"


def _stub_torchvision() -> None:
    """Stand-ins for the torchvision names ClustPy imports at module level (type hints of
    its ResNet autoencoders); nothing here is called by DEC/IDEC on an MLP autoencoder."""
    tv = types.ModuleType("torchvision")
    tv.__path__ = []
    models = types.ModuleType("torchvision.models")
    models.__path__ = []
    api = types.ModuleType("torchvision.models._api")
    api.Weights = type("Weights", (), {})
    api.WeightsEnum = type("WeightsEnum", (), {})
    transforms = types.ModuleType("torchvision.transforms")
    tv.models, models._api, tv.transforms = models, api, transforms
    sys.modules.update({"torchvision": tv, "torchvision.models": models,
                        "torchvision.models._api": api, "torchvision.transforms": transforms})


def import_clustpy() -> tuple[types.ModuleType, str]:
    """``clustpy.deep`` and a note on torchvision; exits with instructions if missing."""
    note = ""
    try:
        import torchvision  # noqa: F401
    except Exception as e:  # noqa: BLE001 - missing, or a CUDA build beside a CPU torch
        for name in [m for m in sys.modules if m.split(".")[0] == "torchvision"]:
            del sys.modules[name]
        _stub_torchvision()
        note = (f"torchvision unusable here ({type(e).__name__}: {str(e)[:60]}); "
                "stubbed (ClustPy's DEC/IDEC do not call it)")
    try:
        deep = importlib.import_module("clustpy.deep")
        import clustpy
    except ModuleNotFoundError as e:
        raise SystemExit(f"ClustPy is not installed ({e}). It is an optional comparison, not "
                         f"a clusterkit dependency; install it with\n    {INSTALL}\nand run "
                         "this script again.") from None
    return deep, f"ClustPy {getattr(clustpy, '__version__', '?')}" + (f"; {note}" if note else "")


def score(y: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """ACC and NMI of a clustering."""
    m = metrics.evaluate(y, labels, n_clusters=10)
    return {"acc": float(m["acc"]), "nmi": float(m["nmi"])}


def timed(fn):
    """(result, seconds) of fn(), ClustPy's chatter on stdout swallowed."""
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        out = fn()
    return out, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pretrain-epochs", type=int, default=20,
                    help="autoencoder pretraining epochs, both libraries (default 20; the "
                         "papers use 200)")
    ap.add_argument("--cluster-epochs", type=int, default=10,
                    help="DEC / IDEC clustering epochs, both libraries (default 10)")
    ap.add_argument("--lr", type=float, default=1e-3,
                    help="Adam learning rate in both phases (default 1e-3)")
    ap.add_argument("--batch-size", type=int, default=256, help="mini-batch size (default 256)")
    ap.add_argument("--update-interval", type=int, default=0,
                    help="clusterkit: 0 (default) computes the target P from each batch's own "
                         "q, as ClustPy does; N > 0 refreshes it on the whole data every N "
                         "steps, DEC's recipe (20: one epoch of mnist-5k)")
    ap.add_argument("--start", choices=("shared", "own"), default="shared",
                    help="the clustering arms start from clusterkit's pretrained weights in "
                         "both libraries (shared, default: a paired comparison) or from each "
                         "library's own pretraining (own)")
    ap.add_argument("--lean", action="store_true",
                    help="clusterkit without its per-epoch evaluation and t-SNE snapshots "
                         "(eval_every=0, snapshot_epochs=None): the work ClustPy does")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--seeds", default="0,1,2",
                    help="comma-separated seeds of both libraries (default 0,1,2): initial "
                         "weights, batches, k-means; every arm runs once per seed")
    args = ap.parse_args(argv)
    if args.pretrain_epochs < 1 or args.cluster_epochs < 1:
        ap.error("--pretrain-epochs and --cluster-epochs must be >= 1")
    if args.batch_size < 1 or args.threads < 1:
        ap.error("--batch-size and --threads must be >= 1")
    if args.update_interval < 0:
        ap.error("--update-interval must be >= 0 (0: per-batch targets, as ClustPy)")
    if not args.lr > 0:
        ap.error("--lr must be > 0")

    try:
        seeds = [int(v) for v in args.seeds.split(",") if v.strip()]
    except ValueError:
        ap.error(f"--seeds must be comma-separated integers; got {args.seeds!r}")
    if not seeds:
        ap.error("--seeds needs at least one seed")

    deep, cp_note = import_clustpy()
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()[0]
    print(f"mnist-5k, {cp_note}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s); {args.pretrain_epochs} pretraining + "
          f"{args.cluster_epochs} clustering epochs, batch {args.batch_size}, Adam lr "
          f"{args.lr:g}; clusterkit's target P "
          + ("from each batch's own q, as ClustPy's" if args.update_interval == 0 else
             f"refreshed on the whole data every {args.update_interval} steps")
          + ("; clusterkit lean (no per-epoch evaluation or snapshots)" if args.lean else
             "; clusterkit evaluates every epoch and takes its t-SNE snapshots")
          + ("; clustering from clusterkit's pretrained weights in both libraries"
             if args.start == "shared" else "; clustering from each library's own pretraining")
          + f"; seeds {seeds}; load average {load0:.2f}", flush=True)
    runs = [run_seed(args, deep, seed) for seed in seeds]

    def cell(algo: str, lib: str, key: str) -> tuple[float, str]:
        v = np.array([r[algo, lib][key] for r in runs])
        sd = f"±{v.std(ddof=1):.3f}" if len(v) > 1 and key != "seconds" else ""
        return float(v.mean()), sd

    many = len(runs) > 1
    print(f"\n{'mean over ' + str(len(runs)) + ' seeds' if many else '':<22}"
          f"{'clusterkit':>30}   {'ClustPy':>30}   {'speed-up':>8}")
    print(f"{'':<22}{'time':>8}{'ACC':>11}{'NMI':>11}   {'time':>8}{'ACC':>11}{'NMI':>11}   "
          f"{'(CP/ck)':>8}")
    total = {"clusterkit": 0.0, "clustpy": 0.0}
    for algo in ("pretrain", "IDEC", "DEC"):
        label = "AE + k-means" if algo == "pretrain" else f"{algo} (clustering)"
        row = f"{label:<22}"
        for lib in ("clusterkit", "clustpy"):
            t, _ = cell(algo, lib, "seconds")
            (acc, acc_sd), (nmi, nmi_sd) = cell(algo, lib, "acc"), cell(algo, lib, "nmi")
            row += f"{t:7.1f}s{acc:6.3f}{acc_sd:<5}{nmi:6.3f}{nmi_sd:<5}   "
            total[lib] += t
        ratio = cell(algo, "clustpy", "seconds")[0] / cell(algo, "clusterkit", "seconds")[0]
        row += f"{ratio:7.2f}x"
        print(row)
    print(f"{'total':<22}{total['clusterkit']:7.1f}s{'':22}   {total['clustpy']:7.1f}s{'':22}"
          f"   {total['clustpy'] / total['clusterkit']:7.2f}x")
    print(f"(speed-up > 1: clusterkit faster; times are means over the seeds; load average "
          f"{load0:.2f} at the start, {os.getloadavg()[0]:.2f} at the end)")
    return {f"{k[0]}/{k[1]}/{i}": v for i, r in enumerate(runs) for k, v in r.items()}


def run_seed(args: argparse.Namespace, deep: types.ModuleType, seed: int) -> dict:
    """Both libraries' pretraining, IDEC and DEC for one seed: {(algo, lib): scores}."""
    ds = datasets.load("mnist-5k", seed=seed)
    X, y = ds.flat(), ds.y
    ck = dict(profile="demo", seed=seed, device="cpu", verbose=False, augment=False,
              lr=args.lr, batch_size=args.batch_size, update_interval=args.update_interval,
              tol=0.0, dims=(500, 500, 2000, 10))
    if args.lean:
        ck.update(eval_every=0, snapshot_epochs=None)
    cp = dict(n_clusters=10, batch_size=args.batch_size, embedding_size=10, device="cpu",
              random_state=seed, pretrain_optimizer_params={"lr": args.lr},
              clustering_optimizer_params={"lr": args.lr}, optimizer_class=torch.optim.Adam,
              initial_clustering_params={"n_init": 20})
    from clustpy.deep.neural_networks import FeedforwardAutoencoder

    layers = [X.shape[1], 500, 500, 2000, 10]
    relu_ae = (FeedforwardAutoencoder, {"layers": layers, "activation_fn": torch.nn.ReLU})

    def ck_pre():
        return IDEC(10, pretrain_epochs=args.pretrain_epochs, cluster_epochs=0, **ck).fit(X)

    def cp_pre():
        return deep.DEC(pretrain_epochs=args.pretrain_epochs, clustering_epochs=0,
                        neural_network=relu_ae, **cp).fit(X)

    res: dict[tuple[str, str], dict] = {}
    pre_k, t = timed(ck_pre)
    res["pretrain", "clusterkit"] = {"seconds": t, **score(y, pre_k.labels_)}
    pre_c, t = timed(cp_pre)
    res["pretrain", "clustpy"] = {"seconds": t, **score(y, pre_c.labels_)}

    if args.start == "shared":  # clusterkit's pretrained weights in ClustPy's module
        start_net = FeedforwardAutoencoder(layers=layers, activation_fn=torch.nn.ReLU)
        mine = pre_k.autoencoder_.state_dict()
        theirs = start_net.state_dict()
        if len(mine) != len(theirs):
            raise SystemExit(f"bench_clustpy: the autoencoders differ ({list(mine)} vs "
                             f"{list(theirs)}); is this ClustPy 0.0.3?")
        start_net.load_state_dict({kt: mine[km] for kt, km in zip(theirs, mine, strict=True)})
    else:
        start_net = pre_c.neural_network_trained_

    def ck_fit(cls):
        return lambda: cls(10, pretrained=pre_k, pretrain_epochs=0,
                           cluster_epochs=args.cluster_epochs, **ck).fit(X)

    def cp_fit(name):
        cls = getattr(deep, name)
        return lambda: cls(pretrain_epochs=0, clustering_epochs=args.cluster_epochs,
                           neural_network=copy.deepcopy(start_net),
                           **cp).fit(X)

    order = [("IDEC", "clustpy"), ("IDEC", "clusterkit"), ("DEC", "clusterkit"),
             ("DEC", "clustpy")]
    for algo, lib in order:
        fn = ck_fit(IDEC if algo == "IDEC" else DEC) if lib == "clusterkit" else cp_fit(algo)
        m, t = timed(fn)
        labels = m.labels_ if lib == "clusterkit" else m.dec_labels_
        res[algo, lib] = {"seconds": t, **score(y, labels)}
    print(f"seed {seed}: " + ", ".join(
        f"{a} {lib} {v['seconds']:.1f} s ACC {v['acc']:.3f}" for (a, lib), v in res.items()),
        flush=True)
    return res

if __name__ == "__main__":
    main()
