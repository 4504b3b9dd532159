"""Networks: autoencoders and the Student-t clustering head they share.

Encoders map a batch ``(B, ...)`` to an embedding ``(B, d)``; decoders map it back to the
input's shape. Each method builds the one its paper uses.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class MLPAutoencoder(nn.Module):
    """Fully connected autoencoder ``dims[0]-dims[1]-...-dims[-1]`` and its mirror.

    ReLU between layers, linear embedding and linear output (DEC/IDEC). The input may be
    images: they are flattened, and the decoder's output is reshaped to ``input_shape``.
    """

    def __init__(self, dims: list[int], input_shape: tuple[int, ...] | None = None):
        super().__init__()
        if len(dims) < 2:
            raise ValueError(f"dims needs at least input and embedding sizes; got {dims}")
        self.dims = list(dims)
        self.input_shape = tuple(input_shape) if input_shape else (dims[0],)
        if math.prod(self.input_shape) != dims[0]:
            raise ValueError(f"input_shape {self.input_shape} does not match dims[0]={dims[0]}")
        self.encoder = _mlp(dims)
        self.decoder = _mlp(dims[::-1])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, ...) -> (B, dims[-1])."""
        return self.encoder(x.reshape(x.shape[0], -1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, dims[-1]) -> (B, *input_shape)."""
        return self.decoder(z).reshape(z.shape[0], *self.input_shape)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x)
        return z, self.decode(z)


def _mlp(dims: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def student_t(z: torch.Tensor, centers: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Soft assignment q_ij ∝ (1 + ||z_i - mu_j||² / alpha)^(-(alpha + 1) / 2)  (DEC eq 1).

    z: (B, d), centers: (k, d); returns (B, k), rows summing to 1.
    """
    d2 = torch.cdist(z, centers).pow(2)
    logits = -(alpha + 1.0) / 2.0 * torch.log1p(d2 / alpha)
    return torch.softmax(logits, dim=1)


class StudentTHead(nn.Module):
    """Trainable cluster centres ``(k, d)`` with the Student-t soft assignment."""

    def __init__(self, centers: torch.Tensor, alpha: float = 1.0):
        super().__init__()
        self.centers = nn.Parameter(torch.as_tensor(centers, dtype=torch.float32).clone())
        self.alpha = float(alpha)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return student_t(z, self.centers, self.alpha)
