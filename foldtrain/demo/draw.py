"""Drawing one synthetic portrait: a person whose mask state, gender and age group are plainly visible."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from foldtrain.data import labels

WIDTH, HEIGHT = 384, 512
_SKIN_TONES = ((241, 210, 185), (228, 190, 160), (210, 165, 130), (188, 140, 105), (160, 115, 85))
# Mask colours kept away from skin tones so a worn mask never blends into the face.
_MASK_COLOURS = ((248, 248, 248), (160, 210, 250), (25, 25, 30), (35, 50, 120), (225, 228, 235),
                 (240, 110, 180), (90, 200, 230))
_MASK_SHAPES = ("surgical", "kf94", "cloth", "cup", "dotted")


@dataclass(frozen=True)
class Person:
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


def _jitter(rng: np.random.Generator, colour, spread: int) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.integers(-spread, spread + 1), 0, 255)) for c in colour)


def _scale(colour, factor: float) -> tuple[int, int, int]:
    return tuple(int(min(255, c * factor)) for c in colour)


def make_person(rng: np.random.Generator, gender: int, age: int) -> Person:
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
    return Person(gender=gender, age=age, skin=skin, hair=hair, lips=lips,
                   background=tuple(int(v) for v in rng.integers(30, 240, 3)),
                   band=tuple(int(v) for v in rng.integers(30, 240, 3)),
                   clothes=tuple(int(v) for v in rng.integers(0, 256, 3)),
                   face_width=float(rng.uniform(150, 190)), masks=masks)


STYLES = ("uniform", "varied")


def draw_photo(person: Person, stem: str, rng: np.random.Generator, style: str = "uniform") -> Image.Image:
    """One 384x512 photo of `person` in the mask state of `stem`, with fresh position, size and noise.

    `uniform`: one background, door frame and outfit per person, faces of one size near the centre (the built-in
    demo). `varied`: background, frame and outfit drawn anew for every photo, faces from 0.7x to 1.25x their size
    anywhere within a wider area, as photos from many phones and rooms are.
    """
    varied = style == "varied"
    background = tuple(int(v) for v in rng.integers(30, 240, 3)) if varied else _jitter(rng, person.background, 10)
    band = tuple(int(v) for v in rng.integers(30, 240, 3)) if varied else person.band
    clothes = tuple(int(v) for v in rng.integers(0, 256, 3)) if varied else person.clothes
    img = Image.new("RGB", (WIDTH, HEIGHT), background)
    draw = ImageDraw.Draw(img)
    # A wall edge or door frame behind the person, so the background is not one flat colour.
    band_x = int(rng.integers(0, WIDTH))
    draw.rectangle((band_x, 0, band_x + int(rng.integers(20, 120)), HEIGHT), fill=band)

    w = person.face_width * (rng.uniform(0.7, 1.25) if varied else rng.uniform(0.95, 1.05))
    h = w * 1.28
    shift_x, shift_y = (90, 80) if varied else (60, 50)
    cx = WIDTH / 2 + rng.uniform(-shift_x, shift_x)
    cy = HEIGHT / 2 - 35 + rng.uniform(-shift_y, shift_y)
    top, bottom = cy - h / 2, cy + h / 2
    face_box = (cx - w / 2, top, cx + w / 2, bottom)
    skin, hair = person.skin, person.hair

    draw.rounded_rectangle((cx - 1.15 * w, bottom + 0.1 * h, cx + 1.15 * w, HEIGHT + 80), radius=0.45 * w,
                           fill=clothes)
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


def _draw_features(draw: ImageDraw.ImageDraw, person: Person, cx: float, cy: float, w: float, h: float) -> None:
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


def _draw_wrinkles(draw: ImageDraw.ImageDraw, person: Person, cx: float, cy: float, w: float, h: float) -> None:
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
