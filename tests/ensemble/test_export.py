"""The fold x TTA ensemble exported to ONNX answers as the PyTorch ensemble does, at batch sizes 1 and 64, with the
TTA views inside the graph; a file without foldtrain's metadata is refused with one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ensemble.export import export_onnx, max_prob_difference, read_export_metadata, session
from foldtrain.model.factory import build_model
from foldtrain.model.fold_ensemble import FoldEnsemble, FoldModel
from foldtrain.model.weights import save_weights
from foldtrain.user_error import UserError

pytest.importorskip("onnxruntime")
SIZE = (40, 32)  # not square: the flips keep the shape, and height and width must not be swapped


def fold_models(tmp_path: Path, count: int, heads: str = "single") -> list[FoldModel]:
    models = []
    for fold in range(count):
        torch.manual_seed(fold)
        outputs = 8 if heads == "multi" else 18
        net = build_model("resnet10t", outputs)
        meta = {"model": "resnet10t", "num_classes": 18, "heads": heads, "classes": [str(i) for i in range(18)],
                "image_size": list(SIZE), "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3], "fold": fold}
        path = tmp_path / f"fold{fold}.safetensors"
        net.eval()
        save_weights(net.state_dict(), path, meta)
        models.append(FoldModel(f"fold {fold}", path, meta))
    return models


@pytest.mark.parametrize(("folds", "tta", "heads"), [(2, "hflip", "single"), (1, "none", "single"),
                                                      (2, "flips", "multi")])
def test_the_exported_ensemble_matches_pytorch_at_batch_1_and_64(tmp_path: Path, folds: int, tta: str, heads: str):
    ensemble = FoldEnsemble(fold_models(tmp_path, folds, heads), tta, torch.device("cpu"))
    out = export_onnx(ensemble, tmp_path / "e.onnx", 17, {"tta": tta, "image_size": list(SIZE)})
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (64, 3, *SIZE), dtype=np.uint8))
    for batch in (1, 64):
        assert max_prob_difference(ensemble, out, images[:batch]) <= 1e-4
    scores = session(out).run(["scores"], {"images": images[:5].numpy()})[0]
    with torch.no_grad():
        assert (scores.argmax(1) == ensemble(images[:5]).numpy().argmax(1)).all()
    assert read_export_metadata(out)["tta"] == tta


def test_a_file_without_foldtrain_metadata_or_not_onnx_is_refused(tmp_path: Path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(UserError, match="not a readable ONNX file"):
        read_export_metadata(broken)
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    foreign = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph), str(foreign))
    with pytest.raises(UserError, match="no foldtrain metadata"):
        read_export_metadata(foreign)
