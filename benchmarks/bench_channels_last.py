"""The convolutional autoencoders' training step in PyTorch's default (contiguous) memory
layout against ``channels_last``, which ``ConvAutoencoder`` (DECS) uses: the same weights,
alternating arms in one process, best of ``--reps`` rounds; prints the speed-up per case.

    python benchmarks/bench_channels_last.py [--threads 1] [--reps 3]
"""

from __future__ import annotations

import argparse
import time

import torch

from clusterkit.models import ClusterNetAE, ConvAutoencoder, SiameseCNN


def _step(model: torch.nn.Module, x: torch.Tensor, kind: str) -> None:
    # the layers themselves: encode()/forward() would convert x to channels_last
    if isinstance(model, SiameseCNN):
        loss = model.fc(model.features(x)).pow(2).mean()
    elif kind == "encoder":
        loss = model.encoder(x).pow(2).mean()
    else:
        loss = (model.decoder(model.encoder(x)) - x).pow(2).mean()
    loss.backward()


def time_arm(make, batch: int, kind: str, channels_last: bool, steps: int = 5) -> float:
    torch.manual_seed(0)
    model = make()
    x = torch.rand(batch, 1, 28, 28)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    x = x.contiguous(memory_format=fmt)
    _step(model, x, kind)  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        _step(model, x, kind)
    return (time.perf_counter() - t0) / steps


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cases = {
        "DECS AE demo (8-16-32-64), pretraining, batch 64":
            (lambda: ConvAutoencoder((1, 28, 28), 10, (8, 16, 32, 64)), 64, "ae"),
        "DECS AE demo, clustering (encoder), batch 256":
            (lambda: ConvAutoencoder((1, 28, 28), 10, (8, 16, 32, 64)), 256, "encoder"),
        "DECS AE paper (32-64-128-256), pretraining, batch 64":
            (lambda: ConvAutoencoder((1, 28, 28), 10, (32, 64, 128, 256)), 64, "ae"),
        "ClusterNet AE (32-64-128, InstanceNorm), batch 320":
            (lambda: ClusterNetAE((1, 28, 28)), 320, "ae"),
        "ADC Siamese CNN (16-32-64), batch 128":
            (lambda: SiameseCNN(1, (16, 32, 64), 10), 128, "encoder"),
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), best of "
          f"{args.reps} alternating rounds")
    out = {}
    for name, (make, batch, kind) in cases.items():
        t = {False: [], True: []}
        for _ in range(args.reps):
            for cl in (False, True):
                t[cl].append(time_arm(make, batch, kind, cl))
        a, b = min(t[False]), min(t[True])
        out[name] = a / b
        print(f"{name:<55} contiguous {a * 1e3:7.1f} ms  channels_last {b * 1e3:7.1f} ms  "
              f"speed-up {a / b:.2f}x", flush=True)
    return out


if __name__ == "__main__":
    main()
