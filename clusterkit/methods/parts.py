"""Parts that several methods assemble: optimizers, batches (with augmentation), autoencoder
pretraining, k-means initialisation of the centres, and the self-training target with its
stop rule (DEC's recipe, which IDEC, the balanced method and DCCF all inherit)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from clusterkit import losses
from clusterkit.augment import random_affine
from clusterkit.engine import Phase, Run
from clusterkit.knobs import Knob


def _fused(make, params, **kw) -> torch.optim.Optimizer:
    params = list(params)
    if all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params):
        return make(params, fused=True, **kw)
    return make(params, **kw)  # torch checks fused kernels only at the first step


def adam(params, lr: float) -> torch.optim.Optimizer:
    """Adam with torch's fused kernel (CPU and CUDA): one pass over each parameter instead
    of one per operation. The same update as ``torch.optim.Adam``'s default up to float
    rounding; on a CPU the optimizer step is about 4x faster and an MLP autoencoder step
    1.3x (``benchmarks/bench_optim.py``). Falls back to the default implementation where
    torch has no fused kernel."""
    return _fused(torch.optim.Adam, params, lr=lr)


def sgd(params, lr: float, momentum: float = 0.9) -> torch.optim.Optimizer:
    """SGD with momentum, fused where torch has the kernel (as :func:`adam`)."""
    return _fused(torch.optim.SGD, params, lr=lr, momentum=momentum)


def batch(run: Run, idx: torch.Tensor, augment: bool | None = None) -> torch.Tensor:
    """The rows ``idx`` of the data, randomly shifted and rotated when the ``augment`` knob is
    on (images only; vectors pass through). (B, ...) float32 on the run's device."""
    x = run.X[idx]
    if augment is None:
        augment = bool(run.knobs.get("augment", False))
    if augment and x.dim() == 4:
        s = run.method.settings_
        x = random_affine(x, max_shift=s.get("aug_shift", 0.1),
                          max_degrees=s.get("aug_degrees", 10.0), generator=run.generator)
    return x


def common_knobs(s: dict) -> list[Knob]:
    """Learning rate and augmentation: knobs every autoencoder method has."""
    return [
        Knob("lr", float(s["lr"]), "log", 1e-5, 1e-1, help="learning rate", group="optimizer"),
        Knob("augment", bool(s.get("augment", False)), "bool",
             help="random shifts and rotations of the inputs", group="optimizer"),
    ]


def pretrain_phase(ae_attr: str, epochs: int, batch_size: int = 256) -> Phase:
    """Train the autoencoder ``run.method.<ae_attr>`` on reconstruction alone."""

    def step(run: Run, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        ae = getattr(run.method, ae_attr)
        x = batch(run, idx)
        _, x_hat = ae(x)
        rec = losses.reconstruction(x_hat, x)
        return {"loss": rec, "rec": rec}

    def optimizer(run: Run) -> torch.optim.Optimizer:
        return adam(getattr(run.method, ae_attr).parameters(), lr=run.knobs["lr"])

    return Phase("pretrain", epochs, step, optimizer, batch_size=batch_size, evaluate=False)


@torch.no_grad()
def kmeans_centers(z: torch.Tensor, k: int, seed: int, n_init: int = 20) -> tuple[torch.Tensor,
                                                                                  np.ndarray]:
    """k-means on an embedding (n, d): centres (k, d) float32 on z's device, labels (n,)."""
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(z.float().cpu().numpy())
    return torch.as_tensor(km.cluster_centers_, dtype=torch.float32, device=z.device), km.labels_


class SelfTraining:
    """DEC's self-training target P (eq 3), refreshed every ``update_interval`` steps on the
    whole data, and the stop rule: end the phase when fewer than ``tol`` of the labels
    changed between two refreshes. State lives on the method as ``target_`` (n, k) and
    ``prev_labels_`` (n,)."""

    @staticmethod
    @torch.no_grad()
    def refresh(run: Run) -> float:
        m = run.method
        _, q = run.embed_all()
        m.target_ = losses.target_distribution(q.float())
        labels = q.argmax(1)
        prev = getattr(m, "prev_labels_", None)
        delta = 1.0 if prev is None else float((labels != prev).float().mean())
        m.prev_labels_ = labels
        m.delta_ = delta
        return delta

    @staticmethod
    def refresh_and_check(run: Run) -> float:
        """Refresh, then end the phase when fewer than ``tol`` of the labels changed; the
        fraction that changed."""
        delta = SelfTraining.refresh(run)
        tol = float(run.knobs.get("tol", 0.0))
        if tol > 0 and delta < tol:
            run.finish_phase()
        return delta

    @staticmethod
    def after_step(run: Run) -> None:
        interval = int(run.knobs.get("update_interval", 0) or 0)
        if interval > 0 and run.step % interval == 0:
            SelfTraining.refresh_and_check(run)


def module_state(mod: nn.Module | None) -> dict | None:
    return None if mod is None else mod.state_dict()
