"""Random shifts and small rotations of image batches, as batched torch ops on the device.

The DEC-DA recipe (and DECS) trains on randomly shifted and rotated digits; one affine grid
per batch does it without a per-image Python loop.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_affine(
    x: torch.Tensor,
    *,
    max_shift: float = 0.1,
    max_degrees: float = 10.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Shift each image by up to ``max_shift`` of its size and rotate it by up to
    ``max_degrees``, independently per image.

    x: (B, C, H, W) float; returns the same shape and dtype, on the same device. Empty
    borders are filled with 0 (the background of digit images).
    """
    if x.dim() != 4:
        raise ValueError(f"random_affine needs images (B, C, H, W); got shape {tuple(x.shape)}")
    b = x.shape[0]
    u = torch.rand(b, 3, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1
    angle = u[:, 0] * math.radians(max_degrees)
    # affine_grid works in [-1, 1] coordinates: a shift of s image widths is 2 s.
    tx, ty = u[:, 1] * 2 * max_shift, u[:, 2] * 2 * max_shift
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
