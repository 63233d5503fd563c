import numpy as np
import pytest

from foldtrain.data import labels
from foldtrain.user_error import UserError


def test_competition_encoding_examples():
    # mask worn, male, <30 -> 0; incorrect, female, 30..59 -> 6 + 3 + 1; not worn, female, >=60 -> 17
    assert labels.encode(0, 0, 0) == 0
    assert labels.encode(1, 1, 1) == 10
    assert labels.encode(2, 1, 2) == 17
    assert len(labels.class_names()) == labels.NUM_CLASSES == 18


def test_decode_inverts_encode():
    all_labels = np.arange(18)
    assert (labels.encode(*labels.decode(all_labels)) == all_labels).all()


@pytest.mark.parametrize("age, expected", [(18, 0), (29, 0), (30, 1), (59, 1), (60, 2), (75, 2)])
def test_age_bins_default(age: int, expected: int):
    assert labels.age_bin(age) == expected


def test_age_bins_moved_cut():
    assert labels.age_bin(58, (30, 58)) == 2
    assert list(labels.age_bin(np.array([57, 58, 59]), (30, 58))) == [1, 2, 2]
    with pytest.raises(UserError, match="age_bins"):
        labels.age_bin(40, (60, 30))


def test_mask_stems():
    assert {labels.MASK_BY_STEM[f"mask{i}"] for i in range(1, 6)} == {0}
    assert labels.MASK_BY_STEM["incorrect_mask"] == 1
    assert labels.MASK_BY_STEM["normal"] == 2


def test_class_names_follow_the_age_cut_points():
    assert labels.class_names()[:3] == ["wear/male/<30", "wear/male/30-59", "wear/male/>=60"]
    moved = labels.class_names((30, 58))
    assert moved[:3] == ["wear/male/<30", "wear/male/30-57", "wear/male/>=58"] and len(moved) == 18
