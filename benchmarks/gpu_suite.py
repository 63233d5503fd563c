"""The GPU checks, in one go on one CUDA device (about 8 minutes): `bash benchmarks/gpu_suite.sh [OUT_DIR]`.

1. Training throughput (images/s) of foldtrain's loop, bf16 autocast, channels_last, for efficientnet_b0 at 224 and
   tf_efficientnet_b4 at 380: fed from the decoded cache of real (demo) images against synthetic tensors already on
   the device, so the gap is what the input pipeline costs.
2. One fold through the real CLI under `--mixed_precision fp16` (loss scaling on), resnet10t: it must finish with
   finite losses, and the grad scaler's scale is reported.
3. Prediction: fold x TTA ensemble images/s against the ideal (single-model rate / (folds x views)), batched views.
4. MTCNN face detection images/s on the GPU.

Writes OUT_DIR/gpu_suite.json and prints a markdown table. Needs a CUDA device; never part of CI.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import common
from foldtrain.data.cache import build_cache
from foldtrain.data.loaders import CachedImageDataset, build_loader, default_workers
from foldtrain.data.transforms import DeviceNormalize, build_train_transform, working_size
from foldtrain.model.factory import build_model, model_norm
from foldtrain.model.tta import BatchedTTA, tta_transforms, views_per_pass
from foldtrain.train.batch import BatchPrep
from foldtrain.train.loop import UpdateCounter, train_one_epoch
from foldtrain.train.optim import build_optimizer


def train_rate(name: str, size: int, batch: int, paths: list[Path], labels: list[int], work: Path,
               synthetic: bool, steps: int = 30) -> float:
    """Training images/s of foldtrain's loop in bf16 on one GPU, from the cache or from device tensors."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    accelerator = Accelerator(mixed_precision="bf16")
    model = build_model(name, 18).to(memory_format=torch.channels_last)
    normalize = DeviceNormalize(*model_norm(model)).to(accelerator.device)
    optimizer = build_optimizer(model, "adamw", 1e-3, 1e-4)
    hw = (size, size)
    if synthetic:
        images = torch.randint(0, 256, (batch * steps, 3, size, size), dtype=torch.uint8, device=accelerator.device)
        targets = torch.randint(0, 18, (batch * steps,), device=accelerator.device)
        data = torch.utils.data.TensorDataset(images, targets, torch.arange(batch * steps, device=accelerator.device))
        loader = torch.utils.data.DataLoader(data, batch_size=batch, drop_last=True)
    else:
        cache = build_cache(paths, working_size(hw), work / "cache")
        dataset = CachedImageDataset(cache, np.arange(len(paths)), np.array(labels), build_train_transform(hw))
        loader = build_loader(dataset, batch, True, default_workers(1, True), pin_memory=True)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    prep = BatchPrep(normalize, 0.0, None, accelerator.device)
    counter = UpdateCounter()
    loss = torch.nn.functional.cross_entropy
    train_one_epoch(model, loader, optimizer, loss, prep, accelerator, counter)  # warm-up: cuDNN choices, workers
    torch.cuda.synchronize()
    start = time.perf_counter()
    seen = 0
    while seen < batch * steps:
        train_one_epoch(model, loader, optimizer, loss, prep, accelerator, counter)
        seen += len(loader) * batch
    torch.cuda.synchronize()
    return seen / (time.perf_counter() - start)


def fp16_fold(root: Path, work: Path) -> dict:
    """One fold of resnet10t through the real launcher in fp16 with loss scaling."""
    run_dir = work / "fp16"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--mixed_precision", "fp16",
           str(common.REPO / "foldtrain" / "main.py"), f"data.root={root}", "data.image_size=128", "train.epochs=3",
           "cv.only=[0]", f"run.dir={run_dir}", "run.name=fp16", f"mlflow.tracking_uri=sqlite:///{work}/m.db"]
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=common.REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    summary = run_dir / "fp16" / "summary.json"
    losses = []
    if (run_dir / "fp16" / "fold0" / "metrics.csv").is_file():
        import pandas as pd

        losses = pd.read_csv(run_dir / "fp16" / "fold0" / "metrics.csv")["train_loss"].tolist()
    return {"exit": result.returncode, "seconds": seconds, "train_loss": losses,
            "finite": bool(losses) and all(math.isfinite(v) for v in losses),
            "mixed_precision": json.loads(summary.read_text())["mixed_precision"] if summary.is_file() else None,
            "stderr_tail": result.stderr[-1500:] if result.returncode else ""}


def predict_rate(paths: list[Path], work: Path, folds: int = 5, tta: str = "d4", batch: int = 64) -> dict:
    """Ensemble images/s with batched TTA views against the ideal from the single-model rate."""
    device = torch.device("cuda")
    models = [build_model("efficientnet_b0", 18).to(device, memory_format=torch.channels_last).eval()
              for _ in range(folds)]
    normalize = DeviceNormalize(*model_norm(models[0])).to(device)
    cache = build_cache(paths, working_size((224, 224)), work / "cache")
    from foldtrain.data.transforms import build_eval_transform

    loader = build_loader(CachedImageDataset(cache, np.arange(len(paths)), None, build_eval_transform((224, 224))),
                          batch, False, default_workers(1, True), pin_memory=True)
    views = len(list(tta_transforms(tta)))

    @torch.no_grad()
    def rate(wrapped) -> float:
        torch.cuda.synchronize()
        start = time.perf_counter()
        for images, _, _ in loader:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                x = normalize(images)
                for w in wrapped:
                    w(x)
        torch.cuda.synchronize()
        return len(paths) / (time.perf_counter() - start)

    rate(models[:1])
    single = rate(models[:1])
    batched = rate([BatchedTTA(m, tta_transforms(tta), views_per_pass(device)) for m in models])
    ideal = single / (folds * views)
    return {"single_model": single, "ensemble": batched, "ideal": ideal, "efficiency": batched / ideal,
            "folds": folds, "views": views}


def mtcnn_rate(paths: list[Path]) -> float:
    """MTCNN images/s on the GPU, batches of 16 detection copies as `foldtrain.facecrop` makes them."""
    from foldtrain.data.images import load_rgb
    from foldtrain.facecrop.detect import detection_copy, make_mtcnn
    from foldtrain.facecrop.settings import CropSettings

    mtcnn = make_mtcnn(torch.device("cuda"))
    settings = CropSettings()
    images = [np.asarray(detection_copy(load_rgb(p), settings.detect_size)) for p in paths[:256]]
    batch = np.stack(images[:16])
    mtcnn.detect(batch)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(0, len(images) - 15, 16):
        mtcnn.detect(np.stack(images[i:i + 16]))
    torch.cuda.synchronize()
    return (len(images) // 16 * 16) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu_suite_out", help="folder for gpu_suite.json")
    parser.add_argument("--persons", type=int, default=300, help="persons of the generated demo set (7 photos each)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("gpu_suite needs a CUDA device")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    with common.demo_root(None, persons=args.persons) as root, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        paths, labels = common.train_table(Path(root))
        for name, size, batch in (("efficientnet_b0", 224, 64), ("tf_efficientnet_b4", 380, 24)):
            for synthetic in (False, True):
                key = f"train_{name}_{size}_{'synthetic' if synthetic else 'real'}"
                report[key] = train_rate(name, size, batch, paths, labels, work, synthetic)
                print(f"{key}: {report[key]:.1f} img/s", flush=True)
        report["fp16_fold"] = fp16_fold(Path(root), work)
        print("fp16 fold:", {k: v for k, v in report["fp16_fold"].items() if k != "stderr_tail"}, flush=True)
        report["predict"] = predict_rate(paths, work)
        print("predict:", report["predict"], flush=True)
        report["mtcnn_img_per_s"] = mtcnn_rate(paths)
    (out / "gpu_suite.json").write_text(json.dumps(report, indent=2))
    rows = [[k, f"{v:.1f}"] for k, v in report.items() if isinstance(v, float)]
    rows.append(["predict efficiency (batched / ideal)", f"{report['predict']['efficiency']:.2f}"])
    rows.append(["fp16 fold finite losses / exit", f"{report['fp16_fold']['finite']} / {report['fp16_fold']['exit']}"])
    print(common.markdown_table(["measure", "value"], rows))
    print(f"device: {report['device']}; {os.environ.get('CUDA_VISIBLE_DEVICES', 'all')} visible")


if __name__ == "__main__":
    main()
