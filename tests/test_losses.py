"""Losses shared by the methods (each paper's own losses are tested beside them)."""

from __future__ import annotations

import torch

from clusterkit import losses
from clusterkit.models import student_t


def test_target_distribution_sharpens_and_normalises():
    q = torch.softmax(torch.randn(50, 4), 1)
    p = losses.target_distribution(q)
    torch.testing.assert_close(p.sum(1), torch.ones(50))
    assert (p.max(1).values >= q.max(1).values - 1e-6).all()
    assert (p.argmax(1) == q.argmax(1)).float().mean() > 0.9


def test_kl_is_per_sample_not_per_element():
    q = torch.softmax(torch.randn(8, 5), 1)
    p = losses.target_distribution(q)
    want = (p * (p / q).log()).sum(1).mean()
    torch.testing.assert_close(losses.kl_clustering(q, p), want, atol=1e-6, rtol=1e-5)
    assert losses.kl_clustering(q, q) < 1e-6


def test_student_t_matches_dec_eq1():
    z, mu = torch.randn(6, 3), torch.randn(4, 3)
    num = 1.0 / (1.0 + ((z[:, None] - mu[None]) ** 2).sum(-1))
    torch.testing.assert_close(student_t(z, mu), num / num.sum(1, keepdim=True))
    # the general alpha: (1 + d²/a)^(-(a+1)/2)
    a = 0.5
    num = (1.0 + ((z[:, None] - mu[None]) ** 2).sum(-1) / a) ** (-(a + 1) / 2)
    torch.testing.assert_close(student_t(z, mu, a), num / num.sum(1, keepdim=True))
