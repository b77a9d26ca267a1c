"""Fused Adam that skips non-finite steps on the device, and loading plain Adam's state."""
import math

import pytest
import torch

from stylegan_fast.train.optim import (
    ADAM_BETAS,
    ADAM_EPS,
    load_optimizer,
    make_adam,
    non_finite,
    step_unless_non_finite,
)


def model_with_gradients(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1))
    model(torch.randn(5, 3)).square().mean().backward()
    return model


def scaler(enabled: bool) -> torch.amp.GradScaler:
    return torch.amp.GradScaler("cpu", enabled=enabled)


def snapshot(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()] + [
        v.clone() for state in optimizer.state.values() for v in state.values()]


def test_non_finite_flags_any_nan_or_inf():
    assert non_finite([torch.ones(3), torch.zeros(2)]).item() == 0.0
    assert non_finite([torch.ones(3), torch.tensor([0.0, math.inf])]).item() == 1.0
    assert non_finite([torch.tensor([math.nan]), torch.zeros(2)]).item() == 1.0


@pytest.mark.parametrize("with_scaler", [False, True], ids=["plain", "scaler"])
def test_finite_steps_are_fused_adam_steps(with_scaler):
    model, reference = model_with_gradients(), model_with_gradients()
    optimizer = make_adam(model.parameters(), lr=0.01)
    expected = torch.optim.Adam(reference.parameters(), lr=0.01, betas=ADAM_BETAS,
                                eps=ADAM_EPS, fused=True)
    grad_scaler = scaler(with_scaler)
    if with_scaler:  # the scaler steps on the gradients of the scaled loss
        for p in model.parameters():
            p.grad *= grad_scaler.scale(torch.ones(()))
    skipped = step_unless_non_finite(optimizer, grad_scaler, torch.tensor(0.5))
    expected.step()
    assert skipped.item() == 0.0
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q)
    assert not hasattr(optimizer, "found_inf")


@pytest.mark.parametrize("with_scaler", [False, True], ids=["plain", "scaler"])
@pytest.mark.parametrize("what", ["nan loss, finite gradients", "inf loss",
                                  "inf gradient, finite loss"])
def test_a_non_finite_loss_or_gradient_skips_the_step_on_the_device(what, with_scaler):
    """A NaN/inf loss whose gradients are finite (fp16 scores that overflowed) is caught too;
    the parameters, Adam's moments and its step counter stay as they were."""
    model = model_with_gradients()
    optimizer, grad_scaler = make_adam(model.parameters(), lr=0.01), scaler(with_scaler)
    grad_scaler.scale(torch.ones(()))  # as the loss is scaled before backward
    step_unless_non_finite(optimizer, grad_scaler, torch.tensor(1.0))  # Adam's state exists
    model.zero_grad()
    model(torch.randn(5, 3)).square().mean().backward()
    before = snapshot(model, optimizer)
    loss = torch.tensor({"nan": math.nan, "inf": math.inf}.get(what[:3], 1.0))
    if what.startswith("inf gradient"):
        next(model.parameters()).grad[0, 0] = math.inf
    scale = grad_scaler.get_scale() if with_scaler else None
    skipped = step_unless_non_finite(optimizer, grad_scaler, loss)
    assert skipped.item() == 1.0
    assert all(torch.equal(a, b) for a, b in zip(before, snapshot(model, optimizer)))
    assert all(state["step"].item() == 1.0 for state in optimizer.state.values())
    if with_scaler:
        assert grad_scaler.get_scale() == scale * grad_scaler.get_backoff_factor()


def test_plain_adam_state_loads_into_fused_adam_and_continues_exactly():
    """A checkpoint of plain Adam (before fused Adam) loads into the fused optimizer, which stays
    fused, and continues exactly as the fused optimizer whose state was saved would have."""
    model = model_with_gradients()
    fused = make_adam(model.parameters(), lr=0.01)
    fused.step()
    plain_model = model_with_gradients()
    plain = torch.optim.Adam(plain_model.parameters(), lr=0.01, betas=ADAM_BETAS, eps=ADAM_EPS)
    plain.step()
    for p, q in zip(plain_model.parameters(), model.parameters()):  # fused's values
        for key, value in plain.state[p].items():
            value.copy_(fused.state[q][key])
    saved = plain.state_dict()
    assert not saved["param_groups"][0]["fused"]

    resumed_model = model_with_gradients()
    resumed_model.load_state_dict(model.state_dict())
    resumed = make_adam(resumed_model.parameters(), lr=0.01)
    load_optimizer(resumed, saved)
    assert resumed.param_groups[0]["fused"] is True
    for state in resumed.state.values():
        assert state["step"].dtype == torch.float32 and state["step"].item() == 1.0
    for _ in range(3):
        for a, b in zip(model.parameters(), resumed_model.parameters()):
            b.grad = a.grad.clone()
        fused.step()
        resumed.step()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(),
                                                 resumed_model.parameters()))
