"""`python -m foldtrain.facecrop --src RAW --dst FACES`: MTCNN face crops of a data set tree, in the same layout.

`accelerate launch -m foldtrain.facecrop --src RAW --dst FACES` splits the images across processes (and GPUs).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

import torch

from foldtrain.config import ConfigError, build_config
from foldtrain.data.images import set_pixel_budget
from foldtrain.data.paths import PathEscapeError
from foldtrain.facecrop.crop import crop_faces
from foldtrain.facecrop.settings import CropSettings, FaceCropError, from_config
from foldtrain.facecrop.tree import check_roots
from foldtrain.files import StorageError
from foldtrain.user_error import UserError


def parse_margins(text: str) -> list[int]:
    """`L,T,R,B` as four non-negative ints."""
    try:
        margins = [int(part) for part in text.split(",")]
    except ValueError:
        margins = []
    if len(margins) != 4 or min(margins) < 0:
        raise argparse.ArgumentTypeError(f"margins must be four non-negative integers L,T,R,B, not {text!r}")
    return margins


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface: the settings come from `--config` (the `facecrop` section of a run's config),
    then the flags."""
    parser = argparse.ArgumentParser(prog="python -m foldtrain.facecrop", description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", required=True, help="data set root to crop (walked entirely)")
    parser.add_argument("--dst", required=True, help="output root: same layout, crops and copied tables")
    parser.add_argument("--config", action="append", default=[],
                        help="a foldtrain config (e.g. a run's config.yaml) whose facecrop section sets the defaults")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--batch-size", type=int, default=16, help="images per MTCNN call")
    parser.add_argument("--force", action="store_true", help="redo crops that already exist")
    parser.add_argument("--follow-symlinks", action="store_true",
                        help="accept links that lead outside --src (refused by default, as data.follow_symlinks)")
    parser.add_argument("--margins", type=parse_margins, metavar="L,T,R,B",
                        help="pixels added around the face (facecrop.margins, default 30,60,30,30)")
    parser.add_argument("--scale-margins", action="store_const", const=True,
                        help="scale margins by face width / 150 px (facecrop.scale_margins)")
    parser.add_argument("--detect-size", type=int,
                        help="longer side of the copy MTCNN sees, 0 for full size (facecrop.detect_size, default 256)")
    parser.add_argument("--min-prob", type=float, help="detections below count as misses (facecrop.min_prob, 0.9)")
    parser.add_argument("--fallback-scale", type=float,
                        help="crop of a photo without a face, times the mean face crop (facecrop.fallback_scale, 1.2)")
    return parser


def settings_from(args: argparse.Namespace) -> CropSettings:
    """The config's facecrop section with the flags given on top, checked like any config key."""
    flags = {"margins": args.margins, "scale_margins": args.scale_margins, "min_prob": args.min_prob,
             "fallback_scale": args.fallback_scale,
             "detect_size": None if args.detect_size == 0 else args.detect_size}
    overrides = [f"facecrop.{k}={json.dumps(v)}" for k, v in flags.items()
                 if v is not None or (k == "detect_size" and args.detect_size == 0)]
    cfg = build_config(args.config, overrides)
    set_pixel_budget(cfg.data.max_pixels)
    return from_config(cfg.facecrop)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry; returns the exit status (1 when some images could not be cropped)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_roots(args.src, args.dst)
        settings = settings_from(args)
    except (UserError, ConfigError) as err:
        parser.error(str(err))
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available (use auto or cpu)")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    from accelerate import PartialState

    # gloo when the processes have no GPU to put NCCL on.
    state = PartialState(cpu=args.device == "cpu" or not torch.cuda.is_available())
    try:
        crop_faces(args.src, args.dst, settings, device=args.device, batch_size=args.batch_size, force=args.force,
                   state=state, follow_symlinks=args.follow_symlinks)
    except (FaceCropError, StorageError, PathEscapeError, UserError) as err:
        if state.is_main_process:
            print(f"facecrop: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
