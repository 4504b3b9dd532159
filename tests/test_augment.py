from __future__ import annotations

import pytest
import torch

from clusterkit.augment import random_affine


def test_zero_range_is_the_identity():
    x = torch.rand(5, 1, 12, 12)
    y = random_affine(x, max_shift=0.0, max_degrees=0.0)
    torch.testing.assert_close(y, x, atol=1e-5, rtol=0)


def test_shifts_move_the_ink_and_keep_shapes():
    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 10:18, 10:18] = 1.0
    g = torch.Generator().manual_seed(0)
    y = random_affine(x, max_shift=0.1, max_degrees=10, generator=g)
    assert y.shape == x.shape and y.dtype == x.dtype
    rows = torch.arange(28.0)
    cy = (y.sum((1, 3)) * rows).sum(1) / y.sum((1, 2, 3))
    assert (cy - 13.5).abs().max() <= 28 * 0.1 + 1.0  # never more than the maximum shift
    assert cy.std() > 0.5  # and images are moved independently
    z = random_affine(x, max_shift=0.1, max_degrees=10, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(y, z)  # the generator makes it repeat


def test_vectors_are_refused():
    with pytest.raises(ValueError, match="images"):
        random_affine(torch.rand(4, 784))
