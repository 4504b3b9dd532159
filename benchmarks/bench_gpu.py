"""GPU throughput: samples/s of each method's training step, and the MLP autoencoder step's
achieved TFLOP/s against the device's peak.

1. **Per method** (through the library, as ``fit`` trains): each method's main phase on
   full MNIST (70 000 images held as one device tensor, mini-batches as index slices) with
   the ``paper`` profile's batch size, timed over ``--epochs`` epochs after a warm-up
   epoch; samples/s = steps x batch / seconds (ADC's Siamese phase: answered pairs/s).
2. **MLP autoencoder step** (``d-500-500-2000-10`` and its mirror, MSE, Adam), plain
   PyTorch, on the whole dataset as one device tensor, for batch sizes ``--batches``, in
   fp32 (TF32 off and on) and bf16 autocast, eager and (``--compile``) ``torch.compile``.
   FLOPs per step are counted analytically: a Linear layer ``a -> b`` on B rows costs
   2·B·a·b FLOPs forward and twice that backward (input and weight gradients; the first
   layer's input gradient is skipped, its input is data), so
   ``FLOPs/step = 6·B·Σ a·b - 2·B·d·500``; elementwise work (ReLU, loss, Adam) is left out.
   Achieved TFLOP/s is printed beside the device's dense peak for that precision
   (``PEAKS`` below, from the vendors' data sheets; unknown devices print no fraction).

It refuses to run without a GPU unless ``--cpu`` is given (a dry check of the code paths
on a small subset, with tiny settings; its numbers mean nothing). Usage::

    .venv/bin/python benchmarks/bench_gpu.py                  # on a GPU machine
    .venv/bin/python benchmarks/bench_gpu.py --compile --batches 256,1024,4096,16384
    .venv/bin/python benchmarks/bench_gpu.py --cpu            # dry check, seconds
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clusterkit import datasets  # noqa: E402
from clusterkit.models import MLPAutoencoder  # noqa: E402

#: dense peak TFLOP/s (no sparsity) by a substring of torch.cuda.get_device_name():
#: fp32 (plain FP32 CUDA cores), tf32 and bf16 (tensor cores)
PEAKS: dict[str, dict[str, float]] = {
    "H200": {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4},
    "H100 NVL": {"fp32": 60.0, "tf32": 417.5, "bf16": 835.0},
    "H100 PCIe": {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0},
    "H100": {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4},  # SXM
    "A100": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0},
    "L40S": {"fp32": 91.6, "tf32": 183.0, "bf16": 362.0},
    "L4": {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0},
    "A10": {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0},
    "RTX 4090": {"fp32": 82.6, "tf32": 82.6, "bf16": 165.2},
    "V100": {"fp32": 15.7, "tf32": 15.7, "bf16": 125.0},  # no bf16: fp16 tensor peak
    "T4": {"fp32": 8.1, "tf32": 8.1, "bf16": 65.0},  # no bf16: fp16 tensor peak
}
DIMS = (500, 500, 2000, 10)


def peak_for(name: str) -> dict[str, float] | None:
    """The first ``PEAKS`` entry whose key is in the device name (most specific first)."""
    for key, peak in PEAKS.items():
        if key in name:
            return peak
    return None


def ae_step_flops(d: int, batch: int, dims: tuple[int, ...] = DIMS) -> float:
    """Matmul FLOPs of one training step of the autoencoder ``d-dims`` + mirror."""
    widths = [d, *dims]
    pairs = list(zip(widths[:-1], widths[1:], strict=True))
    macs = 2 * sum(a * b for a, b in pairs)  # encoder and mirrored decoder
    return 6.0 * batch * macs - 2.0 * batch * d * widths[1]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_ae(X: torch.Tensor, batch: int, mode: str, compiled: bool, steps: int,
             device: torch.device) -> tuple[float, float]:
    """(samples/s, TFLOP/s) of the plain AE step at ``batch`` in ``mode`` (fp32, tf32, bf16)."""
    torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"
    torch.backends.cudnn.allow_tf32 = mode == "tf32"
    d = int(np.prod(X.shape[1:]))
    ae = MLPAutoencoder([d, *DIMS], tuple(X.shape[1:])).to(device)
    opt = torch.optim.Adam(ae.parameters(), lr=1e-3, fused=device.type == "cuda")
    n = len(X)

    def step(idx: torch.Tensor) -> torch.Tensor:
        x = X[idx]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=mode == "bf16"):
            _, x_hat = ae(x)
            loss = F.mse_loss(x_hat.float(), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    fn = torch.compile(step) if compiled else step
    perm = torch.randperm(n, device=device)
    nb = max(1, n // batch)
    for i in range(min(5, nb) + (3 if compiled else 0)):  # warm-up (and compilation)
        fn(perm[(i % nb) * batch:(i % nb + 1) * batch])
    sync(device)
    t0 = time.perf_counter()
    for i in range(steps):
        j = i % nb
        fn(perm[j * batch:(j + 1) * batch])
    sync(device)
    dt = time.perf_counter() - t0
    return steps * batch / dt, steps * ae_step_flops(d, batch) / dt / 1e12


def bench_methods(X: np.ndarray, y: np.ndarray, epochs: int, device: str, tiny: bool
                  ) -> dict[str, float]:
    """samples/s of each method's main training phase through ``fit`` (paper profile)."""
    from clusterkit.constraints import Constraints
    from clusterkit.methods import (
        DCCF,
        DECS,
        IDEC,
        ActiveDeepClustering,
        BalancedSemiSupervised,
        ClusterNet,
    )
    from clusterkit.methods.clusternet import partial_labels
    from clusterkit.models import ClusterNetAE, ConvAutoencoder, SiameseCNN

    prof = "smoke" if tiny else "paper"
    c = dict(profile=prof, device=device, verbose=False, snapshot_epochs=None, seed=0)
    e1 = epochs + 1  # one warm-up epoch, not counted
    cons = BalancedSemiSupervised.make_constraints(y, fraction=0.2, seed=0)
    answered = Constraints.from_labels(y, n_pairs=len(X) // 25, ml_ratio=0.3, seed=0)
    shape = tuple(X.shape[1:])
    decs_ch = DECS(10, profile=prof).settings()["channels"]
    adc_s = ActiveDeepClustering(10, profile=prof).settings()
    cases = {
        "IDEC pretrain (MLP AE)": lambda: IDEC(10, pretrain_epochs=e1, cluster_epochs=0, **c),
        "IDEC cluster": lambda: IDEC(10, pretrained=_mlp(X, DIMS), cluster_epochs=e1, **c),
        "balanced (all 0.2 n pairs)": lambda: BalancedSemiSupervised(
            10, variant="paper", pretrained=_mlp(X, DIMS), cluster_epochs=e1, **c),
        "DCCF cluster (full-batch Jacobian)": lambda: DCCF(
            10, pretrained=_mlp(X, (500, 500, 1000, 10)), cluster_epochs=e1, **c),
        "DECS pretrain (conv AE)": lambda: DECS(10, pretrain_epochs=e1, cluster_epochs=0, **c),
        "DECS cluster (conv AE, Otsu)": lambda: DECS(
            10, pretrained=ConvAutoencoder(shape, 10, tuple(decs_ch)), cluster_epochs=e1, **c),
        "ClusterNet pretrain (conv AE)": lambda: ClusterNet(10, pretrain_epochs=e1,
                                                            cluster_epochs=0, **c),
        "ClusterNet cluster (pairs + k-means)": lambda: ClusterNet(
            10, pretrained=ClusterNetAE(shape), cluster_epochs=e1, **c),
        "ADC siamese (n/25 answered pairs)": lambda: ActiveDeepClustering(
            10, pretrained=SiameseCNN(int(shape[0]), tuple(adc_s["widths"]), int(adc_s["dim"])),
            siamese_epochs=e1, dec_epochs=1, **c),
    }
    out: dict[str, float] = {}
    for name, make in cases.items():
        m = make()
        args = ((cons,) if name.startswith("balanced") else (answered,) if name.startswith("ADC")
                else (partial_labels(y, 0.005 if not tiny else 0.05, 0),)
                if "ClusterNet" in name else ())
        stamps: list[tuple[int, float]] = []

        def on_epoch(event, run, payload, stamps=stamps):
            if event == "epoch":
                sync(run.device)
                stamps.append((run.step, time.perf_counter()))

        run = m.prepare(X, *args, y=y, callbacks=[on_epoch])
        run.fit()
        phase = run.phases[-1] if "cluster" in name else run.phases[0]
        (s0, t0), (s1, t1) = stamps[0], stamps[min(len(stamps) - 1, epochs)]
        # ADC's Siamese phase steps over answered pairs (pair_batch a step), not samples
        per_step, unit = ((int(adc_s["pair_batch"]), "pairs") if name.startswith("ADC")
                          else (phase.batch_size, "samples"))
        out[name] = (s1 - s0) * per_step / (t1 - t0) if t1 > t0 else math.nan
        print(f"  {name:<36} {out[name]:12,.0f} {unit}/s (batch {per_step})", flush=True)
    return out


def _mlp(X: np.ndarray, dims: tuple[int, ...]) -> MLPAutoencoder:
    return MLPAutoencoder([int(np.prod(X.shape[1:])), *dims], tuple(X.shape[1:]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu", action="store_true",
                    help="allow a dry check without a GPU (small subset, tiny settings)")
    ap.add_argument("--dataset", default="mnist", help="dataset (default mnist: 70 000)")
    ap.add_argument("--batches", default="256,1024,4096,16384",
                    help="batch sizes of the AE step (comma-separated)")
    ap.add_argument("--steps", type=int, default=200, help="timed AE steps per setting")
    ap.add_argument("--epochs", type=int, default=2,
                    help="timed epochs per method, after one warm-up epoch")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile'd AE steps")
    ap.add_argument("--skip-methods", action="store_true", help="only the AE step")
    a = ap.parse_args(argv)
    try:
        batches = [int(b) for b in a.batches.split(",") if b.strip()]
    except ValueError:
        ap.error(f"--batches must be integers separated by commas; got {a.batches!r}")
    if not batches or min(batches) < 1 or a.steps < 1 or a.epochs < 1:
        ap.error("--batches, --steps and --epochs must be >= 1")
    gpu = torch.cuda.is_available()
    if not gpu and not a.cpu:
        print("bench_gpu: no GPU is visible to torch; this benchmark measures GPU throughput. "
              "Run it on a GPU machine, or pass --cpu for a dry check of the code.",
              file=sys.stderr)
        return 2
    device = torch.device("cuda" if gpu else "cpu")
    tiny = not gpu
    if tiny:
        torch.set_num_threads(1)
        batches, a.steps, a.epochs = sorted({min(b, 256) for b in batches[:2]}), 3, 1
    ds = datasets.load("mnist-5k" if tiny else a.dataset, subset=600 if tiny else None)
    name = torch.cuda.get_device_name() if gpu else "CPU (dry check: numbers mean nothing)"
    peak = peak_for(name) if gpu else None
    print(f"{name}; torch {torch.__version__}; {ds.name} {ds.X.shape}")
    X = torch.as_tensor(ds.X).to(device)
    print(f"MLP AE d-500-500-2000-10 step (MSE, Adam), whole data on the device; "
          f"{ae_step_flops(X[0].numel(), 1) / 1e6:.1f} MFLOP per sample")
    modes = ["fp32", "tf32", "bf16"] if gpu else ["fp32"]
    for compiled in ([False, True] if a.compile else [False]):
        for mode in modes:
            for b in batches:
                sps, tf = bench_ae(X, b, mode, compiled, a.steps, device)
                frac = f"{100 * tf / peak[mode]:5.1f} % of {peak[mode]:g}" if peak else "n/a"
                print(f"  {'compiled' if compiled else 'eager':>8} {mode:>4} batch {b:>6}: "
                      f"{sps:12,.0f} samples/s  {tf:7.2f} TFLOP/s  ({frac})", flush=True)
    torch.backends.cuda.matmul.allow_tf32 = False
    if not a.skip_methods:
        print("methods through fit (" + ("smoke profile, dry check" if tiny else "paper profile")
              + "):")
        bench_methods(ds.X, ds.y, a.epochs, device.type, tiny)
    return 0


if __name__ == "__main__":
    sys.exit(main())
