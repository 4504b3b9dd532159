"""ClusterNet's autoencoder training step (forward, backward, Adam) with ``torch.nn.Dropout``
against ``clusterkit.models.Dropout``, whose CPU mask takes four 16-bit lanes from each
64-bit random word instead of one ``bernoulli_`` draw per element: the same weights and
batch, alternating arms in one process, best of ``--reps`` rounds; prints the speed-up, and
the dropped fraction and mean multiplier each mask gives (both should be p and 1).

    python benchmarks/bench_dropout.py [--threads 2] [--reps 3] [--batch 256]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from torch import nn

from clusterkit.models import ClusterNetAE, Dropout, dropout_mask


def _with_torch_dropout(model: nn.Module) -> nn.Module:
    model = copy.deepcopy(model)
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, Dropout):
                setattr(parent, name, nn.Dropout(child.p))
    return model


def time_arm(model: nn.Module, x: torch.Tensor, steps: int = 5) -> float:
    model = copy.deepcopy(model).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        _, x_hat = model(x)
        loss = (x_hat - x).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps


def main(argv: list[str] | None = None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--p", type=float, default=0.1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ours = ClusterNetAE((1, 28, 28), dropout=args.p)
    arms = {"torch.nn.Dropout": _with_torch_dropout(ours), "clusterkit Dropout": ours}
    x = torch.rand(args.batch, 1, 28, 28)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), ClusterNet AE "
          f"(32-64-128, dropout {args.p}), batch {args.batch}, best of {args.reps} "
          f"alternating rounds")
    t: dict[str, list[float]] = {k: [] for k in arms}
    for _ in range(args.reps):
        for name, model in arms.items():
            t[name].append(time_arm(model, x))
    for name in arms:
        print(f"{name:<20} {min(t[name]) * 1e3:7.1f} ms a step")
    ratio = min(t["torch.nn.Dropout"]) / min(t["clusterkit Dropout"])
    print(f"speed-up {ratio:.2f}x")
    z = torch.ones(1_000_000)
    m = dropout_mask(z, args.p)
    ref = nn.functional.dropout(z, args.p, training=True)
    print(f"dropped fraction: clusterkit {(m == 0).float().mean():.4f}, torch "
          f"{(ref == 0).float().mean():.4f}; mean multiplier {m.mean():.4f} / {ref.mean():.4f}")
    return ratio


if __name__ == "__main__":
    main()
