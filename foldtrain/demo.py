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

import argparse
import csv
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from foldtrain import labels

WIDTH, HEIGHT = 384, 512
STEMS = tuple(labels.MASK_BY_STEM)  # mask1..mask5, incorrect_mask, normal
AGE_GROUP_SHARES = (0.40, 0.35, 0.25)
JUNK_BYTES = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        "
EVAL_SUFFIX = ".jpg"

# Seed streams, so train persons, eval persons and per-person drawing never share random numbers.
_TRAIN, _EVAL = 0, 1

_SKIN_TONES = ((241, 210, 185), (228, 190, 160), (210, 165, 130), (188, 140, 105), (160, 115, 85))
# Mask colours kept away from skin tones so a worn mask never blends into the face.
_MASK_COLOURS = ((248, 248, 248), (160, 210, 250), (25, 25, 30), (35, 50, 120), (225, 228, 235),
                 (240, 110, 180), (90, 200, 230))
_MASK_SHAPES = ("surgical", "kf94", "cloth", "cup", "dotted")


@dataclass(frozen=True)
class _Person:
    gender: int
    age: int
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    lips: tuple[int, int, int]
    background: tuple[int, int, int]
    band: tuple[int, int, int]
    clothes: tuple[int, int, int]
    face_width: float
    masks: tuple[tuple[str, tuple[int, int, int]], ...]  # five (shape, colour) styles, one per maskN photo


def generate_demo(out: str | Path, persons: int = 60, seed: int = 0, eval_images: int | None = None,
                  junk: bool = True) -> Path:
    """Write a synthetic data set in the competition layout.

    Files already in `out` with other names are left alone, so write into an empty or new folder.

    Args:
        out: the data set root to write (created if missing).
        persons: number of training persons; each gets the 7 photos mask1..5, incorrect_mask, normal.
        seed: the same seed writes byte-identical files.
        eval_images: number of eval images, each one random photo of a new person (not in train);
            default about persons * 7 / 4, at least 8.
        junk: add macOS `._*` files to about every 5th person folder and to eval/images, as the real data has.

    Returns:
        `out` as a Path.
    """
    if persons < 1:
        raise ValueError(f"persons must be at least 1, got {persons}")
    n_eval = max(8, round(persons * 7 / 4)) if eval_images is None else eval_images
    if n_eval < 1:
        raise ValueError(f"eval_images must be at least 1, got {n_eval}")
    out = Path(out)
    _write_train(out, persons, seed, junk)
    _write_eval(out, n_eval, seed, junk)
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


def _write_train(out: Path, persons: int, seed: int, junk: bool) -> None:
    images = out / "train" / "images"
    images.mkdir(parents=True, exist_ok=True)
    demographics = _demographics(np.random.default_rng([seed, _TRAIN]), persons)
    suffixes = _suffixes(np.random.default_rng([seed, _TRAIN, persons]), persons)
    rows = []
    for index, (gender, age) in enumerate(demographics):
        rng = np.random.default_rng([seed, _TRAIN, index, 0])
        person = _make_person(rng, gender, age)
        folder_name = f"{index + 1:06d}_{labels.GENDER_NAMES[gender]}_Asian_{age}"
        folder = images / folder_name
        folder.mkdir(exist_ok=True)
        for stem in STEMS:
            _save(_draw_photo(person, stem, rng), folder / f"{stem}{suffixes[index]}")
        if junk and index % 5 == 0:
            (folder / f"._{STEMS[rng.integers(len(STEMS))]}{suffixes[index]}").write_bytes(JUNK_BYTES)
        rows.append((f"{index + 1:06d}", labels.GENDER_NAMES[gender], "Asian", age, folder_name))
    _write_csv(out / "train" / "train.csv", ("id", "gender", "race", "age", "path"), rows)


def _write_eval(out: Path, n_eval: int, seed: int, junk: bool) -> None:
    images = out / "eval" / "images"
    images.mkdir(parents=True, exist_ok=True)
    demographics = _demographics(np.random.default_rng([seed, _EVAL]), n_eval)
    info, truth = [], []
    for index, (gender, age) in enumerate(demographics):
        rng = np.random.default_rng([seed, _EVAL, index, 0])
        person = _make_person(rng, gender, age)
        stem = STEMS[rng.integers(len(STEMS))]
        image_id = rng.bytes(20).hex() + EVAL_SUFFIX
        _save(_draw_photo(person, stem, rng), images / image_id)
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


def _jitter(rng: np.random.Generator, colour, spread: int) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.integers(-spread, spread + 1), 0, 255)) for c in colour)


def _scale(colour, factor: float) -> tuple[int, int, int]:
    return tuple(int(min(255, c * factor)) for c in colour)


def _make_person(rng: np.random.Generator, gender: int, age: int) -> _Person:
    group = labels.age_bin(age)
    if group == 0:
        hair = (int(rng.integers(15, 60)), int(rng.integers(12, 42)), int(rng.integers(8, 30)))
    elif group == 1:
        grey = int(rng.integers(105, 150))
        hair = (grey, grey, grey + int(rng.integers(0, 8)))
    else:
        white = int(rng.integers(205, 245))
        hair = (white, white, white)
    skin = _jitter(rng, _SKIN_TONES[rng.integers(len(_SKIN_TONES))], 8)
    lips = _jitter(rng, (205, 40, 80), 15) if gender == 1 else _jitter(rng, (150, 85, 75), 15)
    colours = rng.permutation(len(_MASK_COLOURS))[:5]
    shapes = rng.permutation(len(_MASK_SHAPES))
    masks = tuple((_MASK_SHAPES[s], _MASK_COLOURS[c]) for s, c in zip(shapes, colours, strict=True))
    return _Person(gender=gender, age=age, skin=skin, hair=hair, lips=lips,
                   background=tuple(int(v) for v in rng.integers(30, 240, 3)),
                   band=tuple(int(v) for v in rng.integers(30, 240, 3)),
                   clothes=tuple(int(v) for v in rng.integers(0, 256, 3)),
                   face_width=float(rng.uniform(150, 190)), masks=masks)


def _draw_photo(person: _Person, stem: str, rng: np.random.Generator) -> Image.Image:
    """One 384x512 photo of `person` in the mask state of `stem`, with fresh position, size and noise."""
    img = Image.new("RGB", (WIDTH, HEIGHT), _jitter(rng, person.background, 10))
    draw = ImageDraw.Draw(img)
    # A wall edge or door frame behind the person, so the background is not one flat colour.
    band_x = int(rng.integers(0, WIDTH))
    draw.rectangle((band_x, 0, band_x + int(rng.integers(20, 120)), HEIGHT), fill=person.band)

    w = person.face_width * rng.uniform(0.95, 1.05)
    h = w * 1.28
    cx = WIDTH / 2 + rng.uniform(-60, 60)
    cy = HEIGHT / 2 - 35 + rng.uniform(-50, 50)
    top, bottom = cy - h / 2, cy + h / 2
    face_box = (cx - w / 2, top, cx + w / 2, bottom)
    skin, hair = person.skin, person.hair

    draw.rounded_rectangle((cx - 1.15 * w, bottom + 0.1 * h, cx + 1.15 * w, HEIGHT + 80), radius=0.45 * w,
                           fill=person.clothes)
    if person.gender == 1:
        # Long hair: one mass from above the head down past the chin onto the shoulders, wider than the face.
        draw.rounded_rectangle((cx - 0.74 * w, top - 0.1 * h, cx + 0.74 * w, bottom + 0.42 * h), radius=0.45 * w,
                               fill=hair)
    draw.rectangle((cx - 0.2 * w, cy + 0.3 * h, cx + 0.2 * w, bottom + 0.16 * h), fill=_scale(skin, 0.9))
    draw.polygon([(cx - 0.3 * w, bottom + 0.1 * h), (cx + 0.3 * w, bottom + 0.1 * h), (cx, bottom + 0.34 * h)],
                 fill=_scale(skin, 0.9))
    if person.gender == 0:
        # Short cropped hair shows only as a rim above the face; the ears stay visible.
        for side in (-1, 1):
            ex = cx + side * 0.5 * w
            draw.ellipse((ex - 0.07 * w, cy - 0.12 * h, ex + 0.07 * w, cy + 0.1 * h), fill=_scale(skin, 0.93))
        draw.ellipse((cx - 0.53 * w, top - 0.08 * h, cx + 0.53 * w, top + 0.5 * h), fill=hair)
    draw.ellipse(face_box, fill=skin)
    draw.chord(face_box, 212 if person.gender == 0 else 200, 328 if person.gender == 0 else 340, fill=hair)
    _draw_features(draw, person, cx, cy, w, h)
    _draw_wrinkles(draw, person, cx, cy, w, h)

    mask_state = labels.MASK_BY_STEM[stem]
    if mask_state == 0:  # over nose and mouth, from just below the eyes to the chin
        shape, colour = person.masks[int(stem[-1]) - 1]
        _draw_mask(draw, shape, colour, (cx - 0.6 * w, cy - 0.05 * h, cx + 0.6 * w, cy + 0.53 * h), cx, cy, w, h)
    elif mask_state == 1:  # pulled down onto the chin: nose and mouth show
        shape, colour = person.masks[rng.integers(len(person.masks))]
        _draw_mask(draw, shape, colour, (cx - 0.48 * w, cy + 0.35 * h, cx + 0.48 * w, cy + 0.64 * h), cx, cy, w, h)
    return _finish(img, rng)


def _draw_features(draw: ImageDraw.ImageDraw, person: _Person, cx: float, cy: float, w: float, h: float) -> None:
    for side in (-1, 1):
        ex, ey = cx + side * 0.21 * w, cy - 0.07 * h
        brow = (ex - 0.1 * w, cy - 0.15 * h, ex + 0.1 * w, cy - 0.15 * h)
        draw.line(brow, fill=person.hair, width=max(3, int(w / 30)))
        draw.ellipse((ex - 0.09 * w, ey - 0.04 * h, ex + 0.09 * w, ey + 0.04 * h), fill=(245, 245, 240))
        draw.ellipse((ex - 0.04 * w, ey - 0.035 * h, ex + 0.04 * w, ey + 0.035 * h), fill=(35, 25, 20))
    # A large nose and an open mouth: what a mask hides must be plain to see at 96 px when it is not hidden.
    draw.polygon([(cx, cy - 0.03 * h), (cx - 0.09 * w, cy + 0.14 * h), (cx + 0.09 * w, cy + 0.14 * h)],
                 fill=_scale(person.skin, 0.78))
    for side in (-1, 1):
        draw.ellipse((cx + side * 0.05 * w - 0.03 * w, cy + 0.11 * h, cx + side * 0.05 * w + 0.03 * w, cy + 0.15 * h),
                     fill=(60, 30, 25))
    draw.ellipse((cx - 0.23 * w, cy + 0.19 * h, cx + 0.23 * w, cy + 0.32 * h), fill=person.lips)
    draw.ellipse((cx - 0.17 * w, cy + 0.22 * h, cx + 0.17 * w, cy + 0.29 * h), fill=(75, 15, 25))
    draw.line((cx - 0.13 * w, cy + 0.226 * h, cx + 0.13 * w, cy + 0.226 * h), fill=(245, 245, 240), width=4)


def _draw_wrinkles(draw: ImageDraw.ImageDraw, person: _Person, cx: float, cy: float, w: float, h: float) -> None:
    group = labels.age_bin(person.age)
    if group == 0:
        return
    line = _scale(person.skin, 0.62)
    width = 2 if group == 1 else 3
    for k in range(2 if group == 1 else 4):
        y = cy - 0.2 * h - k * 0.035 * h
        draw.line((cx - 0.22 * w, y, cx + 0.22 * w, y), fill=line, width=width)
    if group == 2:
        for side in (-1, 1):
            # Nasolabial folds and crow's feet.
            draw.line((cx + side * 0.1 * w, cy + 0.12 * h, cx + side * 0.22 * w, cy + 0.3 * h), fill=line, width=3)
            ex = cx + side * 0.33 * w
            for dy in (-0.03, 0.0, 0.03):
                draw.line((ex, cy - 0.07 * h, ex + side * 0.08 * w, cy + (-0.07 + dy) * h), fill=line, width=2)


def _draw_mask(draw: ImageDraw.ImageDraw, shape: str, colour, box, cx: float, cy: float, w: float, h: float) -> None:
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    strap = _scale(colour, 0.75) if sum(colour) > 150 else (90, 90, 95)
    for side, x in ((-1, x0), (1, x1)):
        draw.line((x, y0 + 0.15 * bh, cx + side * 0.5 * w, cy - 0.04 * h), fill=strap, width=3)
    # A bold rim in the strap colour outlines every mask, whatever its fill, so the shape stands out at 96 px.
    rim = max(4, int(w / 40))
    if shape == "kf94":
        xm = (x0 + x1) / 2
        draw.polygon([(x0, y0 + 0.3 * bh), (xm, y0), (x1, y0 + 0.3 * bh), (x1 - 0.06 * bw, y0 + 0.75 * bh),
                      (xm, y1), (x0 + 0.06 * bw, y0 + 0.75 * bh)], fill=colour, outline=strap, width=rim)
        draw.line((xm, y0, xm, y1), fill=strap, width=2)
    elif shape == "cup":
        draw.ellipse(box, fill=colour, outline=strap, width=rim)
    else:
        radius = {"surgical": 0.08, "cloth": 0.4, "dotted": 0.18}[shape] * min(bw, bh)
        draw.rounded_rectangle(box, radius=radius, fill=colour, outline=strap, width=rim)
    if shape == "surgical":
        for k in (1, 2, 3):
            y = y0 + k * bh / 4
            draw.line((x0 + 4, y, x1 - 4, y), fill=strap, width=2)
    elif shape == "dotted":
        dot = (30, 30, 30) if sum(colour) > 380 else (240, 240, 240)
        r = max(2.0, bw / 40)
        for y in np.linspace(y0 + 0.2 * bh, y1 - 0.2 * bh, 3):
            for x in np.linspace(x0 + 0.15 * bw, x1 - 0.15 * bw, 5):
                draw.ellipse((x - r, y - r, x + r, y + r), fill=dot)


def _finish(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Per-photo brightness change and pixel noise, as from a phone camera."""
    gain = int(rng.integers(224, 289))  # 0.875x .. 1.125x in 1/256 steps; integer maths keeps it fast
    pixels = np.asarray(img, dtype=np.int32) * gain // 256
    pixels += rng.integers(-9, 10, size=pixels.shape, dtype=np.int32)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _save(img: Image.Image, path: Path) -> None:
    if path.suffix == ".png":
        img.save(path, "PNG", compress_level=1)  # noisy pixels barely compress; spend no time trying
    else:
        img.save(path, "JPEG", quality=90)


def main(argv: list[str] | None = None) -> None:
    """Command line: `python -m foldtrain.demo --out DIR [--persons N] [--seed S] [--eval-images N]`."""
    parser = argparse.ArgumentParser(prog="python -m foldtrain.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="data set root to write")
    parser.add_argument("--persons", type=int, default=60, help="training persons, 7 photos each (default 60)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed writes the same files")
    parser.add_argument("--eval-images", type=int, default=None,
                        help="eval images, one per new person (default about persons * 7 / 4)")
    parser.add_argument("--no-junk", action="store_true", help="leave out the macOS ._* junk files")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    out = generate_demo(args.out, args.persons, args.seed, args.eval_images, junk=not args.no_junk)
    n_eval = len((out / "eval" / "info.csv").read_text().splitlines()) - 1
    print(f"wrote {args.persons} persons ({args.persons * len(STEMS)} photos) and {n_eval} eval images "
          f"to {out} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
