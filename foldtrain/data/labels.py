"""The competition's 18-class encoding: class = mask * 6 + gender * 3 + age_bin."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from foldtrain.user_error import UserError

NUM_CLASSES = 18
MASK_NAMES = ("wear", "incorrect", "not_wear")
GENDER_NAMES = ("male", "female")
DEFAULT_AGE_BINS = (30, 60)

# Photo file stem -> mask state. mask1..mask5 are worn masks, the two others are named for what they show.
MASK_BY_STEM = {f"mask{i}": 0 for i in range(1, 6)} | {"incorrect_mask": 1, "normal": 2}
GENDER_BY_NAME = {"male": 0, "female": 1}


def age_bin(age: int | np.ndarray, bins: Sequence[int] = DEFAULT_AGE_BINS) -> int | np.ndarray:
    """Age group index: 0 below bins[0], 1 below bins[1], 2 from bins[1] on (cut points are inclusive lower bounds)."""
    if len(bins) != 2 or bins[0] >= bins[1]:
        raise UserError(f"data.age_bins must be two increasing cut points such as [30, 60], got {list(bins)}")
    return np.digitize(age, bins) if isinstance(age, np.ndarray) else int(np.digitize([age], bins)[0])


def encode(mask: int | np.ndarray, gender: int | np.ndarray, age_group: int | np.ndarray) -> int | np.ndarray:
    """The 18-class label of (mask state, gender, age group)."""
    return mask * 6 + gender * 3 + age_group


def decode(label: int | np.ndarray) -> tuple:
    """(mask, gender, age_group) of an 18-class label."""
    return label // 6, (label // 3) % 2, label % 3


def age_names(bins: Sequence[int] = DEFAULT_AGE_BINS) -> tuple[str, str, str]:
    """The age groups' names for these cut points: `<30`, `30-59`, `>=60` for [30, 60]."""
    low, high = bins
    return f"<{low}", f"{low}-{high - 1}", f">={high}"


def class_names(bins: Sequence[int] = DEFAULT_AGE_BINS) -> list[str]:
    """Readable names of the 18 classes, in label order, the age groups named by their cut points."""
    return [f"{m}/{g}/{a}" for m in MASK_NAMES for g in GENDER_NAMES for a in age_names(bins)]
