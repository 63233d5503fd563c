"""Ensemble prediction rate: foldtrain's BatchedTTA against ttach's per-view wrapper, and the no-TTA forward rate.

    python benchmarks/bench_predict.py [--data DIR] [--folds 5] [--rounds 3] [--batch-size 64] [--workers 0]

Images are the data set's eval images, read the way `ensemble.predict` reads them (decoded cache, eval resize to
96x96, `DeviceNormalize`). Fold models are random-initialised resnet10t (18 classes): speed does not depend on the
weights. Variants, all under `torch.no_grad()` in eval mode:

- batched: per fold, one pass over the loader with `BatchedTTA` (original + hflip stacked into one forward),
  the loop of `foldtrain.model.fold_ensemble.FoldEnsemble`;
- ttach: per fold, one pass with `ttach.ClassificationTTAWrapper` (one forward per view);
- single: one model, one pass, no TTA: the ceiling, images/s of plain forwards.

Rates count each eval image once. Efficiency = batched / (single / (folds x views)): 1.0 means the ensemble costs
exactly folds x views forwards and nothing else.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import ttach

import common
from foldtrain.cpus import keep_freed_memory
from foldtrain.data.cache import build_cache
from foldtrain.data.loaders import CachedImageDataset, build_loader
from foldtrain.data.tables import read_eval
from foldtrain.data.transforms import DeviceNormalize, build_eval_transform, working_size
from foldtrain.model.factory import build_model, model_norm
from foldtrain.model.tta import BatchedTTA, tta_transforms, views_per_pass

SIZE = (96, 96)


def fold_models(count: int) -> list[torch.nn.Module]:
    """`count` differently seeded resnet10t models in eval mode and channels_last, as `load_fold` returns them."""
    models = []
    for fold in range(count):
        torch.manual_seed(fold)
        models.append(build_model("resnet10t", 18).to(memory_format=torch.channels_last).eval())
    return models


@torch.no_grad()
def ensemble_rate(models, loader, normalize, wrap) -> float:
    """Images/s of mean logits over every fold, each fold wrapped by `wrap` (a TTA wrapper or the identity)."""
    start = time.perf_counter()
    total = None
    for model in models:
        wrapped = wrap(model)
        logits = torch.cat([wrapped(normalize(images)).float() for images, _, _ in loader])
        total = logits if total is None else total + logits
    return len(total) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="data root with eval/ (default: generate demo data in a temp folder)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions per variant (median)")
    parser.add_argument("--batch-size", type=int, default=64, help="ensemble.predict's default")
    parser.add_argument("--workers", type=int, default=0, help="loader workers (0: the forward pass is measured)")
    args = parser.parse_args(argv)
    keep_freed_memory()  # as ensemble.predict does; every variant shares this process and the setting

    with common.demo_root(args.data) as root, tempfile.TemporaryDirectory(prefix="bench-cache-") as cache_dir:
        table = read_eval(root / "eval")
        cache = build_cache([Path(p) for p in table["path"]], working_size(SIZE), cache_dir)
        dataset = CachedImageDataset(cache, np.arange(len(table)), None, build_eval_transform(SIZE))
        loader = build_loader(dataset, args.batch_size, train=False, workers=args.workers, pin_memory=False)
        models = fold_models(args.folds)
        normalize = DeviceNormalize(*model_norm(models[0]))
        transforms = tta_transforms("hflip")
        per_pass = views_per_pass(torch.device("cpu"))  # what ensemble.predict uses on this machine
        views = len(list(transforms))
        ensemble_rate(models[:1], loader, normalize, lambda m: m)  # warm-up: first-call allocations, page cache
        print(f"{len(table)} eval images, {args.folds} folds x {views} views:", flush=True)
        results = common.interleaved({
            "batched": lambda: ensemble_rate(models, loader, normalize, lambda m: BatchedTTA(m, transforms, per_pass)),
            "ttach": lambda: ensemble_rate(models, loader, normalize,
                                           lambda m: ttach.ClassificationTTAWrapper(m, transforms, merge_mode="mean")),
            "single": lambda: ensemble_rate(models[:1], loader, normalize, lambda m: m),
        }, args.rounds)

    med = {name: common.median(values) for name, values in results.items()}
    ideal = med["single"] / (args.folds * views)
    rows = [
        [f"(a) BatchedTTA, {args.folds} folds x {views} views", f"{med['batched']:.1f}",
         common.spread(results["batched"]), f"{med['batched'] / ideal:.2f}"],
        [f"(b) ttach.ClassificationTTAWrapper, {args.folds} folds x {views} views", f"{med['ttach']:.1f}",
         common.spread(results["ttach"]), f"{med['ttach'] / ideal:.2f}"],
        ["(c) single model, no TTA", f"{med['single']:.1f}", common.spread(results["single"]), "-"],
        [f"(c) / ({args.folds} x {views}): ideal ensemble rate", f"{ideal:.1f}", "", "1.00"],
    ]
    print()
    print(common.markdown_table(["prediction", "images/s (median)", "range", "efficiency vs ideal"], rows))
    print(f"\nefficiency (a) / ((c) / (folds x views)) = {med['batched'] / ideal:.2f} (target >= 0.8); "
          f"(a) vs (b): {med['batched'] / med['ttach']:.2f}x; batch {args.batch_size}, {args.workers} workers, "
          f"{args.rounds} rounds interleaved, resnet10t at {SIZE[0]}x{SIZE[1]}")
    print(common.machine())


if __name__ == "__main__":
    main()
