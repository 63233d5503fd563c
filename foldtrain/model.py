"""Model factory: any timm model, from scratch, from hub weights, or from a local weights file."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from safetensors.torch import load_file
from timm.data import resolve_model_data_config


def build_model(name: str, num_classes: int, pretrained: bool = False, pretrained_file: str | None = None,
                drop_rate: float = 0.0, drop_path_rate: float = 0.0) -> torch.nn.Module:
    """A timm classifier with `num_classes` outputs.

    Args:
        name: any `timm.list_models()` name.
        num_classes: classifier outputs.
        pretrained: load the model's hub weights (needs network access to the hub).
        pretrained_file: load weights from this local file instead (safetensors or a torch state dict); the
            classifier is re-initialised when its shape differs, as timm does for hub weights.
        drop_rate: dropout before the classifier.
        drop_path_rate: stochastic depth rate.
    """
    if name not in timm.list_models() and name not in timm.list_models(pretrained=True):
        raise ValueError(f"unknown timm model {name!r}; see timm.list_models() for names (e.g. resnet18, "
                         f"efficientnet_b0)")
    kwargs = {"num_classes": num_classes, "drop_rate": drop_rate}
    if drop_path_rate:
        kwargs["drop_path_rate"] = drop_path_rate
    if pretrained_file:
        path = Path(pretrained_file)
        if not path.is_file():
            raise FileNotFoundError(f"model.pretrained_file not found: {path}")
        # timm's own loader reads the file through the pretrained config, so key filtering and classifier
        # re-initialisation behave exactly as for hub weights; telling it the file's class count keeps a head
        # that already fits (timm drops any head whose count differs from the config's).
        overlay = {"file": str(path.resolve()), "num_classes": _file_classes(name, path)}
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
    return timm.create_model(name, pretrained=pretrained, **kwargs)


def _file_classes(name: str, path: Path) -> int | None:
    """Rows of the classifier weight stored in a weights file, or None when it holds no such tensor."""
    classifier = timm.models.get_pretrained_cfg(name).classifier if timm.models.get_pretrained_cfg(name) else None
    if path.suffix == ".safetensors":
        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state.get("model", state)) if isinstance(state, dict) else state
    weight = state.get(f"{classifier}.weight") if classifier else None
    return int(weight.shape[0]) if weight is not None else None


def model_norm(model: torch.nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) the model's weights expect, resolved by timm from its pretrained config."""
    config = resolve_model_data_config(model)
    return tuple(config["mean"]), tuple(config["std"])
