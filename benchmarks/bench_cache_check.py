"""What checking the decoded cache costs when a run opens it: every row's CRC-32, against the three-row spot check.

    python benchmarks/bench_cache_check.py [--images 18900] [--size 224] [--rounds 3]

Writes a cache of `--images` random rows at the working size `foldtrain` uses for `data.image_size=--size`
(18,900 at 224 px -> 252x252: 3.6 GB, the competition's training set) in a temporary folder, with the .json of
row checksums `build_cache` writes, then times `cache.is_valid` alternately with every row checked (what the main
process does at each run start; 1 and all cores) and with the spot check (what the other processes do). The file
is in the page cache, as it is right after a build; a cold disk adds its read time, which the first epoch would
otherwise pay.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import common
from foldtrain.cpus import available_cores
from foldtrain.data.cache import _row_crcs, is_valid, open_cache
from foldtrain.data.transforms import working_size
from foldtrain.files import write_json


def write_random_cache(folder: Path, count: int, size_hw: tuple[int, int]) -> Path:
    target = folder / "images-bench.npy"
    written = folder / "images-bench.tmp.npy"
    array = np.lib.format.open_memmap(written, mode="w+", dtype=np.uint8, shape=(count, *size_hw, 3))
    rng = np.random.default_rng(0)
    for start in range(0, count, 500):  # in slices: the whole array at once would need its size in RAM twice
        stop = min(count, start + 500)
        array[start:stop] = rng.integers(0, 256, (stop - start, *size_hw, 3), dtype=np.uint8)
    array.flush()
    crcs = _row_crcs(open_cache(written), range(count), available_cores())
    write_json(target.with_suffix(".json"), {"count": count, "size_hw": list(size_hw), "crc32": crcs})
    written.rename(target)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=18900)
    parser.add_argument("--size", type=int, default=224, help="data.image_size the cache is built for")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    size_hw = working_size((args.size, args.size))
    cores = available_cores()
    with tempfile.TemporaryDirectory(prefix="bench-cache-check-") as tmp:
        path = write_random_cache(Path(tmp), args.images, size_hw)
        gigabytes = path.stat().st_size / 1e9

        def check(threads: int):
            def run() -> float:
                start = time.perf_counter()
                valid = is_valid(path, args.images, size_hw, threads)
                seconds = time.perf_counter() - start
                if not valid:
                    sys.exit("the freshly written cache did not validate")
                return seconds
            return run

        variants = {"every row, 1 thread": check(1), f"every row, {cores} threads": check(cores),
                    "spot check (3 rows)": check(0)}
        results = common.interleaved(variants, args.rounds)
    rows = [[name, f"{common.median(values):.3f}", common.spread(values),
             f"{gigabytes / common.median(values):.1f}" if "every" in name else "-"]
            for name, values in results.items()]
    print()
    print(common.markdown_table(["check", "median s", "range s", "GB/s"], rows))
    print(f"\n{args.images} images at {size_hw[0]}x{size_hw[1]}: {gigabytes:.2f} GB; {common.machine()}")


if __name__ == "__main__":
    main()
