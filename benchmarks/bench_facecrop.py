"""Face-crop throughput: the batched, bucketed `crop_faces` against the seeds' one-image-at-a-time MTCNN loop.

Images: a real face photo (`skimage.data.astronaut()`) pasted at random positions and scales into 384x512 canvases
(the competition's size), plus a few blank canvases. Every variant decodes, detects, crops and saves every image; the
rows separate the two levers (batching and detecting on a downscaled copy) and report how far each variant's crop
boxes move from the seeds' full-size boxes (IoU), so speed is never bought with accuracy silently.

    python benchmarks/bench_facecrop.py [--images 64] [--threads N] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from skimage import data

from foldtrain.data.images import load_rgb
from foldtrain.facecrop import CropSettings, crop_faces
from foldtrain.facecrop.detect import detection_copy
from foldtrain.facecrop.geometry import grow_box
from foldtrain.facecrop.tree import save_atomic

CANVAS = (384, 512)


def make_images(folder: Path, count: int, seed: int = 0) -> list[str]:
    """`count` canvases with the astronaut pasted at random places and scales; every 8th is blank."""
    rng = np.random.default_rng(seed)
    astronaut = Image.fromarray(data.astronaut())
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for index in range(count):
        canvas = Image.new("RGB", CANVAS, tuple(int(v) for v in rng.integers(0, 256, 3)))
        if index % 8 != 7:
            size = int(512 * rng.uniform(0.6, 1.0))
            canvas.paste(astronaut.resize((size, size), Image.BILINEAR),
                         (int(rng.integers(-size // 2, CANVAS[0] - size // 2)), int(rng.integers(-60, 200))))
        name = f"{index:03d}.jpg"
        canvas.save(folder / name, quality=95)
        names.append(name)
    return names


def per_image_loop(src: Path, dst: Path, names: list[str], settings: CropSettings, mtcnn) -> pd.DataFrame:
    """The seeds' loop: one `mtcnn.detect(image)` call per image, then crop and save (misses are not cropped)."""
    rows = []
    for name in names:
        image = load_rgb(src / name)
        small = detection_copy(image, settings.detect_size)
        boxes, probs = mtcnn.detect(small)
        detected = boxes is not None and max(probs) >= settings.min_prob
        box = (0, 0, 0, 0)
        if detected:
            x1, y1, x2, y2 = (float(v) for v in boxes[int(np.argmax(probs))])
            sx, sy = image.width / small.width, image.height / small.height
            face = (x1 * sx, y1 * sy, x2 * sx, y2 * sy)
            box = grow_box(face, image.size, settings)
            save_atomic(image.crop(box), dst / name)
        rows.append((name, detected, *box))
    return pd.DataFrame(rows, columns=["path", "detected", "x1", "y1", "x2", "y2"]).set_index("path")


def box_iou(a: pd.DataFrame, b: pd.DataFrame) -> float:
    """Mean IoU of the crop boxes of the images both tables detected."""
    both = a.index[a["detected"] & b.loc[a.index, "detected"]]
    a, b = a.loc[both, ["x1", "y1", "x2", "y2"]].to_numpy(float), b.loc[both, ["x1", "y1", "x2", "y2"]].to_numpy(float)
    inter_w = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    inter_h = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = inter_w * inter_h
    return float(np.mean(inter / (_area(a) + _area(b) - inter)))


def _area(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def timed(function, *args) -> tuple[pd.DataFrame, float, float]:
    """The function's result, wall seconds and CPU seconds (all threads of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def run_variants(src: Path, out: Path, names: list[str], batch_size: int, mtcnn) -> dict[str, tuple]:
    """One timed run of every variant: label -> (table indexed by path, wall seconds, CPU seconds)."""
    results = {}
    for label, settings in (("per-image loop, full size (seeds)", CropSettings(detect_size=None)),
                            ("per-image loop, detect_size=256", CropSettings())):
        results[label] = timed(per_image_loop, src, out / f"loop{len(results)}", names, settings, mtcnn)
    for label, settings in (("batched crop_faces, full size", CropSettings(detect_size=None)),
                            ("batched crop_faces, detect_size=256", CropSettings())):
        report, wall, cpu = timed(crop_faces, src, out / f"batched{len(results)}", settings, "cpu", batch_size, True)
        results[label] = report.set_index("path"), wall, cpu
    return results


def main() -> None:
    """Run every variant on the same images, best of `--repeat` interleaved rounds, and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the fastest of each variant counts")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from facenet_pytorch import MTCNN

    mtcnn = MTCNN(keep_all=True, device="cpu")
    best: dict[str, tuple] = {}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        names = make_images(src, args.images)
        mtcnn.detect(Image.new("RGB", CANVAS))  # first call pays torch's one-time set-up; keep it out of the timings
        # Rounds interleave the variants so a burst of load from other programs hits them alike.
        for _ in range(args.repeat):
            for label, result in run_variants(src, Path(tmp), names, args.batch_size, mtcnn).items():
                if label not in best or result[1] < best[label][1]:
                    best[label] = result
    print_table(best, args)


def print_table(results: dict[str, tuple], args: argparse.Namespace) -> None:
    """A markdown table: throughput (wall and CPU), speed-up over the seeds' loop, detections, box agreement."""
    baseline, base_seconds, _ = next(iter(results.values()))
    print(f"{args.images} images 384x512, {args.threads} torch threads, batch {args.batch_size}, "
          f"best of {args.repeat}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
          f"torch {torch.__version__}")
    print(f"| {'variant':<36} | images/s | speed-up | CPU ms/image | detected | IoU vs seeds |")
    print(f"|{'-' * 38}|---------:|---------:|-------------:|---------:|-------------:|")
    for label, (table, seconds, cpu) in results.items():
        print(f"| {label:<36} | {args.images / seconds:>8.2f} | {base_seconds / seconds:>7.2f}x | "
              f"{1000 * cpu / args.images:>12.0f} | {int(table['detected'].sum()):>8} | "
              f"{box_iou(baseline, table):>12.3f} |")


if __name__ == "__main__":
    main()
