"""Optimizers (fused where torch has a kernel) and schedules stepped once per optimizer update."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from foldtrain.config.schema import SCHEDULERS
from foldtrain.model.factory import build_model
from foldtrain.train.optim import build_optimizer, build_scheduler
from foldtrain.user_error import UserError


def lrs_over(name: str, epochs: int = 6, per_epoch: int = 5, warmup: int = 0) -> list[float]:
    model = build_model("resnet10t", 2)
    optimizer = build_optimizer(model, "radam", lr=0.01, weight_decay=0.0)
    scheduler = build_scheduler(optimizer, name, epochs=epochs, updates_per_epoch=per_epoch, warmup_epochs=warmup,
                                lr=0.01, t0=2, max_lr=0.05)
    lrs = []
    for update in range(1, epochs * per_epoch + 1):
        if scheduler is not None:
            scheduler.step_update(update)
        lrs.append(optimizer.param_groups[0]["lr"])
    return lrs


@pytest.mark.parametrize("name", SCHEDULERS)
def test_every_schedule_has_its_shape(name: str):
    lrs = np.array(lrs_over(name))
    if name == "none":
        assert (lrs == 0.01).all()
    elif name == "cosine":
        assert (np.diff(lrs) <= 1e-12).all() and lrs[-1] < 0.1 * lrs[0]  # decays all the way, never up
    elif name == "cosine_restarts":
        # Back up to the full rate every t0 = 2 epochs (10 updates; the value set after update k serves update k+1).
        assert lrs[9] == pytest.approx(0.01) and lrs[19] == pytest.approx(0.01) and lrs[8] < 0.002
    elif name == "onecycle":
        assert lrs.max() == pytest.approx(0.05, rel=0.05) and 3 <= lrs.argmax() <= 15 and lrs[-1] < 0.01 * 0.05
    elif name == "step":
        # x0.1 every third of the run (2 epochs): the value set after update k serves update k+1.
        assert list(lrs[[0, 8, 9, 18, 19, 28]]) == pytest.approx([0.01, 0.01, 0.001, 0.001, 0.0001, 0.0001])


def test_warmup_rises_over_the_first_epoch():
    lrs = lrs_over("cosine", epochs=4, per_epoch=10, warmup=1)
    assert lrs[0] < 0.2 * lrs[9] and lrs[9] <= 0.01 + 1e-9
    assert lrs[-1] < lrs[15]


@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_fused_optimizer_makes_the_same_updates_as_torchs_loop(name: str):
    from timm.optim import create_optimizer_v2

    torch.manual_seed(0)
    model = build_model("resnet10t", 3)
    reference = build_model("resnet10t", 3)
    reference.load_state_dict(model.state_dict())
    fused = build_optimizer(model, name, lr=0.01, weight_decay=0.05)
    assert fused.defaults["fused"] is True
    loop = create_optimizer_v2(reference, opt=name, lr=0.01, weight_decay=0.05)  # torch's per-tensor loop
    assert not loop.defaults.get("fused")
    params, ref_params = list(model.parameters()), list(reference.parameters())
    before = params[0].detach().clone()
    for _ in range(3):
        # The same gradients for both, so only the update rule is compared (not the chaos of a training run).
        for p, q in zip(params, ref_params, strict=True):
            p.grad = torch.randn_like(p)
            q.grad = p.grad.clone()
        fused.step()
        loop.step()
    for (key, a), b in zip(model.state_dict().items(), reference.state_dict().values(), strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), key
    assert not torch.allclose(params[0], before)  # the steps did move the weights


def test_optimizers_without_a_fused_kernel_still_build():
    model = build_model("resnet10t", 2)
    assert "fused" not in build_optimizer(model, "radam", lr=0.01, weight_decay=0.0).defaults
    with pytest.raises(UserError, match="nope"):
        build_optimizer(model, "nope", lr=0.01, weight_decay=0.0)
