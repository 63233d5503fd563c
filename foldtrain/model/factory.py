"""Model factory: any timm model, from scratch, from hub weights, or from a local safetensors file."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from timm.data import resolve_model_data_config

from foldtrain.model.weights import WeightsError, load_weights
from foldtrain.user_error import UserError


def build_model(name: str, num_outputs: int, *, pretrained: bool = False, pretrained_file: str | None = None,
                drop_rate: float = 0.0, drop_path_rate: float = 0.0) -> torch.nn.Module:
    """A timm classifier with `num_outputs` logits.

    Args:
        name: any `timm.list_models()` name.
        num_outputs: classifier outputs (see the heads' `outputs`).
        pretrained: load the model's hub weights (needs network access to the hub).
        pretrained_file: load weights from this local safetensors file instead; the classifier is re-initialised
            when its shape differs, as timm does for hub weights. Pickled files (.pth, .bin) are refused: loading
            them can run code.
        drop_rate: dropout before the classifier.
        drop_path_rate: stochastic depth rate.

    Example:
        >>> build_model("resnet10t", 18)(torch.zeros(1, 3, 32, 32)).shape
        torch.Size([1, 18])
    """
    if name not in timm.list_models() and name not in timm.list_models(pretrained=True):
        raise UserError(f"unknown timm model {name!r} (model.name); see timm.list_models() for names "
                         f"(e.g. resnet18, efficientnet_b0)")
    kwargs = {"num_classes": num_outputs, "drop_rate": drop_rate}
    if drop_path_rate:
        kwargs["drop_path_rate"] = drop_path_rate
    if pretrained_file:
        path = Path(pretrained_file)
        if not path.is_file():
            raise UserError(f"model.pretrained_file not found: {path}")
        if path.suffix != ".safetensors":
            raise WeightsError(f"model.pretrained_file {path} is not a .safetensors file; pickled weights can run "
                               f"code when loaded. Convert it once: safetensors.torch.save_file(state_dict, "
                               f"'weights.safetensors')")
        # timm's own loader reads the file through the pretrained config, so key filtering and classifier
        # re-initialisation behave exactly as for hub weights; telling it the file's class count keeps a head
        # that already fits (timm drops any head whose count differs from the config's).
        overlay = {"file": str(path.resolve()), "num_classes": _file_classes(name, path)}
        try:
            return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
        except RuntimeError as err:  # load_state_dict: other keys or shapes, i.e. another architecture
            first = next((line.strip() for line in str(err).splitlines()[1:] if line.strip()), str(err)[:200])
            raise WeightsError(f"model.pretrained_file {path} does not fit model.name {name} ({first}); give "
                               f"weights of {name}, or the model.name they were saved from") from err
    return timm.create_model(name, pretrained=pretrained, **kwargs)


def _file_classes(name: str, path: Path) -> int | None:
    """Rows of the classifier weight stored in a weights file, or None when it holds no such tensor."""
    config = timm.models.get_pretrained_cfg(name)
    classifier = config.classifier if config else None
    weight = load_weights(path).get(f"{classifier}.weight") if classifier else None
    return int(weight.shape[0]) if weight is not None else None


def model_norm(model: torch.nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) the model's weights expect, resolved by timm from its pretrained config."""
    config = resolve_model_data_config(model)
    return tuple(config["mean"]), tuple(config["std"])


def freeze_backbone(model: torch.nn.Module) -> None:
    """Train only the classifier (timm's `get_classifier()`)."""
    keep = {id(p) for p in model.get_classifier().parameters()}
    for param in model.parameters():
        param.requires_grad = id(param) in keep
