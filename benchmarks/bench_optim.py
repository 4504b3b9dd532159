"""The methods' training step with ``torch.optim.Adam`` / ``SGD`` in their default (per-tensor)
implementation against the fused kernels that ``clusterkit.methods.parts.adam`` / ``sgd``
use: the same models, batches and losses, alternating arms in one process, best of
``--reps`` rounds; prints, per case, the optimizer step alone and the whole training step,
and the speed-ups.

    python benchmarks/bench_optim.py [--threads 1] [--reps 3] [--steps 10]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clusterkit.methods import parts  # noqa: E402
from clusterkit.models import ClusterNetAE, ConvAutoencoder, MLPAutoencoder, SiameseCNN  # noqa: E402


def _loss(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    if isinstance(model, SiameseCNN):
        return model(x).pow(2).mean()
    z = model.encode(x)
    return (model.decode(z) - x).pow(2).mean()


def time_arm(make, batch: int, kind: str, fused: bool, steps: int) -> tuple[float, float]:
    """Seconds per optimizer step and per whole training step."""
    torch.manual_seed(0)
    model = make()
    x = torch.rand(batch, 1, 28, 28)
    if fused:
        opt = parts.adam(model.parameters(), 1e-3) if kind == "adam" else parts.sgd(
            model.parameters(), 1e-2)
        assert opt.defaults["fused"]
    else:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3) if kind == "adam" else \
            torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)

    def step() -> float:
        """One training step; returns the seconds its optimizer update took."""
        loss = _loss(model, x)
        opt.zero_grad()
        loss.backward()
        t1 = time.perf_counter()
        opt.step()
        return time.perf_counter() - t1

    step()  # warm-up: the first step creates the optimizer's state
    t0 = time.perf_counter()
    t_opt = sum(step() for _ in range(steps))
    return t_opt / steps, (time.perf_counter() - t0) / steps


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    mlp = [784, 500, 500, 2000, 10]
    cases = {
        "MLP AE 784-500-500-2000-10 (DEC, IDEC, balanced), Adam, batch 256":
            (lambda: MLPAutoencoder(mlp, (1, 28, 28)), 256, "adam"),
        "MLP AE 784-500-500-1000-10 (DCCF), Adam, batch 256":
            (lambda: MLPAutoencoder([784, 500, 500, 1000, 10], (1, 28, 28)), 256, "adam"),
        "ClusterNet AE (32-64-128), Adam, batch 320":
            (lambda: ClusterNetAE((1, 28, 28)), 320, "adam"),
        "DECS AE demo (8-16-32-64), Adam, batch 64":
            (lambda: ConvAutoencoder((1, 28, 28), 10, (8, 16, 32, 64)), 64, "adam"),
        "DECS AE paper (32-64-128-256), SGD momentum, batch 256":
            (lambda: ConvAutoencoder((1, 28, 28), 10, (32, 64, 128, 256)), 256, "sgd"),
        "ADC Siamese CNN (16-32-64), Adam, batch 128":
            (lambda: SiameseCNN(1, (16, 32, 64), 10), 128, "adam"),
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), best of "
          f"{args.reps} alternating rounds of {args.steps} steps")
    out = {}
    for name, (make, batch, kind) in cases.items():
        t: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
        for _ in range(args.reps):
            for fused in (False, True):
                t[fused].append(time_arm(make, batch, kind, fused, args.steps))
        (oa, sa), (ob, sb) = (min(t[False], key=lambda v: v[1]),
                              min(t[True], key=lambda v: v[1]))
        out[name] = sa / sb
        print(f"{name}\n    optimizer step {oa * 1e3:6.1f} ms -> {ob * 1e3:6.1f} ms "
              f"({oa / ob:.2f}x); training step {sa * 1e3:6.1f} ms -> {sb * 1e3:6.1f} ms "
              f"(**{sa / sb:.2f}x**)", flush=True)
    return out


if __name__ == "__main__":
    main()
