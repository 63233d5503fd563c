from pathlib import Path

import pytest
import torch

from foldtrain.checkpoints import load_weights, read_metadata, save_weights
from foldtrain.model import build_model, model_norm
from foldtrain.optim import build_optimizer, build_scheduler


def test_build_model_outputs_classes():
    model = build_model("resnet10t", num_classes=18)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 18)
    mean, std = model_norm(model)
    assert len(mean) == len(std) == 3


def test_unknown_model_name():
    with pytest.raises(ValueError, match="unknown timm model 'resnet_nope'"):
        build_model("resnet_nope", 2)


def test_pretrained_file_loads_weights_and_reinitialises_a_new_head(tmp_path: Path):
    source = build_model("resnet10t", num_classes=18)
    file = tmp_path / "weights.safetensors"
    save_weights(source.state_dict(), file, {"note": "test"})
    same = build_model("resnet10t", num_classes=18, pretrained_file=str(file))
    assert torch.equal(same.conv1[0].weight, source.conv1[0].weight)
    assert torch.equal(same.fc.weight, source.fc.weight)
    other_head = build_model("resnet10t", num_classes=4, pretrained_file=str(file))
    assert torch.equal(other_head.conv1[0].weight, source.conv1[0].weight)
    assert other_head.fc.weight.shape == (4, 512)
    with pytest.raises(FileNotFoundError, match="pretrained_file"):
        build_model("resnet10t", 2, pretrained_file=str(tmp_path / "none.safetensors"))


def test_weights_round_trip_with_metadata(tmp_path: Path):
    model = build_model("resnet10t", num_classes=3)
    save_weights(model.state_dict(), tmp_path / "m.safetensors", {"fold": 2, "classes": ["a", "b", "c"]})
    loaded = load_weights(tmp_path / "m.safetensors")
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())
    assert read_metadata(tmp_path / "m.safetensors") == {"fold": 2, "classes": ["a", "b", "c"]}
    assert not list(tmp_path.glob(".*tmp*"))  # the temp file was renamed, not left behind


def test_scheduler_steps_per_update_with_warmup():
    model = build_model("resnet10t", num_classes=2)
    optimizer = build_optimizer(model, "adamw", lr=0.01, weight_decay=0.0)
    scheduler = build_scheduler(optimizer, "cosine", epochs=4, updates_per_epoch=10, warmup_epochs=1, lr=0.01)
    lrs = []
    for update in range(1, 41):
        scheduler.step_update(update)
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs[0] < lrs[9] <= 0.01 + 1e-9  # warming up over the first epoch
    assert lrs[-1] < lrs[15]  # decaying afterwards
    assert build_scheduler(optimizer, "none", 4, 10) is None


@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_fused_optimizer_makes_the_same_updates_as_torchs_loop(name: str):
    from timm.optim import create_optimizer_v2

    torch.manual_seed(0)
    model = build_model("resnet10t", num_classes=3)
    reference = build_model("resnet10t", num_classes=3)
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
    model = build_model("resnet10t", num_classes=2)
    assert "fused" not in build_optimizer(model, "radam", lr=0.01, weight_decay=0.0).defaults
    with pytest.raises(ValueError, match="nope"):
        build_optimizer(model, "nope", lr=0.01, weight_decay=0.0)
