from pathlib import Path

import pytest
import torch

from foldtrain.model.factory import build_model, freeze_backbone, model_norm
from foldtrain.model.weights import WeightsError, load_weights, read_metadata, save_weights
from foldtrain.user_error import UserError


def test_build_model_outputs_classes():
    model = build_model("resnet10t", 18)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 18)
    mean, std = model_norm(model)
    assert len(mean) == len(std) == 3


def test_unknown_model_name():
    with pytest.raises(UserError, match="unknown timm model 'resnet_nope'"):
        build_model("resnet_nope", 2)


def test_pretrained_file_loads_weights_and_reinitialises_a_new_head(tmp_path: Path):
    source = build_model("resnet10t", 18)
    file = tmp_path / "weights.safetensors"
    save_weights(source.state_dict(), file, {"note": "test"})
    same = build_model("resnet10t", 18, pretrained_file=str(file))
    assert torch.equal(same.conv1[0].weight, source.conv1[0].weight)
    assert torch.equal(same.fc.weight, source.fc.weight)
    other_head = build_model("resnet10t", 4, pretrained_file=str(file))
    assert torch.equal(other_head.conv1[0].weight, source.conv1[0].weight)
    assert other_head.fc.weight.shape == (4, 512)
    with pytest.raises(UserError, match="pretrained_file"):
        build_model("resnet10t", 2, pretrained_file=str(tmp_path / "none.safetensors"))


def test_weights_round_trip_with_metadata(tmp_path: Path):
    model = build_model("resnet10t", 3)
    save_weights(model.state_dict(), tmp_path / "m.safetensors", {"fold": 2, "classes": ["a", "b", "c"]})
    loaded = load_weights(tmp_path / "m.safetensors")
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())
    assert read_metadata(tmp_path / "m.safetensors") == {"fold": 2, "classes": ["a", "b", "c"]}
    assert not list(tmp_path.glob(".*tmp*"))  # the temp file was renamed, not left behind


def test_freeze_backbone_leaves_only_the_classifier():
    model = build_model("resnet10t", 3)
    freeze_backbone(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"fc.weight", "fc.bias"}


def test_pickled_pretrained_file_is_refused(tmp_path: Path):
    file = tmp_path / "weights.pth"
    torch.save(build_model("resnet10t", 2).state_dict(), file)
    with pytest.raises(WeightsError, match=r"weights\.pth.*safetensors"):
        build_model("resnet10t", 2, pretrained_file=str(file))


def test_truncated_and_misshaped_weights_are_named(tmp_path: Path):
    from foldtrain.model.weights import load_into

    path = tmp_path / "m.safetensors"
    save_weights(build_model("resnet10t", 3).state_dict(), path)
    with pytest.raises(WeightsError, match="fold 1 weights .*does not fit"):
        load_into(build_model("resnet10t", 5), path, "fold 1 weights")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    for read in (load_weights, read_metadata):
        with pytest.raises(WeightsError, match=r"m\.safetensors is unreadable"):
            read(path)
