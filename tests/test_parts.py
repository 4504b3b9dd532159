"""clusterkit/methods/parts.py: the optimizers the methods share."""

from __future__ import annotations

import io

import pytest
import torch

from clusterkit.methods import parts


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(20, 30), torch.nn.ReLU(), torch.nn.Linear(30, 5))


def _train(model: torch.nn.Module, opt: torch.optim.Optimizer, steps: int = 20) -> None:
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(16, 20, generator=g)
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.parametrize("make, reference", [
    (lambda p: parts.adam(p, lr=1e-2), lambda p: torch.optim.Adam(p, lr=1e-2)),
    (lambda p: parts.sgd(p, lr=1e-2), lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9)),
])
def test_fused_optimizers_are_fused_on_cpu_and_match_torch_defaults(make, reference):
    a, b = _model(), _model()
    opt = make(a.parameters())
    assert opt.defaults["fused"] is True
    _train(a, opt)
    _train(b, reference(b.parameters()))
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-5)


def test_fused_adam_follows_a_learning_rate_change_like_the_engine_makes_it():
    a, b = _model(), _model()
    oa, ob = parts.adam(a.parameters(), lr=1e-2), torch.optim.Adam(b.parameters(), lr=1e-2)
    _train(a, oa, 5)
    _train(b, ob, 5)
    for opt in (oa, ob):  # what Run.set_knob("lr", ...) does
        for g in opt.param_groups:
            g["lr"] = 1e-3
    _train(a, oa, 5)
    _train(b, ob, 5)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-5)


def test_fused_adam_state_round_trips_through_a_checkpoint():
    a, b = _model(), _model()
    oa = parts.adam(a.parameters(), lr=1e-2)
    _train(a, oa, 5)
    buf = io.BytesIO()  # as a checkpoint file: torch.save, then torch.load
    torch.save({"model": a.state_dict(), "opt": oa.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf)
    b.load_state_dict(state["model"])
    ob = parts.adam(b.parameters(), lr=1e-2)
    ob.load_state_dict(state["opt"])
    _train(a, oa, 5)
    _train(b, ob, 5)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_falls_back_where_torch_has_no_fused_kernel():
    c = [torch.nn.Parameter(torch.zeros(3, dtype=torch.complex64))]  # no fused complex kernel
    opt = parts.adam(c, lr=1e-2)
    assert not opt.defaults.get("fused")
    c[0].grad = torch.ones_like(c[0])
    opt.step()
    assert c[0].real.abs().sum() > 0
    assert not parts.sgd(c, lr=1e-2).defaults.get("fused")
    meta = [torch.nn.Parameter(torch.zeros(3, device="meta"))]  # no fused kernel on "meta"
    assert not parts.adam(meta, lr=1e-2).defaults.get("fused")
