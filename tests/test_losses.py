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


def test_rows_gathers_like_indexing_and_its_gradient_repeats_on_two_threads(two_threads):
    torch.manual_seed(0)
    x = torch.rand(256, 784)
    lin = torch.nn.Linear(784, 10)
    a, b = torch.triu_indices(128, 128, 1)  # every row repeats: the case that varied

    def grad():
        z = lin(x)
        loss = (losses.rows(z, a) - losses.rows(z, b)).pow(2).sum(1).clamp(max=1).sum()
        (g,) = torch.autograd.grad(loss, lin.weight)
        return g

    z = lin(x)
    torch.testing.assert_close(losses.rows(z, a), z[a], rtol=0, atol=0)
    grads = [grad() for _ in range(4)]
    for g in grads[1:]:
        assert torch.equal(g, grads[0]), "index_select's backward varied between calls"
