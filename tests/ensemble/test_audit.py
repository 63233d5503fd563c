"""The person-level audit on constructed out-of-fold tables with planted errors (no training): which persons it
names, exactly; duplicates from copied photos; the fixes it writes are the ones data.label_fixes reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ensemble.duplicates import duplicate_persons, thumbnail
from ensemble.label_audit import audit_labels, audit_mask_layout, marginals, sorted_issues
from foldtrain.data import labels as L
from foldtrain.data.mask_layout import fixed_age, read_label_fixes
from foldtrain.data.tables import LayoutError

STEMS = [*(f"mask{i}" for i in range(1, 6)), "incorrect_mask", "normal"]


def constructed(persons: int = 60, seed: int = 0):
    """A mask-layout out-of-fold table whose models know each person's true labels (with photo-to-photo noise and a
    few hard persons), and whose given labels carry planted errors."""
    rng = np.random.default_rng(seed)
    gender = rng.integers(0, 2, persons)
    age = rng.integers(0, 3, persons)
    truth = {"gender": {3, 17, 41}, "age": {8, 25}, "mask_swap": {12, 33}, "hard": {5, 50}}
    rows, scores = [], []
    for p in range(persons):
        for stem in STEMS:
            mask = L.MASK_BY_STEM[stem]
            # what the photo shows: the true labels, confidently (hard persons: barely)
            sure = 0.6 if p in truth["hard"] else rng.uniform(0.85, 0.97)
            logits = np.full(18, np.log((1 - sure) / 17))
            logits[L.encode(mask, gender[p], age[p])] = np.log(sure)
            scores.append(logits)
            given_mask = 3 - mask if p in truth["mask_swap"] and mask in (1, 2) else mask
            given_gender = 1 - gender[p] if p in truth["gender"] else gender[p]
            given_age = (age[p] + 1) % 3 if p in truth["age"] else age[p]
            rows.append({"path": f"train/images/p{p:03d}/{stem}.jpg", "person": f"p{p:03d}",
                         "label": L.encode(given_mask, given_gender, given_age)})
    return pd.DataFrame(rows), np.array(scores), {k: {f"p{p:03d}" for p in v} for k, v in truth.items()}


def test_planted_person_errors_are_found_exactly():
    table, logp, truth = constructed()
    found = {f.kind: set(f.issues["person"]) for f in audit_mask_layout(logp, table, (30, 60))}
    assert found["gender"] == truth["gender"]
    assert found["age"] == truth["age"]
    assert found["mask_swap"] == truth["mask_swap"]
    issues = sorted_issues(audit_mask_layout(logp, table, (30, 60)))
    assert list(issues.columns) == ["person", "kind", "given", "suggested", "score", "images"]
    assert issues["score"].is_monotonic_decreasing and (issues["score"] > 0).all()
    flip = issues[(issues["kind"] == "gender")].iloc[0]
    assert flip["images"].count(";") == 6  # all seven photos are the evidence


def test_a_clean_set_yields_no_suspect():
    table, logp, _ = constructed()
    clean = table.assign(label=logp.argmax(1))  # every given label is what the photos show
    found = audit_mask_layout(logp, clean, (30, 60))
    assert all(f.issues.empty for f in found), [f.issues for f in found]


def test_marginals_are_the_heads_of_the_joint():
    rng = np.random.default_rng(1)
    heads = [rng.dirichlet(np.ones(n), 5) for n in (3, 2, 3)]
    joint = np.log(np.einsum("ri,rj,rk->rijk", *heads).reshape(5, 18))
    parts = marginals(joint)
    for name, head in zip(("mask", "gender", "age"), heads, strict=True):
        np.testing.assert_allclose(np.exp(parts[name]), head, atol=1e-9)


def test_generic_labels_pool_by_group_only_where_a_group_holds_one_label():
    rng = np.random.default_rng(2)
    n = 40
    truth = np.repeat(rng.integers(0, 4, n // 2), 2)  # groups of two images of one label
    logp = np.log(np.full((n, 4), 0.02))
    logp[np.arange(n), truth] = np.log(0.94)
    given = truth.copy()
    given[[4, 5]] = (truth[[4, 5]] + 1) % 4  # group g2 is labelled wrong
    table = pd.DataFrame({"path": [f"img{i:02d}.png" for i in range(n)], "person": [f"g{i // 2}" for i in range(n)],
                          "label": given})
    found = audit_labels(logp, table, ["a", "b", "c", "d"])[0]
    assert list(found.issues["person"]) == ["g2"] and found.issues["images"].iloc[0] == "img04.png;img05.png"
    given[7] = (truth[7] + 1) % 4  # g3 now holds two labels: images are judged one by one
    found = audit_labels(logp, table.assign(label=given), ["a", "b", "c", "d"])[0]
    assert sorted(found.issues["person"]) == ["img04.png", "img05.png", "img07.png"]


def test_copied_photos_pair_their_persons(tmp_path: Path):
    rng = np.random.default_rng(3)
    paths, persons = [], []
    for p in range(6):
        for k in range(3):
            img = Image.fromarray(rng.integers(0, 255, (40, 32, 3), dtype=np.uint8)).resize((96, 120))
            path = tmp_path / f"p{p}_{k}.png"
            img.save(path)
            paths.append(path)
            persons.append(f"p{p}")
    for k in range(3):  # p6 is p1 again: resized and re-encoded
        Image.open(paths[3 + k]).resize((90, 112)).save(tmp_path / f"p6_{k}.jpg", quality=80)
        paths.append(tmp_path / f"p6_{k}.jpg")
        persons.append("p6")
    thumbs = np.stack([thumbnail(p) for p in paths])
    pairs = duplicate_persons(thumbs, np.array(persons), {f"p{p}": p % 5 for p in range(7)})
    assert pairs[["person_a", "person_b"]].values.tolist() == [["p1", "p6"]]
    assert pairs["similarity"].iloc[0] == 1.0 and pairs["fold_a"].iloc[0] == 1


def test_label_fixes_take_an_age_group_and_several_kinds_per_person(tmp_path: Path):
    fixes = tmp_path / "fixes.csv"
    fixes.write_text("id,fix\n000001,to_female\n000001,age_group=2\n2,swap_incorrect_normal\n")
    read = read_label_fixes(fixes, pd.Series(["000001", "000002"]))
    assert read == {"1": {"to_female", "age_group=2"}, "2": {"swap_incorrect_normal"}}
    assert [fixed_age(45, {"age_group=2"}, (30, 60)), fixed_age(45, {"age_group=0"}, (30, 60)),
            fixed_age(20, {"age_group=1"}, (30, 60)), fixed_age(70, {"age_group=1"}, (30, 60))] == [60, 29, 30, 59]
    fixes.write_text("id,fix\n000001,to_female\n000001,to_male\n")
    with pytest.raises(LayoutError, match="two gender fixes"):
        read_label_fixes(fixes, pd.Series(["000001"]))
    fixes.write_text("id,fix\n000001,age_group=3\n")
    with pytest.raises(LayoutError, match="unknown fixes"):
        read_label_fixes(fixes, pd.Series(["000001"]))
