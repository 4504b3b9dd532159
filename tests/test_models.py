from __future__ import annotations

import pytest
import torch
from torch import nn

from clusterkit.models import ClusterNetAE, Dropout, dropout_mask


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_the_mask_drops_p_and_keeps_the_mean(p):
    torch.manual_seed(0)
    m = dropout_mask(torch.ones(1_000_003), p)  # not a multiple of 4: a partial last word
    assert m.shape == (1_000_003,) and m.dtype == torch.float32
    kept = m[m != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 1 / (1 - p)))
    sd = (p * (1 - p) / m.numel()) ** 0.5
    assert abs(float((m == 0).float().mean()) - p) < 5 * sd
    assert abs(float(m.mean()) - 1.0) < 5 * sd / (1 - p)


def test_neighbouring_elements_drop_independently():
    # four elements share one 64-bit word: their draws must not be tied to each other
    torch.manual_seed(1)
    p = 0.3
    d = (dropout_mask(torch.ones(400_000, 4), p) == 0).float()
    both = (d[:, :, None] * d[:, None, :]).mean(0)  # P(lane a and lane b dropped)
    off = both[~torch.eye(4, dtype=torch.bool)]
    assert (off - p * p).abs().max() < 0.005
    assert (d.mean(0) - p).abs().max() < 0.005  # and every lane drops p


def test_dropout_repeats_with_the_seed_and_differs_between_calls():
    x = torch.rand(64, 32, 7, 7)
    layer = Dropout(0.1).train()
    torch.manual_seed(5)
    a, b = layer(x), layer(x)
    torch.manual_seed(5)
    torch.testing.assert_close(layer(x), a)
    assert not torch.equal(a, b)


def test_dropout_matches_nn_dropout_in_eval_and_at_zero():
    x = torch.rand(8, 3, 5, 5)
    assert torch.equal(Dropout(0.5).eval()(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)
    assert isinstance(Dropout(0.1), nn.Dropout)  # so model code that looks for it finds it


def test_the_gradient_goes_through_the_kept_elements_only():
    torch.manual_seed(2)
    x = torch.rand(32, 16, requires_grad=True)
    y = Dropout(0.25).train()(x)
    y.sum().backward()
    kept = y.detach() != 0
    torch.testing.assert_close(x.grad[kept], torch.full_like(x.grad[kept], 1 / 0.75))
    assert (x.grad[~kept] == 0).all() and (~kept).any()


def test_an_impossible_probability_is_refused():
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        dropout_mask(torch.ones(4), 1.0)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        dropout_mask(torch.ones(4), -0.1)


def test_clusternet_autoencoder_uses_it():
    ae = ClusterNetAE((1, 28, 28), dropout=0.1)
    drops = [m for m in ae.modules() if isinstance(m, nn.Dropout)]
    assert drops and all(isinstance(m, Dropout) for m in drops)
