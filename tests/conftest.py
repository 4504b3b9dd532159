"""Shared fixtures: small real data, and CLUSTERKIT_DATA pointing at ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

if "CLUSTERKIT_DATA" not in os.environ and SHARED_DATA.is_dir():
    os.environ["CLUSTERKIT_DATA"] = str(SHARED_DATA)
os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_configure(config):
    # Unit tests train tiny networks: one thread is as fast, and OpenMP's busy-waiting
    # threads make two of them crawl whenever anything else shares the cores.
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def two_threads():
    """Torch on two threads for the test (the notebooks' and CI's count), then back."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1797 digits as (n, 1, 8, 8) float32 in [0, 1] and (n,) int64 labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16.0).astype(np.float32)[:, None], d.target.astype(np.int64)


def tiny_idec(**kw):
    """An IDEC small enough for unit tests (a few seconds on 2 cores)."""
    from clusterkit.methods import IDEC

    args = dict(profile="smoke", dims=(32, 32, 10), pretrain_epochs=2, cluster_epochs=3,
                batch_size=256, update_interval=4, verbose=False, snapshot_size=200)
    args.update(kw)
    return IDEC(10, **args)
