"""A synthetic data set in the exact competition layout: the built-in demo and the tests' data.

Each person is a drawn portrait whose three labelled attributes are plainly visible, so a tiny CNN learns
them from scratch in minutes:

- mask state: a mask over nose and mouth (mask1..5, five colours and shapes per person), a mask pulled down
  onto the chin with nose and mouth showing (incorrect_mask), or no mask (normal);
- gender: long hair falling beside the face to the shoulders and red lips (female), short cropped hair and
  visible ears (male);
- age group: hair and eyebrow colour (dark below 30, salted gray 30..59, white from 60) and wrinkle lines.

Everything else varies as nuisance: background, clothing, skin tone, face size and an off-centre face
position that changes from photo to photo, plus pixel noise and JPEG artefacts.

The layout matches the real data, junk included (mixed .jpg/.jpeg/.png suffixes, macOS `._*` files).
`ROOT/eval_truth.csv` holds the true labels of the eval images for tests; it is not part of the
competition layout.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from foldtrain.data import labels
from foldtrain.demo.draw import STYLES, draw_photo, make_person
from foldtrain.user_error import UserError

STEMS = tuple(labels.MASK_BY_STEM)  # mask1..mask5, incorrect_mask, normal
AGE_GROUP_SHARES = (0.40, 0.35, 0.25)
JUNK_BYTES = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        "
EVAL_SUFFIX = ".jpg"

# Seed streams, so train persons, eval persons and per-person drawing never share random numbers.
_TRAIN, _EVAL = 0, 1


def generate_demo(out: str | Path, persons: int = 60, seed: int = 0, eval_images: int | None = None,
                  junk: bool = True, style: str = "uniform") -> Path:
    """Write a synthetic data set in the competition layout.

    Files already in `out` with other names are left alone, so write into an empty or new folder.

    Args:
        out: the data set root to write (created if missing).
        persons: number of training persons; each gets the 7 photos mask1..5, incorrect_mask, normal.
        seed: the same seed writes byte-identical files.
        eval_images: number of eval images, each one random photo of a new person (not in train);
            default about persons * 7 / 4, at least 8.
        junk: add macOS `._*` files to about every 5th person folder and to eval/images, as the real data has.
        style: `uniform` (one background and outfit per person, faces of one size: the built-in demo) or `varied`
            (background, outfit, face size and position drawn anew for every photo).

    Returns:
        `out` as a Path.
    """
    if persons < 1:
        raise UserError(f"persons must be at least 1, got {persons}")
    n_eval = max(8, round(persons * 7 / 4)) if eval_images is None else eval_images
    if n_eval < 1:
        raise UserError(f"eval_images must be at least 1, got {n_eval}")
    if style not in STYLES:
        raise UserError(f"style must be one of {', '.join(STYLES)}, got {style!r}")
    out = Path(out)
    _write_train(out, persons, seed, junk, style)
    _write_eval(out, n_eval, seed, junk, style)
    return out


def ensure_demo(root: str | Path) -> Path:
    """The demo data set at `root`, generated with the defaults only when `root/train/train.csv` is missing.

    Generation writes into a hidden temporary folder beside `root` and renames it into place, so a killed
    run never leaves half a data set, and processes racing to create it all end up with one complete copy.

    Raises:
        FileExistsError: `root` exists, is not empty and holds no `train/train.csv`.
    """
    root = Path(root)
    if (root / "train" / "train.csv").is_file():
        return root
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} exists but holds no train/train.csv: remove it to regenerate the demo, "
                              f"or point data.root at a data set")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        generate_demo(tmp)
        if root.is_dir():
            root.rmdir()  # empty (checked above); rename cannot replace a directory on every platform
        os.rename(tmp, root)
    except OSError:
        # Another process may have renamed its finished copy into place first: that copy is as good as ours.
        if not (root / "train" / "train.csv").is_file():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _write_train(out: Path, persons: int, seed: int, junk: bool, style: str) -> None:
    images = out / "train" / "images"
    images.mkdir(parents=True, exist_ok=True)
    demographics = _demographics(np.random.default_rng([seed, _TRAIN]), persons)
    suffixes = _suffixes(np.random.default_rng([seed, _TRAIN, persons]), persons)
    rows = []
    for index, (gender, age) in enumerate(demographics):
        rng = np.random.default_rng([seed, _TRAIN, index, 0])
        person = make_person(rng, gender, age)
        folder_name = f"{index + 1:06d}_{labels.GENDER_NAMES[gender]}_Asian_{age}"
        folder = images / folder_name
        folder.mkdir(exist_ok=True)
        for stem in STEMS:
            _save(draw_photo(person, stem, rng, style), folder / f"{stem}{suffixes[index]}")
        if junk and index % 5 == 0:
            (folder / f"._{STEMS[rng.integers(len(STEMS))]}{suffixes[index]}").write_bytes(JUNK_BYTES)
        rows.append((f"{index + 1:06d}", labels.GENDER_NAMES[gender], "Asian", age, folder_name))
    _write_csv(out / "train" / "train.csv", ("id", "gender", "race", "age", "path"), rows)


def _write_eval(out: Path, n_eval: int, seed: int, junk: bool, style: str) -> None:
    images = out / "eval" / "images"
    images.mkdir(parents=True, exist_ok=True)
    demographics = _demographics(np.random.default_rng([seed, _EVAL]), n_eval)
    info, truth = [], []
    for index, (gender, age) in enumerate(demographics):
        rng = np.random.default_rng([seed, _EVAL, index, 0])
        person = make_person(rng, gender, age)
        stem = STEMS[rng.integers(len(STEMS))]
        image_id = rng.bytes(20).hex() + EVAL_SUFFIX
        _save(draw_photo(person, stem, rng, style), images / image_id)
        mask = labels.MASK_BY_STEM[stem]
        info.append((image_id, 0))
        truth.append((image_id, labels.encode(mask, gender, labels.age_bin(age)), mask, gender, age))
    if junk:
        (images / f"._{info[0][0]}").write_bytes(JUNK_BYTES)
    _write_csv(out / "eval" / "info.csv", ("ImageID", "ans"), info)
    _write_csv(out / "eval_truth.csv", ("ImageID", "ans", "mask", "gender", "age"), truth)


def _write_csv(path: Path, header: tuple[str, ...], rows: list[tuple]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _demographics(rng: np.random.Generator, n: int) -> list[tuple[int, int]]:
    """(gender, age) of n persons: fixed age-group shares, genders alternating within each group, shuffled."""
    shares = np.array(AGE_GROUP_SHARES) * n
    counts = np.floor(shares).astype(int)
    # Largest remainders get the leftover persons, so even 6 persons cover all three age groups.
    for group in np.argsort(counts - shares)[: n - counts.sum()]:
        counts[group] += 1
    people = []
    for group, count in enumerate(counts):
        first_gender = int(rng.integers(2))
        for k in range(count):
            people.append(((first_gender + k) % 2, _age(rng, group, k)))
    return [people[i] for i in rng.permutation(n)]


def _age(rng: np.random.Generator, group: int, k: int) -> int:
    """An age in the group; the real data piles up at 18..20, 50..59 and exactly 60."""
    if group == 0:
        return int(rng.integers(18, 21) if rng.random() < 0.5 else rng.integers(18, 30))
    if group == 1:
        # The first two of the group are 58 and 59 so moving the age cut to 58 always changes some labels.
        if k < 2:
            return 58 + k
        return int(rng.integers(58, 60) if rng.random() < 0.2 else rng.integers(30, 58))
    return int(60 if rng.random() < 0.4 else rng.integers(60, 76))


def _suffixes(rng: np.random.Generator, n: int) -> list[str]:
    """Photo suffix of each person: mostly .jpg, about 10 % .jpeg and 10 % .png, each present from 3 persons."""
    n_other = max(1, round(0.1 * n)) if n >= 3 else 0
    pool = [".jpeg"] * n_other + [".png"] * n_other + [".jpg"] * (n - 2 * n_other)
    return [pool[i] for i in rng.permutation(n)]


def _save(img: Image.Image, path: Path) -> None:
    if path.suffix == ".png":
        img.save(path, "PNG", compress_level=1)  # noisy pixels barely compress; spend no time trying
    else:
        img.save(path, "JPEG", quality=90)
