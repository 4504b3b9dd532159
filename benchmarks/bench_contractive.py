"""Cost of DCCF's contractive penalty per training step, against the plain reconstruction step.

    python benchmarks/bench_contractive.py [--threads 2] [--batch 256] [--reps 15]

One process times, interleaved round by round on the same batch and model (MLP autoencoder
784-500-500-1000-10, fused Adam as in DCCF, forward + backward + update):

- ``plain``: reconstruction only (the IDEC / pretraining step);
- ``masks/all``: + λ ||J_f(x)||_F² exact for every row of the batch, the Jacobian built
  backwards through the ReLU masks as a (B, k, width) tensor (``losses.contractive_penalty``);
- ``masks/64`` and ``masks/32``: the same exact per-sample penalty on a random 64 or 32 rows of
  the batch (DCCF's ``contractive_samples``; the ``demo`` profile uses 64);
- ``vmap-jacrev/all``: ``torch.func.vmap(jacrev(encoder))``, the generic autograd route.

It prints the median seconds per step of each and its ratio to ``plain`` (target: <= 3x).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from clusterkit import losses
from clusterkit.methods import parts
from clusterkit.models import MLPAutoencoder


def vmap_penalty(enc: torch.nn.Sequential, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    from torch.func import functional_call, jacrev, vmap

    params = dict(enc.named_parameters())
    jac = vmap(jacrev(lambda xi: functional_call(enc, params, (xi,))))(x)
    return enc(x), jac.pow(2).sum((1, 2))


def make_step(ae: MLPAutoencoder, opt: torch.optim.Optimizer, x: torch.Tensor,
              how: str | None, rows: int | None, lam: float = 1e-3):
    def step() -> None:
        if how is None:
            z = ae.encode(x)
            loss = losses.reconstruction(ae.decode(z), x)
        else:
            m = rows or len(x)
            fn = losses.contractive_penalty if how == "masks" else vmap_penalty
            za, jac2 = fn(ae.encoder, x[:m])
            z = za if m >= len(x) else torch.cat([za, ae.encode(x[m:])])
            loss = losses.reconstruction(ae.decode(z), x) + lam * jac2.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--no-vmap", action="store_true", help="skip the slow generic route")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ae = MLPAutoencoder([784, 500, 500, 1000, 10])
    opt = parts.adam(ae.parameters(), lr=1e-4)  # as DCCF trains
    x = torch.rand(args.batch, 784)
    arms = {"plain": (None, None), "masks/all": ("masks", None), "masks/64": ("masks", 64),
            "masks/32": ("masks", 32)}
    if not args.no_vmap:
        arms["vmap-jacrev/all"] = ("vmap", None)
    steps = {k: make_step(ae, opt, x, *v) for k, v in arms.items()}
    times: dict[str, list[float]] = {k: [] for k in arms}
    for f in steps.values():  # warm up
        f()
    for _ in range(args.reps):  # interleaved, so load on a shared machine hits all alike
        for k, f in steps.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"batch {args.batch}, {args.threads} thread(s), median of {args.reps} steps")
    print(f"{'step':<18}{'s/step':>9}{'x plain':>9}")
    for k, v in med.items():
        print(f"{k:<18}{v:>9.4f}{v / med['plain']:>9.2f}")
    return med


if __name__ == "__main__":
    main()
