"""Loss functions of the five papers and their common ancestor DEC/IDEC.

Each is vectorised over the batch (and over pairs, where there are pairs), takes and
returns tensors, and names its paper and equation in a one-line comment.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def target_distribution(q: torch.Tensor) -> torch.Tensor:
    """DEC eq 3: p_ij = (q_ij² / f_j) / Σ_j' (q_ij'² / f_j'), f_j = Σ_i q_ij.  (n, k) -> (n, k)."""
    w = q.pow(2) / q.sum(0, keepdim=True)
    return w / w.sum(1, keepdim=True)


def kl_clustering(q: torch.Tensor, p: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """DEC eq 2: KL(P || Q), summed over clusters and averaged over the batch.

    (``F.kl_div(reduction="mean")`` would divide by B·k, 1/k of the per-sample KL.)
    """
    return F.kl_div(torch.log(q + eps), p, reduction="batchmean")


def reconstruction(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """IDEC eq 3 / autoencoder pretraining: mean squared error per element."""
    return F.mse_loss(x_hat, x)
