"""The training loop on a tiny model, in-process: updates under accumulation, clipping, EMA, the NaN stop, compile."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from timm.utils import ModelEmaV3

from foldtrain.train.loop import NonFiniteLossError, UpdateCounter, predict, train_one_epoch
from foldtrain.train.placement import Alone, Shared


@pytest.fixture
def make_accelerator():
    def make(grad_accum: int = 1, mixed_precision: str = "no") -> Accelerator:
        AcceleratorState._reset_state(True)
        GradientState._reset_state()
        return Accelerator(cpu=True, gradient_accumulation_steps=grad_accum, mixed_precision=mixed_precision)

    yield make
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def batches(n: int, size: int = 4) -> torch.utils.data.DataLoader:
    """`n` batches of (inputs, labels, rows) in a fixed order."""
    generator = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(n * size, 6, generator=generator),
                                          torch.randint(0, 3, (n * size,), generator=generator),
                                          torch.arange(n * size))
    return torch.utils.data.DataLoader(data, batch_size=size)


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))


def fit_epoch(accelerator, model, loader, lr=0.1, placement=Shared, **kwargs):
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    model, optimizer, loader, _ = placement(accelerator).prepare(model, optimizer, loader, None)
    counter = UpdateCounter()
    updates = []
    loss = train_one_epoch(model, loader, optimizer, torch.nn.functional.cross_entropy, lambda x, y: (x, y),
                           accelerator, counter, on_update=updates.append, **kwargs)
    return loss, counter, updates


@pytest.mark.parametrize("placement", [Shared, Alone])
@pytest.mark.parametrize("batches_per_epoch, grad_accum, expected", [(8, 1, 8), (8, 4, 2), (8, 3, 3), (2, 4, 1)])
def test_one_update_per_accumulation_window(make_accelerator, batches_per_epoch, grad_accum, expected, placement):
    accelerator = make_accelerator(grad_accum)
    model = tiny_model()
    before = [p.detach().clone() for p in model.parameters()]
    loss, counter, updates = fit_epoch(accelerator, model, batches(batches_per_epoch), placement=placement)
    assert counter.updates == expected and updates == list(range(1, expected + 1))
    assert math.isfinite(loss) and any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_accumulated_update_equals_one_big_batch(make_accelerator):
    accumulated, single = tiny_model(), tiny_model()
    fit_epoch(make_accelerator(4), accumulated, batches(4))
    fit_epoch(make_accelerator(1), single, batches(1, size=16))
    for a, b in zip(accumulated.parameters(), single.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_clipping_bounds_the_update(make_accelerator):
    model = tiny_model()
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    fit_epoch(make_accelerator(), model, batches(1), lr=1.0, clip_grad=1e-3)
    step = torch.cat([p.detach().flatten() for p in model.parameters()]) - before
    assert 0 < step.norm() <= 1e-3 + 1e-7
    free = tiny_model()
    fit_epoch(make_accelerator(), free, batches(1), lr=1.0)
    assert (torch.cat([p.detach().flatten() for p in free.parameters()]) - before).norm() > 1e-2


def test_ema_follows_the_updates(make_accelerator):
    accelerator = make_accelerator()
    model = tiny_model()
    start = [p.detach().clone() for p in model.parameters()]
    ema = ModelEmaV3(model, decay=0.5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    model, optimizer, loader = accelerator.prepare(model, optimizer, batches(3))
    train_one_epoch(model, loader, optimizer, torch.nn.functional.cross_entropy, lambda x, y: (x, y),
                    accelerator, UpdateCounter(), on_update=lambda step: ema.update(model, step=step))
    for live, averaged, first in zip(model.parameters(), ema.module.parameters(), start, strict=True):
        assert not torch.equal(averaged, live) and not torch.equal(averaged, first)


def test_a_nan_loss_stops_the_fold_with_advice(make_accelerator):
    accelerator = make_accelerator()
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model, optimizer = accelerator.prepare(model, optimizer)

    def nan_loss(out, target):
        return out.sum() * float("nan")

    with pytest.raises(NonFiniteLossError, match="train.lr.*train.clip_grad"):
        train_one_epoch(model, batches(2), optimizer, nan_loss, lambda x, y: (x, y), accelerator, UpdateCounter(),
                        description="fold 3 epoch 1")


def test_compiled_model_trains_on_cpu(make_accelerator):
    accelerator = make_accelerator()
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model, optimizer = accelerator.prepare(model, optimizer)
    compiled = torch.compile(model)
    before = [p.detach().clone() for p in model.parameters()]
    loss = train_one_epoch(compiled, batches(3), optimizer, torch.nn.functional.cross_entropy, lambda x, y: (x, y),
                           accelerator, UpdateCounter())
    assert math.isfinite(loss)
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_predict_returns_every_row_once_in_order(make_accelerator):
    accelerator = make_accelerator()
    model = tiny_model()
    data = batches(3)
    scores, labels, rows = predict(model, data, lambda x: x, accelerator)
    inputs, targets, _ = data.dataset.tensors
    assert scores.shape == (12, 3) and rows.tolist() == list(range(12))
    assert (labels == targets.numpy()).all()
    assert torch.allclose(torch.from_numpy(scores), model(inputs), atol=1e-6)


@pytest.mark.parametrize("batches_per_epoch, grad_accum, expected", [(8, 1, 8), (8, 4, 2), (8, 3, 3)])
def test_bf16_autocast_on_cpu_trains_fp32_master_weights(make_accelerator, batches_per_epoch, grad_accum, expected):
    """`--mixed_precision bf16` on a CPU: the forward runs in bf16 under autocast, the weights, their updates and
    the loss stay fp32, and accumulation counts updates as in fp32."""
    accelerator = make_accelerator(grad_accum, "bf16")
    model = tiny_model()
    seen = []
    model[0].register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    before = [p.detach().clone() for p in model.parameters()]
    loss, counter, updates = fit_epoch(accelerator, model, batches(batches_per_epoch))
    assert set(seen) == {torch.bfloat16}  # autocast really ran the layers in bf16
    assert counter.updates == expected and updates == list(range(1, expected + 1))
    assert math.isfinite(loss) and loss > 0
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_bf16_accumulated_update_equals_one_big_batch(make_accelerator):
    accumulated, single = tiny_model(), tiny_model()
    fit_epoch(make_accelerator(4, "bf16"), accumulated, batches(4))
    fit_epoch(make_accelerator(1, "bf16"), single, batches(1, size=16))
    for a, b in zip(accumulated.parameters(), single.parameters(), strict=True):
        # bf16 keeps 8 bits of mantissa: the two sums round differently (3.7e-5 here), far below an update
        assert torch.allclose(a, b, atol=5e-4), (a - b).abs().max()  # an update here is ~8e-3


def test_bf16_predictions_come_back_fp32(make_accelerator):
    accelerator = make_accelerator(1, "bf16")
    model = tiny_model()
    data = batches(3)
    scores, _, rows = predict(model, data, lambda x: x, accelerator)
    assert scores.dtype == np.float32 and rows.tolist() == list(range(12))
    assert torch.allclose(torch.from_numpy(scores), model(data.dataset.tensors[0]), atol=5e-2)
