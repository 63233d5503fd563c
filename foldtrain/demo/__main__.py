"""`python -m foldtrain.demo --out DIR [--persons N] [--seed S] [--eval-images N] [--no-junk]`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from foldtrain.demo import STEMS, generate_demo
from foldtrain.demo.draw import STYLES
from foldtrain.files import StorageError
from foldtrain.user_error import UserError


def main(argv: list[str] | None = None) -> None:
    """Command line: `python -m foldtrain.demo --out DIR [--persons N] [--seed S] [--eval-images N]`."""
    parser = argparse.ArgumentParser(prog="python -m foldtrain.demo",
                                     description="Write a synthetic data set in the competition layout.")
    parser.add_argument("--out", required=True, help="data set root to write")
    parser.add_argument("--persons", type=int, default=60, help="training persons, 7 photos each (default 60)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed writes the same files")
    parser.add_argument("--eval-images", type=int, default=None,
                        help="eval images, one per new person (default about persons * 7 / 4)")
    parser.add_argument("--no-junk", action="store_true", help="leave out the macOS ._* junk files")
    parser.add_argument("--style", choices=STYLES, default="uniform",
                        help="uniform: one background per person (the built-in demo); varied: background, outfit, "
                             "face size and position drawn anew for every photo")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if Path(args.out).exists() and not Path(args.out).is_dir():
        parser.error(f"--out {args.out} is a file; give a folder for the data set")
    try:
        out = generate_demo(args.out, args.persons, args.seed, args.eval_images, junk=not args.no_junk,
                            style=args.style)
    except (UserError, StorageError) as err:
        parser.error(str(err))
    n_eval = len((out / "eval" / "info.csv").read_text().splitlines()) - 1
    print(f"wrote {args.persons} persons ({args.persons * len(STEMS)} photos) and {n_eval} eval images "
          f"to {out} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
