"""Class activation maps of a fold model with the `grad-cam` package: where the timm families keep their last
spatial features, the reshape their tokens need, and the maps of a batch for the predicted class (or one head's).

    layer, reshape = target_layer(net)                    # or target_layer(net, "layer4.1")
    maps, preds = class_maps(net, heads, images, method="gradcam")   # N x H x W in [0, 1], at the input's size
"""

from __future__ import annotations

import math

import numpy as np
import torch
from pytorch_grad_cam import (
    EigenCAM,
    EigenGradCAM,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from foldtrain.model.heads import Heads, MaskHeads
from foldtrain.user_error import UserError

METHODS = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "xgradcam": XGradCAM, "eigencam": EigenCAM,
           "eigengradcam": EigenGradCAM, "layercam": LayerCAM, "hirescam": HiResCAM, "scorecam": ScoreCAM}
HEADS = ("mask", "gender", "age")


class CamLayerError(UserError):
    """No target layer could be found (or the named one does not exist); the message says what to pass."""


def tokens_to_map(prefix: int):
    """ViT/DeiT tokens (B, prefix + H*W, C) -> (B, C, H, W), dropping the class (and distillation) tokens."""
    def reshape(tokens: torch.Tensor) -> torch.Tensor:
        patches = tokens[:, prefix:]
        side = math.isqrt(patches.shape[1])
        return patches.reshape(patches.shape[0], side, patches.shape[1] // side, patches.shape[2]).permute(0, 3, 1, 2)

    return reshape


def channels_last_to_first(features: torch.Tensor) -> torch.Tensor:
    """Swin's (B, H, W, C) stage outputs -> (B, C, H, W)."""
    return features.permute(0, 3, 1, 2)


def target_layer(net: torch.nn.Module, name: str | None = None):
    """(the layer whose activations and gradients make the map, the reshape its output needs or None).

    Known timm families: ResNet and ResNet-D (`layer4`), EfficientNet and MobileNet (`blocks[-1]`), ConvNeXt
    (`stages[-1]`), RegNet (`s4`), ViT and DeiT (`blocks[-1].norm1`, tokens reshaped), Swin (`layers[-1]`, channels
    moved first). Anything else: the last 2-D convolution. `name` (a dotted module path) overrides.

    Raises:
        CamLayerError: `name` is not a module of the model, or the model has no convolution to fall back on.
    """
    if name:
        try:
            return net.get_submodule(name), None
        except AttributeError as err:
            raise CamLayerError(f"--layer {name!r} is not a module of {type(net).__name__}; names look like "
                                f"{', '.join(n for n, _ in list(net.named_children())[-3:])}") from err
    kind = type(net).__name__
    if hasattr(net, "layer4"):
        return net.layer4[-1], None
    if kind == "VisionTransformer" or (hasattr(net, "blocks") and hasattr(net, "cls_token")):
        return net.blocks[-1].norm1, tokens_to_map(getattr(net, "num_prefix_tokens", 1))
    if kind.startswith("SwinTransformer"):
        return net.layers[-1], channels_last_to_first
    if hasattr(net, "stages"):
        return net.stages[-1], None
    if hasattr(net, "s4"):
        return net.s4, None
    if hasattr(net, "blocks"):
        return net.blocks[-1], None
    convolutions = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    if not convolutions:
        raise CamLayerError(f"no convolution in {kind} to explain; pass --layer with a module name")
    return convolutions[-1], None


class Scores(torch.nn.Module):
    """The fold model's class scores (joint 18-class scores for three heads), or one head's logits."""

    def __init__(self, net: torch.nn.Module, heads: Heads, head: str | None = None):
        super().__init__()
        if head is not None and not isinstance(heads, MaskHeads):
            raise UserError(f"--head {head} needs a model with mask/gender/age heads; this one has one head")
        self.net, self.heads, self.head = net, heads, head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.net(images)
        if self.head is not None:
            return self.heads.split(logits)[HEADS.index(self.head)]
        return self.heads.class_scores(logits)


def class_maps(net: torch.nn.Module, heads: Heads, images: torch.Tensor, method: str = "gradcam",
               head: str | None = None, layer: str | None = None,
               targets: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(maps N x H x W in [0, 1] at the input size, predicted classes) of normalised input `images`.

    Each map explains the score of the model's own predicted class (of one head with `head`), or of `targets`.
    """
    if method not in METHODS:
        raise UserError(f"unknown --method {method!r}; choose one of {', '.join(METHODS)}")
    scores = Scores(net, heads, head).eval()
    with torch.no_grad():
        preds = scores(images).argmax(1).numpy()
    chosen = preds if targets is None else targets
    module, reshape = target_layer(net, layer)
    with METHODS[method](model=scores, target_layers=[module], reshape_transform=reshape) as cam:
        try:
            maps = cam(input_tensor=images, targets=[ClassifierOutputTarget(int(c)) for c in chosen])
        except ValueError as err:
            if "shape" not in str(err).lower():
                raise
            # pytorch_grad_cam needs a layer with a spatial map (B, C, H, W); a pooled or linear layer has none
            raise CamLayerError(f"--layer {layer or type(module).__name__!r} has no spatial map to explain "
                                f"({str(err).splitlines()[0]}); pick a convolutional stage such as the last block "
                                f"before pooling") from err
    return np.asarray(maps, dtype=np.float32), preds
