"""Grad-CAM layers for every named timm family, and maps aligned with the input view."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch

from foldtrain.model.cam import CamLayerError, class_maps, target_layer
from foldtrain.model.heads import MaskHeads, SingleHead
from foldtrain.user_error import UserError

FAMILIES = {
    "resnet10t": {}, "resnet18d": {}, "efficientnet_b0": {}, "mobilenetv3_small_050": {}, "convnext_atto": {},
    "regnetx_002": {},
    "vit_tiny_patch16_224": {"img_size": 64, "depth": 2},
    "deit_tiny_distilled_patch16_224": {"img_size": 64, "depth": 2},
    "swin_tiny_patch4_window7_224": {"img_size": 56, "depths": (1, 1, 1, 1), "embed_dim": 24,
                                     "num_heads": (1, 1, 1, 1)},
}


@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_gets_a_layer_and_full_size_maps(name: str):
    torch.manual_seed(0)
    net = timm.create_model(name, num_classes=3, **FAMILIES[name]).eval()
    size = FAMILIES[name].get("img_size", 64)
    layer, reshape = target_layer(net)
    assert layer in set(net.modules())
    maps, preds = class_maps(net, SingleHead(3), torch.randn(2, 3, size, size))
    assert maps.shape == (2, size, size) and preds.shape == (2,)
    assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
    if name.startswith(("vit", "deit")):
        assert reshape is not None


def test_layer_override_and_unknown_layer():
    net = timm.create_model("resnet10t", num_classes=3)
    assert target_layer(net, "layer3")[0] is net.layer3
    with pytest.raises(CamLayerError, match="layer9"):
        target_layer(net, "layer9")


class RedDetector(torch.nn.Module):
    """Class 0's score is the amount of red: the map must sit on the red square."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 1, 1, bias=False)
        with torch.no_grad():
            self.conv.weight[:] = torch.tensor([1.0, -1.0, -1.0]).view(1, 3, 1, 1)
        self.head = torch.nn.Linear(1, 2, bias=False)
        with torch.no_grad():
            self.head.weight[:] = torch.tensor([[1.0], [-1.0]])

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))


def test_maps_align_with_the_input_view():
    image = torch.zeros(1, 3, 40, 60)
    image[0, 0, 24:36, 6:18] = 1.0  # a red square low on the left of a 40 x 60 input
    maps, preds = class_maps(RedDetector(), SingleHead(2), image)
    assert preds.tolist() == [0] and maps.shape == (1, 40, 60)
    assert maps[0, 24:36, 6:18].sum() > 0.9 * maps[0].sum()


def test_one_head_of_three():
    net = timm.create_model("resnet10t", num_classes=8).eval()
    maps, preds = class_maps(net, MaskHeads(), torch.randn(2, 3, 64, 64), head="gender")
    assert maps.shape == (2, 64, 64) and set(preds) <= {0, 1}
    with pytest.raises(UserError, match="--head"):
        class_maps(net, SingleHead(8), torch.randn(1, 3, 64, 64), head="age")
